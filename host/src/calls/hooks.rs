//! The `wasi:http` hooks of an instance: where its outgoing requests go.

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::{CALLER_HEADER, CallCtx, CallCtxView, CallOrigin, Refusal};
use crate::request::RequestCtx;
use crate::telemetry::{Span, SpanKind};
use std::time::Instant;

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
/// What `send_request` hands back to wasi:http: the response once it starts, with its I/O.
type Sent = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The calls capability as wasi:http holds it. wasi:http takes an instance's hooks as one
/// object that outlives each borrowed view, and a call needs the request's context (who
/// calls, its chain and deadline) beside the capability's own, so the request state keeps
/// the two together here.
pub struct CallHooks {
    pub request: RequestCtx,
    pub calls: CallCtx,
}

impl CallHooks {
    /// The capability's view of itself and the request.
    pub fn view(&mut self) -> CallCtxView<'_> {
        CallCtxView {
            ctx: &mut self.calls,
            request: &self.request,
        }
    }
}

impl WasiHttpHooks for CallHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Sent {
        self.view().send_request(request, options, fut)
    }

    /// One chunk of an outgoing body waits in the host while the next is written: each
    /// body a guest writes holds at most two chunks of host memory.
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    /// The largest write to an outgoing body (the default is 1 MiB): with
    /// the runtime's cap on resources per instance (`MAX_RESOURCES`), it bounds the body bytes one instance can
    /// make the host hold.
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK
    }
}

impl CallCtxView<'_> {
    /// Checks an outgoing request and, if it may go, dispatches it to its service.
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Sent {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let caller = self.request.service.clone();
        let started = Instant::now();
        let target = match self.check(&authority) {
            Ok(t) => t,
            Err(refusal) => {
                let shown: String = authority.chars().take(100).collect();
                let mut span = Span::start_kind(
                    format!("call {shown}"),
                    &caller,
                    self.request.trace,
                    SpanKind::Client,
                );
                let err = match &refusal {
                    Refusal::Denied(m) => {
                        tracing::info!(caller = %caller, "call denied: {m}");
                        crate::telemetry::metrics::count_refusal(&caller, "call");
                        span.error(format!("denied: {m}"));
                        Error::HttpRequestDenied
                    }
                    Refusal::Loop(m) => {
                        tracing::warn!(caller = %caller, "call refused: {m}");
                        span.error(format!("refused: {m}"));
                        Error::LoopDetected
                    }
                };
                span.end();
                return Box::new(async move { Err(err) });
            }
        };
        // The client span, whose context the callee's server span continues. Whatever
        // trace headers the guest set are replaced: the host knows which trace this
        // instance works for, and a guest cannot hang its callee's work under another.
        let mut span = Span::start_kind(
            format!("call {target}"),
            &caller,
            self.request.trace,
            SpanKind::Client,
        );
        span.attr("silo.callee", target.as_str());
        span.attr("http.request.method", request.method().as_str());
        span.attr("url.path", request.uri().path());
        let headers = request.headers_mut();
        headers.remove(TRACESTATE);
        match http::HeaderValue::from_str(&span.context().traceparent()) {
            Ok(v) => {
                headers.insert(crate::telemetry::TRACEPARENT, v);
            }
            Err(_) => {
                headers.remove(crate::telemetry::TRACEPARENT);
            }
        }
        let deadline = self.call_deadline();
        let origin = CallOrigin {
            caller: caller.clone(),
            chain: self.request.chain.clone(),
            deadline,
        };
        // The host, not the caller, says who is calling.
        if let Ok(v) = http::HeaderValue::from_str(&caller) {
            request.headers_mut().insert(CALLER_HEADER, v);
        }
        let Some(response) = self.ctx.dispatch.dispatch(&target, request, origin) else {
            // Declared but not loaded (undeployed): the service is down, not forbidden.
            span.error(format!("`{target}` is not deployed"));
            span.end();
            crate::telemetry::metrics::observe_call(&caller, &target, 503, started.elapsed());
            return Box::new(async { Err(Error::DestinationUnavailable) });
        };
        Box::new(async move {
            let resp = tokio::time::timeout_at(deadline.into(), response).await;
            let status = match &resp {
                Ok(r) => r.status().as_u16(),
                Err(_) => 504,
            };
            crate::telemetry::metrics::observe_call(&caller, &target, status, started.elapsed());
            span.attr("http.response.status_code", i64::from(status));
            if resp.is_err() {
                span.error("no answer before the deadline");
            } else if status >= 500 {
                span.error(format!("answered {status}"));
            }
            span.end();
            let resp = resp.map_err(|_| Error::HttpResponseTimeout)?;
            let resp = resp.map(|body| {
                body.map_err(|code| Error::InternalError(Some(format!("{code:?}"))))
                    .boxed_unsync()
            });
            let io: IoFuture = Box::new(async { Ok(()) });
            Ok((resp, io))
        })
    }
}

/// The W3C header of vendor trace data that goes with a `traceparent`.
const TRACESTATE: &str = "tracestate";

/// The largest write to an outgoing body's stream, in bytes.
pub const OUTGOING_BODY_CHUNK: usize = 64 << 10;
