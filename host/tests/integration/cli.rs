//! The command line and the admin endpoint: exit statuses, messages, tokens, metrics.

use crate::DEMO;
use crate::support::{
    TestHost, expect_refused_after_start, expect_refused_start, silo_cmd, write_manifest,
};

/// Runs `silo run` on `manifest` and expects exit status 2 with a message naming the file
/// and `key`, and no data folder written.
fn expect_invalid(manifest: &str, key: &str) {
    expect_refused_start(manifest, key, &[]);
}

#[test]
fn invalid_manifests_exit_2_naming_file_and_key() {
    expect_invalid(
        "[services.users]\ncomponent = \"{c:users}\"\nroute = \"/users\"\nflavour = \"x\"\n",
        "flavour",
    );
    expect_invalid(
        "[services.users]\ncomponent = \"{c:users}\"\nroute = \"/u\"\n[services.orders]\ncomponent = \"{c:orders}\"\nroute = \"/u\"\n",
        "services.users.route",
    );
    expect_invalid(
        "[services.users]\ncomponent = \"{c:users}\"\nroute = \"/a\"\n[services.orders]\ncomponent = \"{c:orders}\"\nroute = \"/a/b\"\n",
        "services.users.route",
    );
    expect_invalid(
        "[services.users]\ncomponent = \"missing.wasm\"\nroute = \"/users\"\n",
        "services.users.component",
    );
    expect_invalid(
        "[services.\"../etc\"]\ncomponent = \"{c:users}\"\nroute = \"/users\"\n",
        "services.../etc",
    );
    expect_invalid(
        "[services.users]\ncomponent = \"{c:users}\"\nroute = \"/users\"\n[services.users.stores.\"a/b\"]\n",
        "services.users.stores.a/b",
    );
    expect_invalid(
        "[services.users]\ncomponent = \"{c:users}\"\nroute = \"/users\"\n[services.users.limits]\nmemory-mb = 0\n",
        "services.users.limits.memory-mb",
    );
    expect_invalid("this is not toml =", "line 1");
}

