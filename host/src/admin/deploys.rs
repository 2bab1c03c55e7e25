//! Deploys through the admin API: a new component (`POST /admin/services/NAME`), rollback,
//! undeploy, and plan/apply of the host's manifest (`/admin/apply`).

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::json;
use crate::host::Host;
use crate::runtime::dispatch::json_error;

/// `POST|PUT /admin/services/NAME?route=…`: the body is the component.
pub(super) async fn deploy(
    host: &Host,
    name: &str,
    req: Request<Incoming>,
) -> Response<HyperOutgoingBody> {
    let name = name.to_string();
    let request = match deploy_request(req.uri().query()) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
    };
    match read_body(req).await {
        Ok(bytes) if bytes.is_empty() => json_error(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the body is empty: send the component's bytes (a `.wasm` file)",
        ),
        Ok(bytes) => outcome(host.deploy(&name, &bytes, request).await),
        Err(resp) => resp,
    }
}

/// `GET /admin/apply?service=NAME`: what an apply would do.
pub(super) fn plan(host: &Host, query: Option<&str>) -> Response<HyperOutgoingBody> {
    match apply_scope(query) {
        Ok(only) => match host.plan(only.as_deref()) {
            Ok(plan) => json(StatusCode::OK, serde_json::json!(plan)),
            Err(e) => deploy_error(&e),
        },
        Err(e) => json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
    }
}

/// `POST /admin/apply?service=NAME`: brings the host to its manifest.
pub(super) async fn apply(host: &Host, query: Option<&str>) -> Response<HyperOutgoingBody> {
    match apply_scope(query) {
        Ok(only) => match host.apply(only.as_deref()).await {
            Ok(plan) => json(StatusCode::OK, serde_json::json!(plan)),
            Err(e) => deploy_error(&e),
        },
        Err(e) => json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
    }
}

/// `POST /admin/services/NAME/rollback`.
pub(super) async fn rollback(host: &Host, name: &str) -> Response<HyperOutgoingBody> {
    outcome(host.rollback(name).await)
}

/// `DELETE /admin/services/NAME`: stops routing to it; its data stays.
pub(super) fn undeploy(host: &Host, name: &str) -> Response<HyperOutgoingBody> {
    match host.undeploy(name) {
        Ok(()) => json(
            StatusCode::OK,
            serde_json::json!({ "service": name, "state": "undeployed" }),
        ),
        Err(e) => deploy_error(&e),
    }
}

/// The largest component a deploy accepts.
const MAX_COMPONENT_BYTES: usize = 64 << 20;

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<HyperOutgoingBody>> {
    // A Content-Length over the limit is refused at once, not waited for.
    let announced = hyper::body::Body::size_hint(req.body()).lower();
    if announced > MAX_COMPONENT_BYTES as u64 {
        return Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!(
                "the component is {announced} bytes long; a deploy takes at most {} MiB",
                MAX_COMPONENT_BYTES >> 20
            ),
        ));
    }
    match http_body_util::Limited::new(req.into_body(), MAX_COMPONENT_BYTES)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!(
                "the component could not be read (at most {} MiB): {e}",
                MAX_COMPONENT_BYTES >> 20
            ),
        )),
    }
}

/// `?service=NAME` of `/admin/apply`: the one service to apply, or all.
fn apply_scope(query: Option<&str>) -> Result<Option<String>, String> {
    let mut only = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "service" => only = Some(v.into_owned()),
            other => return Err(format!("unknown apply parameter `{other}` (service)")),
        }
    }
    Ok(only)
}

/// `?route=/x&store=main&store=cache&calls=users,products&publishes=A,B&subscribes=users/A`
fn deploy_request(query: Option<&str>) -> Result<crate::host::DeployRequest, String> {
    let mut r = crate::host::DeployRequest::default();
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "route" => r.route = Some(v.into_owned()),
            "store" => r.stores.push(v.into_owned()),
            "calls" => r.calls = Some(list(&v)),
            "publishes" => r.publishes = Some(list(&v)),
            "subscribes" => {
                let subs = list(&v)
                    .into_iter()
                    .map(|s| match s.split_once('/') {
                        Some((source, topic)) => Ok(crate::manifest::Subscription {
                            source: source.into(),
                            topic: topic.into(),
                        }),
                        None => Err(format!("`{s}`: a subscription is SOURCE/TOPIC")),
                    })
                    .collect::<Result<_, _>>()?;
                r.subscribes = Some(subs);
            }
            other => return Err(format!("unknown deploy parameter `{other}`")),
        }
    }
    Ok(r)
}

fn deploy_error(e: &crate::host::DeployError) -> Response<HyperOutgoingBody> {
    json_error(
        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        e.code(),
        &e.to_string(),
    )
}

fn outcome(
    r: Result<crate::host::DeployOutcome, crate::host::DeployError>,
) -> Response<HyperOutgoingBody> {
    match r {
        Ok(o) => json(StatusCode::OK, serde_json::to_value(o).unwrap_or_default()),
        Err(e) => deploy_error(&e),
    }
}
