//! Attacks on the shared database servers, each written as the attack a hostile service (or
//! a neighbour on the same server) would make, asserting the exact refusal silo gives.
//!
//! Every database, role, user and key a test makes has a name with a random tag of its
//! own run (`sv…`), so runs on one shared server never meet; each test drops what it made,
//! and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use silo::sql::mysql::{MyConfig, MyStore};
use silo::sql::postgres::{PgConfig, PgStore};
use silo::sql::{CallLimits, SqlError, SqlStore, Value};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/";

/// A prefix no other run uses: `sv` and random lowercase hex.
fn tag() -> String {
    format!("sv{:08x}", rand::random::<u32>())
}

fn limits(budget: Duration) -> CallLimits {
    CallLimits {
        deadline: Instant::now() + Duration::from_secs(10),
        statement_budget: budget,
        max_result_bytes: 4 << 20,
    }
}

fn normal() -> CallLimits {
    limits(Duration::from_secs(10))
}

fn kind(e: &SqlError) -> &'static str {
    match e {
        SqlError::AccessDenied(_) => "access-denied",
        SqlError::ConstraintViolation(_) => "constraint-violation",
        SqlError::BadQuery(_) => "bad-query",
        SqlError::LimitExceeded(_) => "limit-exceeded",
        SqlError::Unavailable(_) => "unavailable",
        SqlError::InvalidHandle(_) => "invalid-handle",
        SqlError::Other(_) => "other",
        SqlError::OwnedElsewhere(_) => "owned-elsewhere",
        SqlError::Trap(_) => "trap",
    }
}

/// The first column of the first row, shown (`Value` has no `PartialEq`).
fn scalar(rows: &silo::sql::RowSet) -> String {
    format!("{:?}", first(rows))
}

fn show(v: Value) -> String {
    format!("{v:?}")
}

fn first(rows: &silo::sql::RowSet) -> Value {
    rows.rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------
// PostgreSQL.

async fn pg_admin(db: &str) -> tokio_postgres::Client {
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("admin connection to PostgreSQL");
    tokio::spawn(conn);
    c
}

fn pg_config(prefix: &str, pool_size: usize) -> PgConfig {
    PgConfig {
        admin_url: PG_ADMIN.into(),
        pool_size,
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.into(),
    }
}

/// Opens store `main` of service `svc` under `prefix`.
async fn pg_store(prefix: &str, svc: &str, pool_size: usize, dir: &std::path::Path) -> PgStore {
    PgStore::open(&pg_config(prefix, pool_size), dir, svc, "main")
        .await
        .expect("open the PostgreSQL store")
}

/// Drops the database and role `name` (made by this test).
async fn pg_drop(name: &str) {
    let c = pg_admin("postgres").await;
    for s in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS \"{name}\""),
    ] {
        c.batch_execute(&s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e:?}"));
    }
}

