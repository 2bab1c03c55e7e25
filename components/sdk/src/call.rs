//! `Call`: one service calling another over the standard `wasi:http/outgoing-handler`.
//!
//! A call goes to `http://SERVICE.silo.internal/PATH`; the host dispatches it in-process
//! to a fresh instance of that service, and only to a service the caller's manifest
//! entry lists in `calls = [...]`. [`Call::send`] waits for one call; [`send_all`]
//! starts several and waits on them together, so independent calls overlap.
//!
//! ```ignore
//! let user = Call::get("users", &format!("/users/{}", encode_path_segment(id))).send()?;
//! let mut both = send_all(vec![Call::get("users", "/users/u1"), Call::get("products", "/products/p1")]);
//! ```
//!
//! A call either fails in transport ([`CallError`]: denied, loop detected, timed out, …)
//! or yields a [`CallResponse`] with whatever status the callee answered; a callee that
//! trapped or ran out of time may also show up as a 503 response.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse,
    Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::poll::Pollable;
use wasip2::io::streams::StreamError;

use crate::{ApiError, Method};

/// The domain under which every service answers: `users` is `users.silo.internal`.
pub const SERVICE_DOMAIN: &str = "silo.internal";

/// The largest response body a call reads; a larger one is an error.
pub const MAX_CALL_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// The most bytes one `blocking-write-and-flush` call may take.
const WRITE_CHUNK: usize = 4096;
/// How many bytes to ask for per read.
const READ_CHUNK: u64 = 64 * 1024;

/// One outgoing request, built with [`Call::get`], [`Call::post`], … and sent with
/// [`Call::send`] or [`send_all`].
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    target: Target,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    /// A mistake found while building (an unserializable body, a bad URL); reported
    /// by `send` so the builder chain stays infallible.
    invalid: Option<String>,
}

/// Where a call goes: scheme, authority, path, and the name errors use for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The service name, or the authority for a raw URL.
    name: String,
    scheme: String,
    authority: String,
    path: String,
}

impl Call {
    /// A request with any method to `path` (e.g. `/users/usr_1?x=y`) on `service`.
    pub fn new(method: Method, service: &str, path: &str) -> Self {
        let (target, invalid) = match service_target(service, path) {
            Ok(target) => (target, None),
            Err(why) => (
                Target {
                    name: service.to_string(),
                    scheme: "http".to_string(),
                    authority: String::new(),
                    path: String::new(),
                },
                Some(why),
            ),
        };
        Self {
            method,
            target,
            headers: Vec::new(),
            body: None,
            invalid,
        }
    }

    /// `GET path` on `service`.
    pub fn get(service: &str, path: &str) -> Self {
        Self::new(Method::Get, service, path)
    }

    /// `POST path` on `service`; add a body with [`Call::json`] or [`Call::body`].
    pub fn post(service: &str, path: &str) -> Self {
        Self::new(Method::Post, service, path)
    }

    /// `PUT path` on `service`.
    pub fn put(service: &str, path: &str) -> Self {
        Self::new(Method::Put, service, path)
    }

    /// `DELETE path` on `service`.
    pub fn delete(service: &str, path: &str) -> Self {
        Self::new(Method::Delete, service, path)
    }

