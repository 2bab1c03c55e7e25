//! What the host tells about itself: traces (W3C Trace Context), metrics and logs.
//!
//! Every part of the host that does something worth seeing reports it here, through three
//! small doors: [`trace::Span`] (a timed, named piece of work with its parent), the functions
//! of [`metrics`] (counters and histograms, exposed at `/metrics`), and [`CapabilityCall`],
//! which does both for one guest call into a capability.
//!
//! Architecture invariant: this module imports nothing of the crate (it is on the first
//! floor, beside `request`), so every capability and the runtime may report through it.

pub mod logs;
pub mod metrics;
pub mod otel;
mod ring;
pub mod trace;

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

pub use otel::{Settings, init, shutdown};
pub use trace::{Span, SpanKind, TraceContext};

/// The W3C header a span context travels in.
pub const TRACEPARENT: &str = "traceparent";

/// The response header that names the trace of a request (so a user can look it up at
/// `/admin/traces/ID`).
pub const TRACE_ID_HEADER: &str = "x-silo-trace-id";

/// 0: not decided yet, 1: off, 2: on.
static STATEMENTS_TRACED: AtomicU8 = AtomicU8::new(0);

/// Whether SQL spans carry the statement text (`db.statement`): only when the operator opts
/// in with `SILO_TRACE_SQL=1` (or [`trace_statements`]), since a statement may hold data.
pub fn statements_traced() -> bool {
    match STATEMENTS_TRACED.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("SILO_TRACE_SQL").is_ok_and(|v| v == "1" || v == "true");
            STATEMENTS_TRACED.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        v => v == 2,
    }
}

/// Turns the statement text on SQL spans on or off, whatever `SILO_TRACE_SQL` says.
pub fn trace_statements(on: bool) {
    STATEMENTS_TRACED.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// The OpenTelemetry `db.system` of a store backend's name.
pub fn db_system(backend: &str) -> &str {
    match backend {
        "postgres" => "postgresql",
        other => other,
    }
}

/// One guest call into a capability (a SQL statement, a key-value operation, a publish):
/// a child span of the request's, and a sample of the capability's latency histogram.
pub struct CapabilityCall {
    span: Span,
    service: String,
    capability: &'static str,
    op: &'static str,
    started: Instant,
    ok: bool,
}

impl CapabilityCall {
    /// Starts timing `capability`'s `op` for `service`, as a child of `parent` (the request's
    /// span context, when it has one).
    pub fn start(
        service: &str,
        capability: &'static str,
        op: &'static str,
        parent: Option<TraceContext>,
    ) -> Self {
        let mut span = Span::start(format!("{capability} {op}"), service, parent);
        span.attr("silo.capability", capability);
        span.attr("silo.op", op);
        Self {
            span,
            service: service.to_string(),
            capability,
            op,
            started: Instant::now(),
            ok: true,
        }
    }

    /// The span, to add attributes (the statement text, a key) to.
    pub fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    /// Marks the call failed with `message` (shown on the span; counted as an error).
    pub fn fail(&mut self, message: impl Into<String>) {
        self.ok = false;
        self.span.error(message);
    }
}

impl Drop for CapabilityCall {
    fn drop(&mut self) {
        metrics::observe_capability(
            &self.service,
            self.capability,
            self.op,
            self.ok,
            self.started.elapsed(),
        );
    }
}
