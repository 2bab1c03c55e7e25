//! The host tables on every backend: each one's actual columns match [`SCHEMA`], and the
//! typed operations give the same answers everywhere. A server that is not running is
//! reported as skipped, and is a failure when `SILO_REQUIRE_BACKENDS=1`.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::sql::SqlStore;

/// A column as a backend reports it.
#[derive(Debug)]
pub(super) struct Actual {
    pub(super) name: String,
    pub(super) class: &'static str,
    pub(super) nullable: bool,
    pub(super) key: bool,
}

fn class_of(ty: &str) -> &'static str {
    match ty.to_ascii_lowercase().as_str() {
        "integer" | "bigint" => "integer",
        "text" | "varchar" | "longtext" => "text",
        "blob" | "bytea" | "longblob" => "blob",
        _ => "unknown",
    }
}

/// What differs between `table`'s declaration and the columns `backend` has.
fn mismatches(backend: &str, table: &Table, actual: &[Actual]) -> Vec<String> {
    let mut out = Vec::new();
    let server_rid = backend != "sqlite" && table.insertion_order;
    for a in actual {
        if server_rid && a.name == "rid" {
            if a.class != "integer" {
                out.push(format!("{backend} {}.rid: {}", table.name, a.class));
            }
            continue;
        }
        let Some(c) = table.column(&a.name) else {
            out.push(format!(
                "{backend} {}: undeclared column {}",
                table.name, a.name
            ));
            continue;
        };
        let key = table.primary_key.contains(&c.name);
        if a.class != c.ty.class() {
            out.push(format!(
                "{backend} {}.{}: {} (declared {})",
                table.name,
                c.name,
                a.class,
                c.ty.class()
            ));
        }
        // A key column is never NULL whatever the engine reports (SQLite allows NULL in
        // a non-integer key column; the host never writes one).
        if !key && a.nullable != c.nullable {
            out.push(format!(
                "{backend} {}.{}: nullable {} (declared {})",
                table.name, c.name, a.nullable, c.nullable
            ));
        }
        if a.key != key {
            out.push(format!(
                "{backend} {}.{}: in primary key {} (declared {key})",
                table.name, c.name, a.key
            ));
        }
    }
    for c in table.columns {
        if !actual.iter().any(|a| a.name == c.name) {
            out.push(format!(
                "{backend} {}: missing column {}",
                table.name, c.name
            ));
        }
    }
    if server_rid && !actual.iter().any(|a| a.name == "rid") {
        out.push(format!("{backend} {}: missing column rid", table.name));
    }
    out
}

