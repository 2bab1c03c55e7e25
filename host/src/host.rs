//! The running host: start-up, the listeners, and graceful shutdown.
//!
//! Lifecycle, kept visible: link once ([`Host::new`]: engine, linker, epoch ticker), load and
//! validate per service ([`Host::load_manifest`]: compile, link, open stores, migrate), then
//! serve ([`serve`]) with one single-threaded tokio runtime per core, each accepting on its
//! own `SO_REUSEPORT` socket of the same address, so a request is parsed, dispatched and
//! answered on one thread without cross-core hand-offs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime::error::Context;

use crate::calls::ServiceDirectory;
use crate::manifest::{Manifest, ManifestError, ServiceSpec};
use crate::runtime::dispatch::{RouteTable, dispatch, json_error};
use crate::runtime::engine::{build_engine, build_linker, start_epoch_ticker};
use crate::runtime::migrations::migrate;
use crate::runtime::service::Service;
use crate::runtime::state::RequestState;
use crate::sql::runtime_config::open_grants;

/// How long shutdown waits for in-flight requests before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A start-up failure: a bad manifest or component (the command's fault, exit status 2)
/// or anything else (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("{0:#}")]
    Other(#[from] wasmtime::Error),
}

/// Everything the host shares between its threads.
pub struct Host {
    pub engine: Engine,
    pub linker: Linker<RequestState>,
    pub data_dir: PathBuf,
    routes: ServiceDirectory,
    ready: AtomicBool,
}

impl Host {
    /// Builds the engine and linker. Writes nothing to disk; compiled code goes to
    /// `cache_dir` when given.
    pub fn new(data_dir: &Path, cache_dir: Option<&Path>) -> wasmtime::Result<Self> {
        let engine = build_engine(cache_dir)?;
        let linker = build_linker(&engine)?;
        start_epoch_ticker(&engine);
        Ok(Self {
            engine,
            linker,
            data_dir: data_dir.to_path_buf(),
            routes: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            ready: AtomicBool::new(false),
        })
    }

    /// Compiles and links every service of the manifest, then opens their stores and applies
    /// their migrations.
    pub async fn load_manifest(&self, path: &Path, manifest: &Manifest) -> Result<(), StartError> {
        let compiled = self.compile(path, manifest)?;
        self.open(compiled).await
    }

    /// Compiles and links every service: the check that needs no data folder. A bad
    /// component fails here, naming the service's `component` key, before anything is
    /// written.
    pub fn compile<'m>(
        &self,
        path: &Path,
        manifest: &'m Manifest,
    ) -> Result<Vec<(Service, &'m ServiceSpec)>, ManifestError> {
        let mut compiled = Vec::new();
        for (name, spec) in &manifest.services {
            let bytes = std::fs::read(&spec.component).map_err(|e| ManifestError {
                file: path.to_path_buf(),
                key: format!("services.{name}.component"),
                message: format!("cannot read `{}`: {e}", spec.component.display()),
            })?;
            let grants = crate::sql::StoreGrants::default();
            let service = Service::load(
                &self.engine,
                &self.linker,
                name,
                spec,
                &bytes,
                grants,
                self.routes.clone(),
            )
            .map_err(|e| ManifestError {
                file: path.to_path_buf(),
                key: format!("services.{name}.component"),
                message: format!("{e:#}"),
            })?;
            compiled.push((service, spec));
        }
        Ok(compiled)
    }

    /// Opens the compiled services' stores, applies their migrations, and starts routing to
    /// them.
    pub async fn open(&self, compiled: Vec<(Service, &ServiceSpec)>) -> Result<(), StartError> {
        let mut services = Vec::new();
        for (mut service, spec) in compiled {
            service.grants = open_grants(&self.data_dir, &service.name, spec)?;
            let report = migrate(&service).await?;
            for (store, version) in &report.applied {
                tracing::info!(service = %service.name, store, version, "migration applied");
            }
            tracing::info!(service = %service.name, route = %service.route, digest = %service.digest, "service loaded");
            services.push(Arc::new(service));
        }
        self.routes.store(Arc::new(RouteTable::new(services)));
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
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

/// The bound sockets of a host about to serve.
pub struct Listeners {
    pub http: Vec<std::net::TcpListener>,
    pub admin: std::net::TcpListener,
}

impl Listeners {
    /// Binds `threads` sockets on `listen` (the first picks the port when it is 0) and one
    /// on `admin`.
    pub fn bind(listen: SocketAddr, admin: SocketAddr, threads: usize) -> wasmtime::Result<Self> {
        let first = bind_reuseport(listen).with_context(|| format!("listening on {listen}"))?;
        let actual = first.local_addr()?;
        let mut http = vec![first];
        for _ in 1..threads.max(1) {
            http.push(bind_reuseport(actual).with_context(|| format!("listening on {actual}"))?);
        }
        let admin =
            std::net::TcpListener::bind(admin).with_context(|| format!("admin on {admin}"))?;
        admin.set_nonblocking(true)?;
        Ok(Self { http, admin })
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
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
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
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let host = host.clone();
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| {
                        let host = host.clone();
                        async move {
                            let routes = host.routes();
                            let resp = match routes.route(req.uri().path()) {
                                Some(service) => dispatch(service, req).await,
                                None => json_error(
                                    hyper::StatusCode::NOT_FOUND,
                                    "no_route",
                                    &format!("no service serves `{}`", req.uri().path()),
                                ),
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

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
