//! The host's metrics: counters and histograms every part of the host reports to, exposed
//! in Prometheus' text format at `/metrics`.
//!
//! Scaffold: the functions below are the agreed entry points; their bodies are filled in
//! with the registry (issue 18).

use std::time::Duration;

/// One guest call into a capability finished (`ok`: it returned no error).
pub fn observe_capability(
    _service: &str,
    _capability: &'static str,
    _op: &'static str,
    _ok: bool,
    _elapsed: Duration,
) {
}

/// A call from `caller` to `callee` answered `status` after `elapsed` (client side).
pub fn observe_call(_caller: &str, _callee: &str, _status: u16, _elapsed: Duration) {}

/// The host refused `service` a capability use: `kind` is `store` (a store not granted),
/// `call` (a call not declared), `statement` (a statement refused), `topic` (a topic not
/// declared), or `saga` (a saga step not declared).
pub fn count_refusal(_service: &str, _kind: &'static str) {}

/// An event of `topic` from `source` was handled by `subscriber` through `subscription`,
/// `lag` after it was committed to the outbox (publish to handler commit).
pub fn observe_delivery(
    _subscription: &str,
    _source: &str,
    _topic: &str,
    _subscriber: &str,
    _lag: Duration,
) {
}

/// A saga of `service` ended in `outcome` (`completed`, `compensated` or `failed`) after
/// `elapsed` from its start.
pub fn observe_saga(_service: &str, _outcome: &'static str, _elapsed: Duration) {}
