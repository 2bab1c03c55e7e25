//! Columns added after a table's first shape (`trace_parent`): a store whose tables an
//! older host made gets them when it is opened, on every backend, and the traced operations
//! then read back what they wrote. A server that is not running is reported as skipped (a
//! failure when `SILO_REQUIRE_BACKENDS=1`), as in `tests.rs`.

use std::sync::Arc;

use super::tests::*;
use super::*;
use crate::sql::SqlStore;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TP2: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The tables with added columns, and those columns' names.
fn added_columns() -> Vec<(&'static Table, Vec<&'static str>)> {
    SCHEMA
        .iter()
        .map(|t| {
            let added: Vec<&str> = t
                .columns
                .iter()
                .filter(|c| c.added)
                .map(|c| c.name)
                .collect();
            (t, added)
        })
        .filter(|(_, a)| !a.is_empty())
        .collect()
}

#[test]
fn the_trace_context_is_an_added_column_of_the_outbox_dead_letters_and_sagas() {
    let tables: Vec<(&str, Vec<&str>)> = added_columns()
        .into_iter()
        .map(|(t, a)| (t.name, a))
        .collect();
    assert_eq!(
        tables,
        [
            ("_silo_outbox", vec!["trace_parent"]),
            ("_silo_dead_letters", vec!["trace_parent"]),
            ("_silo_sagas", vec!["trace_parent"]),
        ]
    );
    for (t, _) in added_columns() {
        assert!(t.columns.iter().filter(|c| c.added).all(|c| c.nullable));
    }
}

/// `table` as it was before its added columns.
fn old_shape(table: &Table) -> Table {
    let columns: Vec<Column> = table.columns.iter().filter(|c| !c.added).copied().collect();
    Table {
        columns: Box::leak(columns.into_boxed_slice()),
        ..*table
    }
}

fn has_column(actual: &[Actual], name: &str) -> bool {
    actual.iter().any(|a| a.name == name)
}

