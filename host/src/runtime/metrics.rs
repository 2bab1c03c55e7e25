//! What the router records per service: requests by route and status, their latency, busy
//! refusals, traps and timeouts.
//!
//! The series live in the host's one registry (`telemetry::metrics`); a [`ServiceMetrics`]
//! holds its service's label set and counters, resolved once when the service is loaded, so
//! the router's `record` and `fetch_add` calls touch only atomics.

pub use crate::telemetry::metrics::HttpMetrics as ServiceMetrics;
