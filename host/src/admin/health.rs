//! `/healthz` and `/metrics`: open to anyone who reaches the admin address, no token.

use bytes::Bytes;
use hyper::{Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::json;
use crate::host::{Host, Phase};
use crate::runtime::dispatch::full;
use crate::telemetry;
use crate::telemetry::metrics::{Labels, Scrape};

/// `GET /healthz`: 200 once every service is loaded; before, 503 `starting` with each
/// service's phase (compiling, opening, ready), the ones still compiling by name, and the
/// time since start-up began.
pub(super) fn healthz(host: &Host) -> Response<HyperOutgoingBody> {
    if host.is_ready() {
        return json(StatusCode::OK, serde_json::json!({ "status": "ok" }));
    }
    let status = host.startup_status();
    let ready = status.in_phase(Phase::Ready);
    let compiling = status.in_phase(Phase::Compiling);
    let opening = status.in_phase(Phase::Opening);
    let mut message = format!(
        "services are loading: {} of {} ready",
        ready.len(),
        status.services.len()
    );
    if !compiling.is_empty() {
        message.push_str(&format!("; compiling: {}", compiling.join(", ")));
    }
    if !opening.is_empty() {
        message.push_str(&format!("; opening: {}", opening.join(", ")));
    }
    let services: serde_json::Map<String, serde_json::Value> = status
        .services
        .iter()
        .map(|(name, phase)| (name.clone(), phase.as_str().into()))
        .collect();
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({
            "error": { "code": "starting", "message": message },
            "status": "starting",
            "services": services,
            "ready": ready,
            "compiling": compiling,
            "opening": opening,
            "elapsedMs": status.elapsed.as_millis() as u64,
        }),
    )
}

/// `GET /metrics`: every series, in Prometheus' text format (0.0.4): the host's registry,
/// and the families built now from the state of events, sagas and guest output.
pub(super) async fn metrics(host: &Host) -> Response<HyperOutgoingBody> {
    let services = host.routes().services().count();
    let subscriptions = host.events.subscriptions().await;
    let sagas = host.sagas.stats().await;
    let duplicates = host.sagas.command_duplicates();
    let out = telemetry::metrics::render(|scrape| {
        scrape
            .gauge("silo_services", "Services loaded.")
            .get_or_create(&vec![])
            .set(gauge(services as u64));
        scrape
            .counter(
                "silo_trace_spans_dropped",
                "Spans the trace ring did not keep: their trace already had 1,000 there.",
            )
            .get_or_create(&vec![])
            .inc_by(telemetry::trace::RING.dropped());
        event_metrics(&subscriptions, scrape);
        saga_metrics(&sagas, &duplicates, scrape);
        crate::runtime::stdio::register_metrics(scrape);
    });
    let mut resp = Response::new(full(Bytes::from(out)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(telemetry::metrics::CONTENT_TYPE),
    );
    resp
}

/// A count as a gauge's value.
fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The saga series: sagas by state, retries, refused steps, redelivered commands (their
/// durations are the `silo_saga_duration_seconds` histogram of the registry).
fn saga_metrics(
    sagas: &[crate::sagas::SagaStats],
    duplicates: &[(String, u64)],
    scrape: &mut Scrape,
) {
    let states = scrape.gauge(
        "silo_sagas",
        "Sagas by orchestrating service and state (failed ones need an operator).",
    );
    let retries = scrape.counter(
        "silo_saga_retries",
        "Transient failures of saga steps and compensations that were retried.",
    );
    let refused = scrape.counter(
        "silo_saga_steps_refused",
        "Saga commands and compensations the host refused to send (participant or name not declared).",
    );
    let redelivered = scrape.counter(
        "silo_saga_command_duplicates",
        "Redelivered saga commands a participant answered from its inbox.",
    );
    for s in sagas {
        for state in [
            "running",
            "compensating",
            "completed",
            "compensated",
            "failed",
        ] {
            let n = s.states.get(state).copied().unwrap_or(0);
            states
                .get_or_create(&vec![
                    ("service", s.service.clone()),
                    ("state", state.into()),
                ])
                .set(gauge(n));
        }
        let service = vec![("service", s.service.clone())];
        retries.get_or_create(&service).inc_by(s.retries);
        refused.get_or_create(&service).inc_by(s.refused);
    }
    for (participant, n) in duplicates {
        redelivered
            .get_or_create(&vec![("service", participant.clone())])
            .inc_by(*n);
    }
}

/// The per-subscription series (the delivery lag is the `silo_events_delivery_lag_seconds`
/// histogram of the registry).
fn event_metrics(subs: &[crate::events::SubscriptionStats], scrape: &mut Scrape) {
    let pending = scrape.gauge(
        "silo_events_pending",
        "Events committed to an outbox and not yet delivered, per subscription.",
    );
    let oldest = scrape.seconds(
        "silo_events_oldest_pending_age_seconds",
        "Age of the oldest undelivered event, per subscription.",
    );
    let delivered = scrape.counter("silo_events_delivered", "Events handled.");
    let duplicates = scrape.counter(
        "silo_events_duplicates",
        "Deliveries the inbox turned away as already handled.",
    );
    let retries = scrape.counter(
        "silo_events_retries",
        "Failed deliveries that were retried.",
    );
    let refused = scrape.counter(
        "silo_events_refused",
        "Events the host refused to deliver (topic not declared), dead-lettered without the handler.",
    );
    let dead = scrape.gauge(
        "silo_events_dead_letters",
        "Events held in the dead letters.",
    );
    for s in subs {
        let l: Labels = vec![
            ("subscription", s.subscription.clone()),
            ("source", s.source.clone()),
            ("topic", s.topic.clone()),
            ("subscriber", s.subscriber.clone()),
        ];
        pending.get_or_create(&l).set(gauge(s.pending));
        let age = s.oldest_pending_age_ms.unwrap_or(0) as f64 / 1e3;
        oldest.get_or_create(&l).set(age);
        delivered.get_or_create(&l).inc_by(s.delivered);
        duplicates.get_or_create(&l).inc_by(s.duplicates);
        retries.get_or_create(&l).inc_by(s.retries);
        refused.get_or_create(&l).inc_by(s.refused);
        dead.get_or_create(&l).set(gauge(s.dead_letters));
    }
}
