//! `/healthz` and `/metrics`: open to anyone who reaches the admin address, no token.

use std::fmt::Write;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::json;
use crate::host::Host;
use crate::runtime::dispatch::{full, json_error};

/// `GET /healthz`: 200 once every service is loaded, 503 before.
pub(super) fn healthz(host: &Host) -> Response<HyperOutgoingBody> {
    if host.is_ready() {
        json(StatusCode::OK, serde_json::json!({ "status": "ok" }))
    } else {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "services are loading",
        )
    }
}

/// `GET /metrics`: every series, in Prometheus' text format.
pub(super) async fn metrics(host: &Host) -> Response<HyperOutgoingBody> {
    let mut out = String::from(crate::runtime::metrics::HEADER);
    let routes = host.routes();
    for s in routes.services() {
        s.metrics.render(&s.name, &mut out);
    }
    let _ = writeln!(
        out,
        "# HELP silo_services Services loaded.\n# TYPE silo_services gauge"
    );
    let _ = writeln!(out, "silo_services {}", routes.services().count());
    render_event_metrics(&host.events.subscriptions().await, &mut out);
    render_saga_metrics(host, &mut out).await;
    crate::runtime::stdio::render_metrics(&mut out);
    let mut resp = Response::new(full(Bytes::from(out)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// The saga series of `/metrics`.
async fn render_saga_metrics(host: &Host, out: &mut String) {
    out.push_str(
        "# HELP silo_sagas Sagas by orchestrating service and state (failed ones need an operator).\n\
         # TYPE silo_sagas gauge\n\
         # HELP silo_saga_retries_total Transient failures of saga steps and compensations that were retried.\n\
         # TYPE silo_saga_retries_total counter\n\
         # HELP silo_saga_latency_seconds Start to handled end of the last sagas.\n\
         # TYPE silo_saga_latency_seconds summary\n\
         # HELP silo_saga_command_duplicates_total Redelivered saga commands a participant answered from its inbox.\n\
         # TYPE silo_saga_command_duplicates_total counter\n\
         # HELP silo_saga_steps_refused_total Saga commands and compensations the host refused to send (participant or name not declared).\n\
         # TYPE silo_saga_steps_refused_total counter\n",
    );
    for s in host.sagas.stats().await {
        for state in [
            "running",
            "compensating",
            "completed",
            "compensated",
            "failed",
        ] {
            let n = s.states.get(state).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "silo_sagas{{service=\"{}\",state=\"{state}\"}} {n}",
                s.service
            );
        }
        let _ = writeln!(
            out,
            "silo_saga_retries_total{{service=\"{}\"}} {}",
            s.service, s.retries
        );
        let _ = writeln!(
            out,
            "silo_saga_steps_refused_total{{service=\"{}\"}} {}",
            s.service, s.refused
        );
        for (q, v) in [("0.5", s.latency_p50_ms), ("0.99", s.latency_p99_ms)] {
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "silo_saga_latency_seconds{{service=\"{}\",quantile=\"{q}\"}} {}",
                    s.service,
                    v as f64 / 1e3
                );
            }
        }
    }
    for (participant, n) in host.sagas.command_duplicates() {
        let _ = writeln!(
            out,
            "silo_saga_command_duplicates_total{{service=\"{participant}\"}} {n}"
        );
    }
}

/// The per-subscription series of `/metrics`.
fn render_event_metrics(subs: &[crate::events::SubscriptionStats], out: &mut String) {
    const HEADER: &str = "\
# HELP silo_events_pending Events committed to an outbox and not yet delivered, per subscription.
# TYPE silo_events_pending gauge
# HELP silo_events_oldest_pending_age_seconds Age of the oldest undelivered event, per subscription.
# TYPE silo_events_oldest_pending_age_seconds gauge
# HELP silo_events_delivery_latency_seconds Publish to handler commit, over the last deliveries.
# TYPE silo_events_delivery_latency_seconds summary
# HELP silo_events_delivered_total Events handled.
# TYPE silo_events_delivered_total counter
# HELP silo_events_duplicates_total Deliveries the inbox turned away as already handled.
# TYPE silo_events_duplicates_total counter
# HELP silo_events_retries_total Failed deliveries that were retried.
# TYPE silo_events_retries_total counter
# HELP silo_events_refused_total Events the host refused to deliver (topic not declared), dead-lettered without the handler.
# TYPE silo_events_refused_total counter
# HELP silo_events_dead_letters Events held in the dead letters.
# TYPE silo_events_dead_letters gauge
";
    out.push_str(HEADER);
    for s in subs {
        let l = format!(
            "subscription=\"{}\",source=\"{}\",topic=\"{}\",subscriber=\"{}\"",
            s.subscription, s.source, s.topic, s.subscriber
        );
        let _ = writeln!(out, "silo_events_pending{{{l}}} {}", s.pending);
        let age = s.oldest_pending_age_ms.unwrap_or(0) as f64 / 1e3;
        let _ = writeln!(out, "silo_events_oldest_pending_age_seconds{{{l}}} {age}");
        for (q, v) in [("0.5", s.latency_p50_ms), ("0.99", s.latency_p99_ms)] {
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "silo_events_delivery_latency_seconds{{{l},quantile=\"{q}\"}} {}",
                    v as f64 / 1e3
                );
            }
        }
        let _ = writeln!(out, "silo_events_delivered_total{{{l}}} {}", s.delivered);
        let _ = writeln!(out, "silo_events_duplicates_total{{{l}}} {}", s.duplicates);
        let _ = writeln!(out, "silo_events_retries_total{{{l}}} {}", s.retries);
        let _ = writeln!(out, "silo_events_refused_total{{{l}}} {}", s.refused);
        let _ = writeln!(out, "silo_events_dead_letters{{{l}}} {}", s.dead_letters);
    }
}