    /// A request to an arbitrary absolute URL (`http://host:port/path`). The silo host
    /// denies anything but `SERVICE.silo.internal`; this exists to show that it does.
    pub fn url(method: Method, url: &str) -> Self {
        let (target, invalid) = match parse_url(url) {
            Ok(target) => (target, None),
            Err(why) => (
                Target {
                    name: url.to_string(),
                    scheme: "http".to_string(),
                    authority: String::new(),
                    path: String::new(),
                },
                Some(why),
            ),
        };
        Self {
            method,
            target,
            headers: Vec::new(),
            body: None,
            invalid,
        }
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body to `value` as JSON, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self.body = Some(bytes);
                self.header("content-type", "application/json")
            }
            Err(err) => {
                self.invalid = Some(format!("cannot serialize the request body: {err}"));
                self
            }
        }
    }

    /// Sets the raw body.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// The service (or, for [`Call::url`], the authority) this call goes to.
    pub fn service(&self) -> &str {
        &self.target.name
    }

    /// The full URL, e.g. `http://users.silo.internal/users/usr_1`.
    pub fn to_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.target.scheme, self.target.authority, self.target.path
        )
    }

    /// Sends the request and waits for the whole response.
    pub fn send(self) -> Result<CallResponse, CallError> {
        let in_flight = self.start()?;
        in_flight.pollable.block();
        in_flight.finish()
    }

    /// Hands the request to the host and writes its body; the response comes later.
    fn start(self) -> Result<InFlight, CallError> {
        let name = self.target.name.clone();
        let fail = |kind| CallError::new(&name, kind);
        if let Some(why) = self.invalid {
            return Err(fail(CallErrorKind::Invalid(why)));
        }
        let fields = Fields::from_list(&self.headers).map_err(|err| {
            fail(CallErrorKind::Invalid(format!(
                "a request header was refused: {err:?}"
            )))
        })?;
        let request = OutgoingRequest::new(fields);
        let method = wasi_method(&self.method);
        let scheme = match self.target.scheme.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_string()),
        };
        let invalid = |what: &str| fail(CallErrorKind::Invalid(format!("invalid {what}")));
        request
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(&self.target.authority))
            .map_err(|()| invalid("authority"))?;
        request
            .set_path_with_query(Some(&self.target.path))
            .map_err(|()| invalid("path"))?;
        let body = request
            .body()
            .map_err(|()| fail(CallErrorKind::Other("the request body was taken".into())))?;
        let future = outgoing_handler::handle(request, None)
            .map_err(|code| CallError::from_code(&name, &code))?;
        write_body(&body, self.body.as_deref().unwrap_or_default())
            .map_err(|why| fail(CallErrorKind::Other(why)))?;
        OutgoingBody::finish(body, None).map_err(|code| CallError::from_code(&name, &code))?;
        Ok(InFlight {
            pollable: future.subscribe(),
            future,
            service: name,
        })
    }
}

/// Sends every call, then waits on all of them together (`wasi:io/poll`), so calls
/// that do not depend on each other run concurrently. The results are in the order of
/// `calls`.
pub fn send_all(calls: Vec<Call>) -> Vec<Result<CallResponse, CallError>> {
    let mut results: Vec<Option<Result<CallResponse, CallError>>> =
        (0..calls.len()).map(|_| None).collect();
    let mut pending: Vec<(usize, InFlight)> = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        match call.start() {
            Ok(in_flight) => pending.push((i, in_flight)),
            Err(err) => results[i] = Some(Err(err)),
        }
    }
    while !pending.is_empty() {
        let pollables: Vec<&Pollable> = pending.iter().map(|(_, f)| &f.pollable).collect();
        let mut ready: Vec<usize> = wasip2::io::poll::poll(&pollables)
            .into_iter()
            .map(|i| i as usize)
            .collect();
        ready.sort_unstable();
        ready.dedup();
        // Highest index first, so the indices still to remove stay valid.
        for r in ready.into_iter().rev() {
            if r < pending.len() {
                let (i, in_flight) = pending.swap_remove(r);
                results[i] = Some(in_flight.finish());
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(CallError::new("", CallErrorKind::Other("lost".into())))))
        .collect()
}

/// A request the host has accepted; its response is pending.
struct InFlight {
    /// Declared first: a pollable is a child of the future and must be dropped first.
    pollable: Pollable,
    future: FutureIncomingResponse,
    service: String,
}