/// The traced operations on an upgraded store: an event published in a span keeps its
/// `traceparent` through the outbox and into the dead letters; one without keeps none; a
/// saga keeps its starter's.
async fn traced(backend: &str, s: &dyn SqlStore) {
    let t = HostTables::of(s).unwrap();
    let mut tx = s.begin(&host_limits()).await.unwrap();
    let sub = SubscriptionRow {
        subscription: "b:a/t".into(),
        subscriber: "b".into(),
        topic: "t".into(),
    };
    t.add_subscription(tx.as_mut(), &sub, 1).await.unwrap();
    t.lock_log(tx.as_mut(), "outbox").await.unwrap();
    let event = |id| NewEvent {
        id,
        topic: "t",
        key: "k",
        time_ms: 7,
        content_type: "application/json",
        data: b"{}",
    };
    let traced = t
        .append_traced_event(tx.as_mut(), &event("e1"), Some(TP))
        .await
        .unwrap();
    t.add_delivery(tx.as_mut(), "b:a/t", traced).await.unwrap();
    let plain = t.append_event(tx.as_mut(), &event("e2")).await.unwrap();
    t.add_delivery(tx.as_mut(), "b:a/t", plain).await.unwrap();
    t.lock_log(tx.as_mut(), "sagas").await.unwrap();
    t.insert_saga(tx.as_mut(), "s1", "order", "k1", 5, Some(TP2))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let pending = t.pending_deliveries(s, 0, 10).await.unwrap();
    let got: Vec<(&str, Option<&str>)> = pending
        .iter()
        .map(|d| (d.id.as_str(), d.trace_parent.as_deref()))
        .collect();
    assert_eq!(got, [("e1", Some(TP)), ("e2", None)], "{backend}");
    let saga = t.load_saga(s, "s1").await.unwrap().unwrap();
    assert_eq!(saga.trace_parent.as_deref(), Some(TP2), "{backend}");

    // Given up on: the dead letter keeps the context, and a replay reads it back.
    let mut tx = s.begin(&host_limits()).await.unwrap();
    t.dead_letter(tx.as_mut(), "dl_1", "b:a/t", "b", traced, 3, "boom", 9)
        .await
        .unwrap();
    t.ack(tx.as_mut(), "b:a/t", traced).await.unwrap();
    let (subscription, dead) = t
        .dead_letter_event(tx.as_mut(), "dl_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            subscription.as_str(),
            dead.id.as_str(),
            dead.trace_parent.as_deref()
        ),
        ("b:a/t", "e1", Some(TP)),
        "{backend}"
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn sqlite_adds_the_trace_column_to_tables_an_older_host_made() {
    let dir = tempfile::tempdir().unwrap();
    {
        // An older host's data folder: every table without the added columns.
        let c = rusqlite::Connection::open(dir.path().join("h.db")).unwrap();
        let d = dialect("sqlite").unwrap();
        for t in SCHEMA {
            for s in d.create_table(&old_shape(t)) {
                c.execute_batch(&s).unwrap();
            }
        }
        c.execute_batch(&d.seed_heads()).unwrap();
    }
    for (t, added) in added_columns() {
        let before = sqlite_columns(dir.path(), t.name);
        assert!(!before.is_empty(), "{}", t.name);
        for a in added {
            assert!(!has_column(&before, a), "{}.{a} before the upgrade", t.name);
        }
    }
    use crate::sql::sqlite::{SqliteConfig, SqliteStore};
    let all: Vec<&Table> = SCHEMA.iter().collect();
    let s: Arc<dyn SqlStore> =
        Arc::new(SqliteStore::open(&dir.path().join("h.db"), SqliteConfig::default()).unwrap());
    let t = HostTables::of(s.as_ref()).unwrap();
    t.create_in(s.as_ref(), &all, LOGS).await.unwrap();
    // Opened again (every start): nothing to add, nothing fails.
    t.create_in(s.as_ref(), &all, LOGS).await.unwrap();
    let found = SCHEMA
        .iter()
        .map(|t| (t, sqlite_columns(dir.path(), t.name)))
        .collect();
    assert_matches("sqlite", found);
    traced("sqlite", s.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_adds_the_trace_column_to_tables_an_older_host_made() {
    if !server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = run_prefix();
    let name = format!("{prefix}_tables_main");
    let checked = std::panic::AssertUnwindSafe(async {
        drop(pg_store(dir.path(), &prefix).await);
        // Back to the shape an older host provisioned.
        let c = pg_admin(&name).await;
        for (t, added) in added_columns() {
            for a in added {
                c.batch_execute(&format!("ALTER TABLE silo_host.{} DROP COLUMN {a}", t.name))
                    .await
                    .unwrap();
            }
            let before = pg_columns(&c, t.name).await;
            assert!(!has_column(&before, "trace_parent"), "{}", t.name);
        }
        // Opening the store again provisions it again: the columns come back.
        let s = pg_store(dir.path(), &prefix).await;
        let mut found = Vec::new();
        for t in SCHEMA {
            found.push((t, pg_columns(&c, t.name).await));
        }
        drop(c);
        assert_matches("postgres", found);
        traced("postgres", s.as_ref()).await;
    });
    let r = futures::FutureExt::catch_unwind(checked).await;
    pg_drop(&name).await;
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_adds_the_trace_column_to_tables_an_older_host_made() {
    use mysql_async::prelude::Queryable;
    if !server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = run_prefix();
    let name = format!("{prefix}_tables_main");
    let host_db = format!("{name}_host");
    let checked = std::panic::AssertUnwindSafe(async {
        drop(my_store(dir.path(), &prefix).await);
        let mut c = my_admin().await;
        for (t, added) in added_columns() {
            for a in added {
                c.query_drop(format!(
                    "ALTER TABLE `{host_db}`.{} DROP COLUMN {a}",
                    t.name
                ))
                .await
                .unwrap();
            }
            let before = my_columns(&mut c, &host_db, t.name).await;
            assert!(!has_column(&before, "trace_parent"), "{}", t.name);
        }
        let s = my_store(dir.path(), &prefix).await;
        let mut found = Vec::new();
        for t in SCHEMA {
            found.push((t, my_columns(&mut c, &host_db, t.name).await));
        }
        let _ = c.disconnect().await;
        assert_matches("mysql", found);
        traced("mysql", s.as_ref()).await;
    });
    let r = futures::FutureExt::catch_unwind(checked).await;
    my_drop(&name).await;
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}
