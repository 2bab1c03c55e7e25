//! The fuzz corpus (`host/tests/corpus/`), kept so that what a fuzzer once found stays fixed.
//!
//! - `manifests/*.toml`: hostile manifests. Each must make `silo run` exit with status 2 and
//!   one line on stderr naming the file and the key given in its `# expect: KEY` header (a
//!   dotted key, or `line N` for TOML syntax), within a minute, with no data folder created.
//!   `# shows: TEXT` lines must appear in that line, `# never-shows: TEXT` lines must not (a
//!   component file's content is never echoed). `{c:NAME}` is the built component NAME,
//!   `{corpus}` this corpus folder (its `files/` hold hostile component files).
//! - `admin/*.txt` (sent to the admin port) and `http/*.txt` (to the service port): raw HTTP
//!   requests, written with `\n` line ends (sent as `\r\n`), after a header of `# expect:
//!   STATUS` and optional `# note: …` lines. `{token}` is the admin token. Each goes over a
//!   fresh TCP connection to a live host serving the demo; the answer must come within
//!   [`ANSWER_WITHIN`], have the expected status, never be a 5xx, carry the contract's JSON
//!   error (`{"error":{"code","message"}}`) when it is a 4xx, and leave the host healthy
//!   (`/healthz` 200, `GET /products` 200).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DEMO;
use crate::support::{TestHost, component, repo_root, shared_cache, silo_bin};

/// The longest a hostile request may wait for its answer.
/// Longer than the host gives a client for its body, so a stalled body's 408 counts.
const ANSWER_WITHIN: Duration =
    Duration::from_secs(silo::runtime::dispatch::OUTSIDE_BODY_TIMEOUT.as_secs() + 3);

fn corpus_dir(kind: &str) -> PathBuf {
    repo_root().join("host/tests/corpus").join(kind)
}

/// The files of `corpus/KIND` ending in `.EXT`, sorted by name.
fn corpus_files(kind: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(kind))
        .unwrap_or_else(|e| panic!("corpus/{kind}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus/{kind} has no .{ext} file");
    files
}

