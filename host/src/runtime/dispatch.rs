//! One request, from routing to response: the per-request path every service request takes.
//!
//! route by prefix → take a concurrency permit (or 503 at once) → check the body size →
//! fresh store with the deadline set → instantiate from the service's `InstancePre` →
//! call `wasi:http/incoming-handler.handle` → stream the response. A trap, a deadline or a
//! failed instantiation ends this request with a 503 and a JSON error; nothing it did can
//! reach another request, which has its own store, instance and permit.
//!
//! Architecture invariant: nothing in this file touches a database; stores are reached only
//! through the `sql` capability the instance holds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::service::{Service, arm};
use crate::telemetry::{self, Span, SpanKind, TraceContext};
use tracing::Instrument;

/// Where the host's services are found: its live routing table, swapped whole on every
/// deploy. Handed to the capabilities that reach other services as the traits they define
/// ([`crate::calls::Dispatch`], [`crate::sagas::DeployedServices`]).
pub type ServiceDirectory = Arc<ArcSwap<RouteTable>>;

impl crate::calls::Dispatch for ArcSwap<RouteTable> {
    fn dispatch(
        &self,
        target: &str,
        request: Request<wasmtime_wasi_http::WasiBody>,
        origin: crate::calls::CallOrigin,
    ) -> Option<crate::calls::CallResponse> {
        let service = self.load().by_name(target).cloned()?;
        let crate::calls::CallOrigin {
            caller,
            chain,
            deadline,
        } = origin;
        let origin = Origin::Call {
            caller,
            chain,
            deadline,
        };
        Some(Box::pin(async move {
            dispatch_from(&service, request, origin).await
        }))
    }
}

impl crate::sagas::DeployedServices for ArcSwap<RouteTable> {
    fn spec(&self, service: &str) -> Option<crate::manifest::ServiceSpec> {
        self.load().by_name(service).map(|s| s.spec.clone())
    }
}

/// The routing table: services by route, longest route first.
#[derive(Default)]
pub struct RouteTable {
    services: Vec<Arc<Service>>,
}

impl RouteTable {
    pub fn new(mut services: Vec<Arc<Service>>) -> Self {
        services.sort_by_key(|s| std::cmp::Reverse(s.spec.route.len()));
        Self { services }
    }

    /// This table with `service` added, or replacing the service of the same name.
    pub fn with(&self, service: Arc<Service>) -> RouteTable {
        let mut services: Vec<_> = self
            .services
            .iter()
            .filter(|s| s.name != service.name)
            .cloned()
            .collect();
        services.push(service);
        RouteTable::new(services)
    }

    /// This table without the service named `name`.
    pub fn without(&self, name: &str) -> RouteTable {
        RouteTable::new(
            self.services
                .iter()
                .filter(|s| &*s.name != name)
                .cloned()
                .collect(),
        )
    }

    /// The service named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| &*s.name == name)
    }

    /// The service whose route is a segment prefix of `path`.
    pub fn route(&self, path: &str) -> Option<&Arc<Service>> {
        self.services
            .iter()
            .find(|s| route_matches(&s.spec.route, path))
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.iter()
    }
}

/// `/users` matches `/users`, `/users/` and `/users/7`, not `/usersx`; `/` matches all.
pub fn route_matches(route: &str, path: &str) -> bool {
    route == "/"
        || path == route
        || (path.starts_with(route) && path.as_bytes().get(route.len()) == Some(&b'/'))
}

/// A JSON error response in the contract's shape.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A complete body in the type wasi:http responses use.
pub fn full(bytes: Bytes) -> HyperOutgoingBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Where a request comes from.
pub enum Origin {
    /// The service port: an outside client. Nothing it sends may claim a caller.
    External,
    /// Another service, through a host-routed call.
    Call {
        caller: Arc<str>,
        /// The services the request passed through, outermost first, the caller last.
        chain: Arc<[Arc<str>]>,
        deadline: Instant,
    },
}

/// Serves one request from outside with a fresh instance of `service`. Any body type works
/// (hyper's `Incoming` from the listener; a full body from an in-process caller).
pub async fn dispatch<B>(service: &Arc<Service>, req: Request<B>) -> Response<HyperOutgoingBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    dispatch_from(service, req, Origin::External).await
}

