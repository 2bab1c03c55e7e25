//! Events: the outbox, the inbox, the router, dead letters, the textbook flows, and crashes
//! at the worst moments (real SIGKILLs of the real host, on-disk databases).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::DEMO;
use crate::support::{TestHost, silo_cmd, write_manifest};

/// `pub` publishes; `sub` and `sub2` (the same probe component) subscribe. `sub2` gives up
/// quickly, so poison events reach its dead letters within a test.
const PROBES: &str = r#"
[services.pub]
component = "{c:events_probe}"
route = "/pub"
publishes = ["Ping", "Other"]
[services.pub.stores.main]

[services.sub]
component = "{c:events_probe}"
route = "/sub"
subscribes = [{ source = "pub", topic = "Ping" }]
[services.sub.stores.main]
[services.sub.events]
backoff-ms = 20
max-backoff-ms = 200
max-attempts = 1000

[services.sub2]
component = "{c:events_probe}"
route = "/sub2"
subscribes = [{ source = "pub", topic = "Ping" }]
[services.sub2.stores.main]
[services.sub2.events]
max-attempts = 3
backoff-ms = 10
max-backoff-ms = 50
"#;

const WAIT: Duration = Duration::from_secs(30);

async fn publish(h: &TestHost, topic: &str, key: &str, data: &str, count: u32) -> Vec<String> {
    let body = serde_json::json!({ "topic": topic, "key": key, "data": data, "count": count });
    let r = h.post("/pub/publish", &body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

async fn received(h: &TestHost, mount: &str) -> Vec<serde_json::Value> {
    let r = h.get(&format!("/{mount}/received")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().cloned().unwrap()
}

async fn applied(h: &TestHost, mount: &str) -> BTreeMap<String, i64> {
    let r = h.get(&format!("/{mount}/applied")).await;
    serde_json::from_value(r.json()).unwrap()
}

/// Waits until `mount` has received `n` events.
async fn wait_received(h: &TestHost, mount: &str, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let got = received(h, mount).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < WAIT,
            "{mount} received {} of {n} events: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn subscription<'a>(subs: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    subs.iter()
        .find(|s| s["subscription"] == id)
        .unwrap_or_else(|| panic!("no subscription {id} in {subs:?}"))
}

#[tokio::test]
async fn committed_events_arrive_once_in_order_rolled_back_ones_never() {
    let h = TestHost::start(PROBES).await;
    let ids = publish(&h, "Ping", "k", "hello", 3).await;
    let got = wait_received(&h, "sub", 3).await;
    let seen: Vec<&str> = got.iter().map(|e| e["eventId"].as_str().unwrap()).collect();
    assert_eq!(seen, ids, "in publish order, each once");
    for e in &got {
        assert_eq!(e["source"], "pub", "the host stamps the source: {e}");
        assert_eq!(e["topic"], "Ping");
    }
    let seqs: Vec<i64> = got
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence grows: {seqs:?}"
    );
    wait_received(&h, "sub2", 3).await;

    // Rolled back: the outbox rows went with the transaction.
    let body = r#"{"topic":"Ping","key":"k","data":"never","count":2,"rollback":true}"#;
    assert_eq!(h.post("/pub/publish", body).await.status, 200);
    // An undeclared topic is refused to the guest, and nothing of its transaction is kept.
    let r = h
        .post("/pub/publish", r#"{"topic":"Secret","key":"k","data":"x"}"#)
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("Secret"), "{}", r.text());
    // A topic nobody subscribes to is accepted and delivered nowhere.
    publish(&h, "Other", "k", "unheard", 1).await;
    // A later event proves the router has moved past the rolled-back ones.
    publish(&h, "Ping", "k", "after", 1).await;
    let got = wait_received(&h, "sub", 4).await;
    h.wait_drained(WAIT).await;
    let data: Vec<&str> = got.iter().map(|e| e["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["hello-1", "hello-2", "hello-3", "after"]);
    let subs = h.subscriptions().await;
    let s = subscription(&subs, "sub:pub/Ping");
    assert_eq!(s["delivered"], 4, "{s}");
    assert!(s["latencyP99Ms"].is_u64(), "{s}");
}

#[tokio::test]
async fn host_tables_are_out_of_reach_of_guest_sql() {
    let h = TestHost::start(PROBES).await;
    publish(&h, "Ping", "k", "x", 1).await;
    wait_received(&h, "sub", 1).await;
    for (mount, sql) in [
        ("pub", "SELECT * FROM _silo_outbox"),
        ("pub", "DELETE FROM _silo_deliveries"),
        ("pub", "UPDATE _silo_subscriptions SET topic = 'x'"),
        ("pub", "SELECT * FROM _silo_dead_letters"),
        ("sub", "DELETE FROM _silo_inbox"),
        ("sub", "SELECT event_id FROM main._silo_inbox"),
        (
            "sub",
            "INSERT INTO _silo_inbox (subscription, event_id, received_ms) VALUES ('x', 'y', 0)",
        ),
        ("pub", "INSERT INTO _silo_outbox (id) VALUES ('forged')"),
        ("pub", "DROP TABLE _silo_outbox"),
        ("pub", "ALTER TABLE _silo_outbox RENAME TO mine"),
    ] {
        let body = serde_json::json!({ "sql": sql });
        let r = h.post(&format!("/{mount}/sql"), &body.to_string()).await;
        assert_eq!(r.status, 403, "{mount}: {sql}: {}", r.text());
    }
}

#[tokio::test]
async fn a_failing_key_waits_in_order_while_other_keys_flow() {
    let h = TestHost::start(PROBES).await;
    // Key `a`: a trapping event, then one that would succeed. Key `b`: fine.
    publish(&h, "Ping", "a", "trap", 1).await;
    publish(&h, "Ping", "a", "second", 1).await;
    publish(&h, "Ping", "b", "fine", 2).await;
    let got = wait_received(&h, "sub", 2).await;
    assert!(got.iter().all(|e| e["key"] == "b"), "{got:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received(&h, "sub").await.len(),
        2,
        "`second` must wait behind the failing event of its key"
    );
    let subs = h.subscriptions().await;
    assert!(
        subscription(&subs, "sub:pub/Ping")["retries"]
            .as_u64()
            .unwrap()
            >= 1,
        "{subs:?}"
    );
    // Fixed: the failing event goes through first, then the one behind it.
    assert_eq!(h.post("/sub/fix?key=a", "").await.status, 200);
    let got = wait_received(&h, "sub", 4).await;
    let a: Vec<&str> = got
        .iter()
        .filter(|e| e["key"] == "a")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(a, ["trap", "second"]);
}

#[tokio::test]
async fn poison_events_become_dead_letters_and_replay_once() {
    let h = TestHost::start(PROBES).await;
    publish(&h, "Ping", "p", "poison", 1).await;
    publish(&h, "Ping", "q", "fine", 3).await;
    // sub2 gives up on `p` after three attempts; `q` and the other subscription flow.
    wait_received(&h, "sub2", 3).await;
    let start = Instant::now();
    let dead = loop {
        let r = h.admin_get("/admin/dead-letters", Some(&h.token)).await;
        let list = r.json()["deadLetters"].as_array().cloned().unwrap();
        if !list.is_empty() {
            break list;
        }
        assert!(start.elapsed() < WAIT, "no dead letter");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d["subscription"], "sub2:pub/Ping");
    assert_eq!(d["attempts"], 3);
    assert!(d["lastError"].as_str().unwrap().contains("poisoned"), "{d}");
    let subs = h.subscriptions().await;
    let s = subscription(&subs, "sub2:pub/Ping");
    assert_eq!(s["deadLetters"], 1, "{s}");
    assert_eq!(s["retries"], 2, "{s}");
    assert_eq!(s["pending"], 0, "{s}");
    let metrics = h.admin_get("/metrics", None).await.text();
    assert!(
        metrics.contains("silo_events_dead_letters{subscription=\"sub2:pub/Ping\",source=\"pub\",topic=\"Ping\",subscriber=\"sub2\"} 1"),
        "{metrics}"
    );

    // The CLI lists it; replay before the fix fails again, after the fix delivers once.
    let admin = [
        "--admin",
        h.admin.as_str(),
        "--admin-token",
        h.token.as_str(),
    ];
    let (code, out, err) = silo_cmd(&[&["dead-letters"][..], &admin].concat());
    assert_eq!(code, 0, "{err}");
    let id = d["id"].as_str().unwrap();
    assert!(out.contains(id) && out.contains("poisoned"), "{out}");
    assert_eq!(h.post("/sub2/fix?key=p", "").await.status, 200);
    let (code, out, err) = silo_cmd(&[&["dead-letters", "replay", id][..], &admin].concat());
    assert_eq!(code, 0, "{out}{err}");
    let got = wait_received(&h, "sub2", 4).await;
    assert_eq!(got.iter().filter(|e| e["key"] == "p").count(), 1);
    assert_eq!(applied(&h, "sub2").await["p"], 1);
    let (code, _, err) = silo_cmd(&[&["dead-letters", "replay", id][..], &admin].concat());
    assert_eq!(code, 1, "a replayed dead letter is gone: {err}");
    assert!(err.contains("404"), "{err}");
    // The first subscription never had a dead letter: it kept retrying (max-attempts 1000)
    // until the fix of its own copy.
    assert_eq!(h.post("/sub/fix?key=p", "").await.status, 200);
    wait_received(&h, "sub", 4).await;
}

#[tokio::test]
async fn duplicate_deliveries_change_nothing() {
    let (dir, manifest) = write_manifest(PROBES);
    let h = TestHost::start_with(dir, manifest, &[("SILO_FAILPOINTS", "duplicate-delivery")]).await;
    for key in ["a", "b", "c", "d", "e"] {
        publish(&h, "Ping", key, "x", 10).await;
    }
    wait_received(&h, "sub", 50).await;
    h.wait_drained(WAIT).await;
    let counts = applied(&h, "sub").await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [10; 5],
        "{counts:?}"
    );
    assert_eq!(received(&h, "sub").await.len(), 50);
    let subs = h.subscriptions().await;
    let s = subscription(&subs, "sub:pub/Ping");
    assert!(
        s["duplicates"].as_u64().unwrap() >= 50,
        "every event was delivered twice and turned away once: {s}"
    );
}

/// Starts the probes with `failpoint`, publishes, lets the failpoint kill the host,
/// restarts, and checks every event applied exactly once.
async fn crash_and_recover(failpoint: &str, expect_duplicates: bool) {
    let (dir, manifest) = write_manifest(PROBES);
    let h = TestHost::start_with(dir, manifest, &[("SILO_FAILPOINTS", failpoint)]).await;
    let body = r#"{"topic":"Ping","key":"k","data":"e","count":5}"#;
    // The host may die before it answers (after-publish-commit): the answer does not matter.
    let _ = crate::support::try_request("POST", &h.http, "/pub/publish", Some(body)).await;
    let (status, dir, manifest) = h.wait_death(WAIT);
    assert!(
        !status.success(),
        "{failpoint}: killed, not exited: {status:?}"
    );

    let h = TestHost::start_in(dir, manifest).await;
    let got = wait_received(&h, "sub", 5).await;
    h.wait_drained(WAIT).await;
    assert_eq!(received(&h, "sub").await.len(), 5, "{failpoint}: {got:?}");
    assert_eq!(
        applied(&h, "sub").await["k"],
        5,
        "{failpoint}: applied once each"
    );
    assert_eq!(applied(&h, "sub2").await["k"], 5, "{failpoint}");
    let data: Vec<&str> = got.iter().map(|e| e["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["e-1", "e-2", "e-3", "e-4", "e-5"], "{failpoint}");
    if expect_duplicates {
        let subs = h.subscriptions().await;
        let dups: u64 = subs.iter().map(|s| s["duplicates"].as_u64().unwrap()).sum();
        assert!(
            dups >= 1,
            "{failpoint}: the redelivery met the inbox: {subs:?}"
        );
    }
}

#[tokio::test]
async fn sigkill_right_after_the_publishing_commit_loses_nothing() {
    crash_and_recover("after-publish-commit", false).await;
}

#[tokio::test]
async fn sigkill_after_the_handler_commit_applies_nothing_twice() {
    crash_and_recover("after-handler-commit", true).await;
}

#[tokio::test]
async fn sigkill_mid_batch_applies_nothing_twice() {
    crash_and_recover("mid-batch", false).await;
}

async fn json_of(h: &TestHost, path: &str) -> serde_json::Value {
    let r = h.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// Waits until `check` holds for `GET path`.
async fn wait_for(h: &TestHost, path: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let start = Instant::now();
    loop {
        let v = json_of(h, path).await;
        if check(&v) {
            return;
        }
        assert!(start.elapsed() < WAIT, "{path} never matched: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn orders_follow_user_and_product_changes() {
    let h = TestHost::start(DEMO).await;
    let user = h
        .post("/users", r#"{"email":"ada@example.com","name":"Ada"}"#)
        .await
        .json();
    let product = h
        .post("/products", r#"{"name":"Lamp","price":1200,"stock":5}"#)
        .await
        .json();
    let (uid, pid) = (
        user["id"].as_str().unwrap(),
        product["id"].as_str().unwrap(),
    );
    let mut orders = Vec::new();
    for _ in 0..3 {
        let body = serde_json::json!({ "userId": uid, "productId": pid, "quantity": 1 });
        let r = h.post("/orders", &body.to_string()).await;
        assert_eq!(r.status, 202, "{}", r.text());
        orders.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let r = h
        .put(
            &format!("/users/{uid}"),
            r#"{"name":"Ada Lovelace","email":"ada@lovelace.org"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = h
        .put(&format!("/products/{pid}"), r#"{"name":"Desk lamp"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for id in &orders {
        wait_for(&h, &format!("/orders/{id}"), |o| {
            o["userName"] == "Ada Lovelace"
                && o["userEmail"] == "ada@lovelace.org"
                && o["productName"] == "Desk lamp"
        })
        .await;
    }
    let list = json_of(&h, &format!("/orders?userId={uid}")).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let subs = h.subscriptions().await;
    for id in ["orders:users/UserUpdated", "orders:products/ProductUpdated"] {
        assert!(
            subscription(&subs, id)["delivered"].as_u64().unwrap() >= 1,
            "{subs:?}"
        );
    }
    let metrics = h.admin_get("/metrics", None).await.text();
    assert!(
        metrics.contains(
            "silo_events_delivery_lag_seconds_count{subscription=\"orders:users/UserUpdated\""
        ),
        "{metrics}"
    );
    // `silo events` shows the subscriptions.
    let admin = [
        "--admin",
        h.admin.as_str(),
        "--admin-token",
        h.token.as_str(),
    ];
    let (code, out, err) = silo_cmd(&[&["events"][..], &admin].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("orders:users/UserUpdated"), "{out}");
}

/// Many concurrent updates to a few users, with the host SIGKILLed under load between
/// rounds: in the end every order's copy is its user's latest row.
#[tokio::test]
async fn copies_converge_under_concurrent_updates_and_kills() {
    const USERS: usize = 3;
    const ROUNDS: usize = 4;
    const UPDATES_PER_ROUND: usize = 500;
    let h = TestHost::start(DEMO).await;
    let product = h
        .post("/products", r#"{"name":"Pen","price":100,"stock":5}"#)
        .await
        .json();
    let pid = product["id"].as_str().unwrap().to_string();
    let mut users = Vec::new();
    for i in 0..USERS {
        let body = format!(r#"{{"email":"u{i}@example.com","name":"u{i}"}}"#);
        users.push(
            h.post("/users", &body).await.json()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut orders = Vec::new();
    for uid in &users {
        for _ in 0..2 {
            let body = serde_json::json!({ "userId": uid, "productId": pid, "quantity": 1 });
            let r = h.post("/orders", &body.to_string()).await;
            assert_eq!(r.status, 202, "{}", r.text());
            orders.push(r.json()["id"].as_str().unwrap().to_string());
        }
    }
    let mut h = h;
    let mut accepted = 0usize;
    for round in 0..ROUNDS {
        let http = h.http.clone();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..UPDATES_PER_ROUND {
            let uid = users[i % USERS].clone();
            let http = http.clone();
            tasks.spawn(async move {
                let body = format!(r#"{{"name":"r{round}-n{i}"}}"#);
                let path = format!("/users/{uid}");
                crate::support::try_request("PUT", &http, &path, Some(&body))
                    .await
                    .map_or(0, |r| r.status)
            });
            if i % 16 == 15 {
                // Sixteen in flight at a time, roughly.
                while tasks.len() > 16 {
                    if let Some(Ok(200)) = tasks.join_next().await {
                        accepted += 1;
                    }
                }
            }
            if round < ROUNDS - 1 && i == UPDATES_PER_ROUND * 3 / 4 {
                // Kill the host under load, with updates in flight and events pending.
                let (dir, manifest) = h.kill();
                while let Some(r) = tasks.join_next().await {
                    if let Ok(200) = r {
                        accepted += 1;
                    }
                }
                h = TestHost::start_in(dir, manifest).await;
                break;
            }
        }
        while let Some(r) = tasks.join_next().await {
            if let Ok(200) = r {
                accepted += 1;
            }
        }
    }
    assert!(accepted > 1000, "only {accepted} updates were accepted");
    h.wait_drained(Duration::from_secs(60)).await;
    for (i, uid) in users.iter().enumerate() {
        let user = json_of(&h, &format!("/users/{uid}")).await;
        for oid in &orders[i * 2..i * 2 + 2] {
            let order = json_of(&h, &format!("/orders/{oid}")).await;
            assert_eq!(
                order["userName"], user["name"],
                "order {oid}: {order} vs {user}"
            );
            assert_eq!(order["userEmail"], user["email"]);
            assert_eq!(order["userVersion"], user["version"], "{order} vs {user}");
        }
    }
}
