//! The harness: a real `silo` process on loopback, real components, real HTTP.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A built component, by crate name. Fails loudly if `make components` has not run.
pub fn component(name: &str) -> PathBuf {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let path = repo_root()
        .join("components/target/wasm32-wasip2/release")
        .join(file);
    assert!(
        path.is_file(),
        "component `{name}` is not built at {}: run `make components` (make test does)",
        path.display()
    );
    path
}

/// Compiled code shared by every host this test binary starts (as `SILO_CODE_CACHE`), so
/// each component is compiled once per test run rather than once per test: the Python and
/// JavaScript services (13–19 MB) take tens of seconds each to compile cold.
pub fn shared_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = repo_root().join("target/test-code-cache");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

pub fn silo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_silo")
}

/// A running host.
pub struct TestHost {
    child: Option<Child>,
    pub http: String,
    pub admin: String,
    pub token: String,
    pub dir: tempfile::TempDir,
    pub manifest: PathBuf,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The contract's error code, asserting the error body's shape.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {} {v}", self.status));
        assert!(
            v["error"]["message"].is_string(),
            "error without message: {v}"
        );
        code.to_string()
    }
}

/// Writes `manifest` (with `{c:NAME}` replaced by the path of component NAME) into a fresh
/// folder and returns (folder, manifest path).
pub fn write_manifest(manifest: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silo.toml");
    std::fs::write(&path, resolve(manifest)).unwrap();
    (dir, path)
}

/// Replaces each `{c:NAME}` with the path of component NAME.
pub fn resolve(manifest: &str) -> String {
    let mut text = manifest.to_string();
    while let Some(start) = text.find("{c:") {
        let end = start + text[start..].find('}').unwrap();
        let name = &text[start + 3..end];
        let path = component(name).display().to_string();
        text.replace_range(start..=end, &path);
    }
    text
}

impl TestHost {
    /// Starts a host serving `manifest` (see [`write_manifest`]).
    pub async fn start(manifest: &str) -> TestHost {
        let (dir, path) = write_manifest(manifest);
        Self::start_in(dir, path).await
    }

    /// Starts a host on an existing folder (for restarts).
    pub async fn start_in(dir: tempfile::TempDir, manifest: PathBuf) -> TestHost {
        Self::start_with(dir, manifest, &[]).await
    }

    /// Starts a host on an existing folder with extra environment (`SILO_FAILPOINTS`).
    pub async fn start_with(
        dir: tempfile::TempDir,
        manifest: PathBuf,
        env: &[(&str, &str)],
    ) -> TestHost {
        Self::start_logging(dir, manifest, env, None).await
    }

    /// [`TestHost::start_with`], with the host's log (its stderr) written to `log` instead
    /// of the test's stderr, so a test can measure it.
    pub async fn start_logging(
        dir: tempfile::TempDir,
        manifest: PathBuf,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> TestHost {
        let data = dir.path().join("data");
        // The Python and JavaScript services take tens of seconds to compile cold: the first
        // host that loads them compiles them into the shared cache while the others that load
        // them wait, instead of every such test compiling them at once on a 2-core machine.
        static BIG_COMPILED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
        let big = std::fs::read_to_string(&manifest)
            .is_ok_and(|m| m.contains("recommendations.wasm") || m.contains("notifications.wasm"));
        let mut first_big = None;
        if big {
            let compiled = BIG_COMPILED.lock().unwrap_or_else(|p| p.into_inner());
            if !*compiled {
                first_big = Some(compiled);
            }
        }
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("the host's log file")),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(silo_bin())
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--threads",
                "2",
            ])
            .arg("--manifest")
            .arg(&manifest)
            .arg("--data")
            .arg(&data)
            // Through the environment, as a developer's shell would set it: `silo run` takes
            // `SILO_CODE_CACHE` when `--cache` is not given.
            .env("SILO_CODE_CACHE", shared_cache())
            .env("SILO_ADMIN_TOKEN", "test-token-0123456789abcdef0123456789")
            .env("SILO_LOG", "info,wasmtime=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting silo");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| panic!("silo did not start: {:?}", child.try_wait()));
        if let Some(mut compiled) = first_big {
            *compiled = true;
        }
        // "silo: serving http://A (admin http://B)"
        let http = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("serving line")
            .to_string();
        let admin = line
            .split("http://")
            .nth(2)
            .map(|s| s.trim_end_matches(')').to_string())
            .expect("admin address");
        TestHost {
            child: Some(child),
            http,
            admin,
            token: "test-token-0123456789abcdef0123456789".into(),
            dir,
            manifest,
        }
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("a running host")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn get(&self, path: &str) -> Resp {
        request("GET", &self.http, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        request("POST", &self.http, path, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, body: &str) -> Resp {
        request("PUT", &self.http, path, Some(body), &[]).await
    }

    pub async fn admin_get(&self, path: &str, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        request("GET", &self.admin, path, None, &headers).await
    }

    /// SIGKILL: no shutdown of any kind runs. Returns the folder for a restart.
    pub fn kill(mut self) -> (tempfile::TempDir, PathBuf) {
        let mut child = self.child.take().unwrap();
        signal(&child, "KILL");
        wait_timeout(&mut child, Duration::from_secs(30));
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.manifest.clone())
    }

    /// Waits for the host to die on its own (a failpoint killed it); returns its status and
    /// the folder for a restart.
    pub fn wait_death(mut self, limit: Duration) -> (ExitStatus, tempfile::TempDir, PathBuf) {
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, limit);
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, dir, self.manifest.clone())
    }

    /// `/admin/events`, as JSON, with the test token.
    pub async fn subscriptions(&self) -> Vec<serde_json::Value> {
        let r = self
            .admin_get("/admin/events", Some(&self.token.clone()))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["subscriptions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until every subscription has nothing pending (or panics after `limit`).
    pub async fn wait_drained(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let subs = self.subscriptions().await;
            if subs.iter().all(|s| s["pending"] == 0) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "events still pending after {limit:?}: {subs:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) -> (ExitStatus, tempfile::TempDir, PathBuf) {
        let mut child = self.child.take().unwrap();
        signal(&child, "TERM");
        let status = wait_timeout(&mut child, Duration::from_secs(60));
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, dir, self.manifest.clone())
    }
}

pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("silo did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends one request to `addr` (host:port); a body is sent as JSON.
pub async fn request(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut all = headers.to_vec();
    if body.is_some() {
        all.push(("content-type", "application/json"));
    }
    let body = body.unwrap_or("").as_bytes().to_vec();
    request_bytes(method, addr, path, body, &all).await
}

/// Sends one request with a raw body.
pub async fn request_bytes(
    method: &str,
    addr: &str,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Resp {
    try_request_bytes(method, addr, path, body, headers)
        .await
        .expect("request failed")
}

/// [`request`], where the host may die before it answers: `None` then.
pub async fn try_request(method: &str, addr: &str, path: &str, body: Option<&str>) -> Option<Resp> {
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("content-type", "application/json")]
    } else {
        &[]
    };
    let body = body.unwrap_or("").as_bytes().to_vec();
    try_request_bytes(method, addr, path, body, headers)
        .await
        .ok()
}

async fn try_request_bytes(
    method: &str,
    addr: &str,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    static CLIENT: OnceLock<
        Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    > = OnceLock::new();
    let client = CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http());
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(120), client.request(req))
        .await
        .map_err(|_| "request timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Resp { status, body })
}

/// Runs `silo run` on `manifest` and expects exit status 2 with one line on stderr naming
/// the file, `key` and every one of `needles`, and no data folder written.
pub fn expect_refused_start(manifest: &str, key: &str, needles: &[&str]) {
    let (_dir, data, code, err) = run_refused(manifest);
    assert_eq!(code, 2, "manifest {manifest:?}: stderr {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains("silo.toml"), "file not named: {err}");
    assert!(err.contains(key), "key `{key}` not named: {err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    assert!(
        !data.exists(),
        "a refused manifest or component must not touch the data folder"
    );
}

/// Runs `silo run` on `manifest`, whose component for service `refused` is refused only
/// once it has compiled (its exports or migrations do not fit): other services may have
/// been opened by then (each serves as soon as it is ready), so the refusal is the last
/// line, not the only one, and the data folder holds nothing of the refused service —
/// no store, no recorded version.
pub fn expect_refused_after_start(manifest: &str, refused: &str, key: &str, needles: &[&str]) {
    let (_dir, data, code, err) = run_refused(manifest);
    assert_eq!(code, 2, "manifest {manifest:?}: stderr {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("silo: "),
        "the refusal is the last line: {err}"
    );
    assert!(last.contains("silo.toml"), "file not named: {err}");
    assert!(last.contains(key), "key `{key}` not named: {err}");
    for needle in needles {
        assert!(last.contains(needle), "`{needle}` not in: {err}");
    }
    for written in [
        data.join("stores").join(refused),
        data.join("kv").join(refused),
        data.join("deployments").join(format!("{refused}.json")),
    ] {
        assert!(
            !written.exists(),
            "the refused service `{refused}` wrote {}",
            written.display()
        );
    }
}

/// Runs `silo run` on `manifest` (free ports, a data folder in a new temporary folder) until
/// it exits; returns the folder, the data folder's path, the exit status and stderr.
fn run_refused(manifest: &str) -> (tempfile::TempDir, PathBuf, i32, String) {
    let (dir, path) = write_manifest(manifest);
    let data = dir.path().join("data");
    let (code, _, err) = silo_cmd(&[
        "run",
        "--manifest",
        path.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    (dir, data, code, err)
}

/// Runs the `silo` binary with `args` and returns (status, stdout, stderr).
pub fn silo_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(silo_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Percent-encodes everything but unreserved characters, for query values.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether the backend server `name` answers at `addr`. If not, the test says it was
/// SKIPPED — or fails, when `SILO_REQUIRE_BACKENDS=1` (as `.ci/run` sets) requires it.
pub fn server_up(name: &str, addr: &str) -> bool {
    let up = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        .is_ok();
    if !up {
        assert!(
            std::env::var("SILO_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "{name} at {addr} is required (SILO_REQUIRE_BACKENDS=1) but not reachable"
        );
        eprintln!("SKIPPED: {name} at {addr} is not running; this test did not run");
    }
    up
}
