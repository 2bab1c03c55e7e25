//! The `wasi:http` hooks of an instance: where its outgoing requests go.

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::{CALLER_HEADER, CallCtx, Refusal};
use crate::runtime::dispatch::{Origin, dispatch_from};

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for CallCtx {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send> {
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
                        tracing::info!(caller = %self.caller, "call denied: {m}");
                        Error::HttpRequestDenied
                    }
                    Refusal::Loop(m) => {
                        tracing::warn!(caller = %self.caller, "call refused: {m}");
                        Error::LoopDetected
                    }
                };
                return Box::new(async move { Err(err) });
            }
        };
        let Some(service) = self.directory.load().by_name(&target).cloned() else {
            // Declared but not loaded (undeployed): the service is down, not forbidden.
            return Box::new(async { Err(Error::DestinationUnavailable) });
        };
        let deadline = self.call_deadline();
        let origin = Origin::Call {
            caller: self.caller.clone(),
            chain: self.chain.clone(),
            deadline,
        };
        // The host, not the caller, says who is calling.
        if let Ok(v) = http::HeaderValue::from_str(&self.caller) {
            request.headers_mut().insert(CALLER_HEADER, v);
        }
        Box::new(async move {
            let resp =
                tokio::time::timeout_at(deadline.into(), dispatch_from(&service, request, origin))
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

    /// One chunk of an outgoing body waits in the host while the next is written: each
    /// body a guest writes holds at most two chunks of host memory.
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    /// The largest write to an outgoing body (the default is 1 MiB): with
    /// [`crate::runtime::state::MAX_RESOURCES`], it bounds the body bytes one instance can
    /// make the host hold.
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK
    }
}

/// The largest write to an outgoing body's stream, in bytes.
pub const OUTGOING_BODY_CHUNK: usize = 64 << 10;