/// Backends of role `role` whose statement mentions `needle` and is not idle.
async fn pg_running(role: &str, needle: &str) -> Vec<(i32, String)> {
    let c = pg_admin("postgres").await;
    c.query(
        "SELECT pid, state FROM pg_stat_activity WHERE usename = $1 AND state <> 'idle' \
         AND query LIKE '%' || $2 || '%' AND pid <> pg_backend_pid()",
        &[&role, &needle],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// A `DO` block that traps the cancel of its statement budget and sleeps on: without the
/// host ending its process it ran 30 s more, holding the store's writer lock after the
/// call, its deadline and its request were over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_that_traps_its_cancel_is_terminated() {
    if !super::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let prefix = tag();
    let dir = tempfile::tempdir().unwrap();
    let store = pg_store(&prefix, "trap", 4, dir.path()).await;
    let role = store.database().to_string();
    let attacks = [
        "DO $$ BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN PERFORM pg_sleep(30); END $$",
        "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$",
    ];
    for (i, attack) in attacks.iter().enumerate() {
        for in_tx in [false, true] {
            let l = limits(Duration::from_millis(300));
            let t = Instant::now();
            let r = if in_tx {
                let mut tx = store.begin(&l).await.unwrap();
                let r = tx.execute(&l, attack, &[]).await;
                drop(tx);
                r
            } else {
                store.execute(&l, attack, &[]).await
            };
            let took = t.elapsed();
            let e = r.expect_err("the attack must not finish");
            assert_eq!(
                kind(&e),
                "limit-exceeded",
                "attack {i} (in tx: {in_tx}): {e}"
            );
            assert!(
                took < Duration::from_secs(2),
                "attack {i} (in tx: {in_tx}) answered after {took:?}"
            );
            // Its process is gone, and with it the writer lock.
            let left = pg_running(&role, "query_canceled").await;
            assert!(left.is_empty(), "attack {i} still runs: {left:?}");
            let t = Instant::now();
            let second = CallLimits {
                deadline: Instant::now() + Duration::from_secs(1),
                ..normal()
            };
            let tx = store
                .begin(&second)
                .await
                .unwrap_or_else(|e| panic!("attack {i} (in tx: {in_tx}) kept the writer: {e}"));
            tx.rollback().await.unwrap();
            eprintln!(
                "attack {i} (in tx: {in_tx}): limit-exceeded after {took:?}; the writer was free {:?} later",
                t.elapsed()
            );
        }
    }
    // The store works on.
    store
        .execute(&normal(), "CREATE TABLE after_attack (x BIGINT)", &[])
        .await
        .unwrap();
    drop(store);
    pg_drop(&role).await;
}

/// A request dropped while its `begin` waits for the writer lock (another transaction holds
/// it): the connection it had taken must not go back to the pool inside a transaction,
/// where it would take the writer as soon as it is free and keep it, and hand the next
/// borrower a transaction it did not begin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_begin_dropped_while_waiting_for_the_writer_leaves_no_open_transaction() {
    if !super::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let prefix = tag();
    let dir = tempfile::tempdir().unwrap();
    let store = pg_store(&prefix, "waiter", 2, dir.path()).await;
    let role = store.database().to_string();
    let l = normal();
    store
        .execute(&l, "CREATE TABLE t (who TEXT)", &[])
        .await
        .unwrap();
    let mut holder = store.begin(&l).await.unwrap();
    holder
        .execute(&l, "INSERT INTO t VALUES ('holder')", &[])
        .await
        .unwrap();
    // The attack: a begin that waits for the writer, dropped mid-wait.
    let waiting = tokio::time::timeout(Duration::from_millis(300), store.begin(&l)).await;
    assert!(waiting.is_err(), "the begin must still be waiting");
    holder.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let c = pg_admin("postgres").await;
    let open: Vec<(i32, String, String)> = c
        .query(
            "SELECT pid, state, query FROM pg_stat_activity WHERE usename = $1 \
             AND (state LIKE 'idle in transaction%' OR wait_event_type = 'Lock')",
            &[&role],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        open.is_empty(),
        "a connection of the store is inside a transaction: {open:?}"
    );
    // No connection the pool hands out holds the writer lock it was never asked for (a
    // connection returned mid-`begin` would have taken it once it was free, and kept it).
    for _ in 0..4 {
        let r = store
            .query(
                &l,
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            scalar(&r),
            show(Value::Integer(0)),
            "a pooled connection holds the writer lock"
        );
    }
    let quick = CallLimits {
        deadline: Instant::now() + Duration::from_secs(1),
        ..normal()
    };
    store
        .execute(&quick, "INSERT INTO t VALUES ('after')", &[])
        .await
        .expect("the writer is free");
    // A transaction dropped mid-statement after a write: the write must not survive, and
    // the writer is free right after.
    let mut dropped = store.begin(&l).await.unwrap();
    dropped
        .execute(&l, "INSERT INTO t VALUES ('dropped')", &[])
        .await
        .unwrap();
    let stuck = tokio::time::timeout(
        Duration::from_millis(200),
        dropped.query(&l, "SELECT pg_sleep(5)", &[]),
    )
    .await;
    assert!(stuck.is_err());
    drop(dropped);
    let quick = CallLimits {
        deadline: Instant::now() + Duration::from_secs(1),
        ..normal()
    };
    store
        .begin(&quick)
        .await
        .expect("the writer is free")
        .rollback()
        .await
        .unwrap();
    let r = store
        .query(&l, "SELECT string_agg(who, ',' ORDER BY who) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(scalar(&r), show(Value::Text("after,holder".into())));
    drop(store);
    pg_drop(&role).await;
}

/// The host's sequences (the outbox's `seq`, the saga log's `rid`) are not the guest's to
/// advance or read: `nextval`, `setval`, `currval`, `lastval` (right after a host insert in
/// the same session) and `pg_sequence_last_value` are `access-denied`, while the host's
/// own inserts still draw from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_host_sequences_are_out_of_reach() {
    if !super::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let prefix = tag();
    let dir = tempfile::tempdir().unwrap();
    let store = pg_store(&prefix, "seqs", 2, dir.path()).await;
    let l = normal();
    let tables = silo::sql::host_tables::HostTables::of(&store).unwrap();
    fn row(id: &str) -> silo::sql::host_tables::NewEvent<'_> {
        silo::sql::host_tables::NewEvent {
            id,
            topic: "T",
            key: "k",
            time_ms: 1,
            content_type: "x",
            data: &[1],
        }
    }
    let attacks = [
        "SELECT nextval('silo_host._silo_outbox_seq_seq')",
        "SELECT nextval('silo_host._silo_sagas_rid_seq')",
        "SELECT setval('silo_host._silo_outbox_seq_seq', 1000)",
        "SELECT currval('silo_host._silo_outbox_seq_seq')",
        "SELECT lastval()",
        "SELECT pg_sequence_last_value('silo_host._silo_outbox_seq_seq')",
        "SELECT last_value FROM silo_host._silo_outbox_seq_seq",
    ];
    for (n, attack) in attacks.iter().enumerate() {
        let mut tx = store.begin(&l).await.unwrap();
        // A host insert first, so the session has used the sequence (`lastval`).
        let id = format!("e{n}");
        let seq = tables.append_event(tx.as_mut(), &row(&id)).await.unwrap();
        assert!(seq > 0, "the host's insert drew a seq");
        let e = tx
            .query(&l, attack, &[])
            .await
            .expect_err("the guest reached a host sequence");
        assert_eq!(kind(&e), "access-denied", "{attack}: {e}");
        tx.rollback().await.unwrap();
        // Outside a transaction, too (where `currval` and `lastval` depend on what the
        // pooled session drew before).
        if !attack.contains("currval") && !attack.contains("lastval") {
            let e = store.query(&l, attack, &[]).await.expect_err(attack);
            assert_eq!(
                kind(&e),
                "access-denied",
                "{attack} (outside a transaction): {e}"
            );
        }
    }
    let name = store.database().to_string();
    drop(store);
    pg_drop(&name).await;
}

