//! `/admin/events` and `/admin/dead-letters`: subscriptions with their figures, the events
//! that exhausted their retries, and putting one back in line.

use hyper::{Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::json;
use crate::host::Host;
use crate::runtime::dispatch::json_error;

/// `GET /admin/events`: every subscription with its backlog, lag and delivery figures.
pub(super) async fn subscriptions(host: &Host) -> Response<HyperOutgoingBody> {
    json(
        StatusCode::OK,
        serde_json::json!({ "subscriptions": host.events.subscriptions().await }),
    )
}

/// `GET /admin/dead-letters`.
pub(super) async fn dead_letters(host: &Host) -> Response<HyperOutgoingBody> {
    json(
        StatusCode::OK,
        serde_json::json!({ "deadLetters": host.events.dead_letters().await }),
    )
}

/// `POST /admin/dead-letters/ID/replay`.
pub(super) async fn replay(host: &Host, id: &str) -> Response<HyperOutgoingBody> {
    match host.events.replay(id).await {
        Ok(true) => json(StatusCode::OK, serde_json::json!({ "replayed": id })),
        Ok(false) => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no dead letter `{id}`"),
        ),
        Err(e) => json_error(StatusCode::CONFLICT, "conflict", &e),
    }
}