impl InFlight {
    /// Takes the response (its pollable is ready) and reads its whole body.
    fn finish(self) -> Result<CallResponse, CallError> {
        let Self {
            pollable,
            future,
            service,
        } = self;
        let fail = |kind| CallError::new(&service, kind);
        let outcome = loop {
            match future.get() {
                Some(outcome) => break outcome,
                None => pollable.block(),
            }
        };
        drop(pollable);
        let response = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => return Err(CallError::from_code(&service, &code)),
            Err(()) => {
                return Err(fail(CallErrorKind::Other(
                    "the response was already taken".into(),
                )));
            }
        };
        drop(future);
        let status = response.status();
        let headers = response.headers().entries();
        let body = read_body(&response).map_err(fail)?;
        Ok(CallResponse {
            status,
            headers,
            body,
            service,
        })
    }
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|()| "the request body stream was taken".to_string())?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|err| format!("writing the request body failed: {}", stream_error(&err)))?;
    }
    Ok(())
}

fn read_body(response: &IncomingResponse) -> Result<Vec<u8>, CallErrorKind> {
    let other = |why: &str| CallErrorKind::Other(why.to_string());
    let body = response
        .consume()
        .map_err(|()| other("the response body was already consumed"))?;
    let stream = body
        .stream()
        .map_err(|()| other("the response body stream was already taken"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_CALL_RESPONSE_BYTES {
                    return Err(other(&format!(
                        "the response body is larger than {MAX_CALL_RESPONSE_BYTES} bytes"
                    )));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                // A body cut short: the callee trapped or timed out mid-response.
                let detail = wasip2::http::types::http_error_code(&err)
                    .map(|code| error_code_name(&code))
                    .unwrap_or_else(|| err.to_debug_string());
                return Err(CallErrorKind::Other(format!(
                    "reading the response body failed: {detail}"
                )));
            }
        }
    }
    // The stream is a child of the body: it must go first.
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

fn stream_error(err: &StreamError) -> String {
    match err {
        StreamError::Closed => "closed".to_string(),
        StreamError::LastOperationFailed(err) => err.to_debug_string(),
    }
}

fn wasi_method(method: &Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
        Method::Options => WasiMethod::Options,
        Method::Other(other) => match other.as_str() {
            "CONNECT" => WasiMethod::Connect,
            "TRACE" => WasiMethod::Trace,
            _ => WasiMethod::Other(other.clone()),
        },
    }
}

/// The callee's answer: any status, with the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResponse {
    /// The status code the callee answered.
    pub status: u16,
    /// The response headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
    service: String,
}

impl CallResponse {
    /// A response as if `service` had answered it (for tests).
    pub fn new(service: &str, status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            service: service.to_string(),
        }
    }

    /// The service that answered.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as text (invalid UTF-8 replaced with U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON. A body that does not parse is a [`CallError`]
    /// (`invalid-response: …`): the callee broke its contract.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            CallError::new(
                &self.service,
                CallErrorKind::InvalidResponse(format!(
                    "{} answered {} with a body that is not the expected JSON: {err}",
                    self.service, self.status
                )),
            )
        })
    }

    /// What went wrong, for a non-2xx answer: the `message` of a contract error body
    /// (`{"error":{"code":…,"message":…}}`), else the body text, else the status.
    pub fn error_message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Body {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            message: String,
        }
        if let Ok(body) = serde_json::from_slice::<Body>(&self.body) {
            return body.error.message;
        }
        let text = self.text();
        let text = text.trim();
        if text.is_empty() {
            format!("status {}", self.status)
        } else {
            text.chars().take(500).collect()
        }
    }
}

/// A call that produced no response: the host refused it, it timed out, it looped, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    service: String,
    kind: CallErrorKind,
}

/// Why a call failed. Its `Display` is the readable form, e.g. `denied`,
/// `loop-detected`, `timeout`, `other: connection-refused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallErrorKind {
    /// `HTTP-request-denied`: the callee is not in the caller's `calls`, or the URL is
    /// not a silo service.
    Denied,
    /// `loop-detected`: a cycle (A → B → A) or too deep a chain of calls.
    LoopDetected,
    /// A connection, DNS or response timeout: the callee took too long.
    Timeout,
    /// The request could not be built (bad service name, header or URL).
    Invalid(String),
    /// The callee answered something unreadable (see [`CallResponse::json`]).
    InvalidResponse(String),
    /// Any other `wasi:http` error code or failure, in readable form.
    Other(String),
}