/// `EXPLAIN ANALYZE` on a host table counts the rows row-level security hides (`Rows
/// Removed by Filter`); every spelling of EXPLAIN is `access-denied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_explain_is_refused_in_every_spelling() {
    if !super::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let prefix = tag();
    let dir = tempfile::tempdir().unwrap();
    let store = pg_store(&prefix, "explain", 2, dir.path()).await;
    let l = normal();
    let t = "silo_host._silo_outbox";
    let attacks = [
        format!("EXPLAIN ANALYZE SELECT * FROM {t}"),
        format!("EXPLAIN (ANALYZE) SELECT * FROM {t}"),
        format!("explain (analyse true) select * from {t}"),
        format!("explain verbose analyze select * from {t}"),
        format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT count(*) FROM {t}"),
        format!("/* a comment */ EXPLAIN ANALYZE SELECT * FROM {t}"),
        format!("-- a comment\n  explain\tanalyze SELECT * FROM {t}"),
        format!("EXPLAIN SELECT * FROM {t}"),
        format!("EXPLAIN ANALYZE DELETE FROM {t}"),
    ];
    for attack in &attacks {
        let e = store.query(&l, attack, &[]).await.expect_err(attack);
        assert_eq!(kind(&e), "access-denied", "{attack}: {e}");
        assert!(e.to_string().contains("EXPLAIN"), "{attack}: {e}");
        let mut tx = store.begin(&l).await.unwrap();
        let e = tx.query(&l, attack, &[]).await.expect_err(attack);
        assert_eq!(
            kind(&e),
            "access-denied",
            "{attack} (in a transaction): {e}"
        );
        tx.rollback().await.unwrap();
    }
    let name = store.database().to_string();
    drop(store);
    pg_drop(&name).await;
}

