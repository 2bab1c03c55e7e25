//! The admin endpoint: `/healthz`, `/metrics`, and the token-protected `/admin/` API.
//!
//! It listens on its own address (loopback by default), never on the service port, and
//! every `/admin/` route needs `Authorization: Bearer <token>`; a wrong or missing token, or
//! more than one `Authorization` header, is a 401 and changes nothing. An empty configured
//! token authenticates nothing: authentication is never off.
//!
//! This file is the router and the authentication; each resource's handlers are in their own
//! file: `dashboard` (the page at `/`), `health` (healthz, metrics), `services`, `events`
//! (subscriptions, dead letters, replay), `sagas`, `deploys` (deploy, rollback, undeploy, plan
//! and apply); `client` is the CLI's side.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
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

mod client;
mod dashboard;
mod deploys;
mod events;
mod health;
mod sagas;
mod services;
mod traces;

/// Moved to [`crate::secrets`], the floor the backends may import; kept here for the callers
/// of the old path.
use crate::secrets::private_secret;
pub use client::{admin_get, admin_request};
pub use services::services_json;

/// Reads the admin token from `DATA/admin.token`, or writes a new random one there with
/// mode 0600.
pub fn load_or_create_token(data_dir: &Path) -> wasmtime::Result<String> {
    Ok(private_secret(&data_dir.join("admin.token"))?)
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

/// The admin token: given from the start (`--admin-token`, `SILO_ADMIN_TOKEN`), or set
/// once the data folder that holds it exists (`silo run` creates it just before the first
/// service opens). Until then `/admin/*` answers 503 `starting`.
#[derive(Clone, Default)]
pub struct AdminToken(Arc<std::sync::OnceLock<Arc<str>>>);

impl AdminToken {
    pub fn new(token: Option<String>) -> Self {
        let t = Self::default();
        if let Some(token) = token {
            t.set(token);
        }
        t
    }

    /// Sets the token; a second call changes nothing.
    pub fn set(&self, token: String) {
        let _ = self.0.set(token.into());
    }

    pub fn get(&self) -> Option<Arc<str>> {
        self.0.get().cloned()
    }
}

impl From<String> for AdminToken {
    fn from(token: String) -> Self {
        Self::new(Some(token))
    }
}

async fn handle(
    host: Arc<Host>,
    token: AdminToken,
    req: Request<Incoming>,
) -> Response<HyperOutgoingBody> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => health::healthz(&host),
        (&Method::GET, p) if p == "/" || p.starts_with("/dashboard/") => dashboard::serve(p),
        (&Method::GET, "/metrics") => health::metrics(&host).await,
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            let Some(token) = token.get() else {
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "starting",
                    "the admin API opens once the first service has compiled and the data folder (which holds the admin token) exists: see /healthz",
                );
            };
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
            if req.method() != Method::GET && !host.is_ready() {
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "starting",
                    "the host is starting: deploys, rollbacks, applies and replays wait until every service is loaded (see /healthz)",
                );
            }
            let query = req.uri().query().map(str::to_string);
            let query = query.as_deref();
            match (req.method().clone(), segments.as_slice()) {
                (Method::GET, ["services"]) => json(StatusCode::OK, services_json(&host)),
                (Method::GET, ["services", name]) => services::service_json(&host, name),
                (Method::GET, ["events"]) => events::subscriptions(&host).await,
                (Method::GET, ["sagas"]) => sagas::list(&host, query).await,
                (Method::GET, ["dead-letters"]) => events::dead_letters(&host).await,
                (Method::GET, ["traces"]) => traces::recent(query),
                (Method::GET, ["traces", id]) => traces::trace(id),
                (Method::POST, ["dead-letters", id, "replay"]) => events::replay(&host, id).await,
                (Method::POST | Method::PUT, ["services", name]) => {
                    deploys::deploy(&host, name, req).await
                }
                (Method::GET, ["apply"]) => deploys::plan(&host, query),
                (Method::POST, ["apply"]) => deploys::apply(&host, query).await,
                (Method::POST, ["services", name, "rollback"]) => {
                    deploys::rollback(&host, name).await
                }
                (Method::DELETE, ["services", name]) => deploys::undeploy(&host, name),
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

/// Serves the admin endpoint until `shutdown` turns true.
pub async fn serve_admin(
    host: Arc<Host>,
    listener: std::net::TcpListener,
    token: impl Into<AdminToken>,
    mut shutdown: watch::Receiver<bool>,
) {
    let token: AdminToken = token.into();
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