/// The `# NAME: VALUE` lines at the head of `text`.
fn header(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map_while(|l| l.strip_prefix("# "))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn header_values<'h>(header: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    header
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Each `{repeat N TEXT}` replaced by TEXT N times (TEXT may span lines), so the corpus
/// keeps huge inputs small.
fn expand_repeats(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{repeat ") {
        out.push_str(&rest[..start]);
        let spec = &rest[start + "{repeat ".len()..];
        let end = spec.find('}').expect("`{repeat N TEXT}` without its `}`");
        let (count, unit) = spec[..end]
            .split_once(' ')
            .expect("`{repeat N TEXT}` without TEXT");
        out.push_str(&unit.repeat(count.parse().expect("`{repeat N TEXT}`: N")));
        rest = &spec[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `{c:NAME}`, `{corpus}` and `{repeat N TEXT}` replaced.
fn resolve_placeholders(text: &str) -> String {
    let mut text =
        expand_repeats(text).replace("{corpus}", &corpus_dir("manifests").display().to_string());
    while let Some(start) = text.find("{c:") {
        let end = start + text[start..].find('}').unwrap();
        let path = component(&text[start + 3..end]).display().to_string();
        text.replace_range(start..=end, &path);
    }
    text
}

/// Runs `silo run` on the manifest at `path` (its data folder `data`); returns the exit
/// status and stderr, or an error when it did not exit within a minute (it served).
fn run_manifest(path: &Path, data: &Path) -> Result<(i32, String), String> {
    let mut child = std::process::Command::new(silo_bin())
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--manifest")
        .arg(path)
        .arg("--data")
        .arg(data)
        .arg("--cache")
        .arg(shared_cache())
        .env("SILO_ADMIN_TOKEN", "corpus-token-0123456789abcdef")
        .env("SILO_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting silo");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Ok((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return Err(format!(
                "still running after 60 s (it served): stdout {:?}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks one corpus manifest; `Err` says what went wrong.
fn check_manifest(file: &Path) -> Result<(), String> {
    let raw = std::fs::read(file).map_err(|e| e.to_string())?;
    let head = header(&String::from_utf8_lossy(&raw));
    let key = *header_values(&head, "expect")
        .first()
        .ok_or("no `# expect: KEY` header")?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silo.toml");
    // Bytes that are not UTF-8 are written as they are: that is the case under test.
    let bytes = match std::str::from_utf8(&raw) {
        Ok(text) => resolve_placeholders(text).into_bytes(),
        Err(_) => raw.clone(),
    };
    std::fs::write(&path, bytes).unwrap();
    let data = dir.path().join("data");
    let (code, err) = run_manifest(&path, &data)?;
    let mut problems = Vec::new();
    if code != 2 {
        problems.push(format!("exit status {code}, expected 2"));
    }
    if err.lines().count() != 1 {
        problems.push("stderr is not one line".to_string());
    }
    // The file, then the key, then `: ` (a key too long to show whole ends in `…`).
    let named = format!("silo.toml: {key}");
    let key_named = err.match_indices(&named).any(|(i, m)| {
        let after = &err[i + m.len()..];
        after.starts_with(": ")
            || after
                .split_once(": ")
                .is_some_and(|(tail, _)| tail.ends_with('…') && !tail.contains(' '))
    });
    if !key_named {
        problems.push(format!("does not name `silo.toml: {key}`"));
    }
    for shown in header_values(&head, "shows") {
        if !err.contains(shown) {
            problems.push(format!("does not show `{shown}`"));
        }
    }
    for hidden in header_values(&head, "never-shows") {
        if err.contains(hidden) {
            problems.push(format!("shows `{hidden}`, which it must not"));
        }
    }
    if data.exists() {
        problems.push("created the data folder".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; stderr: {err:?}", problems.join(", ")))
    }
}

#[test]
fn every_corpus_manifest_exits_2_naming_its_key_and_touching_nothing() {
    let files = corpus_files("manifests", "toml");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            check_manifest(f)
                .err()
                .map(|e| format!("{}: {e}", f.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} corpus manifests failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Manifest paths that are not a manifest file: exit 2, one line naming the path.
#[test]
fn a_manifest_path_that_is_not_a_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (path, says) in [
        (dir.path().join("missing.toml"), "cannot read the manifest"),
        (dir.path().to_path_buf(), "is a folder"),
        (PathBuf::from("/dev/zero"), "is not a regular file"),
    ] {
        let (code, err) = run_manifest(&path, &data).unwrap();
        assert_eq!(code, 2, "{}: {err}", path.display());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("silo: {}: {says}", path.display())),
            "{}: {err}",
            path.display()
        );
        assert!(!data.exists());
    }
}

/// One raw request of the corpus: its expected status and its bytes.
struct RawRequest {
    name: String,
    expect: u16,
    bytes: Vec<u8>,
}

fn raw_requests(kind: &str, token: &str) -> Vec<RawRequest> {
    corpus_files(kind, "txt")
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let head = header(&text);
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let expect = header_values(&head, "expect")
                .first()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{name}: no `# expect: STATUS` header"));
            // Line ends become `\r\n`; a body after the blank line keeps its exact length
            // (no line end is added after its last line).
            let expanded = expand_repeats(&text);
            let lines: Vec<&str> = expanded
                .lines()
                .skip_while(|l| l.starts_with("# "))
                .collect();
            let mut request = lines.join("\r\n");
            if expanded.ends_with('\n') {
                request.push_str("\r\n");
            }
            let bytes = request.replace("{token}", token).into_bytes();
            RawRequest {
                name,
                expect,
                bytes,
            }
        })
        .collect()
}

/// The status and body of the HTTP/1.1 response at the start of `buf`, once it is whole.
fn parse_response(buf: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let rest = &buf[end..];
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if let Some(len) = header("content-length:") {
        let len: usize = len.parse().ok()?;
        return (rest.len() >= len).then(|| (status, rest[..len].to_vec()));
    }
    if header("transfer-encoding:").is_some_and(|t| t.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[at..line_end])
                    .split(';')
                    .next()?
                    .trim(),
                16,
            )
            .ok()?;
            at = line_end + 2;
            if size == 0 {
                return Some((status, body));
            }
            if rest.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    None
}

/// Sends `bytes` over a fresh connection to `addr` and reads one response. The host may
/// stop reading early (it answered before the end of a huge request): write errors are
/// ignored, the answer is what counts.
async fn send_raw(addr: &str, bytes: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut read, mut write) = stream.split();
    let send = async {
        let _ = write.write_all(bytes).await;
        let _ = write.flush().await;
        std::future::pending::<()>().await
    };
    let receive = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            if let Some(answer) = parse_response(&buf) {
                return Ok(answer);
            }
            match read.read(&mut chunk).await {
                Ok(0) => {
                    return Err(format!(
                        "the connection closed without a whole response ({} bytes: {:?})",
                        buf.len(),
                        String::from_utf8_lossy(&buf[..buf.len().min(200)])
                    ));
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, async {
        tokio::select! {
            answer = receive => answer,
            _ = send => unreachable!("sending never ends first"),
        }
    })
    .await
    .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))?
}

/// Sends every request of `corpus/KIND` to `addr` and checks the answers and the host's
/// health after each.
async fn check_raw_corpus(h: &TestHost, kind: &str, addr: &str) {
    let requests = raw_requests(kind, &h.token);
    let mut failures = Vec::new();
    for r in &requests {
        let started = Instant::now();
        let outcome = send_raw(addr, &r.bytes).await;
        let mut problems = Vec::new();
        match &outcome {
            Err(e) => problems.push(e.clone()),
            Ok((status, body)) => {
                if *status != r.expect {
                    problems.push(format!("status {status}, expected {}", r.expect));
                }
                if *status >= 500 {
                    problems.push("a 5xx".to_string());
                }
                if (400..500).contains(status) {
                    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
                    let ok = json.as_ref().is_some_and(|v| {
                        v["error"]["code"].is_string() && v["error"]["message"].is_string()
                    });
                    if !ok {
                        problems.push(format!(
                            "a {status} without the JSON error body: {:?}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        ));
                    }
                }
            }
        }
        let health = h.admin_get("/healthz", None).await.status;
        let products = h.get("/products").await.status;
        if health != 200 || products != 200 {
            problems.push(format!(
                "the host is not healthy after it: /healthz {health}, GET /products {products}"
            ));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({} ms): {}",
                r.name,
                started.elapsed().as_millis(),
                problems.join(", ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus/{kind} requests failed:\n{}",
        failures.len(),
        requests.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_admin_request_gets_a_json_4xx_or_a_2xx_and_the_host_stays_healthy() {
    let h = TestHost::start(DEMO).await;
    let admin = h.admin.clone();
    check_raw_corpus(&h, "admin", &admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_http_request_gets_a_json_4xx_or_a_2xx_and_the_host_stays_healthy() {
    let h = TestHost::start(DEMO).await;
    let created = h
        .post(
            "/products",
            r#"{"name":"100% cotton_shirt","price":1500,"stock":3}"#,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let http = h.http.clone();
    check_raw_corpus(&h, "http", &http).await;
}
