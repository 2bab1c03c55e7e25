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

/// POST of `bytes` to `/admin/services/NAME` with the test token.
async fn admin_deploy(h: &TestHost, name: &str, bytes: Vec<u8>) -> Resp {
    let auth = format!("Bearer {}", h.token);
    crate::support::request_bytes(
        "POST",
        &h.admin,
        &format!("/admin/services/{name}"),
        bytes,
        &[("authorization", &auth)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_deploy_of_a_service_answers_409_and_healthz_answers_while_one_compiles() {
    // Every compile also sleeps 1.5 s where the compile runs (a failpoint), so the first
    // deploy is surely still compiling when the others arrive.
    let (dir, path) = crate::support::write_manifest(BASE);
    let h = Arc::new(
        TestHost::start_with(dir, path, &[("SILO_FAILPOINTS", "slow-compile=1500")]).await,
    );
    let spin = std::fs::read(component("spin")).unwrap();
    let first = {
        let (h, spin) = (h.clone(), spin.clone());
        tokio::spawn(async move { admin_deploy(&h, "greeter", spin).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let second = admin_deploy(&h, "greeter", spin.clone()).await;
    assert_eq!(second.status, 409, "{}", second.text());
    assert_eq!(second.error_code(), "deploy_in_progress");
    assert!(
        second.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already in progress"),
        "{}",
        second.text()
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the refusal must not wait for the first deploy: {:?}",
        started.elapsed()
    );
    // The admin endpoint answers at once meanwhile: the compile is off its thread.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let r = h.admin_get("/healthz", None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!first.is_finished(), "the first deploy is still compiling");
    assert!(
        slowest < Duration::from_millis(300),
        "/healthz took {slowest:?} while a deploy compiled"
    );
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["version"], 2);
    assert_eq!(h.get("/greeter/ok").await.text(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_the_serving_component_is_a_no_op() {
    let h = TestHost::start(BASE).await;
    // greeter serves hello.wasm from the manifest (v1): the same file again changes nothing.
    let (code, out, err) = cli(&h, &["deploy", "greeter", &wasm("hello")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("greeter v1 already serves this component")
            && out.contains("unchanged, no new version"),
        "{out}"
    );
    let (code, out, err) = cli(&h, &["deploy", "greeter", &wasm("spin")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployed greeter v2"), "{out}");
    let r = admin_deploy(&h, "greeter", std::fs::read(component("spin")).unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["unchanged"], true, "{v}");
    assert_eq!(v["version"], 2, "{v}");
    // Other grants with the same component are a new version.
    let (code, out, err) = cli(
        &h,
        &["deploy", "greeter", &wasm("spin"), "--calls", "users"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployed greeter v3"), "{out}");
    let history = h
        .admin_get("/admin/services/greeter", Some(&h.token))
        .await
        .json();
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        3,
        "{history}"
    );
    assert_eq!(history["active"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_lacking_what_the_services_role_needs_is_refused() {
    let h = TestHost::start(crate::DEMO).await;
    // products is a saga participant: hello.wasm has no command-handler.
    let (code, _, err) = cli(&h, &["deploy", "products", &wasm("hello")]);
    assert_eq!(code, 1, "{err}");
    for needle in [
        "refused (422)",
        "service `products`: the component does not export `silo:service/command-handler@0.1.0`, which a saga participant needs",
        r#"`commands = ["reserve", "release"]`"#,
        "`orders` lists `products` in `saga-participants`",
        "it exports only `wasi:http/incoming-handler@0.2",
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    assert_eq!(h.get("/products").await.status, 200, "v1 still serves");
    // orders subscribes (and starts sagas): the first thing it lacks is named.
    let (code, _, err) = cli(&h, &["deploy", "orders", &wasm("hello")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("does not export `silo:service/event-handler@0.1.0`, which a subscriber needs: `subscribes` lists users/UserCreated"),
        "{err}"
    );
    // The SDK's components export every handler: users.wasm as payments passes this check
    // (its command handler refuses commands it does not know, at run time).
    let (code, _, err) = cli(&h, &["deploy", "payments", &wasm("hello")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(r#"`commands = ["charge", "refund"]` and `orders` lists `payments`"#),
        "{err}"
    );
    let listing = h.admin_get("/admin/services", Some(&h.token)).await.json();
    for s in listing["services"].as_array().unwrap() {
        assert_eq!(s["version"], 1, "nothing was deployed: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongly_typed_http_export_is_refused_by_deploy() {
    let h = TestHost::start(BASE).await;
    let (code, _, err) = cli(&h, &["deploy", "greeter", &wasm("wrong-http")]);
    assert_eq!(code, 1, "{err}");
    for needle in [
        "refused (422)",
        "service `greeter`: its export `wasi:http/incoming-handler@0.2.x` has the wrong type",
        "the host calls `handle: func(request: own<incoming-request>, response-out: own<response-outparam>)`",
        "the component's is `func(request: string) -> string`",
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    assert_eq!(
        h.get("/greeter/x").await.text(),
        "hello\n",
        "v1 still serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_bad_input_with_json_4xx() {
    let h = TestHost::start(BASE).await;
    let auth = format!("Bearer {}", h.token);
    let long = "a".repeat(300);
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "GET",
            format!("/admin/services/{long}"),
            vec![],
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("/admin/services/{long}"),
            b"x".to_vec(),
            400,
            "bad_request",
        ),
        (
            "PUT",
            format!("/admin/services/{long}"),
            b"x".to_vec(),
            400,
            "bad_request",
        ),
        (
            "DELETE",
            format!("/admin/services/{long}"),
            vec![],
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("/admin/services/{long}/rollback"),
            vec![],
            400,
            "bad_request",
        ),
        (
            "GET",
            "/admin/services/nobody".into(),
            vec![],
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/admin/services/nobody".into(),
            vec![],
            404,
            "not_found",
        ),
        (
            "POST",
            "/admin/services/nobody/rollback".into(),
            vec![],
            404,
            "not_found",
        ),
        (
            "POST",
            "/admin/services/greeter".into(),
            vec![],
            400,
            "empty_body",
        ),
        (
            "PUT",
            "/admin/services/greeter".into(),
            vec![],
            400,
            "empty_body",
        ),
        (
            "POST",
            "/admin/services/greeter".into(),
            b"{\"not\": \"wasm\"}".to_vec(),
            422,
            "invalid_component",
        ),
        (
            "POST",
            "/admin/services/greeter".into(),
            b"\0asm\x01\0\0\0".to_vec(),
            422,
            "invalid_component",
        ),
        (
            "POST",
            "/admin/services/greeter?colour=blue".into(),
            b"x".to_vec(),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/admin/apply?colour=blue".into(),
            vec![],
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("/admin/apply?service={long}"),
            vec![],
            400,
            "bad_request",
        ),
        (
            "GET",
            "/admin/apply?service=nobody".into(),
            vec![],
            404,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let r = crate::support::request_bytes(
            method,
            &h.admin,
            &path,
            body,
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(
            r.status,
            status,
            "{method} {}: {}",
            &path[..path.len().min(60)],
            r.text()
        );
        assert_eq!(
            r.error_code(),
            code,
            "{method} {}",
            &path[..path.len().min(60)]
        );
    }
    let r = crate::support::request_bytes(
        "POST",
        &h.admin,
        "/admin/services/greeter",
        b"\0asm\x01\0\0\0".to_vec(),
        &[("authorization", &auth)],
    )
    .await;
    assert!(
        r.text()
            .contains("a core WebAssembly module, not a component"),
        "{}",
        r.text()
    );
    assert_eq!(
        h.get("/greeter/x").await.text(),
        "hello\n",
        "v1 still serves"
    );
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
        // Not hello, the manifest's v1: deploying what serves is a no-op, and a rollback
        // from v1 has nowhere to go.
        let file = if round % 2 == 0 { "spin" } else { "trap" };
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

/// The `silo apply` lines of `out` for `service`: its table row and the lines under it.
fn apply_row<'a>(out: &'a str, service: &str) -> Vec<&'a str> {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{service} ")));
    let mut row: Vec<&str> = lines.next().into_iter().collect();
    row.extend(lines.take_while(|l| l.starts_with("    ")));
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_shows_the_difference_from_the_manifest_then_brings_the_host_to_it() {
    let h = TestHost::start(BASE).await;
    // Drift by hand: greeter replaced, a service the manifest does not know.
    let (code, _, err) = cli(&h, &["deploy", "greeter", &wasm("spin")]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(
        &h,
        &["deploy", "extra", &wasm("hello"), "--route", "/extra"],
    );
    assert_eq!(code, 0, "{err}");
    // …and in the manifest: a new service.
    let text = std::fs::read_to_string(&h.manifest).unwrap();
    std::fs::write(
        &h.manifest,
        format!(
            "{text}\n[services.notes]\ncomponent = \"{}\"\nroute = \"/notes\"\n[services.notes.stores.main]\n",
            wasm("steal-store")
        ),
    )
    .unwrap();

    // Without --yes: the difference, and nothing changes.
    let (code, out, err) = cli(&h, &["apply"]);
    assert_eq!(code, 0, "{err}");
    let greeter = apply_row(&out, "greeter");
    assert!(
        greeter[0].contains("changed") && greeter[0].contains("v2 sha256:"),
        "{out}"
    );
    assert!(greeter[1].trim().starts_with("component: sha256:"), "{out}");
    assert!(apply_row(&out, "extra")[0].contains("removed"), "{out}");
    assert!(
        apply_row(&out, "extra")[1].contains("not in the manifest (deployed by hand)"),
        "{out}"
    );
    assert!(apply_row(&out, "notes")[0].contains("new"), "{out}");
    assert!(apply_row(&out, "users")[0].contains("unchanged"), "{out}");
    assert!(
        apply_row(&out, "products")[0].contains("unchanged"),
        "{out}"
    );
    assert!(
        out.contains("3 change(s) not applied: run `silo apply --yes` to apply them"),
        "{out}"
    );
    assert_eq!(h.get("/greeter/ok").await.text(), "ok\n", "nothing applied");
    assert_eq!(h.get("/extra/x").await.text(), "hello\n");
    assert_eq!(h.get("/notes/own").await.status, 404);

    // One service only.
    let (code, out, err) = cli(&h, &["apply", "greeter", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        apply_row(&out, "greeter")
            .iter()
            .any(|l| l.contains("applied: v3")),
        "{out}"
    );
    assert!(apply_row(&out, "extra").is_empty(), "only greeter: {out}");
    assert_eq!(
        h.get("/greeter/x").await.text(),
        "hello\n",
        "the manifest's hello"
    );
    assert_eq!(h.get("/extra/x").await.text(), "hello\n", "not in scope");

    // Everything.
    let (code, out, err) = cli(&h, &["apply", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(apply_row(&out, "greeter")[0].contains("unchanged"), "{out}");
    assert!(
        apply_row(&out, "extra")
            .iter()
            .any(|l| l.contains("applied: undeployed")),
        "{out}"
    );
    assert!(
        apply_row(&out, "notes")
            .iter()
            .any(|l| l.contains("applied: v1")),
        "{out}"
    );
    assert!(out.contains("applied 2 change(s)"), "{out}");
    assert_eq!(h.get("/extra/x").await.status, 404);
    assert_eq!(
        h.get("/notes/own").await.json()["ok"],
        true,
        "migrated and serving"
    );
    let (code, out, err) = cli(&h, &["apply"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to apply"), "{out}");
    let history = h
        .admin_get("/admin/services/greeter", Some(&h.token))
        .await
        .json();
    assert_eq!(history["active"], 3, "{history}");
    assert_eq!(history["versions"][2]["origin"], "manifest", "{history}");

    // A restart after an apply makes no new version: the manifest is what serves.
    let (status, dir, manifest) = h.stop();
    assert!(status.success());
    let h = TestHost::start_in(dir, manifest).await;
    let history = h
        .admin_get("/admin/services/greeter", Some(&h.token))
        .await
        .json();
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        3,
        "{history}"
    );
    assert_eq!(h.get("/extra/x").await.status, 404, "stays removed");

    // A broken manifest is refused, naming file and key; nothing changes.
    let text = std::fs::read_to_string(&h.manifest).unwrap();
    std::fs::write(
        &h.manifest,
        text.replace("route = \"/notes\"", "route = \"notes\""),
    )
    .unwrap();
    let (code, _, err) = cli(&h, &["apply", "--yes"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refused (422)")
            && err.contains("silo.toml: services.notes.route: `notes` must start with `/`"),
        "{err}"
    );
    assert_eq!(h.get("/notes/own").await.json()["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_logs_where_what_serves_differs_from_the_manifest() {
    let h = TestHost::start(BASE).await;
    let (code, _, err) = cli(
        &h,
        &["deploy", "extra", &wasm("hello"), "--route", "/extra"],
    );
    assert_eq!(code, 0, "{err}");
    let (status, dir, manifest) = h.stop();
    assert!(status.success());
    // The manifest's greeter file is rebuilt (other bytes); a restart makes it v2, and says so.
    let rebuilt = dir.path().join("greeter-rebuilt.wasm");
    let mut bytes = std::fs::read(component("hello")).unwrap();
    // A custom section named `rebuilt`: the same code, other bytes.
    bytes.extend_from_slice(&[0, 8, 7]);
    bytes.extend_from_slice(b"rebuilt");
    std::fs::write(&rebuilt, &bytes).unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(&wasm("hello"), rebuilt.to_str().unwrap()),
    )
    .unwrap();
    let log = dir.path().join("silo.log");
    let mut child = std::process::Command::new(crate::support::silo_bin())
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--manifest")
        .arg(&manifest)
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--cache")
        .arg(crate::support::shared_cache())
        .env("SILO_ADMIN_TOKEN", "test-token-0123456789abcdef0123456789")
        .env("SILO_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("serving"), "{line}");
    crate::support::signal(&child, "TERM");
    crate::support::wait_timeout(&mut child, Duration::from_secs(60));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains(
            "service `greeter`: the manifest's component file changed since it was last loaded"
        ) && log.contains("serving it as v2, in place of v1 (manifest, sha256:"),
        "{log}"
    );
    assert!(
        log.contains("service `extra` is not in the manifest: serving v1 (deploy, sha256:")
            && log.contains("`silo apply --yes` removes it"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_deploys_a_new_source_before_its_new_subscriber_and_events_flow() {
    let h = TestHost::start(BASE).await;
    // The subscriber's name sorts first: only the dependency order (or the subscriptions
    // registered again at the end) gets its subscription onto the new source's outbox.
    let probe = wasm("events-probe");
    let text = std::fs::read_to_string(&h.manifest).unwrap();
    std::fs::write(
        &h.manifest,
        format!(
            "{text}
[services.a-sub]
component = \"{probe}\"
route = \"/a-sub\"
subscribes = [{{ source = \"z-pub\", topic = \"Ping\" }}]
[services.a-sub.stores.main]

[services.z-pub]
component = \"{probe}\"
route = \"/z-pub\"
publishes = [\"Ping\"]
[services.z-pub.stores.main]
"
        ),
    )
    .unwrap();
    let (code, out, err) = cli(&h, &["apply", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied 2 change(s)"), "{out}");
    let r = h
        .post(
            "/z-pub/publish",
            r#"{"topic":"Ping","key":"k","data":"hello"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let start = std::time::Instant::now();
    loop {
        let got = h.get("/a-sub/received").await.json();
        if got.as_array().is_some_and(|a| a.len() == 1) {
            assert_eq!(got[0]["data"], "hello", "{got}");
            assert_eq!(got[0]["source"], "z-pub", "{got}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the event never reached the subscriber: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
