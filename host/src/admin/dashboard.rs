//! The dashboard: one page for a browser at `GET /` on the admin address, and its script and
//! style under `/dashboard/`, embedded in the binary (plain HTML, JS and CSS; no build step).
//!
//! The page itself needs no token: it holds no data. Every figure it shows comes from the
//! token-protected `/admin/` API and `/metrics`, fetched by its script with
//! `Authorization: Bearer` from the token the user gives (the `#token=` fragment or a form),
//! kept in the tab's `sessionStorage` and never put in a URL. The answers forbid inline
//! script and any connection elsewhere (`Content-Security-Policy`), and are never cached.

use bytes::Bytes;
use hyper::{Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::runtime::dispatch::{full, json_error};

const INDEX: &str = include_str!("dashboard/index.html");
const DOM: &str = include_str!("dashboard/dom.js");
const METRICS: &str = include_str!("dashboard/metrics.js");
const MAP: &str = include_str!("dashboard/map.js");
const VIEWS: &str = include_str!("dashboard/views.js");
const APP: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

const JS: &str = "text/javascript; charset=utf-8";

/// Scripts and styles from this address only, no inline script, data from this address only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The file at `path` (`/` or `/dashboard/NAME`), or a 404.
pub(super) fn serve(path: &str) -> Response<HyperOutgoingBody> {
    let (body, content_type) = match path {
        "/" | "/dashboard/" | "/dashboard/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/dashboard/dom.js" => (DOM, JS),
        "/dashboard/metrics.js" => (METRICS, JS),
        "/dashboard/map.js" => (MAP, JS),
        "/dashboard/views.js" => (VIEWS, JS),
        "/dashboard/app.js" => (APP, JS),
        "/dashboard/style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => {
            return json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!(
                    "no dashboard file `{}`",
                    crate::manifest::one_line(path, 80)
                ),
            );
        }
    };
    let mut resp = Response::new(full(Bytes::from_static(body.as_bytes())));
    let headers = resp.headers_mut();
    for (name, value) in [
        (http::header::CONTENT_TYPE, content_type),
        (http::header::CACHE_CONTROL, "no-cache"),
        (http::header::CONTENT_SECURITY_POLICY, CSP),
        (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (http::header::REFERRER_POLICY, "no-referrer"),
        (http::header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_and_assets_carry_their_type_and_the_policy() {
        for (path, ty) in [
            ("/", "text/html; charset=utf-8"),
            ("/dashboard/app.js", "text/javascript; charset=utf-8"),
            ("/dashboard/style.css", "text/css; charset=utf-8"),
        ] {
            let r = serve(path);
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let h = r.headers();
            assert_eq!(h[http::header::CONTENT_TYPE], ty, "{path}");
            assert_eq!(h[http::header::CACHE_CONTROL], "no-cache");
            assert_eq!(h[http::header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let csp = h[http::header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("connect-src 'self';"), "{csp}");
            assert!(!csp.contains("unsafe-inline"), "{csp}");
        }
        assert_eq!(serve("/dashboard/secret").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_has_no_inline_script_and_no_inner_html() {
        for script in ["dom", "metrics", "map", "views", "app"] {
            let tag = format!("<script src=\"/dashboard/{script}.js\" defer></script>");
            assert!(INDEX.contains(&tag), "{tag}");
            assert_eq!(
                serve(&format!("/dashboard/{script}.js")).status(),
                StatusCode::OK
            );
        }
        assert!(
            !INDEX.contains("<script>"),
            "inline script would be refused"
        );
        for js in [DOM, METRICS, MAP, VIEWS, APP] {
            assert!(
                !js.contains("innerHTML"),
                "server strings go in as text only"
            );
            assert!(!js.contains("eval("));
        }
    }
}