/// Serves one request from `origin` with a fresh instance of `service`.
pub async fn dispatch_from<B>(
    service: &Arc<Service>,
    mut req: Request<B>,
    origin: Origin,
) -> Response<HyperOutgoingBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    if let Origin::External = origin {
        // Only the host says who is calling.
        req.headers_mut().remove(crate::calls::CALLER_HEADER);
    }
    // The server span: continues a valid incoming `traceparent` (a caller's is the host's
    // own, see `calls::hooks`), else starts a trace.
    let parent = req
        .headers()
        .get(telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut span = Span::start_kind(
        format!("{method} {}", service.spec.route),
        &service.name,
        parent,
        SpanKind::Server,
    );
    span.attr("http.request.method", method.as_str());
    span.attr("http.route", service.spec.route.as_str());
    span.attr("url.path", path.as_str());
    if let Origin::Call { caller, .. } = &origin {
        span.attr("silo.caller", &**caller);
    }
    let trace = span.context();
    let trace_id = trace.trace_id_hex();
    // Every line logged while this request is handled (the guest's output included)
    // carries its service and trace id.
    let log_span = tracing::info_span!("request", service = %service.name, trace_id = %trace_id);
    let mut resp = run(service, req, origin, trace, log_span.clone())
        .instrument(log_span.clone())
        .await;
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    span.attr("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.error(format!("answered {status}"));
    }
    span.end();
    service.metrics.record(status, elapsed);
    log_span.in_scope(|| {
        tracing::info!(
            target: "silo::request",
            method = %method,
            path = %path,
            service = %service.name,
            status,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            trace_id = %trace_id,
            "request"
        )
    });
    if let Ok(v) = http::HeaderValue::from_str(&trace_id) {
        resp.headers_mut().insert(telemetry::TRACE_ID_HEADER, v);
    }
    resp
}

async fn run<B>(
    service: &Arc<Service>,
    req: Request<B>,
    origin: Origin,
    trace: TraceContext,
    log_span: tracing::Span,
) -> Response<HyperOutgoingBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body_limit = (service.spec.limits.body_kb << 10) as usize;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > body_limit as u64) {
        return too_large(service);
    }
    // The whole body (at most `body-kb`) first, within a short time: a client or a caller
    // that never finishes its body holds no instance, and is cut off.
    let (parts, body) = req.into_parts();
    let read_for = match &origin {
        Origin::External => OUTSIDE_BODY_TIMEOUT,
        Origin::Call { .. } => CALL_BODY_TIMEOUT,
    };
    let body = match tokio::time::timeout(read_for, Limited::new(body, body_limit).collect()).await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large(service);
        }
        Ok(Err(e)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("the request body could not be read: {e}"),
            );
        }
        Err(_) => {
            service.metrics.timeouts.fetch_add(1, Relaxed);
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                &format!(
                    "the request body did not arrive within {} ms",
                    read_for.as_millis()
                ),
            );
        }
    };
    let who = match &origin {
        Origin::External => super::permits::OUTSIDE,
        Origin::Call { caller, .. } => caller,
    };
    let permit = match service.permits.try_acquire(who) {
        Ok(p) => p,
        Err(busy) => {
            service.metrics.rejected_busy.fetch_add(1, Relaxed);
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                &busy.message(&service.name),
            );
        }
    };
    if service.memory.exhausted() {
        service.metrics.rejected_busy.fetch_add(1, Relaxed);
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            &service.memory.refusal(),
        );
    }
    let req = Request::from_parts(
        parts,
        Full::new(body).map_err(
            |never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} },
        ),
    );

    let (deadline, chain) = match origin {
        Origin::External => (service.deadline(), Arc::from([])),
        Origin::Call {
            deadline, chain, ..
        } => (deadline.min(service.deadline()), chain),
    };
    let (sender, receiver) = tokio::sync::oneshot::channel();
    // The instance runs on the service's own executor: whatever it computes or waits for
    // there holds up no other service.
    let service2 = service.clone();
    let instance = async move {
        let _permit = permit;
        let warm = take_warm(&service2);
        let (mut store, proxy, served) = match warm {
            Some(w) => {
                let mut store = w.store;
                arm(&mut store, deadline, &chain);
                (store, Some(w.proxy), w.served)
            }
            None => (service2.new_store(deadline, &chain), None, 0),
        };
        // The capabilities' spans (statements, calls) are children of the request's.
        store.data_mut().request_mut().trace = Some(trace);
        let prepared = (|| -> wasmtime::Result<_> {
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, req)?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            Ok((req, out))
        })();
        let (req, out) = match prepared {
            Ok(p) => p,
            Err(e) => return Err(Failure::Prepare(format!("{e:#}"))),
        };
        tokio::time::timeout_at(deadline.into(), async move {
            let proxy = match proxy {
                Some(p) => p,
                None => match service2.pre.instantiate_async(&mut store).await {
                    Ok(p) => p,
                    Err(e) => return Err(store.data().limits.explain(e)),
                },
            };
            let handled = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await;
            handled.map_err(|e| store.data().limits.explain(e))?;
            keep_warm(&service2, store, proxy, served + 1);
            Ok(())
        })
        .await
        .map_err(Failure::Elapsed)
    };
    let task = service.executor.spawn(instance.instrument(log_span));

    match receiver.await {
        Ok(Ok(resp)) => resp,
        Ok(Err(code)) => {
            service.metrics.traps.fetch_add(1, Relaxed);
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_failed",
                &format!(
                    "service `{}` answered with an error: {code:?}",
                    service.name
                ),
            )
        }
        // The guest never set a response: it trapped, ran out of time, or returned early.
        Err(_) => failure_response(service, task.await),
    }
}

