//! MariaDB only: the host's statements through `silo_exec`, and what the store's own login
//! cannot do with them.

use super::backends::MYSQL;
use super::*;

/// MariaDB only: the host's statements come back as their callers expect (RETURNING rows,
/// 0 or 1 from the inbox's insert-if-absent, savepoints, a migration's DDL followed by its
/// record), and the store's own login cannot reach the host procedures' power without the
/// connection's token.
pub(super) async fn mysql_host_path(s: &Store, data_dir: &std::path::Path, name: &str) {
    use mysql_async::prelude::Queryable;
    use sha2::Digest;
    let c = Ck {
        d: &MYSQL,
        check: "host_path",
    };
    let tables = HostTables::of(&**s).unwrap();
    let mut tx = begin(c, &**s).await;
    let t = tx.as_mut();
    tables.savepoint(t).await.unwrap();
    assert!(
        tables.record_inbox(t, "sub", "ev-1", 5).await.unwrap(),
        "{c}: new"
    );
    assert!(
        !tables.record_inbox(t, "sub", "ev-1", 5).await.unwrap(),
        "{c}: duplicate"
    );
    tables.release(t).await.unwrap();
    tables.savepoint(t).await.unwrap();
    let event = NewEvent {
        id: "e2",
        topic: "t",
        key: "k",
        time_ms: 1,
        content_type: "x",
        data: &[0, 255],
    };
    let seq = tables.append_event(t, &event).await.unwrap();
    assert!(seq > 0, "{c}: seq {seq}");
    tables.add_delivery(t, "sub", seq).await.unwrap();
    tables.rollback_to(t).await.unwrap();
    tables.release(t).await.unwrap();
    tables.lock_log(t, "outbox").await.unwrap();
    tables
        .create(t, &[&host_tables::MIGRATIONS], &[])
        .await
        .unwrap();
    tx.execute_batch(
        &limits(),
        "CREATE TABLE mig (id BIGINT PRIMARY KEY); INSERT INTO mig (id) VALUES (1)",
    )
    .await
    .unwrap();
    tables
        .record_migration(tx.as_mut(), 1, "first", "sum")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = begin(c, &**s).await;
    let m = tables.applied_migrations(tx.as_mut()).await.unwrap();
    assert_eq!(m, [(1, "sum".to_string())], "{c}: migration recorded");
    assert!(
        !tables
            .record_inbox(tx.as_mut(), "sub", "ev-1", 6)
            .await
            .unwrap(),
        "{c}: the inbox row was committed"
    );
    tx.rollback().await.unwrap();
    let pending = tables.pending_deliveries(&**s, 0, 10).await.unwrap();
    assert!(
        pending.is_empty(),
        "{c}: rolled-back outbox row: {pending:?}"
    );
    let sagas = tables.open_sagas(&**s, 0).await.unwrap();
    assert!(sagas.is_empty(), "{c}: {sagas:?}");

    // The store's login itself: no host table, no token.
    let secret = silo::secrets::private_secret(&data_dir.join("sql").join("mysql.secret")).unwrap();
    let password = hex::encode(sha2::Sha256::digest(format!("{secret}:password:{name}")));
    let url = format!("mysql://{name}:{password}@127.0.0.1:3306/{name}");
    let mut g = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap();
    let h = format!("`{name}_host`");
    let denied = |r: Result<(), mysql_async::Error>, what: &str| match r {
        Err(mysql_async::Error::Server(e)) => e.code,
        r => panic!("{c}: {what}: {r:?}"),
    };
    assert_eq!(
        denied(
            g.query_drop(format!("SELECT * FROM {h}._silo_outbox"))
                .await,
            "select"
        ),
        1142
    );
    assert_eq!(
        denied(
            g.query_drop(format!("SELECT * FROM {h}._silo_key")).await,
            "key"
        ),
        1142
    );
    assert_eq!(
        denied(
            g.query_drop(format!("CALL {h}._silo_auth('x')")).await,
            "auth"
        ),
        1370
    );
    g.query_drop("BEGIN").await.unwrap();
    let nulls = ", NULL".repeat(16);
    let forged = format!(
        "CALL {h}.silo_exec('{}', 'SELECT * FROM {h}._silo_key', 0{nulls})",
        "0".repeat(64)
    );
    assert_eq!(denied(g.query_drop(&forged).await, "forged token"), 1644);
    let row: Option<(u64, String)> = g
        .query_first(format!("CALL {h}.silo_session()"))
        .await
        .unwrap();
    assert!(row.is_some(), "{c}: the session salt");
    g.query_drop("ROLLBACK").await.unwrap();
    let _ = g.disconnect().await;
}
