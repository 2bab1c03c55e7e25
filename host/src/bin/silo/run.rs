//! `silo run`: checks the manifest, binds the ports, then serves each service as soon as it
//! has compiled and opened, until SIGINT or SIGTERM; the data folder is written only once the
//! first service is ready to open.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use silo::host::{Host, Listeners, ShutdownSignal, StartError, serve_workers};
use silo::manifest::Manifest;

use crate::fail;
use crate::remote::given_admin_token;

/// The shortest admin token `silo run` accepts.
const MIN_ADMIN_TOKEN: usize = 16;

/// The admin token `silo run` serves with, if one was given: refused when it is shorter
/// than [`MIN_ADMIN_TOKEN`] (an empty token would otherwise mean "no authentication").
fn run_admin_token(flag: Option<String>) -> Result<Option<String>, String> {
    match given_admin_token(flag) {
        None => Ok(None),
        Some((t, from)) if t.chars().count() < MIN_ADMIN_TOKEN => Err(format!(
            "{from}: the admin token is {} characters long; give one of at least {MIN_ADMIN_TOKEN} (e.g. `openssl rand -hex 32`), or leave {from} out to use the generated DATA/admin.token",
            t.chars().count()
        )),
        Some((t, _)) => Ok(Some(t)),
    }
}

/// Stores another data folder owns: exit status 2, one line per store naming the manifest
/// and the store's key.
fn owned_elsewhere(manifest: &Path, lines: &[String]) -> ExitCode {
    for line in lines {
        eprintln!("silo: {}: {line}", manifest.display());
    }
    ExitCode::from(2)
}

/// A task started beside the servers once the host serves (`silo dev`'s watcher).
pub(crate) type Companion =
    Box<dyn FnOnce(Arc<Host>) -> futures::future::BoxFuture<'static, ()> + Send>;
/// The environment variable naming the compiled-code cache when `--cache` is not given.
pub(crate) const CODE_CACHE_ENV: &str = "SILO_CODE_CACHE";

pub(crate) fn run(
    manifest_path: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    data: &Path,
    cache: Option<&Path>,
    admin_token: Option<String>,
    threads: Option<usize>,
) -> ExitCode {
    serve(
        manifest_path,
        listen,
        admin,
        data,
        cache,
        admin_token,
        threads,
        None,
    )
}

