//! The sandbox: capabilities by grant only, traps and runaway guests contained to one
//! request, WASI grants empty, and plain wasi:http components served unchanged.

use std::time::{Duration, Instant};

use crate::support::TestHost;

const FIXTURES: &str = r#"
[services.users]
component = "{c:users}"
route = "/users"
publishes = ["UserCreated", "UserUpdated"]
[services.users.stores.main]

[services.thief]
component = "{c:steal-store}"
route = "/thief"
[services.thief.stores.main]

[services.trap]
component = "{c:trap}"
route = "/trap"

[services.spin]
component = "{c:spin}"
route = "/spin"
[services.spin.limits]
deadline-ms = 3000
memory-mb = 16

[services.probe]
component = "{c:wasi-probe}"
route = "/probe"

[services.hello]
component = "{c:hello}"
route = "/hello"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_can_open_only_its_declared_stores() {
    let h = TestHost::start(FIXTURES).await;
    let r = h.get("/thief/own").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ok"], true);
    // Another service's store name, a name nobody has, and path tricks: all access-denied,
    // and indistinguishable.
    for name in [
        "users",
        "orders",
        "nonexistent",
        "../users/main",
        "main.db",
        "",
        "MAIN",
    ] {
        let r = h
            .get(&format!(
                "/thief/steal?name={}",
                crate::support::urlencode(name)
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["result"], "denied", "store {name:?}: {v}");
        let err = v["error"].as_str().unwrap();
        assert!(err.starts_with("access-denied"), "store {name:?}: {err}");
    }
    // The victim's data is intact and still served.
    assert_eq!(
        h.post("/users", r#"{"email":"v@x.y","name":"V"}"#)
            .await
            .status,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_503_for_that_request_only() {
    let h = TestHost::start(FIXTURES).await;
    let (trapped, ok) = tokio::join!(h.get("/trap/trap"), h.get("/users"));
    assert_eq!(trapped.status, 503, "{}", trapped.text());
    assert_eq!(trapped.error_code(), "service_trapped");
    assert_eq!(ok.status, 200);
    // The trapping service itself keeps serving other requests.
    assert_eq!(h.get("/trap/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_hits_the_deadline_while_others_are_served() {
    let h = TestHost::start(FIXTURES).await;
    let started = Instant::now();
    let spin = tokio::spawn({
        let addr = h.http.clone();
        async move { crate::support::request("GET", &addr, "/spin/loop", None, &[]).await }
    });
    // While it spins, other services answer promptly on every worker thread.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(h.get("/users").await.status, 200);
        // A starved victim would wait for the spinner's 3 s deadline.
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "a victim request took {:?}",
            t.elapsed()
        );
    }
    let r = spin.await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "deadline_exceeded");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2900),
        "stopped too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(8),
        "deadline not enforced: {took:?}"
    );
    assert_eq!(h.get("/spin/ok").await.status, 200);
}

/// A 503 `service_trapped` whose message names the instance's memory limit of `mib` MiB:
/// what only the memory limit answers.
fn assert_memory_limit(r: &crate::support::Resp, mib: u64) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "service_trapped", "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&format!("reached its memory limit of {mib} MiB")),
        "not the memory limit: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_stops_at_the_limit() {
    let h = TestHost::start(FIXTURES).await;
    let r = h.get("/spin/alloc").await;
    // The memory limit's own answer: a deadline (3 s here) would also be a 503, but
    // `deadline_exceeded`, and another trap would not name the limit.
    assert_memory_limit(&r, 16);
    assert_eq!(h.get("/spin/ok").await.status, 200);
    assert_eq!(h.get("/users").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_filesystem_sockets_and_environment_are_empty() {
    let h = TestHost::start(FIXTURES).await;
    let r = h.get("/probe").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    // The refusal each missing grant gives, and no other error: no preopen holds the path
    // (ENOENT, 44 in WASI's numbering, for paths that exist on every host), and sockets are
    // `access-denied` (EACCES, 2).
    for (key, refusal) in [
        ("fileRead", "error: No such file or directory (os error 44)"),
        ("readDir", "error: No such file or directory (os error 44)"),
        ("tcp", "error: Permission denied (os error 2)"),
    ] {
        let s = v[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing in {v}"));
        assert_eq!(s, refusal, "{key}: {v}");
    }
    assert_eq!(v["envCount"], 0, "{v}");
    assert_eq!(v["preopens"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_wasi_http_component_serves_unchanged() {
    let h = TestHost::start(FIXTURES).await;
    let r = h.get("/hello").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello\n");
    let r = h.get("/hello/any/path?x=1").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_concurrency_limit_gets_503_there_only() {
    let manifest = format!(
        "{FIXTURES}\n[services.slow]\ncomponent = \"{{c:spin}}\"\nroute = \"/slow\"\n[services.slow.limits]\nconcurrency = 2\ndeadline-ms = 1500\n"
    );
    let h = TestHost::start(&manifest).await;
    let mut flood = Vec::new();
    for _ in 0..8 {
        let addr = h.http.clone();
        flood.push(tokio::spawn(async move {
            crate::support::request("GET", &addr, "/slow/loop", None, &[]).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.get("/users").await.status, 200);
    let (mut busy, mut ran) = (0, 0);
    for f in flood {
        let r = f.await.unwrap();
        assert_eq!(r.status, 503);
        match r.error_code().as_str() {
            "busy" => busy += 1,
            "deadline_exceeded" => ran += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // At most `concurrency` instances ran at once; everything beyond was refused at once.
    assert!(ran <= 4 && busy >= 4, "ran {ran}, refused {busy}");
    let metrics = h.admin_get("/metrics", None).await.text();
    assert!(
        metrics.contains(&format!(
            "silo_rejected_busy_total{{service=\"slow\"}} {busy}"
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_roll_back_and_roll_back_when_dropped() {
    let h = TestHost::start(FIXTURES).await;
    let rows = |r: crate::support::Resp| {
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["rows"].as_i64().unwrap()
    };
    assert_eq!(rows(h.get("/thief/tx?end=commit").await), 1);
    assert_eq!(rows(h.get("/thief/tx?end=rollback").await), 1);
    assert_eq!(rows(h.get("/thief/tx?end=drop").await), 1);
    assert_eq!(rows(h.get("/thief/tx?end=commit").await), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_reuse_is_opt_in_per_service() {
    let manifest = format!(
        "{FIXTURES}\n[services.warm]\ncomponent = \"{{c:spin}}\"\nroute = \"/warm\"\n[services.warm.limits]\ninstance-reuse = 3\n"
    );
    let h = TestHost::start(&manifest).await;
    let mut fresh = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..12 {
        fresh.push(
            h.get("/spin/count").await.json()["served"]
                .as_u64()
                .unwrap(),
        );
        warm.push(
            h.get("/warm/count").await.json()["served"]
                .as_u64()
                .unwrap(),
        );
    }
    assert!(
        fresh.iter().all(|&n| n == 1),
        "default is a fresh instance per request: {fresh:?}"
    );
    assert!(
        warm.iter().any(|&n| n > 1),
        "reuse never happened: {warm:?}"
    );
    assert!(
        warm.iter().all(|&n| n <= 3),
        "an instance served beyond its quota: {warm:?}"
    );
    // A trap discards the instance instead of returning it to the pool.
    assert_memory_limit(&h.get("/warm/alloc").await, 64);
    assert_eq!(h.get("/warm/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let h = TestHost::start(FIXTURES).await;
    let addr = h.http.clone();
    let slow = tokio::spawn(async move {
        crate::support::request("GET", &addr, "/spin/sleep?ms=1000", None, &[]).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _dir, _) = tokio::task::spawn_blocking(move || h.stop()).await.unwrap();
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request was cut: {}", r.text());
    assert_eq!(r.text(), "slept\n");
    assert!(status.success(), "{status:?}");
}