impl fmt::Display for CallErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied => f.write_str("denied"),
            Self::LoopDetected => f.write_str("loop-detected"),
            Self::Timeout => f.write_str("timeout"),
            Self::Invalid(why) => write!(f, "invalid: {why}"),
            Self::InvalidResponse(why) => write!(f, "invalid-response: {why}"),
            Self::Other(why) => write!(f, "other: {why}"),
        }
    }
}

impl CallError {
    /// A failure of the call to `service`.
    pub fn new(service: &str, kind: CallErrorKind) -> Self {
        Self {
            service: service.to_string(),
            kind,
        }
    }

    /// The failure a `wasi:http` error code means.
    pub fn from_code(service: &str, code: &ErrorCode) -> Self {
        let kind = match code {
            ErrorCode::HttpRequestDenied => CallErrorKind::Denied,
            ErrorCode::LoopDetected => CallErrorKind::LoopDetected,
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => CallErrorKind::Timeout,
            other => CallErrorKind::Other(error_code_name(other)),
        };
        Self::new(service, kind)
    }

    /// The service called (or the authority, for a raw URL).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Why it failed.
    pub fn kind(&self) -> &CallErrorKind {
        &self.kind
    }

    /// Whether the host refused the call (`HTTP-request-denied`).
    pub fn is_denied(&self) -> bool {
        self.kind == CallErrorKind::Denied
    }
}

/// Only the kind (`denied`, `timeout`, `other: …`); [`CallError::service`] says where.
impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for CallError {}

/// A failed call in a handler: the host denying it is a bug in the caller's manifest
/// (500 `internal`); anything else means the callee cannot answer now (503
/// `unavailable`).
impl From<CallError> for ApiError {
    fn from(err: CallError) -> Self {
        match err.kind {
            CallErrorKind::Denied => {
                Self::internal(format!("call to {} denied by the host", err.service))
            }
            kind => Self::unavailable(format!("call to {} failed: {kind}", err.service)),
        }
    }
}

/// `users` → `users.silo.internal`, checking the name is a service name (lowercase
/// letters, digits and `-`).
pub fn service_authority(service: &str) -> Result<String, String> {
    let valid = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(format!(
            "{service:?} is not a service name (lowercase letters, digits and `-`)"
        ));
    }
    Ok(format!("{service}.{SERVICE_DOMAIN}"))
}

fn service_target(service: &str, path: &str) -> Result<Target, String> {
    let authority = service_authority(service)?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "{path:?} is not a valid path (spaces or control characters)"
        ));
    }
    Ok(Target {
        name: service.to_string(),
        scheme: "http".to_string(),
        authority,
        path,
    })
}

/// `scheme://authority/path?query` → its parts (the path defaults to `/`).
fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(format!("{url:?} has no valid scheme"));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(Target {
        name: authority.to_string(),
        scheme: scheme.to_ascii_lowercase(),
        authority: authority.to_string(),
        path,
    })
}

/// Percent-encodes `segment` for use as one path segment: everything but
/// `A-Z a-z 0-9 - . _ ~` is escaped, so an id can never add segments or a query.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes `value` for use as a query-string value (`&`, `=`, `+`, … escaped).
pub fn encode_query_value(value: &str) -> String {
    encode_path_segment(value)
}

