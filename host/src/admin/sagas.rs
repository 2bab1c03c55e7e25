//! `/admin/sagas`: the orchestrators' figures and the sagas, newest first, by state.

use hyper::{Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::json;
use crate::host::Host;
use crate::runtime::dispatch::json_error;

/// `GET /admin/sagas?state=STATE&limit=N`.
pub(super) async fn list(host: &Host, query: Option<&str>) -> Response<HyperOutgoingBody> {
    let mut state = None;
    let mut limit = 100usize;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "state" => state = Some(v.into_owned()),
            "limit" => match v.parse() {
                Ok(n) if n > 0 && n <= 10_000 => limit = n,
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "limit is a number from 1 to 10000",
                    );
                }
            },
            other => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("unknown parameter `{other}` (state, limit)"),
                );
            }
        }
    }
    if let Some(s) = &state
        && ![
            "running",
            "compensating",
            "completed",
            "compensated",
            "failed",
        ]
        .contains(&s.as_str())
    {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!(
                "`{s}` is not a saga state (running, compensating, completed, compensated, failed)"
            ),
        );
    }
    json(
        StatusCode::OK,
        serde_json::json!({
            "orchestrators": host.sagas.stats().await,
            "commandDuplicates": host.sagas.command_duplicates().into_iter()
                .map(|(k, v)| (k, serde_json::Value::from(v)))
                .collect::<serde_json::Map<_, _>>(),
            "sagas": host.sagas.list(state.as_deref(), limit).await,
        }),
    )
}
