//! `ApiError`: the one error type a handler returns, and how it becomes a JSON response.
//!
//! Every error a client sees has the same body, `{"error":{"code":"…","message":"…"}}`,
//! with a 4xx or 5xx status. Codes are short `snake_case` words a client can match on;
//! messages are for humans.

use std::borrow::Cow;
use std::fmt;

use crate::response::Response;
use crate::sql::SqlError;

/// A failed request: an HTTP status, a machine-readable `code` and a human `message`.
///
/// Handlers return `Result<Response, ApiError>`; `?` converts a [`SqlError`] into an
/// `ApiError` (see the `From` impl for the mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code, 400–599.
    pub status: u16,
    /// A short `snake_case` word, e.g. `not_found`.
    pub code: Cow<'static, str>,
    /// What went wrong, for humans.
    pub message: String,
}

impl ApiError {
    /// An error with any status and code.
    pub fn new(
        status: u16,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 `bad_request`: the body, a parameter or the query string is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    /// 403 `forbidden`: the service was refused a capability (a store it was not granted).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    /// 404 `not_found`: no such resource (or no such route).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    /// 405 `method_not_allowed`: the path exists but not with this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "method_not_allowed", message)
    }

    /// 409 `conflict`: the request clashes with existing state (a unique key is taken).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "conflict", message)
    }

    /// 413 `payload_too_large`: the request body is larger than [`crate::MAX_BODY_BYTES`].
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(413, "payload_too_large", message)
    }

    /// 422 `unprocessable`: well-formed, but the domain refuses it (e.g. not enough stock).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "unprocessable", message)
    }

    /// 500 `internal`: a bug or an unexpected backend failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    /// 503 `unavailable`: the service cannot serve now; retrying later may succeed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    /// The JSON body: `{"error":{"code":"…","message":"…"}}`.
    pub fn body(&self) -> String {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } }).to_string()
    }

    /// The response a client sees for this error.
    pub fn into_response(self) -> Response {
        Response::new(self.status)
            .with_header("content-type", "application/json")
            .with_body(self.body().into_bytes())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// How a store failure reaches the client:
///
/// | `SqlError`             | status | code          |
/// | ---------------------- | ------ | ------------- |
/// | `constraint-violation` | 409    | `conflict`    |
/// | `access-denied`        | 403    | `forbidden`   |
/// | `unavailable`          | 503    | `unavailable` |
/// | `limit-exceeded`       | 503    | `unavailable` |
/// | `bad-query`, `invalid-handle`, `other` | 500 | `internal` |
impl From<SqlError> for ApiError {
    fn from(err: SqlError) -> Self {
        let message = crate::sql::describe(&err);
        match err {
            SqlError::ConstraintViolation(_) => Self::conflict(message),
            SqlError::AccessDenied(_) => Self::forbidden(message),
            SqlError::Unavailable(_) | SqlError::LimitExceeded(_) => Self::unavailable(message),
            SqlError::BadQuery(_) | SqlError::InvalidHandle(_) | SqlError::Other(_) => {
                Self::internal(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_exactly_the_contract_shape() {
        let err = ApiError::not_found("no user \"u1\"");
        assert_eq!(
            err.body(),
            r#"{"error":{"code":"not_found","message":"no user \"u1\""}}"#
        );
        let resp = err.into_response();
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
    }

    #[test]
    fn sql_errors_map_to_statuses() {
        let cases = [
            (SqlError::ConstraintViolation("x".into()), 409, "conflict"),
            (SqlError::AccessDenied("x".into()), 403, "forbidden"),
            (SqlError::Unavailable("x".into()), 503, "unavailable"),
            (SqlError::LimitExceeded("x".into()), 503, "unavailable"),
            (SqlError::BadQuery("x".into()), 500, "internal"),
            (SqlError::InvalidHandle("x".into()), 500, "internal"),
            (SqlError::Other("x".into()), 500, "internal"),
        ];
        for (sql, status, code) in cases {
            let api = ApiError::from(sql);
            assert_eq!((api.status, api.code.as_ref()), (status, code));
        }
    }
}
