//! The `wasi:http` hooks of an instance: where its outgoing requests go.

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::{CALLER_HEADER, CallCtx, CallCtxView, CallOrigin, Refusal};
use crate::request::RequestCtx;

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
        let target = match self.check(&authority) {
            Ok(t) => t,
            Err(refusal) => {
                let err = match &refusal {
                    Refusal::Denied(m) => {
                        tracing::info!(caller = %self.request.service, "call denied: {m}");
                        Error::HttpRequestDenied
                    }
                    Refusal::Loop(m) => {
                        tracing::warn!(caller = %self.request.service, "call refused: {m}");
                        Error::LoopDetected
                    }
                };
                return Box::new(async move { Err(err) });
            }
        };
        let deadline = self.call_deadline();
        let origin = CallOrigin {
            caller: self.request.service.clone(),
            chain: self.request.chain.clone(),
            deadline,
        };
        // The host, not the caller, says who is calling.
        if let Ok(v) = http::HeaderValue::from_str(&self.request.service) {
            request.headers_mut().insert(CALLER_HEADER, v);
        }
        let Some(response) = self.ctx.dispatch.dispatch(&target, request, origin) else {
            // Declared but not loaded (undeployed): the service is down, not forbidden.
            return Box::new(async { Err(Error::DestinationUnavailable) });
        };
        Box::new(async move {
            let resp = tokio::time::timeout_at(deadline.into(), response)
                .await
                .map_err(|_| Error::HttpResponseTimeout)?;
            let resp = resp.map(|body| {
                body.map_err(|code| Error::InternalError(Some(format!("{code:?}"))))
                    .boxed_unsync()
            });
            let io: IoFuture = Box::new(async { Ok(()) });
            Ok((resp, io))
        })
    }
}

/// The largest write to an outgoing body's stream, in bytes.
pub const OUTGOING_BODY_CHUNK: usize = 64 << 10;
