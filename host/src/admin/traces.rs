//! `/admin/traces`: the host's recent spans from the in-memory ring, by trace.

use hyper::{Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::json;
use crate::runtime::dispatch::json_error;
use crate::telemetry::trace::RING;

/// How many traces the list shows by default, and at most.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 200;

/// `GET /admin/traces?limit=N`: the spans of the N most recent traces, newest trace first.
pub(super) fn recent(query: Option<&str>) -> Response<HyperOutgoingBody> {
    let mut limit = DEFAULT_LIMIT;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "limit" => match v.parse() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        &format!("limit is a number from 1 to {MAX_LIMIT}"),
                    );
                }
            },
            other => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!(
                        "unknown parameter `{}` (limit)",
                        crate::manifest::one_line(other, 40)
                    ),
                );
            }
        }
    }
    json(
        StatusCode::OK,
        serde_json::json!({ "spans": RING.recent(limit) }),
    )
}

/// `GET /admin/traces/TRACE_ID`: every kept span of one trace, in start order.
pub(super) fn trace(id: &str) -> Response<HyperOutgoingBody> {
    let well_formed = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a trace id is 32 lowercase hexadecimal digits",
        );
    }
    let spans = RING.trace(id);
    if spans.is_empty() {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no recent trace `{id}` (the host keeps its most recent spans)"),
        );
    }
    json(StatusCode::OK, serde_json::json!({ "spans": spans }))
}
