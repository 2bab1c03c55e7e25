//! Services in other languages: `recommendations` (Python, componentize-py) and
//! `notifications` (JavaScript, componentize-js) in the demo manifest (`silo.toml`), following
//! orders' `OrderApproved`/`OrderRejected` and users' `UserUpdated` through the real host.
//! Every batch of events is delivered twice (`duplicate-delivery`): the inbox must turn the
//! second delivery away, so no count or notification doubles.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestHost, repo_root, write_manifest};

const WAIT: Duration = Duration::from_secs(90);

/// The repository's `silo.toml` (as `make run` serves it), its components found from anywhere.
fn demo_manifest() -> String {
    let root = repo_root();
    let manifest = std::fs::read_to_string(root.join("silo.toml")).expect("silo.toml");
    assert!(
        manifest.contains("[services.recommendations]")
            && manifest.contains("[services.notifications]"),
        "silo.toml serves both services"
    );
    manifest.replace(
        "\"components/target/",
        &format!("\"{}/components/target/", root.display()),
    )
}

async fn created_id(h: &TestHost, path: &str, body: Value) -> String {
    let r = h.post(path, &body.to_string()).await;
    assert_eq!(r.status, 201, "POST {path}: {}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

/// Places an order and waits until its saga settled it; returns the order.
async fn order(h: &TestHost, user: &str, product: &str, quantity: i64) -> Value {
    let body = json!({ "userId": user, "productId": product, "quantity": quantity });
    let r = h.post("/orders", &body.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let o = h.get(&format!("/orders/{id}")).await.json();
        if o["status"] != "PENDING" {
            return o;
        }
        assert!(start.elapsed() < WAIT, "order {id} still pending: {o}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /notifications?userId=USER` once it lists `count` notifications.
async fn notifications(h: &TestHost, user: &str, count: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let r = h.get(&format!("/notifications?userId={user}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let list = r.json()["notifications"].as_array().unwrap().clone();
        if list.len() >= count {
            return list;
        }
        assert!(
            start.elapsed() < WAIT,
            "{count} notifications awaited: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn duplicates(subs: &[Value], name: &str) -> u64 {
    let sub = subs
        .iter()
        .find(|s| s["subscription"] == name)
        .unwrap_or_else(|| panic!("no subscription {name} in {subs:?}"));
    sub["duplicates"].as_u64().unwrap()
}

#[tokio::test]
async fn python_and_javascript_services_follow_the_demos_events() {
    let started = Instant::now();
    let (dir, manifest) = write_manifest(&demo_manifest());
    let h = TestHost::start_with(dir, manifest, &[("SILO_FAILPOINTS", "duplicate-delivery")]).await;
    eprintln!("polyglot: the demo host started in {:?}", started.elapsed());

    let ada = created_id(
        &h,
        "/users",
        json!({ "email": "ada@example.com", "name": "Ada" }),
    )
    .await;
    let r = h
        .post(
            "/payments/accounts",
            &json!({ "userId": ada, "balance": 100_000 }).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let lamp = created_id(
        &h,
        "/products",
        json!({ "name": "Lamp", "price": 1500, "stock": 10 }),
    )
    .await;
    let bulb = created_id(
        &h,
        "/products",
        json!({ "name": "Bulb", "price": 300, "stock": 10 }),
    )
    .await;
    let rare = created_id(
        &h,
        "/products",
        json!({ "name": "Rare", "price": 900, "stock": 1 }),
    )
    .await;

    let first = order(&h, &ada, &lamp, 1).await;
    assert_eq!(first["status"], "APPROVED", "{first}");
    let second = order(&h, &ada, &bulb, 2).await;
    assert_eq!(second["status"], "APPROVED", "{second}");
    let refused = order(&h, &ada, &rare, 5).await;
    assert_eq!(refused["status"], "REJECTED", "{refused}");
    h.wait_drained(WAIT).await;

    // Python: the two products Ada bought are bought together, once each way.
    let r = h.get(&format!("/recommendations/{lamp}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({ "productId": lamp, "alsoBought": [{ "productId": bulb, "count": 1 }] })
    );
    let r = h.get(&format!("/recommendations/{bulb}")).await;
    assert_eq!(
        r.json(),
        json!({ "productId": bulb, "alsoBought": [{ "productId": lamp, "count": 1 }] })
    );
    // A rejected order recommends nothing; an unknown product is an empty list.
    let r = h.get(&format!("/recommendations/{rare}")).await;
    assert_eq!(r.json(), json!({ "productId": rare, "alsoBought": [] }));
    let r = h.get("/recommendations/prd_unknown").await;
    assert_eq!(
        r.json(),
        json!({ "productId": "prd_unknown", "alsoBought": [] })
    );
    let r = h.get(&format!("/recommendations/{lamp}/extra")).await;
    assert_eq!((r.status, r.error_code()), (404, "not_found".to_string()));
    let r = h.post(&format!("/recommendations/{lamp}"), "{}").await;
    assert_eq!(
        (r.status, r.error_code()),
        (405, "method_not_allowed".to_string())
    );

    // JavaScript: one notification per settled order, newest first, with the events' data.
    let list = notifications(&h, &ada, 3).await;
    let kinds: Vec<&str> = list.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["order-rejected", "order-approved", "order-approved"],
        "{list:?}"
    );
    let text = |i: usize| list[i]["text"].as_str().unwrap().to_string();
    assert!(
        text(0).contains(refused["id"].as_str().unwrap()),
        "{list:?}"
    );
    assert!(
        text(0).contains("out of stock"),
        "the rejection's reason: {list:?}"
    );
    assert!(
        text(1).contains(second["id"].as_str().unwrap()) && text(1).contains("600"),
        "{list:?}"
    );
    assert!(
        text(2).contains(first["id"].as_str().unwrap()) && text(2).contains("1500"),
        "{list:?}"
    );
    for n in &list {
        assert_eq!(n["userId"], ada.as_str(), "{n}");
        assert!(n["id"].as_str().unwrap().starts_with("ntf_"), "{n}");
        assert!(n["time"].as_str().unwrap().ends_with('Z'), "{n}");
    }
    let r = h.get("/notifications").await;
    assert_eq!((r.status, r.error_code()), (400, "bad_request".to_string()));
    let r = h.get("/notifications?userId=usr_nobody").await;
    assert_eq!(r.json(), json!({ "notifications": [] }));

    // A profile change is a notification too.
    let r = h
        .put(
            &format!("/users/{ada}"),
            &json!({ "email": "ada@example.com", "name": "Ada L." }).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = notifications(&h, &ada, 4).await;
    assert_eq!(list.len(), 4, "{list:?}");
    assert_eq!(list[0]["kind"], "profile-updated", "{list:?}");

    // Every event reached each service twice; the inbox turned the second delivery away,
    // which is why the counts above are 1 and no notification is doubled.
    h.wait_drained(WAIT).await;
    let subs = h.subscriptions().await;
    assert!(
        duplicates(&subs, "recommendations:orders/OrderApproved") >= 2,
        "{subs:?}"
    );
    assert!(
        duplicates(&subs, "notifications:orders/OrderApproved") >= 2,
        "{subs:?}"
    );
    assert!(
        duplicates(&subs, "notifications:users/UserUpdated") >= 1,
        "{subs:?}"
    );
    let r = h.get(&format!("/recommendations/{lamp}")).await;
    assert_eq!(r.json()["alsoBought"][0]["count"], 1);
    assert_eq!(notifications(&h, &ada, 4).await.len(), 4);
    eprintln!("polyglot: the whole test took {:?}", started.elapsed());
}
