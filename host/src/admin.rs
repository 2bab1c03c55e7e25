//! The admin endpoint: `/healthz`, `/metrics`, and the token-protected `/admin/` API.
//!
//! It listens on its own address (loopback by default), never on the service port, and
//! every `/admin/` route needs `Authorization: Bearer <token>`; a wrong or missing token, or
//! more than one `Authorization` header, is a 401 and changes nothing. An empty configured
//! token authenticates nothing: authentication is never off.

use std::fmt::Write;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::host::Host;
use crate::runtime::dispatch::{full, json_error};
use crate::runtime::refusals::JsonRefusals;

/// Reads the admin token from `DATA/admin.token`, or writes a new random one there with
/// mode 0600.
pub fn load_or_create_token(data_dir: &Path) -> wasmtime::Result<String> {
    Ok(private_secret(&data_dir.join("admin.token"))?)
}

/// The secret kept in file `path` (at least 32 characters), or a new random one (256 bits,
/// hex) written there with mode 0600, its folder created if needed.
pub fn private_secret(path: &Path) -> std::io::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let t = existing.trim();
        if t.len() >= 32 {
            return Ok(t.to_string());
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(secret.as_bytes())?;
    Ok(secret)
}

/// Compares without an early exit, so timing does not reveal a prefix. An empty expected
/// token matches nothing: authentication is never off.
fn token_matches(given: &str, expected: &str) -> bool {
    !expected.is_empty()
        && given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<HyperOutgoingBody> {
    let mut resp = Response::new(full(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `s` percent-encoded as one path segment.
pub fn path_segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The `/admin/services` listing.
pub fn services_json(host: &Host) -> serde_json::Value {
    let routes = host.routes();
    let services: Vec<_> = routes
        .services()
        .map(|s| {
            let mut stores: Vec<_> = s
                .grants
                .names()
                .map(|n| {
                    let backend = s.grants.get(n).map(|b| b.backend()).unwrap_or("?");
                    serde_json::json!({ "name": n, "kind": "sql", "backend": backend })
                })
                .chain(s.grants.kv_names().map(|n| {
                    let backend = s.grants.kv(n).map(|b| b.backend()).unwrap_or("?");
                    serde_json::json!({ "name": n, "kind": "kv", "backend": backend })
                }))
                .collect();
            stores.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            serde_json::json!({
                "name": &*s.name,
                "version": s.version,
                "digest": s.digest,
                "route": s.spec.route,
                "stores": stores,
                "state": "serving",
                "requests": s.metrics.total(),
                "limits": {
                    "deadlineMs": s.spec.limits.deadline_ms,
                    "memoryMb": s.spec.limits.memory_mb,
                    "bodyKb": s.spec.limits.body_kb,
                    "concurrency": s.spec.limits.concurrency,
                    "resultKb": s.spec.limits.result_kb,
                    "instanceReuse": s.spec.limits.instance_reuse,
                },
            })
        })
        .collect();
    serde_json::json!({ "services": services })
}

async fn handle(
    host: Arc<Host>,
    token: Arc<str>,
    req: Request<Incoming>,
) -> Response<HyperOutgoingBody> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => {
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
        (&Method::GET, "/metrics") => {
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
            render_saga_metrics(&host, &mut out).await;
            crate::runtime::stdio::render_metrics(&mut out);
            let mut resp = Response::new(full(Bytes::from(out)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            let mut auth = req.headers().get_all(http::header::AUTHORIZATION).iter();
            let (first, second) = (auth.next(), auth.next());
            if second.is_some() {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "more than one Authorization header: send exactly one (Authorization: Bearer …)",
                );
            }
            let given = first
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !token_matches(given, &token) {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid admin token is required (Authorization: Bearer …)",
                );
            }
            let p = p.to_string();
            let segments: Vec<&str> = p.trim_end_matches('/').split('/').skip(2).collect();
            // A service name becomes a folder and file name: anything else is refused here,
            // before it reaches the history or the file system.
            if let ["services", name, ..] = segments.as_slice()
                && !crate::manifest::valid_name(name)
            {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!(
                        "`{}` is not a service name (lowercase letters, digits and `-`, at most 63)",
                        crate::manifest::one_line(name, 80)
                    ),
                );
            }
            match (req.method().clone(), segments.as_slice()) {
                (Method::GET, ["services"]) => json(StatusCode::OK, services_json(&host)),
                (Method::GET, ["services", name]) => service_json(&host, name),
                (Method::GET, ["events"]) => json(
                    StatusCode::OK,
                    serde_json::json!({ "subscriptions": host.events.subscriptions().await }),
                ),
                (Method::GET, ["sagas"]) => {
                    let mut state = None;
                    let mut limit = 100usize;
                    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                    {
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
                (Method::GET, ["dead-letters"]) => json(
                    StatusCode::OK,
                    serde_json::json!({ "deadLetters": host.events.dead_letters().await }),
                ),
                (Method::POST, ["dead-letters", id, "replay"]) => {
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
                (Method::POST | Method::PUT, ["services", name]) => {
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
                (Method::GET, ["apply"]) => match apply_scope(req.uri().query()) {
                    Ok(only) => match host.plan(only.as_deref()) {
                        Ok(plan) => json(StatusCode::OK, serde_json::json!(plan)),
                        Err(e) => deploy_error(&e),
                    },
                    Err(e) => json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
                },
                (Method::POST, ["apply"]) => match apply_scope(req.uri().query()) {
                    Ok(only) => match host.apply(only.as_deref()).await {
                        Ok(plan) => json(StatusCode::OK, serde_json::json!(plan)),
                        Err(e) => deploy_error(&e),
                    },
                    Err(e) => json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
                },
                (Method::POST, ["services", name, "rollback"]) => {
                    outcome(host.rollback(name).await)
                }
                (Method::DELETE, ["services", name]) => match host.undeploy(name) {
                    Ok(()) => json(
                        StatusCode::OK,
                        serde_json::json!({ "service": name, "state": "undeployed" }),
                    ),
                    Err(e) => deploy_error(&e),
                },
                (m, _) => json_error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    &format!("no admin endpoint `{m} {p}`"),
                ),
            }
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no endpoint `{path}`"),
        ),
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

/// One service with its version history.
fn service_json(host: &Host, name: &str) -> Response<HyperOutgoingBody> {
    if !crate::manifest::valid_name(name) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!(
                "`{}` is not a service name (lowercase letters, digits and `-`, at most 63)",
                name.get(..64).unwrap_or(name)
            ),
        );
    }
    let history = crate::deploy::History::new(&host.data_dir);
    match history.load(name) {
        Ok(Some(h)) => json(
            StatusCode::OK,
            serde_json::json!({
                "name": name,
                "active": h.active,
                "state": if h.active.is_some() { "serving" } else { "undeployed" },
                "versions": h.versions.iter().map(|v| serde_json::json!({
                    "version": v.version,
                    "digest": v.digest,
                    "deployedAt": v.deployed_at,
                    "origin": v.origin,
                    "route": v.spec.route,
                })).collect::<Vec<_>>(),
            }),
        ),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no service `{name}`"),
        ),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// Serves the admin endpoint until `shutdown` turns true.
pub async fn serve_admin(
    host: Arc<Host>,
    listener: std::net::TcpListener,
    token: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let token: Arc<str> = token.into();
    let listener =
        tokio::net::TcpListener::from_std(listener).expect("registering the admin listener");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (host, token) = (host.clone(), token.clone());
                let stream = JsonRefusals::new(stream);
                let requests = stream.requests();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (host, token) = (host.clone(), token.clone());
                        requests.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                        async move { Ok::<_, std::convert::Infallible>(handle(host, token, req).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// A tiny client for the CLI commands that talk to a running host's admin endpoint.
pub async fn admin_get(addr: &str, token: &str, path: &str) -> wasmtime::Result<(u16, String)> {
    admin_request(addr, token, Method::GET, path, Bytes::new()).await
}

/// Sends one admin request; returns the status and the body.
pub async fn admin_request(
    addr: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Bytes,
) -> wasmtime::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| wasmtime::format_err!("cannot reach the admin endpoint at {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("", "abc"));
        assert!(!token_matches("", ""), "an empty token never authenticates");
    }

    #[test]
    fn token_file_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let t1 = load_or_create_token(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let t2 = load_or_create_token(dir.path()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
    }
}
