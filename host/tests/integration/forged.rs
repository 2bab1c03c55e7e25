//! Forged rows in the host's own tables: what a broken sandbox would let a hostile service
//! write into its store (issue 13). The rows are written the way such a service would see
//! them, straight into its SQLite file while the host is stopped; the host then starts on
//! the same data folder and must not do anything the service could not do through its API.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestHost, write_manifest};

const WAIT: Duration = Duration::from_secs(60);

/// The demo (with its participants' `commands`) and `evil`: the probe as an orchestrator
/// declared to command `products` only, retrying quickly.
fn with_evil() -> String {
    format!(
        "{}{}",
        crate::DEMO,
        r#"
[services.evil]
component = "{c:events_probe}"
route = "/evil"
saga-participants = ["products"]
[services.evil.stores.main]
[services.evil.sagas]
max-attempts = 2
compensation-attempts = 2
backoff-ms = 5
max-backoff-ms = 20
"#
    )
}

/// A service's SQLite store file, opened as the attacker's own SQL would reach it.
fn store(data: &Path, service: &str) -> rusqlite::Connection {
    let path = data.join("stores").join(service).join("main.db");
    assert!(path.is_file(), "no store at {}", path.display());
    rusqlite::Connection::open(path).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One forged step: (name, service, command, payload, compensation, state).
type Step<'a> = (&'a str, &'a str, &'a str, Value, Option<&'a str>, &'a str);

/// Writes saga `id` in `state` with `steps` into the saga log of `db`.
fn forge_saga(db: &rusqlite::Connection, id: &str, state: &str, steps: &[Step]) {
    let now = now_ms();
    db.execute(
        "INSERT INTO _silo_sagas (id, kind, key, state, created_ms, updated_ms) VALUES (?1, 'probe', 'k', ?2, ?3, ?3)",
        rusqlite::params![id, state, now],
    )
    .unwrap();
    for (idx, (name, service, command, payload, compensation, state)) in steps.iter().enumerate() {
        db.execute(
            "INSERT INTO _silo_saga_steps (saga_id, idx, name, service, command, payload, compensation, state, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                id,
                idx as i64,
                name,
                service,
                command,
                payload.to_string().into_bytes(),
                compensation,
                state,
                // A succeeded step's result is what its compensation gets back: forged too.
                (*state == "succeeded").then(|| payload.to_string().into_bytes()),
            ],
        )
        .unwrap();
    }
}

/// Waits until the probe's saga handler was told saga `id` ended; returns the probe's view.
async fn ended(h: &TestHost, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = h.get(&format!("/evil/sagas/{id}")).await.json();
        if !v["ended"].is_null() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "saga {id} did not end: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn step<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["status"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {v}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {v}"))
}

fn detail(v: &Value, name: &str) -> String {
    step(v, name)["detail"].as_str().unwrap_or("").to_string()
}

/// The victim's data: an account, a product, and an approved order holding a reservation.
struct Victim {
    user: String,
    product: String,
    order: String,
    /// The order's saga (its steps' commands are recorded in products and payments).
    saga: String,
}

