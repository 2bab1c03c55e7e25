//! Shared pieces of the native baselines: a server with silo's shape (one current-thread
//! tokio runtime per worker thread, each with its own `SO_REUSEPORT` socket on the same
//! address, HTTP/1.1 keep-alive), the few response helpers the baselines need, the HTTP
//! client of the load drivers (`bench-client`, `events-bench`, `saga-bench`), and what
//! the drivers that run the real host share: starting and stopping `silo run`, its CPU by
//! thread, percentiles, SQLite files with the host's pragmas, and the `main` around it all.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
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

/// `GET url` with an optional bearer token; the answer as JSON, failing unless 200.
pub async fn get_json(
    client: &HttpClient,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(header::HeaderName, &str)> = auth
        .as_deref()
        .map(|a| (header::AUTHORIZATION, a))
        .into_iter()
        .collect();
    let (status, body) = send_with(client, Method::GET, url, &headers, None).await?;
    ensure!(
        status == StatusCode::OK,
        "GET {url} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))
}

// ---------------------------------------------------------------- the drivers' main

/// Runs `run` on a current-thread runtime, stopped early by SIGINT or SIGTERM; prints its
/// Markdown on stdout, or `PROG: FAILED: why` on stderr and exits 1. Whatever `run` started
/// is dropped (hosts stopped) before this returns.
pub fn driver_main<F>(prog: &str, run: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<String>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{prog}: FAILED: building the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run => r,
            s = interrupted() => Err(anyhow!("interrupted by {s}")),
        }
    });
    // Dropping the runtime ends the spawned tasks; the hosts were stopped with `run`.
    drop(rt);
    match result {
        Ok(markdown) => {
            print!("{markdown}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{prog}: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT, with its name.
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// A temporary folder, removed when dropped (after the hosts in it stopped).
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    /// `TMP/PREFIX.PID.MS`, created.
    pub fn create(prefix: &str) -> anyhow::Result<WorkDir> {
        let dir =
            std::env::temp_dir().join(format!("{prefix}.{}.{}", std::process::id(), now_ms()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- the real host

/// How to start one `silo run`.
#[derive(Debug, Clone, Copy)]
pub struct HostStart<'a> {
    /// The driver's name, for its messages (`events-bench`).
    pub prog: &'a str,
    /// The host's name in messages.
    pub name: &'a str,
    /// The silo binary.
    pub silo: &'a Path,
    pub manifest: &'a Path,
    /// A fresh data folder.
    pub data: &'a Path,
    /// The code cache, shared by the hosts of a run (only the first compiles).
    pub cache: &'a Path,
    /// Where its stdout and stderr go.
    pub log: &'a Path,
    pub token: &'a str,
    /// Give up if it does not serve within this long.
    pub timeout: Duration,
}

/// A running `silo run` on 127.0.0.1 with ports the kernel picked, `SILO_LOG=warn`;
/// stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
pub struct SiloHost {
    pub child: Child,
    pub name: String,
    /// `http://ADDR` of the services and of the admin endpoint.
    pub base: String,
    pub admin: String,
    pub log: PathBuf,
    prog: String,
}

impl SiloHost {
    /// Starts the host and waits until it prints `silo: serving http://A (admin http://B)`.
    pub async fn start(o: &HostStart<'_>) -> anyhow::Result<SiloHost> {
        let stderr =
            File::create(o.log).with_context(|| format!("creating {}", o.log.display()))?;
        let mut stdout_log = OpenOptions::new().append(true).open(o.log)?;
        let mut child = Command::new(o.silo)
            .arg("run")
            .arg("--manifest")
            .arg(o.manifest)
            .arg("--data")
            .arg(o.data)
            .arg("--cache")
            .arg(o.cache)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env("SILO_ADMIN_TOKEN", o.token)
            .env("SILO_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", o.silo.display()))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = writeln!(stdout_log, "{line}");
                    if line.starts_with("silo: serving") {
                        let _ = tx.send(line);
                    }
                }
            });
        }
        let mut host = SiloHost {
            child,
            name: o.name.to_string(),
            base: String::new(),
            admin: String::new(),
            log: o.log.to_path_buf(),
            prog: o.prog.to_string(),
        };
        let deadline = Instant::now() + o.timeout;
        let line = loop {
            if let Ok(Some(status)) = host.child.try_wait() {
                bail!(
                    "{}",
                    host.died(&format!("exited ({status}) before serving"))
                );
            }
            ensure!(
                Instant::now() < deadline,
                "{}",
                host.died(&format!("did not serve within {:?}", o.timeout))
            );
            if let Ok(Some(line)) =
                tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
            {
                break line;
            }
        };
        // `silo: serving http://A (admin http://B)`
        let mut addrs = line.split("http://").skip(1).map(|s| {
            s.trim_end()
                .trim_end_matches(')')
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        });
        let (Some(base), Some(admin)) = (addrs.next(), addrs.next()) else {
            bail!("host {}: unexpected first line `{line}`", o.name);
        };
        host.base = format!("http://{base}");
        host.admin = format!("http://{admin}");
        Ok(host)
    }

    /// A failure message with the end of the host's log.
    pub fn died(&self, what: &str) -> String {
        let tail = std::fs::read_to_string(&self.log)
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            })
            .unwrap_or_default();
        format!(
            "host {} {what} (log: {}){}{tail}",
            self.name,
            self.log.display(),
            if tail.is_empty() { "" } else { "\n" }
        )
    }

    /// Fails if the host exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{}", self.died(&format!("exited ({status})")));
        }
        Ok(())
    }

    /// CPU seconds the host used so far (user + system).
    pub fn cpu_seconds(&self) -> f64 {
        stat_cpu_seconds(Path::new(&format!("/proc/{}/stat", self.child.id())))
    }

    /// CPU seconds the host's threads used so far, by thread name.
    pub fn thread_cpu(&self) -> BTreeMap<String, f64> {
        thread_cpu_seconds(self.child.id())
    }
}