#[test]
fn bad_component_files_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    // Not wasm at all.
    std::fs::write(dir.path().join("junk.wasm"), b"definitely not wasm").unwrap();
    // A component that imports an interface silo does not grant.
    std::fs::write(
        dir.path().join("greedy.wat"),
        r#"(component (import "example:secret/backdoor@1.0.0" (instance (export "open" (func)))))"#,
    )
    .unwrap();
    for (file, needle) in [
        ("junk.wasm", "not a valid WebAssembly component"),
        ("greedy.wat", "example:secret/backdoor@1.0.0"),
    ] {
        let manifest = format!(
            "[services.bad]\ncomponent = \"{}\"\nroute = \"/bad\"\n",
            dir.path().join(file).display()
        );
        let path = dir.path().join("silo.toml");
        std::fs::write(&path, manifest).unwrap();
        let data = dir.path().join("data");
        let (code, _, err) = silo_cmd(&[
            "run",
            "--manifest",
            path.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(err.contains("services.bad.component"), "{err}");
        assert!(err.contains(needle), "{file}: {err}");
        assert!(
            !data.exists(),
            "a bad component must not touch the data folder"
        );
    }
}

#[test]
fn bad_arguments_exit_2() {
    let (code, _, err) = silo_cmd(&["run", "--listen", "not-an-address"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = silo_cmd(&["frobnicate"]);
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_health_metrics_and_token() {
    let h = TestHost::start(DEMO).await;
    let r = h.admin_get("/healthz", None).await;
    assert_eq!(r.status, 200);
    h.get("/users").await;
    h.get("/users/missing").await;
    let r = h.admin_get("/metrics", None).await;
    assert_eq!(r.status, 200);
    let m = r.text();
    assert!(
        m.contains("silo_http_requests_total{service=\"users\",route=\"/users\",status=\"200\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("silo_http_requests_total{service=\"users\",route=\"/users\",status=\"404\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "silo_http_request_duration_seconds_count{service=\"users\",route=\"/users\"} 2"
        ),
        "{m}"
    );

    assert_eq!(h.admin_get("/admin/services", None).await.status, 401);
    assert_eq!(
        h.admin_get("/admin/services", Some("wrong")).await.status,
        401
    );
    let r = h.admin_get("/admin/services", Some(&h.token)).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let names: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for n in ["users", "products", "orders"] {
        assert!(names.contains(&n), "{v}");
    }
    let users = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "users")
        .unwrap();
    assert_eq!(users["stores"][0]["backend"], "sqlite");
    assert!(users["digest"].as_str().unwrap().starts_with("sha256:"));

    // The CLI reads the same listing.
    let (code, out, err) = silo_cmd(&["services", "--admin", &h.admin, "--admin-token", &h.token]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("users") && out.contains("/products") && out.contains("main:sqlite"),
        "{out}"
    );
    let (code, _, err) = silo_cmd(&["services", "--admin", &h.admin, "--admin-token", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_on_the_same_data_folder_is_refused() {
    let h = TestHost::start(DEMO).await;
    let data = h.data_dir();
    let (code, _, err) = silo_cmd(&[
        "run",
        "--manifest",
        h.manifest.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("another silo"), "{err}");
    assert_eq!(h.get("/users").await.status, 200);
}

/// The default data folder is relative (`.silo`): a second start must reuse its code cache.
#[test]
fn a_relative_data_folder_survives_a_restart() {
    let (dir, path) =
        write_manifest("[services.hello]\ncomponent = \"{c:hello}\"\nroute = \"/\"\n");
    for _ in 0..2 {
        let mut child = std::process::Command::new(crate::support::silo_bin())
            .current_dir(dir.path())
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--data",
                "rel-data",
            ])
            .arg("--manifest")
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let started = line.contains("serving");
        crate::support::signal(&child, "TERM");
        let out = child.wait_with_output().unwrap();
        assert!(
            started,
            "did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(dir.path().join("rel-data/cache").is_dir());
}

/// Runs `silo` with `args` and `env` (and no inherited `SILO_ADMIN_TOKEN`), expecting it to
/// exit within `limit`; returns (status, stderr). A host that starts serving instead fails
/// the test when `limit` runs out.
fn silo_exits(args: &[&str], env: &[(&str, &str)], limit: std::time::Duration) -> (i32, String) {
    let mut child = std::process::Command::new(crate::support::silo_bin())
        .args(args)
        .env_remove("SILO_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = crate::support::wait_timeout(&mut child, limit);
    let out = child.wait_with_output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn empty_or_short_admin_tokens_refuse_to_start() {
    let (dir, path) =
        write_manifest("[services.hello]\ncomponent = \"{c:hello}\"\nroute = \"/\"\n");
    let data = dir.path().join("data");
    let run = [
        "run",
        "--manifest",
        path.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ];
    for (flag, env, source, length) in [
        (None, Some(""), "SILO_ADMIN_TOKEN", 0),
        (Some(""), None, "--admin-token", 0),
        (Some("fifteen-chars-x"), None, "--admin-token", 15),
        (None, Some("fifteen-chars-x"), "SILO_ADMIN_TOKEN", 15),
        // The flag wins over the environment, and is the one named.
        (
            Some(""),
            Some("a-good-token-0123456789"),
            "--admin-token",
            0,
        ),
    ] {
        let mut args = run.to_vec();
        if let Some(t) = flag {
            args.extend(["--admin-token", t]);
        }
        let env: Vec<(&str, &str)> = env.map(|t| ("SILO_ADMIN_TOKEN", t)).into_iter().collect();
        let (code, err) = silo_exits(&args, &env, std::time::Duration::from_secs(60));
        assert_eq!(code, 2, "{flag:?}/{env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line expected: {err}");
        assert!(
            err.starts_with(&format!(
                "silo: {source}: the admin token is {length} characters long; give one of at least 16"
            )),
            "{flag:?}/{env:?}: {err}"
        );
        assert!(
            !data.exists(),
            "a refused token must not touch the data folder"
        );
    }
}

#[test]
fn admin_clients_never_send_an_empty_token() {
    let (code, err) = silo_exits(
        &["services", "--admin", "127.0.0.1:1", "--admin-token", ""],
        &[],
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("silo: --admin-token is empty: give the host's admin token"),
        "{err}"
    );
    let (code, err) = silo_exits(
        &["undeploy", "users", "--admin", "127.0.0.1:1"],
        &[("SILO_ADMIN_TOKEN", "")],
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("silo: SILO_ADMIN_TOKEN is empty: give the host's admin token"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused() {
    let h = TestHost::start("[services.hello]\ncomponent = \"{c:hello}\"\nroute = \"/\"\n").await;
    let good = format!("Bearer {}", h.token);
    for headers in [
        [
            ("authorization", good.as_str()),
            ("authorization", "Bearer wrong"),
        ],
        [
            ("authorization", "Bearer wrong"),
            ("authorization", good.as_str()),
        ],
        [
            ("authorization", good.as_str()),
            ("authorization", good.as_str()),
        ],
    ] {
        let r = crate::support::request("GET", &h.admin, "/admin/services", None, &headers).await;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
        assert_eq!(r.error_code(), "unauthorized");
        assert_eq!(
            r.json()["error"]["message"],
            "more than one Authorization header: send exactly one (Authorization: Bearer …)"
        );
    }
    let r = crate::support::request(
        "GET",
        &h.admin,
        "/admin/services",
        None,
        &[("authorization", good.as_str())],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_in_use_are_refused_before_anything_is_touched() {
    let h = TestHost::start("[services.hello]\ncomponent = \"{c:hello}\"\nroute = \"/\"\n").await;
    let (dir, path) =
        write_manifest("[services.hello]\ncomponent = \"{c:hello}\"\nroute = \"/\"\n");
    let data = dir.path().join("data");
    for (listen, admin, flag, taken) in [
        (h.http.as_str(), "127.0.0.1:0", "--listen", h.http.as_str()),
        ("127.0.0.1:0", h.admin.as_str(), "--admin", h.admin.as_str()),
    ] {
        let (code, err) = silo_exits(
            &[
                "run",
                "--manifest",
                path.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--listen",
                listen,
                "--admin",
                admin,
            ],
            &[],
            std::time::Duration::from_secs(60),
        );
        assert_eq!(code, 2, "{flag}: {err}");
        assert_eq!(err.lines().count(), 1, "one line expected: {err}");
        assert_eq!(
            err.trim_end(),
            format!("silo: {flag} {taken}: cannot listen: Address already in use (os error 98)")
        );
        assert!(
            !data.exists(),
            "a taken port must not touch the data folder"
        );
    }
    // The first host kept its port and its traffic.
    assert_eq!(h.get("/").await.status, 200);
}

/// A PostgreSQL server that accepts connections and never answers: start-up gives up after
/// `connect-timeout-ms`, naming the backend, the address and the timeout.
#[test]
fn start_up_gives_up_on_a_postgres_server_that_never_answers() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let (dir, path) = write_manifest(&format!(
        "[backends.postgres]\nurl = \"postgres://silo:pw@{addr}/postgres\"\nconnect-timeout-ms = 500\n\n\
         [services.users]\ncomponent = \"{{c:users}}\"\nroute = \"/users\"\n\
         [services.users.stores.main]\nbackend = \"postgres\"\n"
    ));
    let data = dir.path().join("data");
    let started = std::time::Instant::now();
    let (code, err) = silo_exits(
        &[
            "run",
            "--manifest",
            path.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        &[("SILO_ADMIN_TOKEN", "a-good-token-0123456789")],
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "postgres at {addr}: no answer within connect-timeout-ms = 500"
        )),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn components_whose_exports_do_not_fit_the_manifest_exit_2_at_start() {
    // The HTTP export has the wrong type: without the check it would load and answer
    // every request with a 503.
    expect_refused_start(
        "[services.bad]\ncomponent = \"{c:wrong-http}\"\nroute = \"/bad\"\n",
        "services.bad.component",
        &[
            "its export `wasi:http/incoming-handler@0.2.x` has the wrong type",
            "the component's is `func(request: string) -> string`",
        ],
    );
    // hello.wasm as the demo's products: a saga participant without a command handler.
    // The demo's other services may be serving by the time products has compiled.
    let demo_with_hello_products = crate::DEMO.replace("{c:products}", "{c:hello}");
    expect_refused_after_start(
        &demo_with_hello_products,
        "products",
        "services.products.component",
        &[
            "does not export `silo:service/command-handler@0.1.0`, which a saga participant needs",
            r#"`commands = ["reserve", "release"]`"#,
            "`orders` lists `products` in `saga-participants`",
        ],
    );
    // A participant listed by an orchestrator, with no `commands` of its own.
    expect_refused_after_start(
        &crate::DEMO
            .replace("commands = [\"charge\", \"refund\"]\n", "")
            .replace("{c:payments}", "{c:hello}"),
        "payments",
        "services.payments.component",
        &["which a saga participant needs: `orders` lists `payments` in `saga-participants`"],
    );
    // An orchestrator without a saga handler.
    expect_refused_after_start(
        "[services.o]\ncomponent = \"{c:hello}\"\nroute = \"/o\"\nsaga-participants = [\"p\"]\n[services.o.stores.main]\n\
         [services.p]\ncomponent = \"{c:products}\"\nroute = \"/p\"\n[services.p.stores.main]\n",
        "o",
        "services.o.component",
        &[
            "does not export `silo:service/saga-handler@0.1.0`, which a service that starts sagas needs: `saga-participants = [\"p\"]`",
        ],
    );
}

/// A listener that accepts connections and never answers (nor closes them).
fn silent_server() -> std::net::SocketAddr {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// Starts a host whose only store is on a server that never answers (`backend` section and
/// store lines given); returns its status, stderr and how long it took to give up.
fn start_against_silent(backend: &str, store: &str) -> (i32, String, std::time::Duration) {
    let (dir, path) = write_manifest(&format!(
        "{backend}\nconnect-timeout-ms = 500\n\n\
         [services.hello]\ncomponent = \"{{c:hello}}\"\nroute = \"/\"\n{store}"
    ));
    let data = dir.path().join("data");
    let started = std::time::Instant::now();
    let (code, err) = silo_exits(
        &[
            "run",
            "--manifest",
            path.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--cache",
            crate::support::shared_cache().to_str().unwrap(),
        ],
        &[("SILO_ADMIN_TOKEN", "a-good-token-0123456789")],
        std::time::Duration::from_secs(30),
    );
    (code, err, started.elapsed())
}

/// A MariaDB server that accepts connections and never greets: start-up gives up after
/// `connect-timeout-ms`, naming the backend, the address and the timeout.
#[test]
fn start_up_gives_up_on_a_mariadb_server_that_never_answers() {
    let addr = silent_server();
    let (code, err, took) = start_against_silent(
        &format!("[backends.mysql]\nurl = \"mysql://root@{addr}/\""),
        "[services.hello.stores.main]\nbackend = \"mysql\"\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "services.hello.stores.main: unavailable: mariadb at {addr}: no answer within connect-timeout-ms = 500"
        )),
        "{err}"
    );
    // The timeout, plus the host's own start (a small component, compiled once per run).
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

/// A Redis server that accepts connections and never answers: start-up gives up after
/// `connect-timeout-ms` (it waited 10 s whatever the setting), naming the backend, the
/// address and the timeout.
#[test]
fn start_up_gives_up_on_a_redis_server_that_never_answers() {
    let addr = silent_server();
    let (code, err, took) = start_against_silent(
        &format!("[backends.redis]\nurl = \"redis://{addr}\""),
        "[services.hello.kv.cache]\nbackend = \"redis\"\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "services.hello.kv.cache: unavailable: redis at {addr}: no answer within connect-timeout-ms = 500"
        )),
        "{err}"
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}
