//! The `wasi:http` edge: reads an `incoming-request` into a [`Request`] and writes a
//! [`Response`] to the `response-outparam`. Outgoing calls live in `call.rs`; nothing
//! else in the SDK touches wasi:http.

use wasip2::http::types::{
    Fields, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

use crate::{ApiError, MAX_BODY_BYTES, Method, Request, Response, Service};

/// The most bytes one `blocking-write-and-flush` call may take.
const WRITE_CHUNK: usize = 4096;
/// How many bytes to ask for per read.
const READ_CHUNK: u64 = 64 * 1024;

/// Handles one request with `S`'s router. Called by the code [`crate::service!`] emits.
#[doc(hidden)]
pub fn serve<S: Service>(incoming: IncomingRequest, out: ResponseOutparam) {
    let response = match read_request(&incoming) {
        Ok(req) => S::router().handle(req),
        Err(err) => err.into_response(),
    };
    drop(incoming);
    write_response(response, out);
}

fn read_request(incoming: &IncomingRequest) -> Result<Request, ApiError> {
    let method = match incoming.method() {
        WasiMethod::Get => Method::Get,
        WasiMethod::Head => Method::Head,
        WasiMethod::Post => Method::Post,
        WasiMethod::Put => Method::Put,
        WasiMethod::Patch => Method::Patch,
        WasiMethod::Delete => Method::Delete,
        WasiMethod::Options => Method::Options,
        WasiMethod::Connect => Method::Other("CONNECT".to_string()),
        WasiMethod::Trace => Method::Other("TRACE".to_string()),
        WasiMethod::Other(other) => Method::Other(other),
    };
    let path = incoming
        .path_with_query()
        .unwrap_or_else(|| "/".to_string());
    let mut req = Request::new(method, &path);
    for (name, value) in incoming.headers().entries() {
        req = req.with_header(name, value);
    }
    Ok(req.with_body(read_body(incoming)?))
}

/// Reads the body until the stream closes.
fn read_body(incoming: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let body = incoming
        .consume()
        .map_err(|()| ApiError::internal("the request body was already consumed"))?;
    let stream = body
        .stream()
        .map_err(|()| ApiError::internal("the request body stream was already taken"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_BODY_BYTES {
                    return Err(ApiError::payload_too_large(format!(
                        "the request body is larger than {MAX_BODY_BYTES} bytes"
                    )));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(ApiError::bad_request(format!(
                    "reading the request body failed: {}",
                    err.to_debug_string()
                )));
            }
        }
    }
    // The stream is a child of the body: it must go first.
    drop(stream);
    drop(wasip2::http::types::IncomingBody::finish(body));
    Ok(bytes)
}

fn write_response(response: Response, out: ResponseOutparam) {
    let mut headers: Vec<(String, Vec<u8>)> = response.headers().to_vec();
    if response.header("content-length").is_none() {
        headers.push((
            "content-length".to_string(),
            response.body().len().to_string().into_bytes(),
        ));
    }
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| {
        // A header name or value the host refuses is a bug in the service; answer
        // without the service's headers rather than not at all.
        Fields::from_list(&[(
            "content-length".to_string(),
            response.body().len().to_string().into_bytes(),
        )])
        .unwrap_or_else(|_| Fields::new())
    });
    let outgoing = OutgoingResponse::new(fields);
    if outgoing.set_status_code(response.status()).is_err() {
        let _ = outgoing.set_status_code(500);
    }
    let Ok(body) = outgoing.body() else {
        ResponseOutparam::set(out, Ok(outgoing));
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        for chunk in response.body().chunks(WRITE_CHUNK) {
            // A failed write means the client went away; nothing is left to tell it.
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(body, None);
}