impl Drop for SiloHost {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() {
                    eprintln!(
                        "{}: {}: host exited with {status} after SIGTERM",
                        self.prog, self.name
                    );
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "{}: {}: host did not stop within 10 s of SIGTERM: killing it",
            self.prog, self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- CPU

/// User + system CPU seconds in a `/proc/…/stat` file (clock ticks of 1/100 s).
pub fn stat_cpu_seconds(path: &Path) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// CPU seconds of process `pid`'s threads so far, by thread name with any trailing number
/// dropped (`silo-worker-0` and `silo-worker-1` count as `silo-worker`).
pub fn thread_cpu_seconds(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches(['-', '_', ' '])
            .to_string();
        *out.entry(name).or_insert(0.0) += stat_cpu_seconds(&dir.join("stat"));
    }
    out
}

/// `after - before` per thread group, largest first (groups under 5 ms left out).
pub fn cpu_split(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = after
        .iter()
        .map(|(k, a)| (k.clone(), a - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d >= 0.005)
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// `name 1.23 s, other 0.45 s`.
pub fn cpu_split_text(split: &[(String, f64)]) -> String {
    split
        .iter()
        .map(|(k, d)| format!("{k} {d:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU seconds the whole machine spent busy so far, all cores together (`/proc/stat`:
/// user, nice, system, irq, softirq, steal; clock ticks of 1/100 s).
pub fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) as f64 / 100.0
}

/// CPU seconds this process used so far.
pub fn own_cpu_seconds() -> f64 {
    stat_cpu_seconds(Path::new("/proc/self/stat"))
}

/// The cores of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

// ---------------------------------------------------------------- small things

/// p50 and p99 of `v` (sorted in place), in ms; zeros when `v` is empty.
pub fn percentiles_ms(v: &mut [Duration]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_unstable();
    let at = |q: f64| percentile_index(v.len(), q);
    (
        v[at(0.50)].as_secs_f64() * 1000.0,
        v[at(0.99)].as_secs_f64() * 1000.0,
    )
}

/// The index of the `q` quantile (nearest rank) in a sorted slice of `len` items.
pub fn percentile_index(len: usize, q: f64) -> usize {
    ((len as f64 * q).ceil() as usize).clamp(1, len.max(1)) - 1
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `bytes` pseudo-random bytes in hex (splitmix64; ids and the admin token of a throwaway
/// host, nothing that needs a cryptographic generator).
pub fn random_hex(bytes: usize) -> String {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let _ = STATE.compare_exchange(
        0,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        let mut z = STATE
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let _ = write!(out, "{z:016x}");
    }
    out.truncate(bytes * 2);
    out
}

/// A SQLite file with the host's pragmas (host/src/sql/sqlite.rs: WAL,
/// `synchronous=NORMAL`), a 64-statement cache, and `schema` run on it.
pub fn open_sqlite(path: &Path, schema: &str) -> anyhow::Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "{}: journal_mode is {mode}",
        path.display()
    );
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(schema)?;
    Ok(conn)
}
