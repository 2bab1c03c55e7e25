//! `Router`: maps a method and a path pattern such as `/users/{id}` to a handler.
//!
//! Routes are tried in the order they were added; the first whose pattern matches the
//! path and whose method matches the request wins. A path some route matches with
//! another method is a 405 (with an `allow` header); a path no route matches is a 404.
//! A single trailing slash is ignored (`/users/` is `/users`).

use crate::request::{Method, Request, percent_decode};
use crate::{ApiError, Response};

/// What a route calls: a plain `fn` or a closure.
pub type Handler = Box<dyn Fn(Request) -> Result<Response, ApiError>>;

struct Route {
    method: Method,
    pattern: Vec<Segment>,
    handler: Handler,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A table of routes, built once per request by [`crate::Service::router`].
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// An empty router: every request is a 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `GET` route.
    pub fn get(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response, ApiError> + 'static,
    ) -> Self {
        self.route(Method::Get, pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response, ApiError> + 'static,
    ) -> Self {
        self.route(Method::Post, pattern, handler)
    }

    /// Adds a `PUT` route.
    pub fn put(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response, ApiError> + 'static,
    ) -> Self {
        self.route(Method::Put, pattern, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response, ApiError> + 'static,
    ) -> Self {
        self.route(Method::Patch, pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response, ApiError> + 'static,
    ) -> Self {
        self.route(Method::Delete, pattern, handler)
    }

    /// Adds a route for any method. `pattern` is a path whose segments are literals or
    /// `{name}` captures, e.g. `/orders/{id}/details`.
    pub fn route(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response, ApiError> + 'static,
    ) -> Self {
        let pattern = segments(pattern)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_string()),
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        self.routes.push(Route {
            method,
            pattern,
            handler: Box::new(handler),
        });
        self
    }

    /// Calls the handler for `req`, or answers 404 / 405. Errors become their JSON
    /// response here, so this never fails.
    pub fn handle(&self, mut req: Request) -> Response {
        let path: Vec<&str> = segments(req.path()).collect();
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            let Some(params) = match_pattern(&route.pattern, &path) else {
                continue;
            };
            if route.method != *req.method() {
                allowed.push(route.method.as_str());
                continue;
            }
            req.set_params(params);
            return (route.handler)(req).unwrap_or_else(ApiError::into_response);
        }
        if allowed.is_empty() {
            return ApiError::not_found(format!(
                "no route for {} {}",
                req.method().as_str(),
                req.path()
            ))
            .into_response();
        }
        allowed.dedup();
        ApiError::method_not_allowed(format!(
            "{} is not allowed on {}; allowed: {}",
            req.method().as_str(),
            req.path(),
            allowed.join(", ")
        ))
        .into_response()
        .with_header("allow", allowed.join(", "))
    }
}

/// The non-empty segments of a path: `/users/u1/` gives `users`, `u1`.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The decoded captures if `path` matches `pattern`.
fn match_pattern(pattern: &[Segment], path: &[&str]) -> Option<Vec<(String, String)>> {
    if pattern.len() != path.len() {
        return None;
    }
    let mut params = Vec::new();
    for (seg, actual) in pattern.iter().zip(path) {
        match seg {
            Segment::Literal(lit) if lit == actual => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => params.push((name.clone(), percent_decode(actual))),
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new()
            .get("/users", |_| Ok(Response::text(200, "list")))
            .post("/users", |_| Ok(Response::text(201, "create")))
            .get("/users/{id}", |req| {
                Ok(Response::text(200, format!("get {}", req.param("id")?)))
            })
            .get("/orders/{id}/details", |req| {
                Ok(Response::text(200, format!("details {}", req.param("id")?)))
            })
            .get("/bad/{id}", |req| {
                Ok(Response::text(200, req.param("nope")?))
            })
    }

    fn call(method: Method, path: &str) -> (u16, String) {
        let resp = router().handle(Request::new(method, path));
        (
            resp.status(),
            String::from_utf8(resp.body().to_vec()).unwrap(),
        )
    }

    #[test]
    fn matches_literals_and_params() {
        assert_eq!(call(Method::Get, "/users"), (200, "list".into()));
        assert_eq!(call(Method::Get, "/users/"), (200, "list".into()));
        assert_eq!(call(Method::Post, "/users"), (201, "create".into()));
        assert_eq!(
            call(Method::Get, "/users/u%201?x=1"),
            (200, "get u 1".into())
        );
        assert_eq!(
            call(Method::Get, "/orders/o1/details"),
            (200, "details o1".into())
        );
    }

    #[test]
    fn unknown_path_is_404_json() {
        let (status, body) = call(Method::Get, "/nope");
        assert_eq!(status, 404);
        assert!(
            body.starts_with(r#"{"error":{"code":"not_found","#),
            "{body}"
        );
        assert_eq!(call(Method::Get, "/users/u1/extra").0, 404);
    }

    #[test]
    fn known_path_other_method_is_405_with_allow() {
        let resp = router().handle(Request::new(Method::Delete, "/users"));
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.header("allow"), Some("GET, POST"));
        let body = String::from_utf8(resp.body().to_vec()).unwrap();
        assert!(body.contains(r#""code":"method_not_allowed""#), "{body}");
    }

    #[test]
    fn undeclared_param_is_500() {
        assert_eq!(call(Method::Get, "/bad/1").0, 500);
    }
}
