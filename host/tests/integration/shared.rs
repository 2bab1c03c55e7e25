//! Hosts that share database servers: each test names its server objects under a prefix of
//! its own run, so two checkouts' `make test` never meet; and a second data folder meeting
//! stores another one owns is refused with the owner's folder named, instead of resetting
//! that host's passwords.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{TestHost, shared_cache, silo_bin, write_manifest};

/// A prefix no other run uses: `it` and random lowercase hex.
pub fn run_prefix() -> String {
    format!("it{:08x}", rand::random::<u32>())
}

/// Drops the test databases and roles of `services` (store `main`) under `prefix`.
pub async fn drop_pg(prefix: &str, services: &[&str]) {
    let c = admin("postgres").await;
    for s in services {
        let name = format!("{prefix}_{s}_main");
        // One statement each: DROP DATABASE cannot run inside a multi-statement batch.
        for s in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS \"{name}\""),
        ] {
            c.batch_execute(&s)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e:?}"));
        }
    }
}

/// Drops the test databases and accounts of `services` (store `main`) under `prefix` on
/// MariaDB.
pub async fn drop_mysql(prefix: &str, services: &[&str]) {
    use mysql_async::prelude::Queryable;
    let url = "mysql://root@127.0.0.1:3306/";
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(url).unwrap())
        .await
        .expect("admin connection to MariaDB");
    for s in services {
        let name = format!("{prefix}_{s}_main");
        for q in [
            format!("DROP DATABASE IF EXISTS `{name}`"),
            format!("DROP DATABASE IF EXISTS `{name}_host`"),
            format!("DROP USER IF EXISTS '{name}'@'%'"),
            format!("DROP USER IF EXISTS '{name}_def'@'localhost'"),
        ] {
            c.query_drop(&q)
                .await
                .unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }
    let _ = c.disconnect().await;
}

/// Drops the Redis ACL users, keys and owner records of `stores` (service, store) under
/// `prefix`.
pub async fn drop_redis(prefix: &str, stores: &[(&str, &str)]) {
    let config = silo::kv::redis::RedisConfig {
        admin_url: "redis://127.0.0.1:6379".into(),
        connect_timeout: Duration::from_secs(5),
        prefix: prefix.into(),
    };
    for (service, store) in stores {
        silo::kv::redis::deprovision(&config, service, store)
            .await
            .unwrap_or_else(|e| panic!("removing {service}/{store} from Redis: {e}"));
    }
}

/// `silo-polyglot.toml` as `make run-polyglot` serves it, with its components found from
/// anywhere and `prefix` in each `[backends.*]` (a test's own).
pub fn polyglot_manifest(prefix: &str) -> String {
    let root = crate::support::repo_root();
    let mut manifest = std::fs::read_to_string(root.join("silo-polyglot.toml"))
        .expect("silo-polyglot.toml")
        .replace(
            "\"components/target/",
            &format!("\"{}/components/target/", root.display()),
        );
    for section in ["postgres", "mysql", "redis"] {
        let table = format!("[backends.{section}]");
        assert!(manifest.contains(&table), "{table} in silo-polyglot.toml");
        manifest = manifest.replace(&table, &format!("{table}\nprefix = \"{prefix}\""));
    }
    manifest
}

/// Drops what the polyglot demo makes on the servers under `prefix`.
pub async fn drop_polyglot(prefix: &str) {
    drop_pg(prefix, &["orders"]).await;
    drop_mysql(prefix, &["products"]).await;
    drop_redis(prefix, &[("sessions", "sessions")]).await;
}