/// Seeds the victim: balance 10 000, a product priced 1 000 with 5 in stock, and one
/// approved order of 1 (so 9 000 and 4 left).
async fn victim(h: &TestHost) -> Victim {
    let r = h
        .post("/users", r#"{"email":"v@example.com","name":"V"}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let user = r.json()["id"].as_str().unwrap().to_string();
    let body = json!({ "userId": user, "balance": 10_000 });
    let r = h.post("/payments/accounts", &body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let body = json!({ "name": "P", "price": 1_000, "stock": 5 });
    let r = h.post("/products", &body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let product = r.json()["id"].as_str().unwrap().to_string();
    let body = json!({ "userId": user, "productId": product, "quantity": 1 });
    let r = h.post("/orders", &body.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let order = r.json()["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    let o = loop {
        let o = h.get(&format!("/orders/{order}")).await.json();
        if o["status"] != "PENDING" {
            break o;
        }
        assert!(start.elapsed() < WAIT, "order still pending: {o}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(o["status"], "APPROVED", "{o}");
    let saga = o["sagaId"].as_str().unwrap().to_string();
    Victim {
        user,
        product,
        order,
        saga,
    }
}

/// Starts the host with `evil`, seeds the victim, stops the host, lets `forge` write into
/// `evil`'s store, and starts the host again on the same data folder.
async fn attack(forge: impl FnOnce(&rusqlite::Connection, &Victim)) -> (TestHost, Victim) {
    let (dir, manifest) = write_manifest(&with_evil());
    let h = TestHost::start_in(dir, manifest).await;
    let v = victim(&h).await;
    let (_, dir, manifest) = h.stop();
    forge(&store(&dir.path().join("data"), "evil"), &v);
    (TestHost::start_in(dir, manifest).await, v)
}

/// Through its API, `evil` can neither command `payments` nor send `products` a command or
/// compensation that `products` does not declare.
#[tokio::test]
async fn sagas_start_refuses_undeclared_participants_and_commands() {
    let h = TestHost::start(&with_evil()).await;
    for (steps, why) in [
        (
            json!([{ "name": "pay", "service": "payments", "command": "charge" }]),
            "saga-participants",
        ),
        (
            json!([{ "name": "steal", "service": "products", "command": "charge" }]),
            "step `steal`: service `products` does not take the command `charge` (its `commands` are `reserve`, `release`)",
        ),
        (
            json!([{ "name": "r", "service": "products", "command": "reserve", "compensation": "refund" }]),
            "step `r`: service `products` does not take the compensation `refund`",
        ),
    ] {
        let r = h
            .post("/evil/saga", &json!({ "steps": steps }).to_string())
            .await;
        assert_eq!(r.status, 403, "{steps}: {}", r.text());
        assert!(r.text().contains(why), "{steps}: {}", r.text());
    }
}

/// The attack of issue 13: `evil` (saga participants: `products` only) writes into its own
/// saga log a step that charges the victim through `payments`. It is never sent: refused
/// with the reason, the victim's balance untouched.
#[tokio::test]
async fn a_forged_step_to_an_undeclared_participant_is_never_sent() {
    let (h, v) = attack(|db, v| {
        let charge = json!({ "orderId": "ord_forged", "userId": v.user, "amount": 5_000 });
        let step = (
            "pay",
            "payments",
            "charge",
            charge,
            Some("refund"),
            "pending",
        );
        forge_saga(db, "saga_forged", "running", &[step]);
    })
    .await;
    let s = ended(&h, "saga_forged").await;
    assert_eq!(s["ended"]["state"], "COMPENSATED", "{s}");
    assert_eq!(step(&s, "pay")["state"], "refused", "{s}");
    assert_eq!(
        detail(&s, "pay"),
        "not sent: step `pay` names service `payments`, which `evil` does not declare in `saga-participants`",
        "{s}"
    );
    let a = h
        .get(&format!("/payments/accounts/{}", v.user))
        .await
        .json();
    assert_eq!(
        a["balance"], 9_000,
        "only the victim's own order was charged: {a}"
    );
    let charges = h.get("/payments/charges?orderId=ord_forged").await.json();
    assert_eq!(charges.as_array().unwrap().len(), 0, "{charges}");
    let metrics = h.admin_get("/metrics", None).await.text();
    assert!(
        metrics.contains("silo_saga_steps_refused_total{service=\"evil\"} 1"),
        "{metrics}"
    );
}

/// A forged step naming a command `products` does not declare is never sent; the step
/// before it, which did succeed, is compensated.
#[tokio::test]
async fn a_forged_step_with_an_undeclared_command_is_never_sent() {
    let (h, v) = attack(|db, v| {
        let mine = json!({ "orderId": "ord_evil", "productId": v.product, "quantity": 1 });
        let steps = [
            (
                "reserve",
                "products",
                "reserve",
                mine.clone(),
                Some("release"),
                "pending",
            ),
            ("steal", "products", "charge", mine, None, "pending"),
        ];
        forge_saga(db, "saga_forged", "running", &steps);
    })
    .await;
    let s = ended(&h, "saga_forged").await;
    assert_eq!(s["ended"]["state"], "COMPENSATED", "{s}");
    assert_eq!(step(&s, "reserve")["state"], "compensated", "{s}");
    assert_eq!(step(&s, "steal")["state"], "refused", "{s}");
    assert_eq!(
        detail(&s, "steal"),
        "not sent: step `steal`: service `products` does not take the command `charge` (its `commands` are `reserve`, `release`)",
        "{s}"
    );
    let p = h.get(&format!("/products/{}", v.product)).await.json();
    assert_eq!(p["stock"], 4, "evil's reservation was released: {p}");
}

/// A forged compensation (`release`) of a reservation `evil` never made — the victim
/// order's — passes the orchestrator-side checks (`products` is a participant, `release`
/// one of its commands), and `products` refuses it: no command of `evil` succeeded there
/// for that step. The victim's reservation stands; the saga is FAILED, visibly.
#[tokio::test]
async fn a_forged_compensation_of_a_command_never_applied_is_refused() {
    let (h, v) = attack(|db, v| {
        let victims = json!({ "orderId": v.order, "productId": v.product, "quantity": 1 });
        let step = (
            "unreserve",
            "products",
            "reserve",
            victims,
            Some("release"),
            "succeeded",
        );
        forge_saga(db, "saga_forged", "compensating", &[step]);
    })
    .await;
    let s = ended(&h, "saga_forged").await;
    assert_eq!(s["ended"]["state"], "FAILED", "{s}");
    assert_eq!(step(&s, "unreserve")["state"], "compensation-failed", "{s}");
    assert_eq!(
        detail(&s, "unreserve"),
        "refused: compensation `release`: no command `saga_forged/0/do` of `evil` succeeded here",
        "{s}"
    );
    let p = h.get(&format!("/products/{}", v.product)).await.json();
    assert_eq!(p["stock"], 4, "the victim's reservation stands: {p}");
}

/// A forged compensation to a participant `evil` does not declare: the victim, once the
/// buyer of its own order, tries to get the money back by writing a `refund` of its own
/// charge into `evil`'s log, as if a `payments` step had succeeded there. It is never
/// sent; the saga is FAILED, visibly, and the charge stands.
#[tokio::test]
async fn a_forged_compensation_to_an_undeclared_participant_is_never_sent() {
    let (h, v) = attack(|db, v| {
        let charged = json!({
            "orderId": v.order, "userId": v.user, "amount": 1_000, "chargeId": v.order,
        });
        let step = (
            "pay",
            "payments",
            "charge",
            charged,
            Some("refund"),
            "succeeded",
        );
        forge_saga(db, "saga_forged", "compensating", &[step]);
    })
    .await;
    let s = ended(&h, "saga_forged").await;
    assert_eq!(s["ended"]["state"], "FAILED", "{s}");
    assert_eq!(step(&s, "pay")["state"], "compensation-failed", "{s}");
    assert_eq!(
        detail(&s, "pay"),
        "not sent: step `pay` names service `payments`, which `evil` does not declare in `saga-participants`",
        "{s}"
    );
    let a = h
        .get(&format!("/payments/accounts/{}", v.user))
        .await
        .json();
    assert_eq!(a["balance"], 9_000, "the charge stands: {a}");
}

/// A forged saga reusing the victim order's saga id asks `products` for a command it
/// applied for `orders`: the recorded reply is not handed to `evil`.
#[tokio::test]
async fn a_forged_saga_id_gets_no_reply_recorded_for_another_orchestrator() {
    let (h, v) = attack(|db, v| {
        let victims = json!({ "orderId": v.order, "productId": v.product, "quantity": 1 });
        let step = ("peek", "products", "reserve", victims, None, "pending");
        forge_saga(db, &v.saga, "running", &[step]);
    })
    .await;
    let s = ended(&h, &v.saga).await;
    assert_eq!(s["ended"]["state"], "COMPENSATED", "{s}");
    assert_eq!(step(&s, "peek")["state"], "refused", "{s}");
    assert_eq!(
        detail(&s, "peek"),
        format!(
            "command `{}/0/do` was applied here for another orchestrator",
            v.saga
        ),
        "{s}"
    );
    let o = h.get(&format!("/orders/{}", v.order)).await.json();
    assert_eq!(o["status"], "APPROVED", "{o}");
}

/// `pub` publishes `Ping` and `Other`; `sub` subscribes to `Ping` only.
const PUB_SUB: &str = r#"
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
"#;

/// Writes an event of `topic` into `db`'s outbox with a delivery row for `subscription`.
fn forge_event(db: &rusqlite::Connection, id: &str, topic: &str, subscription: &str) {
    db.execute(
        "INSERT INTO _silo_outbox (id, topic, key, time_ms, content_type, data) VALUES (?1, ?2, 'k', ?3, 'text/plain', ?4)",
        rusqlite::params![id, topic, now_ms(), format!("forged {topic}").into_bytes()],
    )
    .unwrap();
    let seq = db.last_insert_rowid();
    db.execute(
        "INSERT INTO _silo_deliveries (subscription, seq) VALUES (?1, ?2)",
        rusqlite::params![subscription, seq],
    )
    .unwrap();
}

/// The same trick on events: `pub` writes into its own outbox an event of a topic it does
/// not declare (`Secret`), and one of a topic `sub` does not subscribe to (`Other`) filed
/// under `sub`'s `Ping` subscription. Both go to the dead letters with the reason, neither
/// reaches `sub`, and what `sub` does receive names its source as the host knows it.
#[tokio::test]
async fn forged_events_are_dead_lettered_not_delivered() {
    let (dir, manifest) = write_manifest(PUB_SUB);
    let h = TestHost::start_in(dir, manifest).await;
    let publish =
        |data: &'static str| json!({ "topic": "Ping", "key": "k", "data": data }).to_string();
    assert_eq!(h.post("/pub/publish", &publish("before")).await.status, 201);
    let r = h
        .post("/pub/publish", r#"{"topic":"Secret","key":"k","data":"x"}"#)
        .await;
    assert_eq!(r.status, 403, "not through its API: {}", r.text());
    let start = Instant::now();
    while h
        .get("/sub/received")
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(start.elapsed() < WAIT, "the first event never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_, dir, manifest) = h.stop();
    {
        let db = store(&dir.path().join("data"), "pub");
        forge_event(&db, "evt_forged_secret", "Secret", "sub:pub/Ping");
        forge_event(&db, "evt_forged_other", "Other", "sub:pub/Ping");
    }
    let h = TestHost::start_in(dir, manifest).await;
    assert_eq!(h.post("/pub/publish", &publish("after")).await.status, 201);

    let start = Instant::now();
    let dead = loop {
        let r = h.admin_get("/admin/dead-letters", Some(&h.token)).await;
        let list = r.json()["deadLetters"].as_array().cloned().unwrap();
        if list.len() >= 2 {
            break list;
        }
        assert!(start.elapsed() < WAIT, "not dead-lettered: {list:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error_of = |event: &str| {
        dead.iter()
            .find(|d| d["eventId"] == event)
            .unwrap_or_else(|| panic!("no dead letter for {event}: {dead:?}"))["lastError"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        error_of("evt_forged_secret"),
        "refused by the host, not delivered: service `pub` does not declare `Secret` in `publishes`"
    );
    assert_eq!(
        error_of("evt_forged_other"),
        "refused by the host, not delivered: an event of topic `Other` in the deliveries of subscription `sub:pub/Ping` (topic `Ping`)"
    );

    // `sub` got the two real events and nothing else, each stamped by the host.
    let start = Instant::now();
    let got = loop {
        let got = h
            .get("/sub/received")
            .await
            .json()
            .as_array()
            .cloned()
            .unwrap();
        if got.len() >= 2 {
            break got;
        }
        assert!(start.elapsed() < WAIT, "{got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    h.wait_drained(WAIT).await;
    let got = h
        .get("/sub/received")
        .await
        .json()
        .as_array()
        .cloned()
        .unwrap_or(got);
    let data: Vec<&str> = got.iter().map(|e| e["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["before", "after"], "{got:?}");
    for e in &got {
        assert_eq!(e["source"], "pub", "{e}");
        assert_eq!(e["topic"], "Ping", "{e}");
    }
    let subs = h.subscriptions().await;
    let s = subs
        .iter()
        .find(|s| s["subscription"] == "sub:pub/Ping")
        .unwrap();
    assert_eq!(s["refused"], 2, "{s}");
    assert_eq!(s["deadLetters"], 2, "{s}");
    let metrics = h.admin_get("/metrics", None).await.text();
    assert!(
        metrics.contains("silo_events_refused_total{subscription=\"sub:pub/Ping\",source=\"pub\",topic=\"Ping\",subscriber=\"sub\"} 2"),
        "{metrics}"
    );
}
