//! The key-value capability through the real host: the sessions service on the embedded
//! SQLite store and on this machine's Redis server, each store its own ACL user.

use std::time::Duration;

use crate::DEMO;
use crate::support::TestHost;

/// Sessions on Redis, under `prefix` (a run's own: see `shared::run_prefix`). (That two
/// services' stores on one server cannot reach each other's keys, even as raw Redis
/// connections, is the conformance suite's ACL test.)
fn on_redis(prefix: &str) -> String {
    format!(
        r#"[backends.redis]
url = "redis://127.0.0.1:6379"
prefix = "{prefix}"

[services.sessions]
component = "{{c:sessions}}"
route = "/sessions"
[services.sessions.kv.sessions]
backend = "redis"
"#
    )
}

pub fn redis_up() -> bool {
    crate::support::server_up("Redis", "127.0.0.1:6379")
}

async fn sessions_behave(h: &TestHost) {
    let prefix = "";
    let user = format!("usr_{}", std::process::id());
    let r = h
        .post(
            &format!("{prefix}/sessions"),
            &format!(r#"{{"userId":"{user}"}}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = r.json();
    let token = s["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ses_"), "{s}");
    assert!(s["expiresAt"].as_i64().unwrap() > s["createdAt"].as_i64().unwrap());
    let got = h.get(&format!("{prefix}/sessions/{token}")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["userId"], user.as_str());
    // A short-lived one, and the user's list.
    let r = h
        .post(
            &format!("{prefix}/sessions"),
            &format!(r#"{{"userId":"{user}","ttlSeconds":1}}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let short = r.json()["token"].as_str().unwrap().to_string();
    let list = h
        .get(&format!("{prefix}/sessions?userId={user}"))
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        h.get(&format!("{prefix}/sessions/{short}")).await.status,
        404,
        "expired"
    );
    let list = h
        .get(&format!("{prefix}/sessions?userId={user}"))
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // Bad input is a 400, an unknown token a 404.
    for body in [
        "{",
        r#"{"userId":""}"#,
        r#"{"userId":"a:b"}"#,
        r#"{"userId":"u","ttlSeconds":0}"#,
    ] {
        let r = h.post(&format!("{prefix}/sessions"), body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
    }
    assert_eq!(
        h.get(&format!("{prefix}/sessions/ses_0000")).await.status,
        404
    );
    let r = crate::support::request(
        "DELETE",
        &h.http,
        &format!("{prefix}/sessions/{token}"),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        h.get(&format!("{prefix}/sessions/{token}")).await.status,
        404
    );
}

#[tokio::test]
async fn sessions_on_the_embedded_store_survive_a_restart() {
    let h = TestHost::start(DEMO).await;
    sessions_behave(&h).await;
    let r = h.post("/sessions", r#"{"userId":"keep"}"#).await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let (status, dir, manifest) = h.stop();
    assert!(status.success());
    let h = TestHost::start_in(dir, manifest).await;
    assert_eq!(h.get(&format!("/sessions/{token}")).await.status, 200);
}

#[tokio::test]
async fn sessions_on_redis_survive_a_host_restart() {
    if !redis_up() {
        return;
    }
    let prefix = &crate::shared::run_prefix();
    let h = TestHost::start(&on_redis(prefix)).await;
    sessions_behave(&h).await;
    let r = h.post("/sessions", r#"{"userId":"mine"}"#).await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let (status, dir, manifest) = h.stop();
    assert!(status.success());
    // The restarted host derives the same ACL user and password from its data folder.
    let h = TestHost::start_in(dir, manifest).await;
    assert_eq!(h.get(&format!("/sessions/{token}")).await.status, 200);
    let r =
        crate::support::request("DELETE", &h.http, &format!("/sessions/{token}"), None, &[]).await;
    assert_eq!(r.status, 204);
    h.stop();
    crate::shared::drop_redis(prefix, &[("sessions", "sessions")]).await;
}