/// 256 KiB of random bytes (TOAST cannot compress them).
fn random_blob() -> Value {
    Value::Blob((0..256 << 10).map(|_| rand::random::<u8>()).collect())
}

/// Fills `store`'s table `filler` with 256 KiB rows until a write is refused; returns how
/// many went in and the refusal.
async fn fill(store: &dyn SqlStore, max_rows: usize) -> (usize, SqlError) {
    let l = normal();
    for n in 0..max_rows {
        match store
            .execute(&l, "INSERT INTO filler (b) VALUES (?)", &[random_blob()])
            .await
        {
            Ok(_) => {}
            Err(e) => return (n, e),
        }
    }
    panic!("{max_rows} rows of 256 KiB went into a store capped at 2 MiB");
}

/// A PostgreSQL store's `max-size-mb` holds: writes past it are refused as a full SQLite
/// store refuses them, reads still work, and a DELETE makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_past_its_cap_refuses_writes() {
    if !super::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let prefix = tag();
    let dir = tempfile::tempdir().unwrap();
    let store = pg_store(&prefix, "full", 4, dir.path())
        .await
        .with_max_bytes(2 << 20);
    let name = store.database().to_string();
    let l = normal();
    store
        .execute(
            &l,
            "CREATE TABLE filler (id BIGSERIAL PRIMARY KEY, b BYTEA)",
            &[],
        )
        .await
        .unwrap();
    let (rows, e) = fill(&store, 40).await;
    assert_eq!(kind(&e), "limit-exceeded", "{e}");
    assert!(e.to_string().contains("the store is full"), "{e}");
    eprintln!("postgres: refused after {rows} rows of 256 KiB: {e}");
    // In a transaction as well, and reads still work.
    let mut tx = store.begin(&l).await.unwrap();
    let e = tx
        .execute(&l, "INSERT INTO filler (b) VALUES (?)", &[random_blob()])
        .await
        .expect_err("full");
    assert_eq!(kind(&e), "limit-exceeded", "{e}");
    tx.rollback().await.unwrap();
    let n = store
        .query(&l, "SELECT count(*) FROM filler", &[])
        .await
        .unwrap();
    assert_eq!(scalar(&n), show(Value::Integer(rows as i64)));
    // Schema changes could grow it too.
    let e = store
        .execute_batch(&l, "CREATE TABLE more (b BYTEA)")
        .await
        .expect_err("a full store refuses CREATE TABLE");
    assert_eq!(kind(&e), "limit-exceeded", "{e}");
    // Room again: delete, and the store vacuums itself.
    store.execute(&l, "DELETE FROM filler", &[]).await.unwrap();
    let t = Instant::now();
    loop {
        match store
            .execute(&l, "INSERT INTO filler (b) VALUES (?)", &[random_blob()])
            .await
        {
            Ok(_) => break,
            Err(e) if t.elapsed() < Duration::from_secs(15) => {
                assert_eq!(kind(&e), "limit-exceeded", "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("a DELETE made no room in 15 s: {e}"),
        }
    }
    eprintln!("postgres: room again {:?} after the DELETE", t.elapsed());
    drop(store);
    pg_drop(&name).await;
}

// ---------------------------------------------------------------------------------------
// MariaDB.

fn my_config(prefix: &str) -> MyConfig {
    MyConfig {
        admin_url: MY_ADMIN.into(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.into(),
    }
}

/// Drops store `name`'s databases and accounts (made by this test).
async fn my_drop(name: &str) {
    use mysql_async::prelude::Queryable;
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(MY_ADMIN).unwrap())
        .await
        .expect("admin connection to MariaDB");
    for s in [
        format!("DROP DATABASE IF EXISTS `{name}`"),
        format!("DROP DATABASE IF EXISTS `{name}_host`"),
        format!("DROP USER IF EXISTS '{name}'@'%'"),
        format!("DROP USER IF EXISTS '{name}_def'@'localhost'"),
    ] {
        c.query_drop(&s).await.unwrap();
    }
    let _ = c.disconnect().await;
}

/// A connection logged in as store `name`'s own user, as a service whose credentials
/// leaked would have (the strongest a guest can be).
async fn my_login(dir: &std::path::Path, name: &str) -> mysql_async::Conn {
    use sha2::Digest;
    let secret = silo::secrets::private_secret(&dir.join("sql").join("mysql.secret")).unwrap();
    let password = hex::encode(sha2::Sha256::digest(format!("{secret}:password:{name}")));
    let url = format!("mysql://{name}:{password}@127.0.0.1:3306/{name}");
    mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .expect("the store's own login")
}

/// A store's login holds the server-wide named lock provisioning used to take (and other
/// names a host might), and tries the row lock provisioning takes now: provisioning
/// another store still finishes at once. Through the store itself, named locks are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_provisioning_is_not_held_up_by_a_guest_lock() {
    use mysql_async::prelude::Queryable;
    if !super::server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    let prefix = tag();
    let dir = tempfile::tempdir().unwrap();
    let config = my_config(&prefix);
    let a = MyStore::open(&config, dir.path(), "holder", "main")
        .await
        .unwrap();
    let a_name = a.database().to_string();
    // Through the store: refused before it reaches the server.
    for attack in [
        "SELECT GET_LOCK('silo_provision', 60)",
        "select get_lock ('silo_provision', 0), is_used_lock('silo_provision')",
        "SELECT RELEASE_ALL_LOCKS()",
    ] {
        let e = a.query(&normal(), attack, &[]).await.expect_err(attack);
        assert_eq!(kind(&e), "access-denied", "{attack}: {e}");
    }
    // With the store's own login: it may take any named lock…
    let mut g = my_login(dir.path(), &a_name).await;
    for lock in ["silo_provision", "_silo_provision", "silo", &prefix] {
        let got: Option<(i64,)> = g
            .query_first(format!("SELECT GET_LOCK('{lock}', 10)"))
            .await
            .unwrap();
        assert_eq!(got, Some((1,)), "a login takes named lock {lock}");
    }
    // …but not the row lock provisioning takes (nor see its database).
    g.query_drop("BEGIN").await.unwrap();
    let row = g
        .query_drop("SELECT id FROM `_silo_provision`.provision_lock WHERE id = 1 FOR UPDATE")
        .await;
    match row {
        Err(mysql_async::Error::Server(e)) => {
            assert!(matches!(e.code, 1142 | 1044), "denied: {e:?}")
        }
        r => panic!("the store's login reached the provisioning lock: {r:?}"),
    }
    g.query_drop("ROLLBACK").await.unwrap();
    let t = Instant::now();
    let b = tokio::time::timeout(
        Duration::from_secs(12),
        MyStore::open(&config, dir.path(), "other", "main"),
    )
    .await
    .expect("provisioning waited for the guest's lock")
    .unwrap();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "provisioning took {took:?}");
    eprintln!("mariadb: provisioning beside a guest's named locks took {took:?}");
    let b_name = b.database().to_string();
    let _ = g.disconnect().await;
    drop((a, b));
    my_drop(&a_name).await;
    my_drop(&b_name).await;
}

