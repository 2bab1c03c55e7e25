//! Calls between services: API composition, API-based sync, and the host's rules for calls
//! (declared targets only, no way out, deadlines, no cycles, an unforgeable caller).

use std::time::{Duration, Instant};

use crate::DEMO;
use crate::support::TestHost;

/// Creates a user and a product; returns their ids.
async fn seed(h: &TestHost) -> (String, String) {
    let u = h
        .post("/users", r#"{"email":"ada@example.com","name":"Ada"}"#)
        .await;
    assert_eq!(u.status, 201, "{}", u.text());
    let p = h
        .post("/products", r#"{"name":"Engine","price":1250,"stock":5}"#)
        .await;
    assert_eq!(p.status, 201, "{}", p.text());
    (
        u.json()["id"].as_str().unwrap().to_string(),
        p.json()["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placing_an_order_copies_user_and_product_data_at_write_time() {
    let h = TestHost::start(DEMO).await;
    let (user, product) = seed(&h).await;
    let body = format!(r#"{{"userId":"{user}","productId":"{product}","quantity":3}}"#);
    let r = h.post("/orders", &body).await;
    assert!(r.status == 201 || r.status == 202, "{}", r.text());
    let order = r.json();
    assert_eq!(order["amount"], 3750);
    assert_eq!(order["userName"], "Ada");
    assert_eq!(order["userEmail"], "ada@example.com");
    assert_eq!(order["productName"], "Engine");
    let id = order["id"].as_str().unwrap();
    let stored = h.get(&format!("/orders/{id}")).await.json();
    assert_eq!(stored["userName"], "Ada");
    assert_eq!(stored["amount"], 3750);

    // Unknown user, product or currency: 422 with the contract's error body, nothing stored.
    for (body, what) in [
        (
            format!(r#"{{"userId":"nope","productId":"{product}","quantity":1}}"#),
            "user",
        ),
        (
            format!(r#"{{"userId":"{user}","productId":"nope","quantity":1}}"#),
            "product",
        ),
        (
            format!(
                r#"{{"userId":"{user}","productId":"{product}","quantity":1,"currency":"XXX"}}"#
            ),
            "currency",
        ),
    ] {
        let r = h.post("/orders", &body).await;
        assert_eq!(r.status, 422, "{what}: {}", r.text());
        assert_eq!(r.error_code(), "unprocessable");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(what),
            "{}",
            r.text()
        );
    }
    let mine = h.get(&format!("/orders?userId={user}")).await.json();
    assert_eq!(
        mine.as_array().unwrap().len(),
        1,
        "a rejected order was stored: {mine}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_details_compose_three_services() {
    let h = TestHost::start(DEMO).await;
    let (user, product) = seed(&h).await;
    let body = format!(r#"{{"userId":"{user}","productId":"{product}","quantity":1}}"#);
    let id = h.post("/orders", &body).await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The user changes after the order: details show the owner's current data.
    h.put(&format!("/users/{user}"), r#"{"name":"Ada Lovelace"}"#)
        .await;
    let r = h.get(&format!("/orders/{id}/details")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["order"]["id"], id.as_str());
    assert_eq!(v["user"]["name"], "Ada Lovelace");
    assert_eq!(v["product"]["name"], "Engine");
    assert_eq!(
        v["missing"].as_array().map(|m| m.len()).unwrap_or(0),
        0,
        "{v}"
    );
    assert_eq!(h.get("/orders/nope/details").await.status, 404);
    // Reference data is a service of its own that others read through calls.
    let eur = h.get("/reference/currencies/eur").await;
    assert_eq!(eur.status, 200, "{}", eur.text());
    assert_eq!(eur.json()["code"], "EUR");
    assert!(
        h.get("/reference/countries")
            .await
            .json()
            .as_array()
            .unwrap()
            .len()
            >= 5
    );
}

/// The demo, with `users` replaced by a component that traps or spins.
fn demo_with_broken_users(component: &str, deadline_ms: u64) -> String {
    DEMO.replace(
        "component = \"{c:users}\"",
        &format!("component = \"{{c:{component}}}\""),
    )
    .replace(
        "[services.users.stores.main]",
        &format!(
            "[services.users.stores.main]\n[services.users.limits]\ndeadline-ms = {deadline_ms}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_return_what_they_have_when_a_service_is_down() {
    // Seed with the real users service, then restart with users trapping on every request.
    let h = TestHost::start(DEMO).await;
    let (user, product) = seed(&h).await;
    let body = format!(r#"{{"userId":"{user}","productId":"{product}","quantity":2}}"#);
    let id = h.post("/orders", &body).await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, dir, manifest) = h.stop();
    let mut dir = Some(dir);
    for (broken, deadline) in [("trap", 10_000), ("spin", 300)] {
        let text = crate::support::resolve(&demo_with_broken_users(broken, deadline));
        std::fs::write(&manifest, text).unwrap();
        let h = TestHost::start_in(dir.take().unwrap(), manifest.clone()).await;
        let t = Instant::now();
        let r = h.get(&format!("/orders/{id}/details")).await;
        assert_eq!(r.status, 200, "{broken}: {}", r.text());
        let v = r.json();
        assert!(v["user"].is_null(), "{broken}: {v}");
        assert_eq!(v["product"]["name"], "Engine", "{broken}: {v}");
        assert_eq!(v["order"]["id"], id.as_str());
        assert!(
            v["missing"].as_array().unwrap().iter().any(|m| m == "user"),
            "{v}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{broken}: took {:?}",
            t.elapsed()
        );
        // Placing an order needs the user: 503, never a half-written order.
        let r = h.post("/orders", &body).await;
        assert_eq!(r.status, 503, "{broken}: {}", r.text());
        let (_, d, _) = h.stop();
        dir = Some(d);
    }
}

const CALLERS: &str = r#"
[services.a]
component = "{c:caller}"
route = "/a"
calls = ["b", "slow"]

[services.b]
component = "{c:caller}"
route = "/b"
calls = ["a"]

[services.c]
component = "{c:caller}"
route = "/c"

[services.slow]
component = "{c:spin}"
route = "/slow"

[services.users]
component = "{c:users}"
route = "/users"
publishes = ["UserCreated", "UserUpdated"]
[services.users.stores.main]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_declared_services_can_be_called_and_nothing_outside() {
    let h = TestHost::start(CALLERS).await;
    let ok = h.get("/a/call?to=b&path=/b/whoami").await.json();
    assert_eq!(ok["status"], 200, "{ok}");
    // Undeclared service (users exists but a does not list it), and one that does not exist.
    for to in ["users", "c", "nonexistent"] {
        let v = h
            .get(&format!("/a/call?to={to}&path=/{to}/whoami"))
            .await
            .json();
        assert!(
            v["error"].as_str().unwrap_or("").contains("denied"),
            "{to}: {v}"
        );
    }
    // Any outside host, including this very host's own port.
    for url in [
        "http://example.com/".to_string(),
        format!("http://{}/users", h.http),
        "http://127.0.0.1:9/".to_string(),
    ] {
        let v = h
            .get(&format!(
                "/a/external?url={}",
                crate::support::urlencode(&url)
            ))
            .await
            .json();
        assert!(
            v["error"].as_str().unwrap_or("").contains("denied"),
            "{url}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callee_knows_its_caller_and_nobody_can_forge_it() {
    let h = TestHost::start(CALLERS).await;
    let r = crate::support::request(
        "GET",
        &h.http,
        "/b/whoami",
        None,
        &[("silo-caller", "users")],
    )
    .await;
    assert!(
        r.json()["caller"].is_null(),
        "an outside client forged the caller: {}",
        r.text()
    );
    let v = h
        .get("/a/call?to=b&path=/b/whoami&header=silo-caller:users")
        .await
        .json();
    assert_eq!(v["status"], 200, "{v}");
    let inner: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["caller"], "a", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_is_refused_rather_than_hanging() {
    let h = TestHost::start(CALLERS).await;
    let t = Instant::now();
    // a → b → a: b's call back to a is refused.
    let v = h
        .get("/a/call?to=b&path=/b/call%3Fto%3Da%26path%3D/a/whoami")
        .await
        .json();
    assert_eq!(v["status"], 200, "{v}");
    let inner: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert!(
        inner["error"].as_str().unwrap_or("").contains("loop"),
        "{inner}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_callee_times_out_within_the_call_timeout() {
    let manifest = CALLERS.replace(
        "calls = [\"b\", \"slow\"]",
        "calls = [\"b\", \"slow\"]\n[services.a.limits]\ncall-timeout-ms = 300",
    );
    let h = TestHost::start(&manifest).await;
    let t = Instant::now();
    let v = h.get("/a/call?to=slow&path=/slow/loop").await.json();
    let took = t.elapsed();
    assert!(v["error"].is_string() || v["status"] == 503, "{v}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // The caller and the callee both keep serving.
    assert_eq!(h.get("/a/whoami").await.status, 200);
    assert_eq!(h.get("/slow/ok").await.status, 200);
}
