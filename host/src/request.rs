//! The request context: what every capability of one instance shares (service, deadline, chain).
//!
//! Each capability keeps its own grants in its own context (`sql::SqlCtx`, `kv::KvCtx`,
//! `events::EventsCtx`, `sagas::SagasCtx`, `calls::CallCtx`); what they all need to know
//! about the request itself lives here, once, and their views borrow it read-only.
//!
//! Architecture invariant: this module imports nothing of the crate but `telemetry` (the
//! other first-floor module), so a capability may name [`RequestCtx`] without depending on
//! `runtime`, which composes the contexts.

use std::sync::Arc;
use std::time::Instant;

use crate::telemetry::TraceContext;

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
    /// The span this instance's work belongs to (the incoming request's, the delivery's,
    /// the saga command's): the parent of every span a capability starts for it, and what
    /// calls and published events carry on.
    pub trace: Option<TraceContext>,
}

impl RequestCtx {
    /// The context of a request of `service` with nothing armed yet (see [`RequestCtx::arm`]).
    pub fn new(service: Arc<str>, deadline: Instant) -> Self {
        Self {
            service,
            deadline,
            chain: Arc::from([]),
            trace: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arming_sets_the_deadline_and_ends_the_chain_with_this_service() {
        let start = Instant::now();
        let mut request = RequestCtx::new("orders".into(), start);
        assert!(request.chain.is_empty());
        let later = start + std::time::Duration::from_secs(1);
        request.arm(later, &["gateway".into(), "users".into()]);
        assert_eq!(request.deadline, later);
        let chain: Vec<&str> = request.chain.iter().map(|s| &**s).collect();
        assert_eq!(chain, ["gateway", "users", "orders"]);
        // Re-armed for another request (a warm instance): the chain starts again.
        request.arm(start, &[]);
        let chain: Vec<&str> = request.chain.iter().map(|s| &**s).collect();
        assert_eq!(chain, ["orders"]);
    }
}
