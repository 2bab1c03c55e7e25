//! The service listeners: binding the sockets, one worker thread and runtime per socket,
//! and hyper's connection settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use super::Host;
use super::shutdown::SHUTDOWN_GRACE;
use crate::runtime::dispatch::{dispatch, json_error};
use crate::runtime::refusals::JsonRefusals;

/// How long an outside client has for its request line and headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The bound sockets of a host about to serve.
pub struct Listeners {
    pub http: Vec<std::net::TcpListener>,
    pub admin: std::net::TcpListener,
}

/// An address the host cannot listen on: the flag that gave it, the address, the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {addr}: cannot listen: {source}")]
pub struct BindError {
    pub flag: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

impl Listeners {
    /// Binds `threads` sockets on `listen` (port 0 picks one) and one on `admin`; `silo run`
    /// calls it before anything else is opened, so a taken port changes nothing.
    ///
    /// The service address is first bound exclusively (without `SO_REUSEPORT`): the host's
    /// own workers share their port with `SO_REUSEPORT`, and so would another process's
    /// (another `silo`), which the kernel would then let this host join and split traffic
    /// with. The exclusive bind fails on any socket already there. It is released just before
    /// the workers' sockets are bound on the same port.
    pub fn bind(listen: SocketAddr, admin: SocketAddr, threads: usize) -> Result<Self, BindError> {
        let err = |flag, addr| move |source| BindError { flag, addr, source };
        let exclusive = std::net::TcpListener::bind(listen).map_err(err("--listen", listen))?;
        let admin_listener = std::net::TcpListener::bind(admin).map_err(err("--admin", admin))?;
        admin_listener
            .set_nonblocking(true)
            .map_err(err("--admin", admin))?;
        let actual = exclusive.local_addr().map_err(err("--listen", listen))?;
        drop(exclusive);
        let http = (0..threads.max(1))
            .map(|_| bind_reuseport(actual).map_err(err("--listen", actual)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            http,
            admin: admin_listener,
        })
    }
}

/// Serves until `shutdown` turns true, then drains: no new connections, in-flight requests
/// finish (up to [`SHUTDOWN_GRACE`]), idle keep-alive connections close.
pub fn serve_workers(
    host: Arc<Host>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> Vec<std::thread::JoinHandle<()>> {
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let host = host.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("silo-worker-{i}"))
                .spawn(move || {
                    // The I/O driver is polled every other task poll: a guest that
                    // computes yields every epoch tick, and the requests waiting on
                    // sockets must get their turn at each yield, not every 61st.
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .event_interval(2)
                        .build()
                        .expect("building a worker runtime");
                    rt.block_on(accept_loop(host, listener, shutdown));
                })
                .expect("spawning a worker thread")
        })
        .collect()
}

async fn accept_loop(
    host: Arc<Host>,
    listener: std::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("registering the listener");
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    // A client has this long to send its request line and headers; its body then has
    // `dispatch::OUTSIDE_BODY_TIMEOUT`. A connection that trickles bytes holds nothing.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let host = host.clone();
                let stream = JsonRefusals::new(stream);
                let requests = stream.requests();
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| {
                        let host = host.clone();
                        requests.fetch_add(1, Ordering::AcqRel);
                        async move {
                            let routes = host.routes();
                            let resp = match routes.route(req.uri().path()) {
                                Some(service) => dispatch(service, req).await,
                                None => {
                                    let path = req.uri().path();
                                    let starting = host.starting(path);
                                    let status = if starting.is_some() { 503u16 } else { 404 };
                                    // Still one request line, with no service: a path that
                                    // reaches nobody shows in the log like any other.
                                    let trace_id = req
                                        .headers()
                                        .get("traceparent")
                                        .and_then(|v| v.to_str().ok())
                                        .and_then(crate::telemetry::TraceContext::parse)
                                        .map(|c| c.trace_id_hex())
                                        .unwrap_or_default();
                                    tracing::info!(
                                        target: "silo::request",
                                        method = %req.method(),
                                        path = %req.uri().path(),
                                        service = "",
                                        status,
                                        duration_ms = 0.0,
                                        trace_id = %trace_id,
                                        "request"
                                    );
                                    match starting {
                                        Some((name, phase)) => starting_response(&name, phase),
                                        None => json_error(
                                            hyper::StatusCode::NOT_FOUND,
                                            "no_route",
                                            &format!("no service serves `{path}`"),
                                        ),
                                    }
                                }
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    }),
                );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// The answer for a path whose service has not started yet: 503 `starting`, naming the
/// service and what it is doing, with `Retry-After`.
fn starting_response(
    name: &str,
    phase: super::Phase,
) -> hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody> {
    let mut resp = json_error(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        "starting",
        &format!(
            "service `{name}` is still starting ({}): retry shortly",
            phase.as_str()
        ),
    );
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    resp
}
