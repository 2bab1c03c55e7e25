//! The admin API's client: what the CLI commands use to talk to a running host.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// A tiny client for the CLI commands that talk to a running host's admin endpoint.
pub async fn admin_get(addr: &str, token: &str, path: &str) -> wasmtime::Result<(u16, String)> {
    admin_request(addr, token, Method::GET, path, Bytes::new()).await
}

/// Sends one admin request; returns the status and the body.
pub async fn admin_request(
    addr: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Bytes,
) -> wasmtime::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| wasmtime::format_err!("cannot reach the admin endpoint at {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
