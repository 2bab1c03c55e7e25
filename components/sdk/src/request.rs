//! `Request`: an incoming request already read in full, with path and query parameters.

use serde::de::DeserializeOwned;

use crate::ApiError;

/// The header the host sets on a call between services to the caller's name.
pub const CALLER_HEADER: &str = "silo-caller";

/// An HTTP method. Methods the router has no shortcut for arrive as `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other(String),
}

impl Method {
    /// The method as it appears on the wire, e.g. `GET`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other(other) => other,
        }
    }
}

/// A request as a handler sees it: the body is already read in full.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    params: Vec<(String, String)>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    /// A request for `path_with_query` (e.g. `/orders?userId=u1`). The SDK builds these
    /// from `wasi:http`; tests build them by hand.
    pub fn new(method: Method, path_with_query: &str) -> Self {
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path, query),
            None => (path_with_query, ""),
        };
        Self {
            method,
            path: if path.is_empty() { "/" } else { path }.to_string(),
            query: parse_query(query),
            params: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path without the query string, still percent-encoded (e.g. `/users/u1`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The first query parameter `name`, percent-decoded (`+` is a space).
    pub fn query(&self, name: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Every query parameter, decoded, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// The path parameter `name` captured by the route pattern (`/users/{id}`),
    /// percent-decoded. A name the route does not declare is a bug in the service and
    /// yields a 500.
    pub fn param(&self, name: &str) -> Result<&str, ApiError> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| ApiError::internal(format!("the route has no path parameter `{name}`")))
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The service that made this request (the `silo-caller` header, which the host
    /// sets on calls between services and nobody else can forge); `None` for a request
    /// from outside.
    pub fn caller(&self) -> Option<&str> {
        self.header(CALLER_HEADER)
    }

    /// Every header, in the order received.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body parsed as JSON into `T`.
    ///
    /// An empty body, malformed JSON, a missing field or a field of the wrong type is a
    /// 400 `bad_request` whose message says what and where (serde's text). Whether
    /// unknown fields are refused is `T`'s choice (`#[serde(deny_unknown_fields)]`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "the request body is empty; expected a JSON object",
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs. A key without `=` has an empty value.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_query_component(k), decode_query_component(v))
        })
        .collect()
}

fn decode_query_component(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// Decodes `%XX` escapes; a malformed escape is kept as it is. Invalid UTF-8 after
/// decoding is replaced with U+FFFD.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_split_and_decoded() {
        let req = Request::new(Method::Get, "/orders?userId=usr%5F1&q=red+apple&flag&x=%zz");
        assert_eq!(req.path(), "/orders");
        assert_eq!(req.query("userId").as_deref(), Some("usr_1"));
        assert_eq!(req.query("q").as_deref(), Some("red apple"));
        assert_eq!(req.query("flag").as_deref(), Some(""));
        assert_eq!(req.query("x").as_deref(), Some("%zz"));
        assert_eq!(req.query("missing"), None);
    }

    #[test]
    fn percent_decoding_handles_utf8_and_edges() {
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(percent_decode("a+b"), "a+b");
    }

    #[test]
    fn caller_reads_the_silo_caller_header() {
        let req = Request::new(Method::Get, "/x");
        assert_eq!(req.caller(), None);
        let req = req.with_header("Silo-Caller", "orders");
        assert_eq!(req.caller(), Some("orders"));
    }

    #[test]
    fn json_errors_are_bad_requests() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            name: String,
            price: i64,
        }
        let req = |body: &str| Request::new(Method::Post, "/").with_body(body);

        let err = req("").json::<Body>().unwrap_err();
        assert_eq!((err.status, err.code.as_ref()), (400, "bad_request"));
        assert!(err.message.contains("empty"), "{}", err.message);

        let err = req("{not json").json::<Body>().unwrap_err();
        assert_eq!(err.status, 400);

        let err = req(r#"{"name":"x"}"#).json::<Body>().unwrap_err();
        assert!(
            err.message.contains("missing field `price`"),
            "{}",
            err.message
        );

        let err = req(r#"{"name":"x","price":"1"}"#)
            .json::<Body>()
            .unwrap_err();
        assert!(err.message.contains("invalid type"), "{}", err.message);

        let ok = req(r#"{"name":"x","price":1}"#).json::<Body>().unwrap();
        assert_eq!(ok.price, 1);
    }
}