/// How long an outside client has to send its whole body, once its headers are in.
pub const OUTSIDE_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a calling service has to send its whole body (it is in the same process).
pub const CALL_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn too_large(service: &Service) -> Response<HyperOutgoingBody> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!(
            "the body is larger than {} KiB",
            service.spec.limits.body_kb
        ),
    )
}

/// Why the task that ran an instance ended without a response.
enum Failure {
    /// The request could not be handed to the instance.
    Prepare(String),
    /// The deadline passed.
    Elapsed(tokio::time::error::Elapsed),
}

/// An instance kept for another request of the same service (`instance-reuse` > 1).
struct Warm {
    store: wasmtime::Store<super::state::RequestState>,
    proxy: Proxy,
    served: u32,
}

/// The warm instances of one service on one thread, with the service they belong to.
type WarmPool = (Weak<Service>, Vec<Warm>);

thread_local! {
    /// Warm instances of this worker thread, by service. Instances never cross threads, so
    /// a reused instance stays on the core whose memory it already has.
    static WARM: RefCell<HashMap<usize, WarmPool>> = RefCell::new(HashMap::new());
}

fn take_warm(service: &Arc<Service>) -> Option<Warm> {
    if service.spec.limits.instance_reuse <= 1 {
        return None;
    }
    WARM.with_borrow_mut(|warm| {
        warm.retain(|_, (svc, _)| svc.strong_count() > 0);
        warm.get_mut(&(Arc::as_ptr(service) as usize))
            .and_then(|(_, v)| v.pop())
    })
}

/// Keeps an instance that answered cleanly, unless it has served its quota or still holds
/// a transaction (which would block the store's writer while it sits idle).
fn keep_warm(
    service: &Arc<Service>,
    store: wasmtime::Store<super::state::RequestState>,
    proxy: Proxy,
    served: u32,
) {
    if served >= service.spec.limits.instance_reuse || store.data().sql.holds_transaction() {
        return;
    }
    WARM.with_borrow_mut(|warm| {
        let entry = warm
            .entry(Arc::as_ptr(service) as usize)
            .or_insert_with(|| (Arc::downgrade(service), Vec::new()));
        if entry.1.len() < crate::manifest::WARM_PER_THREAD as usize {
            entry.1.push(Warm {
                store,
                proxy,
                served,
            });
        }
    });
}

type TaskResult = Result<Result<Result<(), wasmtime::Error>, Failure>, tokio::task::JoinError>;

fn failure_response(service: &Service, result: TaskResult) -> Response<HyperOutgoingBody> {
    let name = &service.name;
    let deadline = |service: &Service| {
        service.metrics.timeouts.fetch_add(1, Relaxed);
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded",
            &format!(
                "service `{name}` did not answer within {} ms",
                service.spec.limits.deadline_ms
            ),
        )
    };
    match result {
        Ok(Err(Failure::Elapsed(_))) => deadline(service),
        Ok(Err(Failure::Prepare(e))) => json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
        Ok(Ok(Err(e)))
            if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) =>
        {
            deadline(service)
        }
        Ok(Ok(Err(e))) => {
            service.metrics.traps.fetch_add(1, Relaxed);
            tracing::warn!(service = %name, "instance failed: {e:?}");
            // The trap, after what the host knows of its cause (its memory limit).
            let memory = e.downcast_ref::<super::state::MemoryLimitReached>();
            let reason = match (memory, e.downcast_ref::<wasmtime::Trap>()) {
                (Some(m), Some(t)) => format!("{m} ({t})"),
                (None, Some(t)) => t.to_string(),
                (Some(m), None) => format!("{m} ({})", e.root_cause()),
                // A host error (a bad resource handle): its cause, not the backtrace.
                (None, None) => e.root_cause().to_string(),
            };
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_trapped",
                &format!("service `{name}` failed: {reason}"),
            )
        }
        Ok(Ok(Ok(()))) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_response",
            &format!("service `{name}` returned without setting a response"),
        ),
        Err(join) => {
            service.metrics.traps.fetch_add(1, Relaxed);
            tracing::error!(service = %name, "request task failed: {join}");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_failed",
                &format!("service `{name}` failed"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::route_matches;

    #[test]
    fn routes_match_on_segment_boundaries() {
        assert!(route_matches("/users", "/users"));
        assert!(route_matches("/users", "/users/"));
        assert!(route_matches("/users", "/users/7/orders"));
        assert!(!route_matches("/users", "/usersx"));
        assert!(!route_matches("/users", "/user"));
        assert!(route_matches("/", "/anything"));
    }
}