/// The readable (WIT) name of a `wasi:http` error code, with its payload if any.
pub fn error_code_name(code: &ErrorCode) -> String {
    let with = |name: &str, detail: Option<String>| match detail {
        Some(detail) if !detail.is_empty() => format!("{name}: {detail}"),
        _ => name.to_string(),
    };
    let num = |n: &Option<u64>| n.map(|n| n.to_string());
    let num32 = |n: &Option<u32>| n.map(|n| n.to_string());
    match code {
        ErrorCode::DnsTimeout => "DNS-timeout".into(),
        ErrorCode::DnsError(p) => with("DNS-error", p.rcode.clone()),
        ErrorCode::DestinationNotFound => "destination-not-found".into(),
        ErrorCode::DestinationUnavailable => "destination-unavailable".into(),
        ErrorCode::DestinationIpProhibited => "destination-IP-prohibited".into(),
        ErrorCode::DestinationIpUnroutable => "destination-IP-unroutable".into(),
        ErrorCode::ConnectionRefused => "connection-refused".into(),
        ErrorCode::ConnectionTerminated => "connection-terminated".into(),
        ErrorCode::ConnectionTimeout => "connection-timeout".into(),
        ErrorCode::ConnectionReadTimeout => "connection-read-timeout".into(),
        ErrorCode::ConnectionWriteTimeout => "connection-write-timeout".into(),
        ErrorCode::ConnectionLimitReached => "connection-limit-reached".into(),
        ErrorCode::TlsProtocolError => "TLS-protocol-error".into(),
        ErrorCode::TlsCertificateError => "TLS-certificate-error".into(),
        ErrorCode::TlsAlertReceived(p) => with("TLS-alert-received", p.alert_message.clone()),
        ErrorCode::HttpRequestDenied => "HTTP-request-denied".into(),
        ErrorCode::HttpRequestLengthRequired => "HTTP-request-length-required".into(),
        ErrorCode::HttpRequestBodySize(n) => with("HTTP-request-body-size", num(n)),
        ErrorCode::HttpRequestMethodInvalid => "HTTP-request-method-invalid".into(),
        ErrorCode::HttpRequestUriInvalid => "HTTP-request-URI-invalid".into(),
        ErrorCode::HttpRequestUriTooLong => "HTTP-request-URI-too-long".into(),
        ErrorCode::HttpRequestHeaderSectionSize(n) => {
            with("HTTP-request-header-section-size", num32(n))
        }
        ErrorCode::HttpRequestHeaderSize(p) => with(
            "HTTP-request-header-size",
            p.as_ref().and_then(|p| p.field_name.clone()),
        ),
        ErrorCode::HttpRequestTrailerSectionSize(n) => {
            with("HTTP-request-trailer-section-size", num32(n))
        }
        ErrorCode::HttpRequestTrailerSize(p) => {
            with("HTTP-request-trailer-size", p.field_name.clone())
        }
        ErrorCode::HttpResponseIncomplete => "HTTP-response-incomplete".into(),
        ErrorCode::HttpResponseHeaderSectionSize(n) => {
            with("HTTP-response-header-section-size", num32(n))
        }
        ErrorCode::HttpResponseHeaderSize(p) => {
            with("HTTP-response-header-size", p.field_name.clone())
        }
        ErrorCode::HttpResponseBodySize(n) => with("HTTP-response-body-size", num(n)),
        ErrorCode::HttpResponseTrailerSectionSize(n) => {
            with("HTTP-response-trailer-section-size", num32(n))
        }
        ErrorCode::HttpResponseTrailerSize(p) => {
            with("HTTP-response-trailer-size", p.field_name.clone())
        }
        ErrorCode::HttpResponseTransferCoding(s) => {
            with("HTTP-response-transfer-coding", s.clone())
        }
        ErrorCode::HttpResponseContentCoding(s) => with("HTTP-response-content-coding", s.clone()),
        ErrorCode::HttpResponseTimeout => "HTTP-response-timeout".into(),
        ErrorCode::HttpUpgradeFailed => "HTTP-upgrade-failed".into(),
        ErrorCode::HttpProtocolError => "HTTP-protocol-error".into(),
        ErrorCode::LoopDetected => "loop-detected".into(),
        ErrorCode::ConfigurationError => "configuration-error".into(),
        ErrorCode::InternalError(s) => with("internal-error", s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_calls_build_internal_urls() {
        let call = Call::get("users", "/users/usr_1?x=1");
        assert_eq!(call.to_url(), "http://users.silo.internal/users/usr_1?x=1");
        assert_eq!(call.service(), "users");
        assert!(call.invalid.is_none());
        assert_eq!(
            Call::post("caller-b", "whoami").to_url(),
            "http://caller-b.silo.internal/whoami"
        );
    }

    #[test]
    fn bad_service_names_and_paths_are_invalid() {
        for (service, path) in [("Users", "/"), ("", "/"), ("a.b", "/"), ("users", "/a b")] {
            let call = Call::get(service, path);
            assert!(call.invalid.is_some(), "{service:?} {path:?}");
        }
        assert_eq!(
            service_authority("products").unwrap(),
            "products.silo.internal"
        );
    }

    #[test]
    fn urls_are_split() {
        let t = parse_url("http://example.com").unwrap();
        assert_eq!(
            (t.scheme.as_str(), t.authority.as_str(), t.path.as_str()),
            ("http", "example.com", "/")
        );
        let t = parse_url("HTTP://127.0.0.1:8080/users?x=1").unwrap();
        assert_eq!(
            (t.scheme.as_str(), t.authority.as_str(), t.path.as_str()),
            ("http", "127.0.0.1:8080", "/users?x=1")
        );
        let t = parse_url("https://h?q").unwrap();
        assert_eq!(t.path, "/?q");
        assert!(parse_url("example.com/x").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(Call::url(Method::Get, "nope").invalid.is_some());
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path_segment("usr_1-a.b~"), "usr_1-a.b~");
        assert_eq!(encode_path_segment("../x?y=1"), "..%2Fx%3Fy%3D1");
        assert_eq!(encode_path_segment("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn error_codes_map_to_kinds() {
        let kind = |code: ErrorCode| CallError::from_code("users", &code).to_string();
        assert_eq!(kind(ErrorCode::HttpRequestDenied), "denied");
        assert_eq!(kind(ErrorCode::LoopDetected), "loop-detected");
        assert_eq!(kind(ErrorCode::ConnectionTimeout), "timeout");
        assert_eq!(kind(ErrorCode::HttpResponseTimeout), "timeout");
        assert_eq!(
            kind(ErrorCode::ConnectionRefused),
            "other: connection-refused"
        );
        assert_eq!(
            kind(ErrorCode::InternalError(Some("boom".into()))),
            "other: internal-error: boom"
        );
        assert_eq!(
            kind(ErrorCode::InternalError(None)),
            "other: internal-error"
        );
    }

    #[test]
    fn call_errors_become_api_errors() {
        let api = ApiError::from(CallError::new("users", CallErrorKind::Denied));
        assert_eq!((api.status, api.code.as_ref()), (500, "internal"));
        assert_eq!(api.message, "call to users denied by the host");

        let api = ApiError::from(CallError::new("users", CallErrorKind::Timeout));
        assert_eq!((api.status, api.code.as_ref()), (503, "unavailable"));
        assert_eq!(api.message, "call to users failed: timeout");

        for kind in [
            CallErrorKind::LoopDetected,
            CallErrorKind::Other("x".into()),
            CallErrorKind::Invalid("x".into()),
            CallErrorKind::InvalidResponse("x".into()),
        ] {
            assert_eq!(ApiError::from(CallError::new("p", kind)).status, 503);
        }
    }

    #[test]
    fn responses_parse_and_explain() {
        let ok = CallResponse::new("users", 200, r#"{"id":"u1"}"#);
        assert!(ok.is_success());
        let v: serde_json::Value = ok.json().unwrap();
        assert_eq!(v["id"], "u1");
        let err = ok.json::<Vec<u8>>().unwrap_err();
        assert!(err.to_string().starts_with("invalid-response: "), "{err}");

        let missing = CallResponse::new(
            "users",
            404,
            r#"{"error":{"code":"not_found","message":"no user \"u1\""}}"#,
        );
        assert!(!missing.is_success());
        assert_eq!(missing.error_message(), "no user \"u1\"");
        assert_eq!(
            CallResponse::new("x", 503, "").error_message(),
            "status 503"
        );
        assert_eq!(
            CallResponse::new("x", 500, " oops\n").error_message(),
            "oops"
        );
    }
}
