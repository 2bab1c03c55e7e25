//! The contract's JSON error for the requests hyper refuses by itself.
//!
//! A request whose head hyper cannot parse (a method that is not a token, a header without
//! a colon, headers too large or too many, a target too long, an unknown version) never
//! reaches the host's code: hyper answers it with a bodiless `400`, `431` or `414` and closes
//! the connection, and has no hook to shape that answer. [`JsonRefusals`] wraps a
//! connection's socket and rewrites exactly that answer into the contract's
//! `{"error":{"code","message"}}` body.
//!
//! How it knows the answer is hyper's own and not a service's: the server counts the
//! requests it hands to its service function ([`JsonRefusals::requests`]), and the wrapper
//! counts the response heads written. A head written when every request handed over
//! already has its head is not an answer to any of them: it is hyper's refusal. Anything
//! it is not sure of (a head that does not start a write, a head with a body or other
//! headers) goes out unchanged.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's socket whose hyper refusals carry the contract's JSON error.
pub struct JsonRefusals<T> {
    inner: T,
    requests: Arc<AtomicU64>,
    /// Response heads written so far.
    heads: u64,
    /// A rewritten refusal being written: its bytes, how many are out, and how many bytes
    /// of hyper's own write it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonRefusals<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            requests: Arc::default(),
            heads: 0,
            pending: None,
        }
    }

    /// The counter the server's service function increments for each request it gets.
    pub fn requests(&self) -> Arc<AtomicU64> {
        self.requests.clone()
    }
}

/// The JSON answer standing for hyper's bodiless refusal `head`, if it is one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_suffix("\r\n\r\n")?;
    let mut lines = rest.split("\r\n");
    let (code, message) = match lines.next()? {
        "HTTP/1.1 400 Bad Request" => (
            "bad_request",
            "the request is not valid HTTP/1.1: its method, target, version or a header is malformed",
        ),
        "HTTP/1.1 414 URI Too Long" => (
            "uri_too_long",
            "the request target is too long: send a shorter path and query",
        ),
        "HTTP/1.1 431 Request Header Fields Too Large" => (
            "headers_too_large",
            "the request's headers are too large or too many: send fewer and smaller ones",
        ),
        _ => return None,
    };
    let mut date = None;
    for line in lines {
        match line.split_once(": ") {
            Some((name, "0")) if name.eq_ignore_ascii_case("content-length") => {}
            Some((name, "close")) if name.eq_ignore_ascii_case("connection") => {}
            Some((name, value)) if name.eq_ignore_ascii_case("date") => date = Some(value),
            _ => return None,
        }
    }
    let status = text.split("\r\n").next()?;
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut out = format!(
        "{status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date {
        out.push_str(&format!("date: {date}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<T: AsyncWrite + Unpin> JsonRefusals<T> {
    /// Writes `bufs` (one write of hyper's), rewriting it first if it is a refusal.
    fn write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.pending.is_none() {
            let first = bufs.iter().find(|b| !b.is_empty());
            // A final response's head (an interim `100 Continue` answers no request).
            let starts_head =
                first.is_some_and(|b| b.starts_with(b"HTTP/1.") && b.get(9) != Some(&b'1'));
            if starts_head {
                let answered_all = self.heads >= self.requests.load(Ordering::Acquire);
                self.heads += 1;
                let only = bufs.iter().filter(|b| !b.is_empty()).count() == 1;
                if answered_all
                    && only
                    && let Some(first) = first
                    && let Some(json) = rewrite(first)
                {
                    self.pending = Some((json, 0, first.len()));
                }
            }
        }
        if let Some((bytes, written, stands_for)) = &mut self.pending {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
            let n = *stands_for;
            self.pending = None;
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_refusals_become_json() {
        // As hyper 1 writes it.
        let out = rewrite(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 19:00:00 GMT\r\n\r\n",
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\ncontent-type: application/json\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        assert_eq!(head.matches("connection: close").count(), 1, "{head}");
        assert!(head.ends_with("\r\ndate: Tue, 01 Dec 2026 19:00:00 GMT"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "headers_too_large");
    }

    #[test]
    fn anything_else_is_left_alone() {
        for head in [
            // A body follows, or a header hyper does not add: a service's answer.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        ] {
            assert!(rewrite(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }
}
