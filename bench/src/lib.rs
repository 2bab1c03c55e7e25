//! Shared pieces of the native baselines: a server with silo's shape (one current-thread
//! tokio runtime per worker thread, each with its own `SO_REUSEPORT` socket on the same
//! address, HTTP/1.1 keep-alive), the few response helpers the baselines need, and the
//! HTTP client of the load drivers (`bench-client`, `events-bench`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;

/// The response body every baseline sends.
pub type Body = Full<Bytes>;

/// Options every baseline server takes.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Worker threads, each with its own runtime and socket (default: one per core, as silo).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Serves forever with one handler per worker thread, built on that thread by
/// `make_handler` (so it may hold things that are not `Send`, such as a SQLite connection).
///
/// Prints `listening on ADDR` on stdout once every socket is bound and every handler built.
pub fn serve<F, H>(args: &ServeArgs, make_handler: F) -> anyhow::Result<()>
where
    F: Fn() -> anyhow::Result<H> + Send + Sync + 'static,
    H: Fn(&Request<Incoming>) -> Response<Body> + 'static,
{
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let first =
        bind_reuseport(args.listen).with_context(|| format!("listening on {}", args.listen))?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(bind_reuseport(addr).with_context(|| format!("listening on {addr}"))?);
    }

    let make_handler = Arc::new(make_handler);
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
    let mut workers = Vec::with_capacity(threads);
    for (i, listener) in listeners.into_iter().enumerate() {
        let make_handler = make_handler.clone();
        let ready = ready_tx.clone();
        let worker = std::thread::Builder::new()
            .name(format!("bench-worker-{i}"))
            .spawn(move || {
                let setup = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building a worker runtime")
                    .and_then(|rt| Ok((rt, make_handler()?)));
                let (rt, handler) = match setup {
                    Ok(ok) => ok,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, accept_loop(listener, Rc::new(handler)));
            })
            .context("spawning a worker thread")?;
        workers.push(worker);
    }
    drop(ready_tx);
    for _ in 0..threads {
        ready_rx
            .recv()
            .context("a worker thread died while starting")??;
    }
    println!("listening on {addr}");
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// Binds `addr` with `SO_REUSEPORT`, so each worker thread can own a socket on it.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn accept_loop<H>(listener: std::net::TcpListener, handler: Rc<H>)
where
    H: Fn(&Request<Incoming>) -> Response<Body> + 'static,
{
    let listener = tokio::net::TcpListener::from_std(listener).expect("registering the listener");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a connection reset before accept: back off a little.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| {
                let response = handler(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid static response"),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// An error in silo's shape: `{"error":{"code":…,"message":…}}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}

/// A plain-text response with a static body.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a valid static response")
}

/// The load drivers' HTTP/1.1 client (keep-alive, pooled connections).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One request may take this long before the driver gives up on it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client with `TCP_NODELAY` on its connections, as the servers have.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends one request (a JSON body if `body` is given) and reads the whole answer; fails if
/// there is none within [`REQUEST_TIMEOUT`].
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Option<String>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    send_with(client, method, url, &[], body).await
}

/// [`send`] with extra request headers (such as `authorization`).
pub async fn send_with(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, &str)],
    body: Option<String>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut request = Request::builder().method(method.clone()).uri(url);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{method} {url}: no answer in {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("{method} {url}"))
}
