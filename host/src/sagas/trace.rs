//! A saga's trace: the span `saga KIND` of the orchestrator from start to end, a child of
//! the span that started it, and beneath it a span per command (`saga KIND step STEP`) and
//! compensation (`saga KIND compensate STEP`) at the participant, and the orchestrator's
//! ending (`saga KIND finished`); the participant's and the orchestrator's handlers run in
//! those spans, so their statements nest under them.
//!
//! The log keeps the starter's `traceparent` (`_silo_sagas.trace_parent`), and the saga
//! span's id is derived from the saga's id, so every action, on this host after a restart
//! too, joins the same trace under the same saga span. The saga span itself is recorded when
//! the saga's end is handled, with its real start (the log's `created_ms`). A saga started
//! with no trace to continue is the root of a trace of its own: its stored `traceparent`
//! names the saga span itself.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::log::{SagaRow, StepRow, saga_span_id};
use crate::delivery::retries;
use crate::telemetry::{Span, TraceContext, metrics};

/// The saga span's context and its parent's span id (`None`: it is the trace's root), from
/// what the log keeps; `None` for a saga started before sagas carried a trace.
pub fn saga_context(saga: &SagaRow) -> Option<(TraceContext, Option<[u8; 8]>)> {
    let starter = TraceContext::parse(saga.trace_parent.as_deref()?)?;
    let own = saga_span_id(&saga.id);
    let parent = (starter.span_id != own).then_some(starter.span_id);
    Some((
        TraceContext {
            span_id: own,
            ..starter
        },
        parent,
    ))
}

/// The trace id of `saga`, for its log lines (empty if it has none).
pub fn trace_id(saga: &SagaRow) -> String {
    saga_context(saga)
        .map(|(c, _)| c.trace_id_hex())
        .unwrap_or_default()
}

/// The span of one attempt (`attempt`) of `step`'s command, or of its compensation, at the
/// participant: a child of the saga span. A saga without a trace gets a trace of its own.
pub fn step_span(saga: &SagaRow, step: &StepRow, compensation: bool, attempt: u32) -> Span {
    let (what, name) = if compensation {
        (
            "compensate",
            step.compensation.as_deref().unwrap_or_default(),
        )
    } else {
        ("step", step.command.as_str())
    };
    let parent = saga_context(saga).map(|(c, _)| c);
    let mut span = Span::start(
        format!("saga {} {what} {}", saga.kind, step.name),
        &step.service,
        parent,
    );
    span.attr("silo.saga_id", saga.id.as_str());
    span.attr("silo.step", step.name.as_str());
    span.attr("silo.command", name);
    span.attr("silo.attempt", attempt);
    span
}

/// The span of the orchestrator's `saga-handler.finished` for `saga`.
pub fn finish_span(orchestrator: &str, saga: &SagaRow) -> Span {
    let parent = saga_context(saga).map(|(c, _)| c);
    let mut span = Span::start(format!("saga {} finished", saga.kind), orchestrator, parent);
    span.attr("silo.saga_id", saga.id.as_str());
    span.attr("silo.state", saga.state.as_str());
    span
}

/// Records the end of `saga` (its end handled now): the saga span, from its start in the
/// log to now, and the saga's sample in the metrics.
pub fn ended(orchestrator: &str, saga: &SagaRow) {
    let start = UNIX_EPOCH + Duration::from_millis(saga.created_ms.max(0) as u64);
    let outcome: &'static str = match saga.state.as_str() {
        "completed" => "completed",
        "compensated" => "compensated",
        _ => "failed",
    };
    let elapsed = SystemTime::now().duration_since(start).unwrap_or_default();
    metrics::observe_saga(orchestrator, outcome, elapsed);
    let Some((context, parent)) = saga_context(saga) else {
        return;
    };
    let mut span = Span::with_context(
        format!("saga {}", saga.kind),
        orchestrator,
        context,
        parent,
        start,
    );
    span.attr("silo.saga_id", saga.id.as_str());
    span.attr("silo.key", saga.key.as_str());
    span.attr("silo.state", outcome);
    if let Some(reason) = &saga.reason {
        span.attr("silo.reason", reason.as_str());
    }
    if outcome == "failed" {
        span.error(saga.reason.clone().unwrap_or_else(|| "failed".into()));
    }
    span.end();
}

/// Logs a failed command or compensation that will be retried, at warn: at most one line
/// per saga per [`retries::EVERY`].
pub fn log_retry(
    orchestrator: &str,
    saga: &SagaRow,
    step: &StepRow,
    compensation: bool,
    attempts: u32,
    error: &str,
) {
    let Some(skipped) = retries::RETRIES.note(&saga.id, Instant::now()) else {
        return;
    };
    tracing::warn!(
        service = %orchestrator,
        saga = %saga.id,
        participant = %step.service,
        step = %step.name,
        attempts,
        trace_id = %trace_id(saga),
        "saga {} failed, will retry: {error}{}",
        if compensation { "compensation" } else { "step" },
        retries::more(skipped)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sagas::log::starter_traceparent;

    fn saga(id: &str, trace_parent: Option<String>) -> SagaRow {
        SagaRow {
            id: id.into(),
            kind: "order".into(),
            key: "o1".into(),
            state: "running".into(),
            reason: None,
            handled: false,
            created_ms: 0,
            trace_parent,
            steps: Vec::new(),
        }
    }

    #[test]
    fn the_saga_span_is_a_child_of_the_starter_and_the_same_after_a_restart() {
        let starter =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let stored = starter_traceparent("saga_1", Some(starter));
        assert_eq!(stored, starter.traceparent());
        let (c, parent) = saga_context(&saga("saga_1", Some(stored.clone()))).unwrap();
        assert_eq!(c.trace_id, starter.trace_id);
        assert_eq!(parent, Some(starter.span_id));
        // Read again (another action, or after a restart): the very same span.
        let (again, _) = saga_context(&saga("saga_1", Some(stored))).unwrap();
        assert_eq!(again, c);
        assert_ne!(saga_span_id("saga_2"), c.span_id);
    }

    #[test]
    fn a_saga_started_outside_a_trace_is_the_root_of_its_own() {
        let stored = starter_traceparent("saga_9", None);
        let (c, parent) = saga_context(&saga("saga_9", Some(stored))).unwrap();
        assert_eq!(parent, None);
        assert_eq!(c.span_id, saga_span_id("saga_9"));
        assert_eq!(saga_context(&saga("saga_9", None)), None);
    }
}