/// A MariaDB store's `max-size-mb` holds: writes past it are refused as a full SQLite
/// store refuses them, reads still work, and emptying the table makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_past_its_cap_refuses_writes() {
    if !super::server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    let prefix = tag();
    let dir = tempfile::tempdir().unwrap();
    let store = MyStore::open(&my_config(&prefix), dir.path(), "full", "main")
        .await
        .unwrap()
        .with_max_bytes(2 << 20);
    let name = store.database().to_string();
    let l = normal();
    store
        .execute(
            &l,
            "CREATE TABLE filler (id BIGINT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB)",
            &[],
        )
        .await
        .unwrap();
    let (rows, e) = fill(&store, 40).await;
    assert_eq!(kind(&e), "limit-exceeded", "{e}");
    assert!(e.to_string().contains("the store is full"), "{e}");
    eprintln!("mariadb: refused after {rows} rows of 256 KiB: {e}");
    let mut tx = store.begin(&l).await.unwrap();
    let e = tx
        .execute(&l, "INSERT INTO filler (b) VALUES (?)", &[random_blob()])
        .await
        .expect_err("full");
    assert_eq!(kind(&e), "limit-exceeded", "{e}");
    tx.rollback().await.unwrap();
    let n = store
        .query(&l, "SELECT count(*) FROM filler", &[])
        .await
        .unwrap();
    assert_eq!(scalar(&n), show(Value::Integer(rows as i64)));
    store
        .execute(&l, "TRUNCATE TABLE filler", &[])
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        match store
            .execute(&l, "INSERT INTO filler (b) VALUES (?)", &[random_blob()])
            .await
        {
            Ok(_) => break,
            Err(e) if t.elapsed() < Duration::from_secs(5) => {
                assert_eq!(kind(&e), "limit-exceeded", "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("TRUNCATE made no room: {e}"),
        }
    }
    drop(store);
    my_drop(&name).await;
}

