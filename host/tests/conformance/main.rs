//! One conformance suite for every key-value backend: the same battery runs against the
//! embedded SQLite store and a Redis store on this machine's server, through the
//! [`KvStore`] trait the host uses. A backend server that is not running is reported as
//! skipped, and is a failure when `SILO_REQUIRE_BACKENDS=1` (as `.ci/run` sets).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silo::kv::KvStore;
use silo::kv::redis::{RedisConfig, RedisKv, key_base, password, user_name};
use silo::kv::sqlite::SqliteKv;

mod servers;
mod sql;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// True if the server at `addr` answers; if not, says the tests were skipped, or fails them
/// when backends are required.
fn server_up(name: &str, addr: &str) -> bool {
    let up = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        .is_ok();
    if !up {
        assert!(
            std::env::var("SILO_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "{name} at {addr} is required (SILO_REQUIRE_BACKENDS=1) but not reachable"
        );
        eprintln!("SKIPPED: {name} at {addr} is not running; its conformance tests did not run");
    }
    up
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

/// The Redis backend under a prefix no other run uses (`kv` and random lowercase hex), so
/// runs on one shared server never meet; [`cleanup`] removes what a test made under it.
fn redis_config() -> RedisConfig {
    RedisConfig {
        admin_url: REDIS_URL.into(),
        connect_timeout: Duration::from_secs(2),
        prefix: format!("kv{:08x}", rand::random::<u32>()),
    }
}

/// Two stores of two services (`a`, `b`) on one backend; for Redis, under `config`.
async fn stores(
    backend: &str,
    dir: &Path,
    config: &RedisConfig,
) -> Option<(Arc<dyn KvStore>, Arc<dyn KvStore>)> {
    match backend {
        "sqlite" => Some((
            Arc::new(SqliteKv::open(&dir.join("a.db"), 1 << 30).unwrap()),
            Arc::new(SqliteKv::open(&dir.join("b.db"), 1 << 30).unwrap()),
        )),
        "redis" => {
            if !server_up("Redis", "127.0.0.1:6379") {
                return None;
            }
            let a = RedisKv::open(config, dir, "a", "main").await.unwrap();
            let b = RedisKv::open(config, dir, "b", "main").await.unwrap();
            Some((Arc::new(a), Arc::new(b)))
        }
        _ => unreachable!(),
    }
}

/// Removes the test's ACL users, keys and owner records (store `main` of `services`, under
/// `config`'s prefix) from the shared server: what it made, nothing else.
async fn cleanup(config: &RedisConfig, services: &[&str]) {
    for svc in services {
        silo::kv::redis::deprovision(config, svc, "main")
            .await
            .unwrap_or_else(|e| panic!("removing {svc}: {e}"));
    }
}

/// The battery every backend passes.
async fn battery(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config();
    let Some((a, b)) = stores(backend, dir.path(), &config).await else {
        return;
    };
    let d = deadline();
    // Set, get, overwrite, binary and empty values.
    assert_eq!(a.get(d, "k").await.unwrap(), None, "{backend}");
    a.set(d, "k", b"one", None).await.unwrap();
    assert_eq!(
        a.get(d, "k").await.unwrap().as_deref(),
        Some(&b"one"[..]),
        "{backend}"
    );
    a.set(d, "k", &[0, 255, 10], None).await.unwrap();
    assert_eq!(
        a.get(d, "k").await.unwrap().as_deref(),
        Some(&[0, 255, 10][..]),
        "{backend}"
    );
    a.set(d, "empty", b"", None).await.unwrap();
    assert_eq!(
        a.get(d, "empty").await.unwrap().as_deref(),
        Some(&b""[..]),
        "{backend}"
    );
    // Delete: true once, then false.
    assert!(a.delete(d, "k").await.unwrap(), "{backend}");
    assert!(!a.delete(d, "k").await.unwrap(), "{backend}");
    assert_eq!(a.get(d, "k").await.unwrap(), None, "{backend}");
    // Listing by prefix: byte order, limit, nothing outside the prefix.
    for k in [
        "user:2:x",
        "user:1:b",
        "user:1:a",
        "user:10:z",
        "users",
        "other",
        "ünï:1",
    ] {
        a.set(d, k, b"v", None).await.unwrap();
    }
    assert_eq!(
        a.list_keys(d, "user:1", 100).await.unwrap(),
        ["user:10:z", "user:1:a", "user:1:b"],
        "{backend}"
    );
    assert_eq!(
        a.list_keys(d, "user:1:", 1).await.unwrap(),
        ["user:1:a"],
        "{backend}: the limit"
    );
    assert_eq!(
        a.list_keys(d, "ünï", 10).await.unwrap(),
        ["ünï:1"],
        "{backend}"
    );
    assert_eq!(
        a.list_keys(d, "", 1000).await.unwrap().len(),
        8,
        "{backend}"
    );
    // Time-to-live: gone after it, from get, list and delete alike.
    a.set(d, "ttl:x", b"soon gone", Some(150)).await.unwrap();
    assert!(a.get(d, "ttl:x").await.unwrap().is_some(), "{backend}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let d = deadline();
    assert_eq!(a.get(d, "ttl:x").await.unwrap(), None, "{backend}: expired");
    assert!(
        a.list_keys(d, "ttl:", 10).await.unwrap().is_empty(),
        "{backend}"
    );
    assert!(!a.delete(d, "ttl:x").await.unwrap(), "{backend}");
    // Setting again without a TTL keeps it.
    a.set(d, "ttl:y", b"1", Some(100)).await.unwrap();
    a.set(d, "ttl:y", b"2", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.get(deadline(), "ttl:y").await.unwrap().as_deref(),
        Some(&b"2"[..]),
        "{backend}"
    );
    // Two services' stores never see each other's keys.
    let d = deadline();
    b.set(d, "user:1:a", b"b's", None).await.unwrap();
    assert_eq!(
        a.get(d, "user:1:a").await.unwrap().as_deref(),
        Some(&b"v"[..]),
        "{backend}"
    );
    assert_eq!(
        b.list_keys(d, "", 100).await.unwrap(),
        ["user:1:a"],
        "{backend}"
    );
    assert!(b.delete(d, "user:1:a").await.unwrap());
    assert!(a.get(d, "user:1:a").await.unwrap().is_some(), "{backend}");
    if backend == "redis" {
        drop((a, b));
        cleanup(&config, &["a", "b"]).await;
    }
}

#[tokio::test]
async fn sqlite_kv_conforms() {
    battery("sqlite").await;
}

#[tokio::test]
async fn redis_kv_conforms() {
    battery("redis").await;
}

/// On a shared Redis server each store is its own ACL user that Redis itself confines to
/// the store's keys: connected as one store's user, another's keys and the server's
/// keyspace are out of reach.
#[tokio::test]
async fn redis_acl_users_reach_only_their_own_keys() {
    if !server_up("Redis", "127.0.0.1:6379") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config();
    let (svc_a, svc_b) = ("a", "b");
    let a = RedisKv::open(&config, dir.path(), svc_a, "main")
        .await
        .unwrap();
    let b = RedisKv::open(&config, dir.path(), svc_b, "main")
        .await
        .unwrap();
    b.set(deadline(), "secret", b"b only", None).await.unwrap();
    a.set(deadline(), "mine", b"a", None).await.unwrap();

    let user = user_name(&config.prefix, svc_a, "main").unwrap();
    let pass = password(dir.path(), &user).unwrap();
    let client = redis::Client::open(format!("redis://{user}:{pass}@127.0.0.1:6379")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let own = format!("{}k:mine", key_base(&config.prefix, svc_a, "main").unwrap());
    let theirs = format!(
        "{}k:secret",
        key_base(&config.prefix, svc_b, "main").unwrap()
    );
    let got: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&own)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"a"[..]));
    for attempt in [
        redis::cmd("GET").arg(&theirs).clone(),
        redis::cmd("SET").arg(&theirs).arg("forged").clone(),
        redis::cmd("DEL").arg(&theirs).clone(),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("SCAN").arg(0).clone(),
        redis::cmd("FLUSHALL").clone(),
        redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        redis::cmd("ACL").arg("LIST").clone(),
    ] {
        let r: redis::RedisResult<redis::Value> = attempt.query_async(&mut c).await;
        let e = r.expect_err("denied");
        assert!(e.to_string().contains("NOPERM"), "{e}");
    }
    assert_eq!(
        b.get(deadline(), "secret").await.unwrap().as_deref(),
        Some(&b"b only"[..]),
        "untouched"
    );
    // A wrong password does not get in at all.
    let bad = redis::Client::open(format!("redis://{user}:wrong@127.0.0.1:6379")).unwrap();
    assert!(bad.get_multiplexed_async_connection().await.is_err());
    // Nor does the owner record of a store: it is the administrator's alone.
    // (`HGET` is a command it may run: the key is what Redis refuses.)
    let e = redis::cmd("HGET")
        .arg(silo::kv::redis::owner_key(&user))
        .arg("folder")
        .query_async::<redis::Value>(&mut c)
        .await
        .expect_err("the owner record is out of reach");
    assert!(e.to_string().contains("NOPERM"), "{e}");
    drop((a, b));
    cleanup(&config, &[svc_a, svc_b]).await;
}

/// A Redis server that restarts keeps nothing (this machine's runs with no persistence):
/// the store's ACL user is gone and its connection dropped. Requests fail fast as
/// `unavailable`, and the store recovers on its own (it creates its user again).
#[tokio::test]
async fn redis_store_recovers_when_the_server_forgets_it() {
    if !server_up("Redis", "127.0.0.1:6379") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config();
    let svc = "rec";
    let store = RedisKv::open(&config, dir.path(), svc, "main")
        .await
        .unwrap();
    store.set(deadline(), "k", b"v", None).await.unwrap();
    // What a restart does to us: the user forgotten, the connection cut.
    let admin = redis::Client::open(REDIS_URL).unwrap();
    let mut a = admin.get_multiplexed_async_connection().await.unwrap();
    let user = user_name(&config.prefix, svc, "main").unwrap();
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut a)
        .await
        .unwrap();
    let _: redis::RedisResult<redis::Value> = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(&user)
        .query_async(&mut a)
        .await;
    let start = Instant::now();
    let mut failures = 0;
    loop {
        let t = Instant::now();
        match store.set(deadline(), "k2", b"after", None).await {
            Ok(()) => break,
            Err(e) => {
                failures += 1;
                assert!(
                    matches!(e, silo::sql::SqlError::Unavailable(_)),
                    "a lost server is `unavailable`: {e}"
                );
                assert!(
                    t.elapsed() < Duration::from_secs(6),
                    "it failed fast: {:?}",
                    t.elapsed()
                );
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never recovered ({failures} failures)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.get(deadline(), "k2").await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
    eprintln!(
        "recovered after {failures} failed attempts in {:?}",
        start.elapsed()
    );
    drop(store);
    cleanup(&config, &[svc]).await;
}