/// [`run`], with `companion` running on the main runtime once the host serves.
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve(
    manifest_path: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    data: &Path,
    cache: Option<&Path>,
    admin_token: Option<String>,
    threads: Option<usize>,
    companion: Option<Companion>,
) -> ExitCode {
    // Traces: the ring behind /admin/traces always, OTLP/HTTP when the standard variables
    // name a collector.
    let trace_settings = silo::telemetry::Settings::from_env();
    if let Err(e) = silo::telemetry::init(&trace_settings) {
        tracing::warn!("traces: {e}");
    } else if let Some(endpoint) = &trace_settings.otlp_traces_endpoint {
        tracing::info!(endpoint = %endpoint, "exporting traces by OTLP/HTTP");
    }
    // Validate before touching anything: a bad token or manifest changes nothing on disk.
    let admin_token = match run_admin_token(admin_token) {
        Ok(t) => t,
        Err(e) => return fail(2, e),
    };
    let manifest = match Manifest::load(manifest_path) {
        Ok(m) => m,
        Err(e) => return fail(2, e),
    };
    // The ports next, before any store is opened or the data folder written: a port in use
    // (another host's included) is refused with nothing changed.
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let listeners = match Listeners::bind(listen, admin, threads) {
        Ok(l) => l,
        Err(e) => return fail(2, e),
    };
    // Absolute from here on: the code cache refuses relative folders, and the paths end up
    // in logs and the admin API.
    let data = &match std::path::absolute(data) {
        Ok(d) => d,
        Err(e) => return fail(2, format!("{}: {e}", data.display())),
    };
    // `--cache`, else `SILO_CODE_CACHE`: one folder shared by many hosts (the integration
    // tests' harness sets it) compiles each component once, not once per data folder.
    let from_env = std::env::var_os(CODE_CACHE_ENV).filter(|v| !v.is_empty());
    let cache = cache.or(from_env.as_deref().map(Path::new));
    let cache = match cache.map(std::path::absolute).transpose() {
        Ok(c) => c,
        Err(e) => return fail(2, format!("--cache: {e}")),
    };
    let cache = cache.as_deref();
    // The compiled-code cache is used only once it exists, so a start that fails leaves a
    // new data folder unwritten; a successful start creates it for the next one.
    let cache_dir = cache
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data.join("cache"));
    let host = match Host::for_manifest(
        data,
        cache_dir.is_dir().then_some(cache_dir.as_path()),
        manifest_path,
        &manifest,
    ) {
        Ok(h) => Arc::new(h),
        Err(StartError::Manifest(e)) => return fail(2, e),
        Err(StartError::OwnedElsewhere(lines)) => return owned_elsewhere(manifest_path, &lines),
        Err(StartError::Other(e)) => return fail(1, format!("{e:#}")),
    };
    // Every check that needs no compiling, before anything is written.
    let chosen = match host.choose(manifest_path, &manifest) {
        Ok(c) => c,
        Err(e) => return start_failed(manifest_path, e),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the main runtime");
    let mut signals = match rt.block_on(async { ShutdownSignal::install() }) {
        Ok(s) => s,
        Err(e) => return fail(1, format!("installing signal handlers: {e}")),
    };
    // Serving starts now, while the services compile: `/healthz` shows each one's phase,
    // the service port answers 503 `starting` for a service not open yet, and each one
    // serves as soon as it is open. The data folder is created just before the first
    // service opens, so a component refused before then has written nothing.
    let http_addr = listeners.http[0].local_addr().expect("bound address");
    let admin_addr = listeners.admin.local_addr().expect("bound address");
    let admin_token = silo::admin::AdminToken::new(admin_token);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = serve_workers(host.clone(), listeners.http, stopped.clone());
    let mut lock = None;
    let outcome = rt.block_on(async {
        let admin = tokio::spawn(silo::admin::serve_admin(
            host.clone(),
            listeners.admin,
            admin_token.clone(),
            stopped,
        ));
        let started = tokio::select! {
            r = host.start_each(manifest_path, chosen, || {
                lock = Some(claim_data_folder(data, &admin_token)?);
                Ok(())
            }) => Some(r),
            _ = signals.recv() => None,
        };
        let code = match started {
            Some(Ok(())) => {
                let _ = std::fs::create_dir_all(&cache_dir);
                println!("silo: serving http://{http_addr} (admin http://{admin_addr})");
                if let Some(companion) = companion {
                    tokio::spawn(companion(host.clone()));
                }
                signals.recv().await;
                tracing::info!("shutting down: finishing in-flight requests");
                ExitCode::SUCCESS
            }
            Some(Err(e)) => start_failed(manifest_path, e),
            None => {
                tracing::info!("shutting down while starting");
                ExitCode::SUCCESS
            }
        };
        host.begin_shutdown();
        let _ = stop.send(true);
        let _ = admin.await;
        code
    });
    for w in workers {
        let _ = w.join();
    }
    // The exporter's last batch goes out before the process ends.
    silo::telemetry::shutdown();
    // After a refused start, the refusal stays the last line.
    if outcome == ExitCode::SUCCESS {
        tracing::info!("stopped");
    }
    drop(lock);
    outcome
}

/// A refused start: exit status 2 for the manifest's or a component's fault (one line
/// naming the file and key), 1 for anything else.
fn start_failed(manifest: &Path, e: StartError) -> ExitCode {
    match e {
        StartError::Manifest(e) => fail(2, e),
        StartError::OwnedElsewhere(lines) => owned_elsewhere(manifest, &lines),
        StartError::Other(e) => fail(1, format!("{e:#}")),
    }
}

/// Creates the data folder, takes its lock (one host per folder) and settles the admin
/// token (the given one, else `DATA/admin.token`, created if missing): the first writes of
/// a start, made just before the first service opens. The lock is held while the returned
/// file lives.
fn claim_data_folder(
    data: &Path,
    token: &silo::admin::AdminToken,
) -> Result<std::fs::File, StartError> {
    let other = |m: String| StartError::Other(wasmtime::format_err!("{m}"));
    std::fs::create_dir_all(data).map_err(|e| other(format!("{}: {e}", data.display())))?;
    let lock = std::fs::File::create(data.join("silo.lock"))
        .map_err(|e| other(format!("{}: {e}", data.display())))?;
    if lock.try_lock().is_err() {
        return Err(other(format!(
            "another silo is serving the data folder {}",
            data.display()
        )));
    }
    if token.get().is_none() {
        let t = silo::admin::load_or_create_token(data)
            .map_err(|e| other(format!("admin token: {e}")))?;
        token.set(t);
    }
    Ok(lock)
}