// ---------------------------------------------------------------------------------------
// Redis.

/// Service `x` with store `a-b` and service `x-a` with store `b` once shared one ACL user
/// (`silo-x-a-b`): opening the second reset the first's key pattern and password, locking
/// it out. Now each has its own user, and both work at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_user_names_do_not_collide() {
    use silo::kv::KvStore;
    use silo::kv::redis::{RedisKv, user_name};
    if !super::server_up("Redis", "127.0.0.1:6379") {
        return;
    }
    let config = redis_config(&tag());
    let dir = tempfile::tempdir().unwrap();
    let pairs = [("x", "a-b"), ("x-a", "b")];
    let one = RedisKv::open(&config, dir.path(), pairs[0].0, pairs[0].1)
        .await
        .unwrap();
    let two = RedisKv::open(&config, dir.path(), pairs[1].0, pairs[1].1)
        .await
        .unwrap();
    let d = Instant::now() + Duration::from_secs(5);
    one.set(d, "k", b"one", None)
        .await
        .expect("the first store");
    two.set(d, "k", b"two", None)
        .await
        .expect("the second store");
    assert_eq!(one.get(d, "k").await.unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(two.get(d, "k").await.unwrap().as_deref(), Some(&b"two"[..]));
    let p = &config.prefix;
    assert_ne!(
        user_name(p, pairs[0].0, pairs[0].1).unwrap(),
        user_name(p, pairs[1].0, pairs[1].1).unwrap()
    );
    // Names without `-` keep the name they always had under the default prefix.
    assert_eq!(
        user_name("silo", "users", "main").unwrap(),
        "silo-users-main"
    );
    assert_eq!(
        user_name(p, "users", "main").unwrap(),
        format!("{p}-users-main")
    );
    drop((one, two));
    redis_cleanup(&config, &pairs).await;
}

/// The Redis backend under `prefix`.
fn redis_config(prefix: &str) -> silo::kv::redis::RedisConfig {
    silo::kv::redis::RedisConfig {
        admin_url: super::REDIS_URL.into(),
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.into(),
    }
}

/// Removes the ACL users, keys and owner records of `stores` (made by this test).
async fn redis_cleanup(config: &silo::kv::redis::RedisConfig, stores: &[(&str, &str)]) {
    for (svc, store) in stores {
        silo::kv::redis::deprovision(config, svc, store)
            .await
            .unwrap_or_else(|e| panic!("removing {svc}/{store}: {e}"));
    }
}

/// A Redis store's `max-size-mb` holds: the set that would take it past the cap is refused
/// (`limit-exceeded`, "the store is full"), overwriting a key counts once, concurrent sets
/// cannot race past it, and a delete makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_past_its_cap_refuses_sets() {
    use silo::kv::KvStore;
    use silo::kv::redis::RedisKv;
    if !super::server_up("Redis", "127.0.0.1:6379") {
        return;
    }
    let config = redis_config(&tag());
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(
        RedisKv::open(&config, dir.path(), "cap", "main")
            .await
            .unwrap()
            .with_max_bytes(1 << 20),
    );
    let d = || Instant::now() + Duration::from_secs(5);
    let value = vec![7u8; 100 << 10];
    // Ten values of 100 KiB (+ a 2-byte name) fit in 1 MiB, the eleventh does not;
    // overwriting one does not count it twice.
    for i in 0..10 {
        store
            .set(d(), &format!("k{i}"), &value, None)
            .await
            .unwrap();
    }
    store
        .set(d(), "k0", &value, None)
        .await
        .expect("an overwrite fits");
    let e = store
        .set(d(), "k10", &value, None)
        .await
        .expect_err("past the cap");
    assert_eq!(kind(&e), "limit-exceeded", "{e}");
    assert!(e.to_string().contains("the store is full"), "{e}");
    // Reads work; a delete makes room for exactly one more.
    assert_eq!(
        store.get(d(), "k3").await.unwrap().map(|v| v.len()),
        Some(100 << 10)
    );
    assert!(store.delete(d(), "k3").await.unwrap());
    store
        .set(d(), "k10", &value, None)
        .await
        .expect("room again");
    // Racing sets cannot overshoot: of 8 at once into the room of one, one wins.
    assert!(store.delete(d(), "k10").await.unwrap());
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            let v = value.clone();
            tokio::spawn(async move { s.set(d(), &format!("r{i}"), &v, None).await })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert_eq!(kind(&e), "limit-exceeded", "{e}"),
        }
    }
    assert_eq!(won, 1, "sets racing into room for one");
    drop(store);
    redis_cleanup(&config, &[("cap", "main")]).await;
}