/// An administrative connection to database `db` of the machine's PostgreSQL.
pub async fn admin(db: &str) -> tokio_postgres::Client {
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("admin connection to PostgreSQL");
    tokio::spawn(conn);
    c
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn secret(data: &Path, file: &str) -> String {
    std::fs::read_to_string(data.join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .to_string()
}

/// Runs `silo run` of `manifest` on data folder `data` (other ports), expecting it to exit;
/// returns its status and the lines of its own (`silo: …`) on stderr.
fn refused_run(manifest: &Path, data: &Path) -> (i32, Vec<String>) {
    let mut child = std::process::Command::new(silo_bin())
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--manifest")
        .arg(manifest)
        .arg("--data")
        .arg(data)
        .arg("--cache")
        .arg(shared_cache())
        .env("SILO_ADMIN_TOKEN", "test-token-0123456789abcdef0123456789")
        .env("SILO_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting silo");
    let status = crate::support::wait_timeout(&mut child, Duration::from_secs(120));
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("silo: "))
        .map(String::from)
        .collect();
    (status.code().unwrap_or(-1), lines)
}

/// The line a host on data folder `mine` gets for store `key` whose `what` on `server`
/// belongs to data folder `theirs` (same machine), with `secret` its secret file and
/// `section` its backend table.
#[allow(clippy::too_many_arguments, reason = "each part of the message")]
fn refusal(
    manifest: &Path,
    key: &str,
    what: &str,
    server: &str,
    theirs: &Path,
    mine: &Path,
    secret: &str,
    section: &str,
    prefix: &str,
) -> String {
    let (theirs, mine, manifest) = (theirs.display(), mine.display(), manifest.display());
    format!(
        "silo: {manifest}: {key}: {what} on {server} belong to another data folder, {theirs}, \
         not to this one ({mine}): provisioning them would reset that host's passwords, so \
         nothing was changed. To share them, give this data folder that one's secret (copy \
         {theirs}/{secret} to {mine}/{secret}); to keep apart, set a `prefix` of its own in \
         [{section}] (now \"{prefix}\")"
    )
}

/// Two checkouts' polyglot demos on one set of servers (the README's `make run-polyglot`
/// twice, data folders apart): the second meets the first's stores on PostgreSQL, MariaDB
/// and Redis and is refused each time (exit 2, the owner's data folder and the two ways out
/// named), leaving the first host's credentials as they were, so it keeps serving. With a
/// prefix of its own the second serves beside it; with the first's secrets it serves the
/// first's stores (once the first has stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_data_folder_is_refused_on_stores_another_owns() {
    let up = [
        ("PostgreSQL", "127.0.0.1:5432"),
        ("MariaDB", "127.0.0.1:3306"),
        ("Redis", "127.0.0.1:6379"),
    ]
    .iter()
    .all(|(name, addr)| crate::support::server_up(name, addr));
    if !up {
        return;
    }
    let prefix = &run_prefix();
    let first = TestHost::start(&polyglot_manifest(prefix)).await;
    let a = first.data_dir();
    // The first host's data on each server: a product (MariaDB), an approved order
    // (PostgreSQL), a session (Redis).
    let r = first
        .post("/users", r#"{"email":"ada@example.com","name":"Ada"}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let user = r.json()["id"].as_str().unwrap().to_string();
    let r = first
        .post(
            "/payments/accounts",
            &format!(r#"{{"userId":"{user}","balance":100000}}"#),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    let r = first
        .post("/products", r#"{"name":"Engine","price":1000,"stock":5}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let product = r.json()["id"].as_str().unwrap().to_string();
    let order = |quantity: u32| {
        format!(r#"{{"userId":"{user}","productId":"{product}","quantity":{quantity}}}"#)
    };
    let approved = |h: &TestHost, body: String| {
        let (http, body) = (h.http.clone(), body);
        async move {
            let r = crate::support::request("POST", &http, "/orders", Some(&body), &[]).await;
            assert_eq!(r.status, 202, "{}", r.text());
            let id = r.json()["id"].as_str().unwrap().to_string();
            let start = Instant::now();
            loop {
                let r = crate::support::request("GET", &http, &format!("/orders/{id}"), None, &[])
                    .await;
                let status = r.json()["status"].as_str().unwrap_or_default().to_string();
                if status != "PENDING" {
                    assert_eq!(status, "APPROVED", "{}", r.text());
                    return id;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "{id} stays PENDING"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let first_order = approved(&first, order(1)).await;
    let r = first
        .post("/sessions", &format!(r#"{{"userId":"{user}"}}"#))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let session = r.json()["token"].as_str().unwrap().to_string();

    // The second checkout: the same manifest, its own data folder. Each server store of the
    // first is refused in turn (stores before it moved to SQLite, so the next is met).
    let full = polyglot_manifest(prefix);
    let no_pg = full.replace("backend = \"postgres\"", "backend = \"sqlite\"");
    let no_pg_my = no_pg.replace("backend = \"mysql\"", "backend = \"sqlite\"");
    let cases = [
        (
            full,
            "services.orders.stores.main",
            format!("PostgreSQL database and role `{prefix}_orders_main`"),
            "127.0.0.1:5432",
            "sql/postgres.secret",
            "backends.postgres",
        ),
        (
            no_pg,
            "services.products.stores.main",
            format!("MariaDB databases and users of store `{prefix}_products_main`"),
            "127.0.0.1:3306",
            "sql/mysql.secret",
            "backends.mysql",
        ),
        (
            no_pg_my,
            "services.sessions.kv.sessions",
            format!(
                "Redis ACL user `{prefix}-sessions-sessions` and keys `{prefix}:sessions:sessions:*`"
            ),
            "127.0.0.1:6379",
            "kv/redis.secret",
            "backends.redis",
        ),
    ];
    // Services open as they finish compiling, so the refusal reported is that of whichever
    // service on a shared server opened first: case i shares the stores of cases i.. (all
    // three servers, then MariaDB and Redis, then Redis alone), and the line must be the
    // exact refusal of one of them.
    for (i, (manifest, key, _, _, _, _)) in cases.iter().enumerate() {
        let (dir, path) = write_manifest(manifest);
        let b = dir.path().join("data");
        let started = Instant::now();
        let (code, lines) = refused_run(&path, &b);
        assert_eq!(code, 2, "{key}: {lines:?}");
        let candidates: Vec<String> = cases[i..]
            .iter()
            .map(|(_, key, what, server, secret_file, section)| {
                refusal(
                    &path,
                    key,
                    what,
                    server,
                    &a,
                    &b,
                    secret_file,
                    section,
                    prefix,
                )
            })
            .collect();
        assert_eq!(lines.len(), 1, "{key}: {lines:?}");
        assert!(
            candidates.contains(&lines[0]),
            "{key}: {lines:?} is none of {candidates:#?}"
        );
        eprintln!("{key}: refused in {:?}", started.elapsed());
    }

    // The first host's credentials are as it made them: each store's own login still gets
    // in with the password the first data folder derives…
    let orders_db = format!("{prefix}_orders_main");
    let pg_password = sha256_hex(&format!(
        "{}:password:{orders_db}",
        secret(&a, "sql/postgres.secret")
    ));
    let (c, conn) = tokio_postgres::connect(
        &format!("postgres://{orders_db}:{pg_password}@127.0.0.1:5432/{orders_db}"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("the orders role logs in with the first host's password");
    tokio::spawn(conn);
    c.simple_query("SELECT 1").await.unwrap();
    let products_db = format!("{prefix}_products_main");
    let my_password = sha256_hex(&format!(
        "{}:password:{products_db}",
        secret(&a, "sql/mysql.secret")
    ));
    let my = mysql_async::Conn::new(
        mysql_async::Opts::from_url(&format!(
            "mysql://{products_db}:{my_password}@127.0.0.1:3306/{products_db}"
        ))
        .unwrap(),
    )
    .await
    .expect("the products user logs in with the first host's password");
    let _ = my.disconnect().await;
    let redis_user = format!("{prefix}-sessions-sessions");
    let redis_password = sha256_hex(&format!("{}:{redis_user}", secret(&a, "kv/redis.secret")));
    let client = redis::Client::open(format!(
        "redis://{redis_user}:{redis_password}@127.0.0.1:6379"
    ))
    .unwrap();
    let mut rc = client
        .get_multiplexed_async_connection()
        .await
        .expect("the sessions user logs in with the first host's password");
    let _: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{prefix}:sessions:sessions:k:x"))
        .query_async(&mut rc)
        .await
        .expect("its key pattern is intact");
    // … and the first host serves on every server, old data and new.
    assert_eq!(first.get(&format!("/sessions/{session}")).await.status, 200);
    let r = first
        .post("/sessions", &format!(r#"{{"userId":"{user}"}}"#))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let second_order = approved(&first, order(1)).await;
    let r = first.get(&format!("/products/{product}")).await;
    assert_eq!(r.json()["stock"], 3, "{}", r.text());

    // With a prefix of its own, the second checkout serves beside the first.
    let own = &run_prefix();
    let second = TestHost::start(&polyglot_manifest(own)).await;
    let r = second
        .post("/products", r#"{"name":"Other","price":5,"stock":1}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = second.post("/sessions", r#"{"userId":"usr_other"}"#).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        second.get(&format!("/products/{product}")).await.status,
        404,
        "the first host's products are not the second's"
    );
    second.stop();
    drop_polyglot(own).await;
    assert_eq!(first.get(&format!("/sessions/{session}")).await.status, 200);

    // Given the first's secrets, a second data folder is the same owner: it serves the
    // first's stores (once the first has stopped).
    let (status, _dir, _) = first.stop();
    assert!(status.success());
    let (dir, path) = write_manifest(&polyglot_manifest(prefix));
    let b = dir.path().join("data");
    for file in ["sql/postgres.secret", "sql/mysql.secret", "kv/redis.secret"] {
        std::fs::create_dir_all(b.join(file).parent().unwrap()).unwrap();
        std::fs::copy(a.join(file), b.join(file)).unwrap();
    }
    let shared = TestHost::start_in(dir, path).await;
    for order in [&first_order, &second_order] {
        let r = shared.get(&format!("/orders/{order}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "APPROVED", "{}", r.text());
    }
    assert_eq!(
        shared.get(&format!("/products/{product}")).await.status,
        200
    );
    assert_eq!(
        shared.get(&format!("/sessions/{session}")).await.status,
        200
    );
    shared.stop();
    drop_polyglot(prefix).await;
}
