//! Deploying one service at a time into a running host: replace, roll back, undeploy, the
//! checks before activation, migrations, persistence, and zero failed requests under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::{Resp, TestHost, component, silo_cmd};

const BASE: &str = r#"
[services.users]
component = "{c:users}"
route = "/users"
publishes = ["UserCreated", "UserUpdated"]
[services.users.stores.main]

[services.products]
component = "{c:products}"
route = "/products"
publishes = ["ProductCreated", "ProductUpdated"]
[services.products.stores.main]

[services.greeter]
component = "{c:hello}"
route = "/greeter"
"#;

/// `silo deploy …` against `h`; returns (exit status, stdout, stderr).
fn cli(h: &TestHost, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--admin", &h.admin, "--admin-token", &h.token]);
    silo_cmd(&all)
}

fn wasm(name: &str) -> String {
    component(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rollback_and_undeploy_one_service_while_others_serve() {
    let h = TestHost::start(BASE).await;
    assert_eq!(h.get("/greeter/ok").await.text(), "hello\n");

    let (code, out, err) = cli(&h, &["deploy", "greeter", &wasm("spin")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployed greeter v2"), "{out}");
    assert_eq!(
        h.get("/greeter/ok").await.text(),
        "ok\n",
        "the new version serves"
    );
    assert_eq!(h.get("/users").await.status, 200, "others untouched");

    let (code, out, err) = cli(&h, &["rollback", "greeter"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("v1"), "{out}");
    assert_eq!(h.get("/greeter/ok").await.text(), "hello\n");

    // A new service, with a route and a store; its migrations run on deploy.
    let (code, _, err) = cli(
        &h,
        &[
            "deploy",
            "notes",
            &wasm("steal-store"),
            "--route",
            "/notes",
            "--store",
            "main",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(h.get("/notes/own").await.json()["ok"], true);
    let listing = h.admin_get("/admin/services", Some(&h.token)).await.json();
    let notes = listing["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "notes")
        .unwrap();
    assert_eq!(notes["version"], 1);
    assert_eq!(notes["stores"][0]["name"], "main");

    let (code, _, err) = cli(&h, &["undeploy", "notes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(h.get("/notes/own").await.status, 404);
    assert!(
        h.data_dir().join("stores/notes/main.db").is_file(),
        "undeploy keeps the data"
    );
    let history = h
        .admin_get("/admin/services/greeter", Some(&h.token))
        .await
        .json();
    assert_eq!(history["active"], 1, "{history}");
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_refused_and_the_old_version_keeps_serving() {
    let h = TestHost::start(BASE).await;
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(component("spin")).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").unwrap();
    let no_handler = dir.path().join("no-handler.wat");
    std::fs::write(&no_handler, "(component)").unwrap();
    let greedy = dir.path().join("greedy.wat");
    std::fs::write(
        &greedy,
        r#"(component (import "example:secret/backdoor@1.0.0" (instance (export "open" (func)))))"#,
    )
    .unwrap();
    for (file, needle) in [
        (&truncated, "not a valid WebAssembly component"),
        (&junk, "not a valid WebAssembly component"),
        (&no_handler, "incoming-handler"),
        (&greedy, "example:secret/backdoor"),
    ] {
        let (code, _, err) = cli(&h, &["deploy", "greeter", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{}: {err}", file.display());
        assert!(
            err.contains("422") && err.contains(needle),
            "{}: {err}",
            file.display()
        );
        assert_eq!(
            h.get("/greeter/x").await.text(),
            "hello\n",
            "old version still serves"
        );
    }
    // Bad names and routes, and a new service without a route.
    let (code, _, err) = cli(&h, &["deploy", "../etc", &wasm("hello")]);
    assert_eq!(code, 2, "a bad argument: {err}");
    assert!(err.contains("not a service name"), "{err}");
    // The admin API refuses it too, whatever the client.
    let auth = format!("Bearer {}", h.token);
    let r = crate::support::request_bytes(
        "POST",
        &h.admin,
        "/admin/services/Bad-Name",
        b"x".to_vec(),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let (code, _, err) = cli(&h, &["deploy", "fresh", &wasm("hello")]);
    assert_eq!(code, 1);
    assert!(err.contains("route"), "{err}");
    let (code, _, err) = cli(
        &h,
        &["deploy", "fresh", &wasm("hello"), "--route", "/users/sub"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("overlaps"), "{err}");
    // Nothing to roll back to, nothing to undeploy.
    let (code, _, err) = cli(&h, &["rollback", "users"]);
    assert_eq!(code, 1);
    assert!(err.contains("409"), "{err}");
    let (code, _, _) = cli(&h, &["undeploy", "nobody"]);
    assert_eq!(code, 1);
    // A wrong token changes nothing.
    let (code, _, err) = silo_cmd(&[
        "deploy",
        "greeter",
        &wasm("spin"),
        "--admin",
        &h.admin,
        "--admin-token",
        "wrong",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    assert_eq!(h.get("/greeter/x").await.text(), "hello\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_refuses_the_deploy_and_leaves_the_store_as_it_was() {
    let h = TestHost::start(BASE).await;
    let (code, _, err) = cli(
        &h,
        &[
            "deploy",
            "broken",
            &wasm("bad-migration"),
            "--route",
            "/broken",
            "--store",
            "main",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("422") && err.contains("migration 2"), "{err}");
    assert_eq!(h.get("/broken/ok").await.status, 404, "never activated");
    let db = h.data_dir().join("stores/broken/main.db");
    if db.is_file() {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name IN ('first', 'second')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "no step of the failed deploy may remain");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_serves_the_deployed_versions() {
    let h = TestHost::start(BASE).await;
    let (code, _, err) = cli(&h, &["deploy", "greeter", &wasm("spin")]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(
        &h,
        &["deploy", "extra", &wasm("hello"), "--route", "/extra"],
    );
    assert_eq!(code, 0, "{err}");
    let (status, dir, manifest) = h.stop();
    assert!(status.success());
    let h = TestHost::start_in(dir, manifest).await;
    assert_eq!(
        h.get("/greeter/ok").await.text(),
        "ok\n",
        "deployed version, not the manifest's"
    );
    assert_eq!(h.get("/extra/anything").await.text(), "hello\n");
    let listing = h.admin_get("/admin/services", Some(&h.token)).await.json();
    let greeter = listing["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "greeter")
        .unwrap();
    assert_eq!(greeter["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_of_one_service_are_serialized() {
    let h = Arc::new(TestHost::start(BASE).await);
    let bytes = std::fs::read(component("spin")).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (admin, token, bytes) = (h.admin.clone(), h.token.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            crate::support::request_bytes(
                "POST",
                &admin,
                "/admin/services/greeter",
                bytes,
                &[("authorization", &auth)],
            )
            .await
        }));
    }
    let mut ok = 0;
    let mut conflicts = 0;
    for t in tasks {
        let r: Resp = t.await.unwrap();
        match r.status {
            200 => ok += 1,
            409 => conflicts += 1,
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert!(ok >= 1, "one deploy must win");
    assert_eq!(ok + conflicts, 4);
    assert_eq!(h.get("/greeter/ok").await.text(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_deploys_under_load_fail_no_request() {
    let h = Arc::new(TestHost::start(BASE).await);
    h.post("/users", r#"{"email":"load@x.y","name":"Load"}"#)
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for i in 0..6 {
        let (h, stop, served) = (h.clone(), stop.clone(), served.clone());
        load.push(tokio::spawn(async move {
            let path = ["/users", "/products", "/greeter/ok"][i % 3];
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = h.get(path).await;
                if r.status != 200 {
                    failures.push(format!("{path}: {} {}", r.status, r.text()));
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for round in 0..4 {
        let file = if round % 2 == 0 { "spin" } else { "hello" };
        let (code, _, err) = cli(&h, &["deploy", "greeter", &wasm(file)]);
        assert_eq!(code, 0, "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (code, _, err) = cli(&h, &["rollback", "greeter"]);
        assert_eq!(code, 0, "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for l in load {
        failures.extend(l.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        served.load(Ordering::Relaxed) > 100,
        "too little load to mean anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_during_shutdown_is_refused() {
    // In-process: the host as a library, so the moment of shutdown is exact.
    let (dir, path) = crate::support::write_manifest(BASE);
    let manifest = silo::manifest::Manifest::load(&path).unwrap();
    let host = silo::host::Host::new(
        &dir.path().join("data"),
        Some(crate::support::shared_cache()),
    )
    .unwrap();
    host.load_manifest(&path, &manifest).await.unwrap();
    let bytes = std::fs::read(component("spin")).unwrap();
    host.begin_shutdown();
    let err = host
        .deploy("greeter", &bytes, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    let greeter = host.routes().by_name("greeter").cloned().unwrap();
    assert_eq!(
        greeter.version, 1,
        "the old version is still the one routed"
    );
}