// ---------------------------------------------------------------------------------------
// Ownership: hosts with different data folders on one server.

/// One store on a server backend, opened by a host on data folder `dir`.
enum Opened {
    Sql(Box<dyn SqlStore>),
    Kv(Box<dyn silo::kv::KvStore>),
}

/// Opens store `main` of service `own` under `prefix` on `backend`, as a host on `dir`.
async fn open_owned(
    backend: &str,
    prefix: &str,
    dir: &std::path::Path,
) -> Result<Opened, SqlError> {
    Ok(match backend {
        "postgres" => Opened::Sql(Box::new(
            PgStore::open(&pg_config(prefix, 2), dir, "own", "main").await?,
        )),
        "mysql" => Opened::Sql(Box::new(
            MyStore::open(&my_config(prefix), dir, "own", "main").await?,
        )),
        "redis" => Opened::Kv(Box::new(
            silo::kv::redis::RedisKv::open(&redis_config(prefix), dir, "own", "main").await?,
        )),
        _ => unreachable!(),
    })
}

/// Writes `value` to the store and reads back everything written so far.
async fn write_and_read(store: &Opened, value: &str) -> Vec<String> {
    match store {
        Opened::Sql(s) => {
            let l = normal();
            s.execute_batch(&l, "CREATE TABLE IF NOT EXISTS owned (v TEXT)")
                .await
                .unwrap();
            s.execute(
                &l,
                "INSERT INTO owned (v) VALUES (?)",
                &[Value::Text(value.into())],
            )
            .await
            .unwrap();
            let rows = s
                .query(&l, "SELECT v FROM owned ORDER BY v", &[])
                .await
                .unwrap();
            rows.rows
                .iter()
                .map(|r| match &r[0] {
                    Value::Text(t) => t.clone(),
                    Value::Blob(b) => String::from_utf8(b.clone()).unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect()
        }
        Opened::Kv(s) => {
            let d = Instant::now() + Duration::from_secs(5);
            s.set(d, value, b"", None).await.unwrap();
            s.list_keys(d, "", 100).await.unwrap()
        }
    }
}

/// Removes what the test made under `prefix`.
async fn drop_owned(backend: &str, prefix: &str) {
    match backend {
        "postgres" => pg_drop(&format!("{prefix}_own_main")).await,
        "mysql" => my_drop(&format!("{prefix}_own_main")).await,
        "redis" => redis_cleanup(&redis_config(prefix), &[("own", "main")]).await,
        _ => unreachable!(),
    }
}

/// A second data folder meeting a store the first made is refused with the owner's folder
/// named (`owned-elsewhere`), before anything changed: the first's store works on, with its
/// data. The owner opening it again is fine, and so is a folder given the owner's secret.
async fn another_folder_is_refused(
    backend: &str,
    what: &str,
    server: &str,
    secret: &str,
    section: &str,
) {
    let prefix = tag();
    let (first, second, shared) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let store = open_owned(backend, &prefix, first.path()).await.unwrap();
    assert_eq!(write_and_read(&store, "a").await, ["a"], "{backend}");
    let e = match open_owned(backend, &prefix, second.path()).await {
        Ok(_) => panic!("{backend}: a second data folder opened the first's store"),
        Err(e) => e,
    };
    let (a, b) = (first.path().display(), second.path().display());
    let what = what.replace("PREFIX", &prefix);
    assert_eq!(kind(&e), "owned-elsewhere", "{backend}: {e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{what} on {server} belong to another data folder, {a}, not to this one ({b}): \
             provisioning them would reset that host's passwords, so nothing was changed. To \
             share them, give this data folder that one's secret (copy {a}/{secret} to \
             {b}/{secret}); to keep apart, set a `prefix` of its own in [{section}] (now \
             \"{prefix}\")"
        ),
        "{backend}"
    );
    assert_eq!(
        write_and_read(&store, "b").await,
        ["a", "b"],
        "{backend}: the first works on"
    );
    drop(store);
    // The owner again (a restart), then a folder that was given its secret.
    let again = open_owned(backend, &prefix, first.path()).await.unwrap();
    assert_eq!(
        write_and_read(&again, "c").await,
        ["a", "b", "c"],
        "{backend}"
    );
    drop(again);
    let copy = shared.path().join(secret);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(first.path().join(secret), &copy).unwrap();
    let same = open_owned(backend, &prefix, shared.path()).await.unwrap();
    assert_eq!(
        write_and_read(&same, "d").await,
        ["a", "b", "c", "d"],
        "{backend}"
    );
    drop(same);
    // A store made before owners were recorded (its record removed here) is known by its
    // key: another secret is refused all the same, the owner's reopening records it again.
    forget_owner(backend, &prefix).await;
    let e = match open_owned(backend, &prefix, second.path()).await {
        Ok(_) => panic!("{backend}: a second data folder opened an unrecorded store"),
        Err(e) => e,
    };
    assert_eq!(
        e.to_string(),
        format!(
            "{what} on {server} belong to another data folder (one with another secret, \
             unrecorded: the store was made before silo recorded owners), not to this one \
             ({b}): provisioning them would reset that host's passwords, so nothing was \
             changed. To share them, give this data folder that one's secret (copy that \
             folder's {secret} to {b}/{secret}); to keep apart, set a `prefix` of its own in \
             [{section}] (now \"{prefix}\")"
        ),
        "{backend}"
    );
    let again = open_owned(backend, &prefix, first.path()).await.unwrap();
    assert_eq!(
        write_and_read(&again, "e").await,
        ["a", "b", "c", "d", "e"],
        "{backend}"
    );
    drop(again);
    assert!(
        open_owned(backend, &prefix, second.path()).await.is_err(),
        "{backend}: recorded again"
    );
    drop_owned(backend, &prefix).await;
}

/// Removes the owner record of the test's store, as a store made before owners were
/// recorded has none.
async fn forget_owner(backend: &str, prefix: &str) {
    let name = format!("{prefix}_own_main");
    match backend {
        "postgres" => {
            pg_admin(&name)
                .await
                .batch_execute("DELETE FROM silo_host._silo_owner")
                .await
                .unwrap();
        }
        "mysql" => {
            use mysql_async::prelude::Queryable;
            let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(MY_ADMIN).unwrap())
                .await
                .unwrap();
            c.query_drop(format!("DELETE FROM `{name}_host`._silo_owner"))
                .await
                .unwrap();
            let _ = c.disconnect().await;
        }
        "redis" => {
            let client = redis::Client::open(super::REDIS_URL).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let user = silo::kv::redis::user_name(prefix, "own", "main").unwrap();
            let _: i64 = redis::cmd("DEL")
                .arg(silo::kv::redis::owner_key(&user))
                .query_async(&mut c)
                .await
                .unwrap();
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_of_another_data_folder_is_refused() {
    if !super::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    another_folder_is_refused(
        "postgres",
        "PostgreSQL database and role `PREFIX_own_main`",
        "127.0.0.1:5432",
        "sql/postgres.secret",
        "backends.postgres",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_of_another_data_folder_is_refused() {
    if !super::server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    another_folder_is_refused(
        "mysql",
        "MariaDB databases and users of store `PREFIX_own_main`",
        "127.0.0.1:3306",
        "sql/mysql.secret",
        "backends.mysql",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_of_another_data_folder_is_refused() {
    if !super::server_up("Redis", "127.0.0.1:6379") {
        return;
    }
    another_folder_is_refused(
        "redis",
        "Redis ACL user `PREFIX-own-main` and keys `PREFIX:own:main:*`",
        "127.0.0.1:6379",
        "kv/redis.secret",
        "backends.redis",
    )
    .await;
}
