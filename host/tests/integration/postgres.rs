//! Stores on the machine's real PostgreSQL server: isolation between services sharing it,
//! the host's tables beside a service's own, the demo's events and sagas with orders on
//! PostgreSQL, and a server restart under load.
//!
//! Every database, role, user and key these tests make is named under a prefix of the test's
//! own run ([`run_prefix`]), so two runs on one server (two checkouts' `make test`) never
//! meet; each test drops what it made, and nothing else.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::shared::{admin, drop_pg, drop_polyglot, polyglot_manifest, run_prefix};
use crate::support::{TestHost, write_manifest};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Whether the server is up; a test that needs it says SKIPPED, or fails under
/// `SILO_REQUIRE_BACKENDS=1`.
fn postgres_up() -> bool {
    crate::support::server_up("PostgreSQL", "127.0.0.1:5432")
}

fn backend_section(prefix: &str) -> String {
    format!("[backends.postgres]\nurl = \"{ADMIN_URL}\"\nprefix = \"{prefix}\"\npool-size = 8\n")
}

async fn sql(h: &TestHost, mount: &str, statement: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "sql": statement }).to_string();
    let r = h.post(&format!("/{mount}/sql"), &body).await;
    (r.status, r.json())
}

/// Two services on one server: each sees its own tables only, cannot reach the other's
/// database even with its own credentials, and cannot touch the host's tables in its own.
#[tokio::test]
async fn services_on_one_postgres_server_cannot_see_each_other() {
    if !postgres_up() {
        return;
    }
    let prefix = &run_prefix();
    let manifest = format!(
        r#"
[services.alpha]
component = "{{c:events_probe}}"
route = "/alpha"
publishes = ["Ping"]
[services.alpha.stores.main]
backend = "postgres"

[services.beta]
component = "{{c:events_probe}}"
route = "/beta"
subscribes = [{{ source = "alpha", topic = "Ping" }}]
[services.beta.stores.main]
backend = "postgres"

{}"#,
        backend_section(prefix)
    );
    let h = TestHost::start(&manifest).await;
    let (s, b) = sql(&h, "beta", "CREATE TABLE beta_secret (v TEXT)").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = sql(&h, "beta", "INSERT INTO beta_secret VALUES ('beta only')").await;
    assert_eq!(s, 200, "{b}");
    // An event beta handles puts a row in its (host-owned) inbox.
    let r = h
        .post(
            "/alpha/publish",
            r#"{"topic":"Ping","key":"k","data":"d","count":1}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    h.wait_drained(Duration::from_secs(30)).await;

    // alpha lists its own tables only; the catalogs of beta's database are beyond reach.
    let (s, b) = sql(
        &h,
        "alpha",
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let names: Vec<String> = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["table_name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"received".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("beta")), "{names:?}");
    // Each with the exact refusal it must get: (statement, status, error code, what the
    // message says). `dblink` is not installed, and alpha's role may not install it (the
    // `CREATE EXTENSION` below): so the call says the function does not exist.
    let attacks: Vec<(String, u16, &str, &str)> = vec![
        (
            "SELECT * FROM beta_secret".into(),
            400,
            "bad-query",
            "relation \"beta_secret\" does not exist",
        ),
        (
            format!("SELECT * FROM {prefix}_beta_main.public.beta_secret"),
            400,
            "bad-query",
            "cross-database references are not implemented",
        ),
        (
            format!(
                "SELECT * FROM dblink('dbname={prefix}_beta_main', 'SELECT v FROM beta_secret') AS t(v text)"
            ),
            400,
            "bad-query",
            "function dblink(unknown, unknown) does not exist",
        ),
        (
            "SET ROLE postgres".into(),
            403,
            "access-denied",
            "`SET` is the host's",
        ),
        (
            format!("SELECT set_config('role', '{prefix}_beta_main', false)"),
            403,
            "access-denied",
            "permission denied to set role",
        ),
        (
            "SELECT pg_read_file('/etc/passwd')".into(),
            403,
            "access-denied",
            "permission denied for function pg_read_file",
        ),
        (
            "CREATE EXTENSION dblink".into(),
            403,
            "access-denied",
            "permission denied to create extension",
        ),
        (
            "COPY (SELECT 1) TO '/tmp/silo-leak'".into(),
            403,
            "access-denied",
            "`COPY` is the host's",
        ),
        (
            "ALTER TABLE silo_host._silo_inbox DISABLE ROW LEVEL SECURITY".into(),
            403,
            "access-denied",
            "must be owner of table _silo_inbox",
        ),
        (
            "DROP POLICY host_only ON silo_host._silo_inbox".into(),
            403,
            "access-denied",
            "must be owner of relation _silo_inbox",
        ),
        (
            "INSERT INTO silo_host._silo_inbox VALUES ('forged', 'evt', 0)".into(),
            403,
            "access-denied",
            "the host's tables are not the service's",
        ),
        (
            "UPDATE silo_host._silo_heads SET n = 0".into(),
            403,
            "access-denied",
            "the host's tables are not the service's",
        ),
        (
            "DELETE FROM silo_host._silo_subscriptions".into(),
            403,
            "access-denied",
            "the host's tables are not the service's",
        ),
        (
            "DROP TABLE silo_host._silo_outbox".into(),
            403,
            "access-denied",
            "must be owner of table _silo_outbox",
        ),
        (
            "CREATE TABLE silo_host.planted (x int)".into(),
            403,
            "access-denied",
            "permission denied for schema silo_host",
        ),
        (
            "COMMIT".into(),
            403,
            "access-denied",
            "`COMMIT` is the host's",
        ),
        (
            "SELECT * FROM silo_host._silo_owner".into(),
            403,
            "access-denied",
            "permission denied for table _silo_owner",
        ),
    ];
    let mut unexpected = Vec::new();
    for (attack, status, code, says) in &attacks {
        let (s, b) = sql(&h, "alpha", attack).await;
        let message = b["error"]["message"].as_str().unwrap_or_default();
        if s != *status || b["error"]["code"] != *code || !message.contains(says) {
            unexpected.push(format!(
                "{attack}: expected {status} {code} saying {says:?}, got {s} {b}"
            ));
        }
    }
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    // Reads of the host's tables see nothing (row-level security hides every row)…
    for t in [
        "_silo_outbox",
        "_silo_subscriptions",
        "_silo_heads",
        "_silo_migrations",
    ] {
        let (s, b) = sql(&h, "alpha", &format!("SELECT * FROM silo_host.{t}")).await;
        assert_eq!(s, 200, "{t}: {b}");
        assert_eq!(b["rows"].as_array().unwrap().len(), 0, "{t}: {b}");
    }
    // … though the host's own rows are there and intact.
    let c = admin(&format!("{prefix}_alpha_main")).await;
    let subs: i64 = c
        .query_one("SELECT count(*) FROM silo_host._silo_subscriptions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(subs, 1, "the subscription row survived every attack");
    let c = admin(&format!("{prefix}_beta_main")).await;
    let inbox: i64 = c
        .query_one("SELECT count(*) FROM silo_host._silo_inbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(inbox, 1, "beta's inbox holds the event it handled");

    // With alpha's own password, its role still cannot connect to beta's database.
    let secret = std::fs::read_to_string(h.data_dir().join("sql").join("postgres.secret")).unwrap();
    let alpha = format!("{prefix}_alpha_main");
    let password = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(format!(
            "{}:password:{alpha}",
            secret.trim()
        )))
    };
    let own = format!("postgres://{alpha}:{password}@127.0.0.1:5432/{alpha}");
    let (c, conn) = tokio_postgres::connect(&own, tokio_postgres::NoTls)
        .await
        .expect("alpha's role connects to its own database");
    tokio::spawn(conn);
    assert!(
        c.query("SELECT * FROM beta_secret", &[]).await.is_err(),
        "no beta table in alpha's database"
    );
    let other = format!("postgres://{alpha}:{password}@127.0.0.1:5432/{prefix}_beta_main");
    let e = tokio_postgres::connect(&other, tokio_postgres::NoTls)
        .await
        .err()
        .expect("alpha's role must not connect to beta's database");
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "refused by the server for want of CONNECT: {e:?}"
    );
    h.stop();
    drop_pg(prefix, &["alpha", "beta"]).await;
}

/// The polyglot demo as `make run-polyglot` serves it (`silo-polyglot.toml`): the order saga
/// and its event-fed copies with orders (the saga orchestrator, an event subscriber) on
/// PostgreSQL, products (a saga participant, an event publisher) on MariaDB, sessions on
/// Redis, the rest on SQLite.
#[tokio::test]
async fn the_polyglot_demo_runs_across_postgres_mariadb_and_redis() {
    if !postgres_up()
        || !crate::support::server_up("MariaDB", "127.0.0.1:3306")
        || !crate::kv::redis_up()
    {
        return;
    }
    let prefix = &run_prefix();
    let manifest = polyglot_manifest(prefix);
    assert!(
        manifest.contains("backend = \"mysql\""),
        "products on MariaDB"
    );
    assert!(
        manifest.contains("backend = \"postgres\""),
        "orders on PostgreSQL"
    );
    let h = TestHost::start(&manifest).await;
    let r = h.post("/sessions", r#"{"userId":"usr_polyglot"}"#).await;
    assert_eq!(r.status, 201, "a session in Redis: {}", r.text());
    let r = h
        .post("/users", r#"{"email":"ada@example.com","name":"Ada"}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let user = r.json()["id"].as_str().unwrap().to_string();
    let r = h
        .post(
            "/payments/accounts",
            &format!(r#"{{"userId":"{user}","balance":100000}}"#),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    let r = h
        .post("/products", r#"{"name":"Engine","price":1000,"stock":5}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let product = r.json()["id"].as_str().unwrap().to_string();
    let place = |quantity: u32| {
        format!(r#"{{"userId":"{user}","productId":"{product}","quantity":{quantity}}}"#)
    };
    let r = h.post("/orders", &place(2)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let approved = r.json()["id"].as_str().unwrap().to_string();
    let r = h.post("/orders", &place(10)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let rejected = r.json()["id"].as_str().unwrap().to_string();
    let status = |id: String| {
        let h = &h;
        async move {
            let start = Instant::now();
            loop {
                let r = h.get(&format!("/orders/{id}")).await;
                assert_eq!(r.status, 200, "{}", r.text());
                let s = r.json()["status"].as_str().unwrap_or_default().to_string();
                if s != "PENDING" {
                    return (s, r.json());
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "{id} stays PENDING"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(status(approved.clone()).await.0, "APPROVED");
    assert_eq!(status(rejected).await.0, "REJECTED");
    // A user's new name reaches the order's copy through an event into PostgreSQL.
    let r = h
        .put(&format!("/users/{user}"), r#"{"name":"Ada Lovelace"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    h.wait_drained(Duration::from_secs(30)).await;
    let (_, order) = status(approved.clone()).await;
    assert_eq!(order["userName"], "Ada Lovelace", "{order}");
    let r = h.get(&format!("/products/{product}")).await;
    assert_eq!(r.json()["stock"], 3, "{}", r.text());
    // A product renamed on MariaDB reaches the order on PostgreSQL through its outbox.
    let r = h
        .put(&format!("/products/{product}"), r#"{"name":"Engine II"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    h.wait_drained(Duration::from_secs(30)).await;
    let (_, order) = status(approved.clone()).await;
    assert_eq!(order["productName"], "Engine II", "{order}");
    let r = h.get("/orders").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 2, "{}", r.text());
    let r = h.get("/products?q=engine").await;
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.text());
    // The reservation and its command record are MariaDB rows.
    {
        use mysql_async::prelude::Queryable;
        let mut c = mysql_async::Conn::new(
            mysql_async::Opts::from_url("mysql://root@127.0.0.1:3306/").unwrap(),
        )
        .await
        .unwrap();
        let reserved: Option<i64> = c
            .query_first(format!(
                "SELECT count(*) FROM `{prefix}_products_main`.reservations WHERE state = 'reserved'"
            ))
            .await
            .unwrap();
        assert_eq!(reserved, Some(1));
        let commands: Option<i64> = c
            .query_first(format!(
                "SELECT count(*) FROM `{prefix}_products_main_host`._silo_commands"
            ))
            .await
            .unwrap();
        assert!(
            commands.unwrap_or(0) >= 2,
            "reserve of each order: {commands:?}"
        );
        let _ = c.disconnect().await;
    }
    // The saga log and the inbox are PostgreSQL rows.
    let c = admin(&format!("{prefix}_orders_main")).await;
    let sagas: i64 = c
        .query_one(
            "SELECT count(*) FROM silo_host._silo_sagas WHERE handled = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sagas, 2);
    let inbox: i64 = c
        .query_one("SELECT count(*) FROM silo_host._silo_inbox", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        inbox >= 4,
        "UserCreated, ProductCreated, UserUpdated, ProductUpdated: {inbox}"
    );
    h.stop();
    drop_polyglot(prefix).await;
}

/// A PostgreSQL server of one test's own: a cluster made with `initdb` in a temporary
/// folder, on a free loopback port, trust auth for `postgres`. A test that stops and starts
/// its server does it to this one, never to the machine's, which other runs share.
struct PrivatePostgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// Runs a PostgreSQL program as the `postgres` user when we are root (the server refuses
    /// to run as root), else as ourselves.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(program);
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let mut cmd = if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program} {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Makes the cluster and starts it.
    fn start_new() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("/usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").is_file())
            .expect("PostgreSQL's initdb");
        let dir = tempfile::tempdir().unwrap();
        let _ = std::process::Command::new("chown")
            .args(["postgres"])
            .arg(dir.path())
            .output();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Self { bin, dir, port };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"])
            .unwrap();
        pg.ctl("start");
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `pg_ctl start` or `stop` (fast), waiting for it.
    fn ctl(&self, action: &str) {
        self.try_ctl(action).unwrap();
    }

    fn try_ctl(&self, action: &str) -> Result<(), String> {
        let data = self.data();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        match action {
            "start" => self.run(
                "pg_ctl",
                &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
            ),
            _ => self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", action]),
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        // Stopped already when a test failed while it was down: nothing to do then.
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// PostgreSQL stops and starts again while clients publish: requests fail fast with 503
/// while it is down, succeed again on their own once it is back, and every event whose
/// publish was answered 201 reaches the subscriber. The server is the test's own
/// ([`PrivatePostgres`]): restarting the machine's would break every other run on it.
#[tokio::test]
async fn a_postgres_restart_under_load_fails_fast_and_loses_no_event() {
    if !postgres_up() {
        return;
    }
    let server = PrivatePostgres::start_new();
    let prefix = &run_prefix();
    let manifest = format!(
        r#"
[services.pub]
component = "{{c:events_probe}}"
route = "/pub"
publishes = ["Ping"]
[services.pub.stores.main]
backend = "postgres"

[services.sub]
component = "{{c:events_probe}}"
route = "/sub"
subscribes = [{{ source = "pub", topic = "Ping" }}]
[services.sub.stores.main]
[services.sub.events]
backoff-ms = 20
max-backoff-ms = 200
max-attempts = 1000

[backends.postgres]
url = "postgres://postgres@127.0.0.1:{}/postgres"
prefix = "{prefix}"
pool-size = 8
"#,
        server.port
    );
    let (dir, path) = write_manifest(&manifest);
    let h = TestHost::start_in(dir, path).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..6 {
        let (http, stop) = (h.http.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = format!(r#"{{"topic":"Ping","key":"c{c}-{n}","data":"x","count":1}}"#);
                let t = Instant::now();
                let r =
                    crate::support::try_request("POST", &http, "/pub/publish", Some(&body)).await;
                let took = t.elapsed();
                outcomes.push((r.map(|r| (r.status, r.json())), took, Instant::now()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down_at = Instant::now();
    server.ctl("stop");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.ctl("start");
    let up_at = Instant::now();
    // Load goes on until requests have succeeded again for a while.
    let mut recovered = None;
    while recovered.is_none() {
        let r = h
            .post(
                "/pub/publish",
                r#"{"topic":"Ping","key":"probe","data":"x","count":1}"#,
            )
            .await;
        if r.status == 201 {
            recovered = Some(up_at.elapsed());
        } else {
            assert!(
                up_at.elapsed() < Duration::from_secs(30),
                "no recovery 30 s after PostgreSQL came back: {} {}",
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut committed = BTreeSet::new();
    let (mut failed, mut slowest_failure) = (0, Duration::ZERO);
    for c in clients {
        for (r, took, _at) in c.await.unwrap() {
            match r {
                Some((201, body)) => {
                    for id in body["ids"].as_array().unwrap() {
                        committed.insert(id.as_str().unwrap().to_string());
                    }
                }
                Some((503, _)) => {
                    failed += 1;
                    slowest_failure = slowest_failure.max(took);
                }
                other => panic!("a publish answered neither 201 nor 503: {other:?}"),
            }
        }
    }
    eprintln!(
        "restart: {} committed, {failed} failed fast (slowest {slowest_failure:?}), recovered {:?} after start, down {:?}",
        committed.len(),
        recovered,
        up_at - down_at
    );
    assert!(failed > 0, "no request met the server while it was down");
    assert!(
        slowest_failure < Duration::from_secs(4),
        "a failure took {slowest_failure:?}: requests must fail fast, not wait out their deadline"
    );
    // Every committed event is delivered, exactly once.
    let start = Instant::now();
    loop {
        let r = h.get("/sub/received").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let got: Vec<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["eventId"].as_str().unwrap_or_default().to_string())
            .collect();
        let set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(set.len(), got.len(), "an event was handled twice");
        if committed.is_subset(&set) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {} committed events delivered",
            committed.intersection(&set).count(),
            committed.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop();
    drop(server);
}
