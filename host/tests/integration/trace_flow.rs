//! Traces that follow events and sagas across services (where a request's trace usually
//! stops): one `POST /orders` with a `traceparent` is one trace holding the orders request,
//! its saga, the saga's steps at products and payments with those services' handler work
//! beneath them; a user's `UserCreated` delivery to orders nests under the users request
//! that published it. And a retried delivery is logged once at warn, not once per retry.
//!
//! The request spans themselves (and the statement spans beneath the handlers) are made by
//! the request path; this file checks how events and sagas carry them on.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::DEMO;
use crate::support::{TestHost, request, write_manifest};

const WAIT: Duration = Duration::from_secs(60);

/// An incoming `traceparent` (a caller's span) of a fresh trace: it, its trace id, and
/// the caller's span id.
fn incoming() -> (String, String, String) {
    let trace = hex::encode(rand::random::<[u8; 16]>());
    let span = "00f067aa0ba902b7".to_string();
    (format!("00-{trace}-{span}-01"), trace, span)
}

/// The spans of trace `trace` the host keeps (`/admin/traces/ID`).
async fn spans(h: &TestHost, trace: &str) -> Vec<Value> {
    let r = h
        .admin_get(&format!("/admin/traces/{trace}"), Some(&h.token))
        .await;
    if r.status != 200 {
        return Vec::new();
    }
    r.json()["spans"].as_array().cloned().unwrap_or_default()
}

fn by_id<'a>(spans: &'a [Value], id: &str) -> Option<&'a Value> {
    spans.iter().find(|s| s["spanId"] == id)
}

fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["parentSpanId"] == parent["spanId"])
        .collect()
}

