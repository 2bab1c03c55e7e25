//! `silo new` and `silo dev`, as a newcomer uses them: scaffold a service into a
//! components workspace (a temporary one beside the repository's SDK and WIT, sharing its
//! build folder so dependencies are not rebuilt), build it, deploy it into a running host
//! and call it; and `silo dev` rebuilding and redeploying on a save while another service
//! keeps answering.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{TestHost, component, repo_root, request, silo_bin, silo_cmd, try_request};

/// The longest a cold build of the SDK and a scaffolded crate may take on a loaded machine.
const BUILD_LIMIT: Duration = Duration::from_secs(900);

/// A temporary components workspace: `components/Cargo.toml` and `Cargo.lock` copied from
/// the repository with only `sdk` as member; `sdk`, `../wit` and `target` link to the
/// repository's (the build output is shared; the scaffolded crate lives only here).
fn temp_workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_root();
    let comps = dir.path().join("components");
    std::fs::create_dir_all(&comps).unwrap();
    let manifest = std::fs::read_to_string(repo.join("components/Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap();
    let end = start + manifest[start..].find(']').unwrap();
    let manifest = format!(
        "{}members = [\"sdk\"]{}",
        &manifest[..start],
        &manifest[end + 1..]
    );
    std::fs::write(comps.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(repo.join("components/Cargo.lock"), comps.join("Cargo.lock")).unwrap();
    std::os::unix::fs::symlink(repo.join("components/sdk"), comps.join("sdk")).unwrap();
    std::os::unix::fs::symlink(repo.join("components/target"), comps.join("target")).unwrap();
    std::os::unix::fs::symlink(repo.join("wit"), dir.path().join("wit")).unwrap();
    (dir, comps)
}

/// Runs cargo in `dir`; panics with its output on failure; returns its stdout.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the scaffolded crate's build products from the shared build folder.
fn forget_build(name: &str) {
    let out = repo_root().join("components/target/wasm32-wasip2/release");
    let _ = std::fs::remove_file(out.join(format!("{name}.wasm")));
    let _ = std::fs::remove_file(out.join(format!("{name}.d")));
}

#[test]
fn new_refuses_a_bad_name_an_existing_folder_and_a_listed_service() {
    let (dir, comps) = temp_workspace();
    let dir_arg = comps.to_str().unwrap();
    for bad in ["Notes", "no_tes", "a.b", "9lives", ""] {
        let (code, out, err) = silo_cmd(&["new", bad, "--lang", "rust", "--dir", dir_arg]);
        assert_eq!(code, 2, "`{bad}`: {out} {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("is not a service name"), "{err}");
    }
    std::fs::create_dir(comps.join("taken")).unwrap();
    let (code, _, err) = silo_cmd(&["new", "taken", "--lang", "rust", "--dir", dir_arg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let manifest = dir.path().join("silo.toml");
    std::fs::write(
        &manifest,
        "[services.notes]\ncomponent = \"x.wasm\"\nroute = \"/n\"\n",
    )
    .unwrap();
    let (code, _, err) = silo_cmd(&[
        "new",
        "notes",
        "--lang",
        "rust",
        "--dir",
        dir_arg,
        "--append-manifest",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("services.notes: already listed"), "{err}");
    // Nothing was written by the refusals.
    assert!(!comps.join("notes").exists());
    let members = std::fs::read_to_string(comps.join("Cargo.toml")).unwrap();
    assert!(members.contains("members = [\"sdk\"]"), "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_rust_service_tests_builds_deploys_and_answers() {
    let name = "scaffolded-notes";
    let (_dir, comps) = temp_workspace();
    let (code, out, err) = silo_cmd(&[
        "new",
        name,
        "--lang",
        "rust",
        "--dir",
        comps.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains(&format!("[services.{name}]")),
        "entry printed: {out}"
    );
    assert!(out.contains("route = \"/scaffolded-notes\""), "{out}");
    assert!(
        out.contains("cargo build --release --target wasm32-wasip2 -p scaffolded-notes"),
        "{out}"
    );
    let ws = std::fs::read_to_string(comps.join("Cargo.toml")).unwrap();
    assert!(
        ws.contains("members = [\"sdk\", \"scaffolded-notes\"]"),
        "{ws}"
    );

    // Its own unit test passes, natively.
    let started = Instant::now();
    let tested = cargo(&comps, &["test", "--release", "-p", name]);
    assert!(tested.contains("test result: ok. 1 passed"), "{tested}");
    cargo(
        &comps,
        &[
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            name,
        ],
    );
    assert!(started.elapsed() < BUILD_LIMIT);
    let wasm = comps.join("target/wasm32-wasip2/release/scaffolded_notes.wasm");
    assert!(wasm.is_file());

    // Deployed with the flags `silo new` printed, into a host serving something else.
    let h =
        TestHost::start("[services.hello]\ncomponent = \"{c:hello}\"\nroute = \"/hello\"\n").await;
    let (code, out, err) = silo_cmd(&[
        "deploy",
        name,
        wasm.to_str().unwrap(),
        "--route",
        "/scaffolded-notes",
        "--store",
        "main",
        "--admin",
        &h.admin,
        "--admin-token",
        &h.token,
    ]);
    forget_build("scaffolded_notes");
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("deployed scaffolded-notes v1"), "{out}");
    assert!(out.contains("1 migration(s) applied"), "{out}");

    let r = h.get("/scaffolded-notes").await;
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!({ "items": [] }))
    );
    let r = h
        .post("/scaffolded-notes", r#"{"text":"  buy milk  "}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("itm_"), "{id}");
    assert_eq!(r.json()["text"], "buy milk");
    let r = h.post("/scaffolded-notes", r#"{"text":"   "}"#).await;
    assert_eq!(
        (r.status, r.error_code()),
        (422, "unprocessable".to_string()),
        "{}",
        r.text()
    );
    let r = h.post("/scaffolded-notes", "{not json").await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = h.get("/scaffolded-notes").await;
    assert_eq!(
        r.json(),
        serde_json::json!({ "items": [{ "id": id, "text": "buy milk" }] })
    );
}

/// Lines a child printed, collected as they come.
fn collect(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

/// Waits until a collected line contains `needle`; returns it.
async fn wait_line(lines: &Arc<Mutex<Vec<String>>>, needle: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        assert!(
            started.elapsed() < limit,
            "no line with `{needle}` in {limit:?}: {:?}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_rebuilds_and_redeploys_a_changed_service_and_keeps_it_on_a_broken_build() {
    let name = "devloop-notes";
    let (dir, comps) = temp_workspace();
    let manifest = dir.path().join("silo.toml");
    // hello is a copy outside any workspace: served, not watched.
    std::fs::copy(component("hello"), dir.path().join("hello.wasm")).unwrap();
    std::fs::write(
        &manifest,
        "[services.hello]\ncomponent = \"hello.wasm\"\nroute = \"/hello\"\n",
    )
    .unwrap();
    let (code, out, err) = silo_cmd(&[
        "new",
        name,
        "--lang",
        "rust",
        "--dir",
        comps.to_str().unwrap(),
        "--append-manifest",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out} {err}");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        text.contains("component = \"components/target/wasm32-wasip2/release/devloop_notes.wasm\""),
        "{text}"
    );
    assert!(
        text.contains("source = \"components/devloop-notes\""),
        "{text}"
    );

    let mut child = Command::new(silo_bin())
        .args(["dev", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--manifest")
        .arg(&manifest)
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("SILO_ADMIN_TOKEN", "test-token-0123456789abcdef0123456789")
        .env("SILO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    collect(child.stdout.take().unwrap(), out.clone());
    collect(child.stderr.take().unwrap(), err.clone());
    let serving = wait_line(&out, "silo: serving", BUILD_LIMIT).await;
    let http = serving
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    wait_line(
        &out,
        "silo dev: watching devloop-notes",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        err.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("hello: served, not watched")),
        "{:?}",
        err.lock().unwrap()
    );
    let long = r#"{"text":"a rather long note"}"#;
    let r = request("POST", &http, "/devloop-notes", Some(long), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text());

    // hello must answer every request while devloop-notes is rebuilt and swapped.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (http, stop) = (http.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match try_request("GET", &http, "/hello", None).await {
                    Some(r) if r.status == 200 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };

    // A save that changes the behaviour: texts of at most 5 characters from now on.
    let lib = comps.join(name).join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let changed = source.replace("const MAX_TEXT: usize = 280;", "const MAX_TEXT: usize = 5;");
    assert_ne!(changed, source);
    std::fs::write(&lib, &changed).unwrap();
    let deployed = wait_line(&out, "deployed devloop-notes v2 in", BUILD_LIMIT).await;
    assert!(deployed.contains("ms"), "{deployed}");
    let r = request("POST", &http, "/devloop-notes", Some(long), &[]).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("at most 5"), "{}", r.text());

    // A save that does not compile: the error is printed, v2 keeps serving.
    std::fs::write(&lib, format!("{changed}\nfn broken( {{\n")).unwrap();
    wait_line(
        &out,
        "the build of devloop-notes failed; v2 keeps serving",
        BUILD_LIMIT,
    )
    .await;
    assert!(
        err.lock().unwrap().iter().any(|l| l.starts_with("error")),
        "the compiler's error is printed: {:?}",
        err.lock().unwrap()
    );
    let r = request("POST", &http, "/devloop-notes", Some(long), &[]).await;
    assert_eq!(r.status, 422, "v2 still serves: {}", r.text());
    let r = request("GET", &http, "/devloop-notes", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = poller.await.unwrap();
    crate::support::signal(&child, "TERM");
    crate::support::wait_timeout(&mut child, Duration::from_secs(30));
    forget_build("devloop_notes");
    assert!(
        failed.is_empty(),
        "hello failed {} times: {failed:?}",
        failed.len()
    );
    assert!(ok > 10, "hello answered only {ok} times");
}

/// Copies the files of `from` (following links) into a new folder `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Scaffolds `name` in `lang` into a temporary workspace beside the repository's SDK for
/// it, runs its own test, builds it with the language's tool, deploys it and calls it.
/// `None` (and a SKIPPED line) when the repository lacks the SDK or the tool; a failure
/// instead when `SILO_REQUIRE_BACKENDS=1` (as `.ci/run` sets).
async fn polyglot_round_trip(lang: &str, name: &str) -> Option<()> {
    let repo = repo_root();
    let (sdk, tool) = match lang {
        "python" => (
            "sdk-py",
            repo.join("components/target/py/bin/componentize-py"),
        ),
        _ => (
            "sdk-js",
            repo.join("components/notifications/node_modules/.bin/componentize-js"),
        ),
    };
    if !repo.join("components").join(sdk).is_dir() || !tool.is_file() {
        assert!(
            std::env::var("SILO_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "components/{sdk} or {} is missing, and SILO_REQUIRE_BACKENDS=1 requires this test to run (make build installs it)",
            tool.display()
        );
        eprintln!(
            "SKIPPED: components/{sdk} or {} is missing (make build installs it)",
            tool.display()
        );
        return None;
    }
    let (_dir, comps) = temp_workspace();
    // A copy: componentize-js's sandbox refuses a module behind a link leaving its folder.
    copy_dir(&repo.join("components").join(sdk), &comps.join(sdk));
    let (code, out, err) = silo_cmd(&[
        "new",
        name,
        "--lang",
        lang,
        "--dir",
        comps.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out} {err}");
    let folder = comps.join(name);
    let wasm =
        std::env::temp_dir().join(format!("silo-scaffold-{}-{name}.wasm", std::process::id()));
    let run = |cmd: &mut Command| {
        let o = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{cmd:?}: {text}");
        text
    };
    if lang == "python" {
        let tested = run(Command::new("python3")
            .args(["-m", "unittest", "discover", "-s"])
            .arg(folder.join("tests"))
            .current_dir(&comps));
        assert!(
            tested.contains("Ran 1 test") && tested.contains("OK"),
            "{tested}"
        );
        run(Command::new(&tool)
            .arg("-d")
            .arg(repo.join("wit"))
            .args(["-w", "service", "componentize", "-p"])
            .arg(&folder)
            .arg("-p")
            .arg(comps.join(sdk))
            .arg("app")
            .arg("-o")
            .arg(&wasm));
    } else {
        // The demo's pinned tools, rather than a download per test run.
        std::os::unix::fs::symlink(
            tool.parent().unwrap().parent().unwrap(),
            folder.join("node_modules"),
        )
        .unwrap();
        let tested = run(Command::new("node")
            .args(["--test", "test/"])
            .current_dir(&folder));
        assert!(
            tested.contains("# pass 2") && tested.contains("# fail 0"),
            "{tested}"
        );
        // From the components folder, the app named relative to it: componentize-js reads
        // the modules the app imports (`../sdk-js/…`) only below its working folder.
        run(Command::new(&tool)
            .current_dir(&comps)
            .arg(format!("{name}/app.js"))
            .arg("--wit")
            .arg(repo.join("wit"))
            .args(["--world-name", "service", "--disable", "fetch-event", "-o"])
            .arg(&wasm));
    }
    let h =
        TestHost::start("[services.hello]\ncomponent = \"{c:hello}\"\nroute = \"/hello\"\n").await;
    let route = format!("/{name}");
    let (code, out, err) = silo_cmd(&[
        "deploy",
        name,
        wasm.to_str().unwrap(),
        "--route",
        &route,
        "--store",
        "main",
        "--admin",
        &h.admin,
        "--admin-token",
        &h.token,
    ]);
    let _ = std::fs::remove_file(&wasm);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains(&format!("deployed {name} v1")), "{out}");
    let r = h.post(&route, r#"{"text":"  buy milk  "}"#).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("itm_"), "{id}");
    let r = h.post(&route, r#"{"text":"   "}"#).await;
    assert_eq!(
        (r.status, r.error_code()),
        (422, "unprocessable".to_string()),
        "{}",
        r.text()
    );
    let r = h.get(&route).await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            serde_json::json!({ "items": [{ "id": id, "text": "buy milk" }] })
        )
    );
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_python_service_tests_builds_deploys_and_answers() {
    polyglot_round_trip("python", "scaffolded-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_js_service_tests_builds_deploys_and_answers() {
    polyglot_round_trip("js", "scaffolded-js").await;
}
