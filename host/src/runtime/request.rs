//! The request context: what every capability of one instance shares (service, deadline, chain).
//!
//! Each capability keeps its own grants in its own context (`sql::SqlCtx`, `kv::KvCtx`,
//! `events::EventsCtx`, `sagas::SagasCtx`, `calls::CallCtx`); what they all need to know
//! about the request itself lives here, once, and their views borrow it read-only.
//!
//! Architecture invariant: this module imports nothing of the crate, so a capability may
//! name [`RequestCtx`] without depending on the rest of `runtime`.

use std::sync::Arc;
use std::time::Instant;

/// Who is running, until when, and on whose behalf: set by the runtime when an instance is
/// armed for a request, read by every capability.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The service this instance belongs to (the source of its events, the caller of its
    /// calls, the name in its refusals), from the host, never from the guest.
    pub service: Arc<str>,
    /// When the request must be answered: every statement, key-value call and outgoing
    /// call stops by then.
    pub deadline: Instant,
    /// The services this request passes through, outermost first, this one last.
    pub chain: Arc<[Arc<str>]>,
}

impl RequestCtx {
    /// The context of a request of `service` with nothing armed yet (see [`RequestCtx::arm`]).
    pub fn new(service: Arc<str>, deadline: Instant) -> Self {
        Self {
            service,
            deadline,
            chain: Arc::from([]),
        }
    }

    /// Prepares the context for the next request: its deadline, and the call chain it is
    /// part of (`before`: the services before this one).
    pub fn arm(&mut self, deadline: Instant, before: &[Arc<str>]) {
        self.deadline = deadline;
        self.chain = before
            .iter()
            .cloned()
            .chain(std::iter::once(self.service.clone()))
            .collect();
    }
}