/// Polls trace `trace` until `ready` holds of its spans; fails with them after [`WAIT`].
async fn wait_for(
    h: &TestHost,
    trace: &str,
    what: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let got = spans(h, trace).await;
        if ready(&got) {
            return got;
        }
        assert!(
            start.elapsed() < WAIT,
            "trace {trace}: {what} never showed up; spans: {}",
            serde_json::to_string_pretty(&got).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> Option<&'a Value> {
    spans.iter().find(|s| s["name"] == name)
}

#[tokio::test]
async fn an_order_is_one_trace_across_its_saga_and_a_users_event_follows_its_request() {
    let h = TestHost::start(DEMO).await;

    // A user created with a trace: its UserCreated reaches orders inside that trace.
    let (tp, user_trace, caller_span) = incoming();
    let body = r#"{"email":"t@example.com","name":"T"}"#;
    let r = request(
        "POST",
        &h.http,
        "/users",
        Some(body),
        &[("traceparent", tp.as_str())],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let user = r.json()["id"].as_str().unwrap().to_string();
    let got = wait_for(&h, &user_trace, "the UserCreated delivery to orders", |s| {
        named(s, "deliver UserCreated").is_some()
    })
    .await;
    let deliver = named(&got, "deliver UserCreated").unwrap();
    assert_eq!(deliver["service"], "orders", "{deliver}");
    assert_eq!(deliver["status"], "ok", "{deliver}");
    assert_eq!(
        deliver["attributes"]["silo.subscription"], "orders:users/UserCreated",
        "{deliver}"
    );
    let publish = by_id(&got, deliver["parentSpanId"].as_str().unwrap())
        .unwrap_or_else(|| panic!("the delivery's parent is not in the trace: {got:?}"));
    assert_eq!(publish["name"], "publish UserCreated", "{publish}");
    assert_eq!(publish["service"], "users", "{publish}");
    let users_request = by_id(&got, publish["parentSpanId"].as_str().unwrap())
        .unwrap_or_else(|| panic!("the publish span's parent is not in the trace: {got:?}"));
    assert_eq!(users_request["service"], "users", "{users_request}");
    assert_eq!(
        users_request["parentSpanId"], caller_span,
        "the users request continues the incoming traceparent: {users_request}"
    );

    // An order placed with a trace: the whole saga joins it.
    let r = h
        .post(
            "/payments/accounts",
            &serde_json::json!({ "userId": user, "balance": 10_000 }).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let body = serde_json::json!({ "name": "P", "price": 1_500, "stock": 5 });
    let r = h.post("/products", &body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let product = r.json()["id"].as_str().unwrap().to_string();
    let (tp, order_trace, caller_span) = incoming();
    let body = serde_json::json!({ "userId": user, "productId": product, "quantity": 2 });
    let r = request(
        "POST",
        &h.http,
        "/orders",
        Some(&body.to_string()),
        &[("traceparent", tp.as_str())],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let got = wait_for(
        &h,
        &order_trace,
        "the saga span (recorded at its end)",
        |s| named(s, "saga order").is_some(),
    )
    .await;
    let saga = named(&got, "saga order").unwrap();
    assert_eq!(saga["service"], "orders", "{saga}");
    assert_eq!(saga["attributes"]["silo.state"], "completed", "{saga}");
    let orders_request = by_id(&got, saga["parentSpanId"].as_str().unwrap())
        .unwrap_or_else(|| panic!("the saga's starter is not in the trace: {got:?}"));
    assert_eq!(orders_request["service"], "orders", "{orders_request}");
    assert_eq!(
        orders_request["parentSpanId"], caller_span,
        "{orders_request}"
    );

    // Each step at its participant, a child of the saga span, with the participant's own
    // work (its handler's statements) beneath it.
    for (step, participant) in [
        ("reserve-stock", "products"),
        ("charge-payment", "payments"),
    ] {
        let name = format!("saga order step {step}");
        let span = named(&got, &name).unwrap_or_else(|| panic!("no span {name}: {got:?}"));
        assert_eq!(span["service"], participant, "{span}");
        assert_eq!(span["parentSpanId"], saga["spanId"], "{span}");
        assert_eq!(span["status"], "ok", "{span}");
        assert_eq!(span["attributes"]["silo.attempt"], 1, "{span}");
        let beneath = children(&got, span);
        assert!(
            beneath.iter().any(|c| c["service"] == participant),
            "no {participant} handler span under {name}: {got:?}"
        );
    }
    let finished = named(&got, "saga order finished").expect("the orchestrator's ending");
    assert_eq!(finished["service"], "orders");
    assert_eq!(finished["parentSpanId"], saga["spanId"]);
    // Every span of the order is in the one trace, and only orders' request is a root in it.
    assert!(got.iter().all(|s| s["traceId"] == order_trace.as_str()));
    let roots: Vec<&Value> = got
        .iter()
        .filter(|s| {
            s["parentSpanId"].is_null()
                || by_id(&got, s["parentSpanId"].as_str().unwrap()).is_none()
        })
        .collect();
    assert!(
        roots.iter().all(|s| s["parentSpanId"] == caller_span),
        "spans whose parent is missing: {roots:?}"
    );
}

/// `pub` publishes; `sub2` gives up after three attempts, 10 ms apart.
const POISON: &str = r#"
[services.pub]
component = "{c:events_probe}"
route = "/pub"
publishes = ["Ping"]
[services.pub.stores.main]

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

#[tokio::test]
async fn a_retried_delivery_is_logged_once_at_warn_with_its_error_and_trace() {
    let (dir, path) = write_manifest(POISON);
    let log = dir.path().join("host.log");
    let h = TestHost::start_logging(dir, path, &[], Some(&log)).await;
    let body = serde_json::json!({ "topic": "Ping", "key": "p", "data": "poison", "count": 1 });
    let r = h.post("/pub/publish", &body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let start = Instant::now();
    loop {
        let r = h.admin_get("/admin/dead-letters", Some(&h.token)).await;
        if !r.json()["deadLetters"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(start.elapsed() < WAIT, "no dead letter");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Two retries (attempts 1 and 2 failed) within the rate limit's period: one line.
    let subs = h.subscriptions().await;
    assert_eq!(subs[0]["retries"], 2, "{subs:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("will retry") && l.contains("sub2:pub/Ping"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("poisoned event"), "{line}");
    assert!(line.contains("sub2"), "{line}");
    let trace = line
        .split("trace_id=")
        .nth(1)
        .map(|s| s.trim_matches('"').chars().take(32).collect::<String>())
        .unwrap_or_default();
    assert!(
        trace.len() == 32 && trace.chars().all(|c| c.is_ascii_hexdigit()),
        "{line}"
    );
}