/// True if the server at `addr` answers; if not, says so (or fails when backends are
/// required).
pub(super) fn server_up(name: &str, addr: &str) -> bool {
    let up = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        .is_ok();
    if !up {
        assert!(
            std::env::var("SILO_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "{name} at {addr} is required (SILO_REQUIRE_BACKENDS=1) but not reachable"
        );
        eprintln!("SKIPPED: {name} at {addr} is not running; its host-table tests did not run");
    }
    up
}

/// A prefix no other run uses.
pub(super) fn run_prefix() -> String {
    format!("ht{:08x}", rand::random::<u32>())
}

pub(super) const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub(super) const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/";

async fn sqlite_store(dir: &std::path::Path) -> Arc<dyn SqlStore> {
    use crate::sql::sqlite::{SqliteConfig, SqliteStore};
    let s = SqliteStore::open(&dir.join("h.db"), SqliteConfig::default()).unwrap();
    let s: Arc<dyn SqlStore> = Arc::new(s);
    let all: Vec<&Table> = SCHEMA.iter().collect();
    HostTables::of(s.as_ref())
        .unwrap()
        .create_in(s.as_ref(), &all, LOGS)
        .await
        .unwrap();
    s
}

pub(super) fn sqlite_columns(dir: &std::path::Path, table: &str) -> Vec<Actual> {
    let c = rusqlite::Connection::open(dir.join("h.db")).unwrap();
    let mut st = c
        .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
        .unwrap();
    st.query_map([table], |r| {
        Ok(Actual {
            name: r.get(0)?,
            class: class_of(&r.get::<_, String>(1)?),
            nullable: r.get::<_, i64>(2)? == 0,
            key: r.get::<_, i64>(3)? > 0,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

pub(super) async fn pg_store(dir: &std::path::Path, prefix: &str) -> Arc<dyn SqlStore> {
    use crate::sql::postgres::{PgConfig, PgStore};
    let config = PgConfig {
        admin_url: PG_ADMIN.into(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.into(),
    };
    Arc::new(PgStore::open(&config, dir, "tables", "main").await.unwrap())
}

pub(super) async fn pg_admin(db: &str) -> tokio_postgres::Client {
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

pub(super) async fn pg_columns(c: &tokio_postgres::Client, table: &str) -> Vec<Actual> {
    let rows = c
        .query(
            "SELECT c.column_name::text, c.data_type::text, c.is_nullable = 'YES', \
             EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
               AND a.attnum = ANY(i.indkey) WHERE i.indrelid = ('silo_host.' || $1::text)::regclass \
               AND i.indisprimary AND a.attname = c.column_name) \
             FROM information_schema.columns c \
             WHERE c.table_schema::text = 'silo_host' AND c.table_name::text = $1::text ORDER BY c.ordinal_position",
            &[&table],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| Actual {
            name: r.get(0),
            class: class_of(r.get(1)),
            nullable: r.get(2),
            key: r.get(3),
        })
        .collect()
}

pub(super) async fn pg_drop(name: &str) {
    let c = pg_admin("postgres").await;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
    c.batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
        .await
        .unwrap();
}

pub(super) async fn my_store(dir: &std::path::Path, prefix: &str) -> Arc<dyn SqlStore> {
    use crate::sql::mysql::{MyConfig, MyStore};
    let config = MyConfig {
        admin_url: MY_ADMIN.into(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.into(),
    };
    Arc::new(MyStore::open(&config, dir, "tables", "main").await.unwrap())
}

pub(super) async fn my_admin() -> mysql_async::Conn {
    mysql_async::Conn::new(mysql_async::Opts::from_url(MY_ADMIN).unwrap())
        .await
        .unwrap()
}

pub(super) async fn my_columns(c: &mut mysql_async::Conn, db: &str, table: &str) -> Vec<Actual> {
    use mysql_async::prelude::Queryable;
    let rows: Vec<(String, String, String, String)> = c
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE, COLUMN_KEY FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|(name, ty, nullable, key)| Actual {
            name,
            class: class_of(&ty),
            nullable: nullable == "YES",
            key: key == "PRI",
        })
        .collect()
}

pub(super) async fn my_drop(name: &str) {
    use mysql_async::prelude::Queryable;
    let mut c = my_admin().await;
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

pub(super) fn assert_matches(backend: &str, found: Vec<(&Table, Vec<Actual>)>) {
    let mut wrong = Vec::new();
    for (t, actual) in found {
        assert!(!actual.is_empty(), "{backend}: table {} is missing", t.name);
        wrong.extend(mismatches(backend, t, &actual));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The typed operations, with the answers every backend must give.
async fn operations(backend: &str, s: &dyn SqlStore) {
    let t = HostTables::of(s).unwrap();
    let limits = host_limits();

    // Outbox: append, read pending, fail, acknowledge.
    let mut tx = s.begin(&limits).await.unwrap();
    let sub = SubscriptionRow {
        subscription: "b:a/t".into(),
        subscriber: "b".into(),
        topic: "t".into(),
    };
    t.add_subscription(tx.as_mut(), &sub, 1).await.unwrap();
    t.lock_log(tx.as_mut(), "outbox").await.unwrap();
    let mut seqs = Vec::new();
    for (id, data) in [("e1", vec![1u8, 2]), ("e2", vec![0, 255])] {
        let e = NewEvent {
            id,
            topic: "t",
            key: "k",
            time_ms: 7,
            content_type: "application/json",
            data: &data,
        };
        let seq = t.append_event(tx.as_mut(), &e).await.unwrap();
        t.add_delivery(tx.as_mut(), &sub.subscription, seq)
            .await
            .unwrap();
        seqs.push(seq);
    }
    tx.commit().await.unwrap();
    assert!(seqs[0] < seqs[1], "{backend}: {seqs:?}");
    assert_eq!(
        t.subscriptions(s).await.unwrap(),
        std::slice::from_ref(&sub),
        "{backend}"
    );
    let pending = t.pending_deliveries(s, 0, 10).await.unwrap();
    let got: Vec<(&str, i64, &[u8], &str)> = pending
        .iter()
        .map(|d| (d.id.as_str(), d.attempts, d.data.as_slice(), d.key.as_str()))
        .collect();
    assert_eq!(
        got,
        [("e1", 0, &[1u8, 2][..], "k"), ("e2", 0, &[0, 255][..], "k")],
        "{backend}"
    );
    assert_eq!(
        t.pending_deliveries(s, seqs[0], 10).await.unwrap().len(),
        1,
        "{backend}: after the first"
    );
    let mut tx = s.begin(&limits).await.unwrap();
    t.record_failure(tx.as_mut(), &sub.subscription, seqs[1], 3, "boom")
        .await
        .unwrap();
    t.ack(tx.as_mut(), &sub.subscription, seqs[0])
        .await
        .unwrap();
    t.dead_letter(
        tx.as_mut(),
        "dl_1",
        &sub.subscription,
        "b",
        seqs[1],
        4,
        "gone",
        9,
    )
    .await
    .unwrap();
    t.ack(tx.as_mut(), &sub.subscription, seqs[1])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        t.pending_deliveries(s, 0, 10).await.unwrap().is_empty(),
        "{backend}"
    );
    assert!(t.backlog(s).await.unwrap().is_empty(), "{backend}");
    let dead = t.dead_letters(s).await.unwrap();
    assert_eq!(dead.len(), 1, "{backend}");
    assert_eq!(
        (
            dead[0].event_id.as_str(),
            dead[0].attempts,
            dead[0].last_error.as_str()
        ),
        ("e2", 4, "gone"),
        "{backend}"
    );
    assert_eq!(
        t.dead_letter_counts(s).await.unwrap(),
        [(sub.subscription.clone(), 1)],
        "{backend}"
    );

    // Inbox: a second record of the same event is a duplicate.
    let mut tx = s.begin(&limits).await.unwrap();
    t.savepoint(tx.as_mut()).await.unwrap();
    assert!(
        t.record_inbox(tx.as_mut(), "s", "e1", 1).await.unwrap(),
        "{backend}"
    );
    assert!(
        !t.record_inbox(tx.as_mut(), "s", "e1", 2).await.unwrap(),
        "{backend}"
    );
    t.release(tx.as_mut()).await.unwrap();
    t.savepoint(tx.as_mut()).await.unwrap();
    assert!(
        t.record_inbox(tx.as_mut(), "s", "e2", 1).await.unwrap(),
        "{backend}"
    );
    t.rollback_to(tx.as_mut()).await.unwrap();
    t.release(tx.as_mut()).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin(&limits).await.unwrap();
    assert!(
        !t.record_inbox(tx.as_mut(), "s", "e1", 3).await.unwrap(),
        "{backend}"
    );
    assert!(
        t.record_inbox(tx.as_mut(), "s", "e2", 3).await.unwrap(),
        "{backend}: undone"
    );
    tx.rollback().await.unwrap();

    // Migrations: recorded once, read back.
    let mut tx = s.begin(&limits).await.unwrap();
    t.create(tx.as_mut(), &[&MIGRATIONS], &[]).await.unwrap();
    t.record_migration(tx.as_mut(), 1, "first", "abc")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin(&limits).await.unwrap();
    assert_eq!(
        t.applied_migrations(tx.as_mut()).await.unwrap(),
        [(1, "abc".to_string())],
        "{backend}"
    );
    assert!(
        t.record_migration(tx.as_mut(), 1, "again", "x")
            .await
            .is_err(),
        "{backend}"
    );
    drop(tx);

    // Commands and sagas.
    let mut tx = s.begin(&limits).await.unwrap();
    let reply = NewCommandReply {
        command_id: "c1",
        saga_id: "s1",
        source: "orch",
        ok: true,
        data: Some(vec![9]),
        reason: None,
        received_ms: 1,
    };
    t.record_command(tx.as_mut(), reply).await.unwrap();
    let step = crate::bindings::silo::service::sagas::Step {
        name: "pay".into(),
        service: "bank".into(),
        command: "charge".into(),
        payload: vec![1],
        compensation: Some("refund".into()),
    };
    t.lock_log(tx.as_mut(), "sagas").await.unwrap();
    t.insert_saga(tx.as_mut(), "s1", "order", "k1", 5, None)
        .await
        .unwrap();
    t.insert_step(tx.as_mut(), "s1", 0, &step).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin(&limits).await.unwrap();
    assert_eq!(
        t.command_reply(tx.as_mut(), "c1").await.unwrap(),
        Some(CommandReply {
            ok: Some(1),
            data: Some(vec![9]),
            reason: None,
            source: Some("orch".into()),
        }),
        "{backend}"
    );
    assert_eq!(t.command_reply(tx.as_mut(), "c2").await.unwrap(), None);
    let change = StepUpdate {
        state: Some("done".into()),
        attempts: Some(1),
        result: Some(vec![4]),
        ..Default::default()
    };
    t.update_step(tx.as_mut(), "s1", 0, change).await.unwrap();
    t.update_saga(tx.as_mut(), "s1", "completed", None, 6)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let head = t.load_saga(s, "s1").await.unwrap().unwrap();
    assert_eq!(
        (
            head.kind.as_str(),
            head.key.as_str(),
            head.state.as_str(),
            head.handled
        ),
        ("order", "k1", "completed", false),
        "{backend}"
    );
    let steps = t.load_steps(s, "s1").await.unwrap();
    assert_eq!(steps.len(), 1, "{backend}");
    assert_eq!(
        (
            steps[0].state.as_str(),
            steps[0].attempts,
            steps[0].result.clone()
        ),
        ("done", 1, Some(vec![4])),
        "{backend}"
    );
    assert_eq!(
        steps[0].compensation.as_deref(),
        Some("refund"),
        "{backend}"
    );
    let open = t.open_sagas(s, 0).await.unwrap();
    assert_eq!(open.len(), 1, "{backend}");
    assert!(
        t.open_sagas(s, open[0].0).await.unwrap().is_empty(),
        "{backend}"
    );
    assert_eq!(t.open_count(s).await.unwrap(), 1, "{backend}");
    assert_eq!(t.saga_ids(s, Some("completed"), 5).await.unwrap(), ["s1"]);
    assert!(t.saga_ids(s, Some("running"), 5).await.unwrap().is_empty());
    let mut tx = s.begin(&limits).await.unwrap();
    t.mark_handled(tx.as_mut(), "s1", 7).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(t.open_count(s).await.unwrap(), 0, "{backend}");
    assert_eq!(
        t.saga_counts(s).await.unwrap(),
        [("completed".to_string(), 1)],
        "{backend}"
    );
}

#[test]
fn every_table_declares_its_key_and_indexes_among_its_columns() {
    for t in SCHEMA {
        for k in t
            .primary_key
            .iter()
            .chain(t.indexes.iter().flat_map(|i| i.columns))
        {
            assert!(t.column(k).is_some(), "{}: {k}", t.name);
        }
    }
}

#[tokio::test]
async fn sqlite_matches_the_schema_and_the_operations() {
    let dir = tempfile::tempdir().unwrap();
    let s = sqlite_store(dir.path()).await;
    let found = SCHEMA
        .iter()
        .map(|t| (t, sqlite_columns(dir.path(), t.name)))
        .collect();
    assert_matches("sqlite", found);
    operations("sqlite", s.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_matches_the_schema_and_the_operations() {
    if !server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = run_prefix();
    let name = format!("{prefix}_tables_main");
    let s = pg_store(dir.path(), &prefix).await;
    let c = pg_admin(&name).await;
    let mut found = Vec::new();
    for t in SCHEMA {
        found.push((t, pg_columns(&c, t.name).await));
    }
    drop(c);
    let checked = std::panic::AssertUnwindSafe(async {
        assert_matches("postgres", found);
        operations("postgres", s.as_ref()).await;
    });
    let r = futures::FutureExt::catch_unwind(checked).await;
    drop(s);
    pg_drop(&name).await;
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_matches_the_schema_and_the_operations() {
    if !server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = run_prefix();
    let name = format!("{prefix}_tables_main");
    let s = my_store(dir.path(), &prefix).await;
    let mut c = my_admin().await;
    let mut found = Vec::new();
    for t in SCHEMA {
        found.push((t, my_columns(&mut c, &format!("{name}_host"), t.name).await));
    }
    let _ = c.disconnect().await;
    let checked = std::panic::AssertUnwindSafe(async {
        assert_matches("mysql", found);
        operations("mysql", s.as_ref()).await;
    });
    let r = futures::FutureExt::catch_unwind(checked).await;
    drop(s);
    my_drop(&name).await;
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}
