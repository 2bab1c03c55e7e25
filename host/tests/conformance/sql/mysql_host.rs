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
    let mut tx = begin(c, &**s).await;
    tx.execute_host("SAVEPOINT silo_event", &[]).await.unwrap();
    let inbox = "INSERT INTO main._silo_inbox (subscription, event_id, received_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING";
    let args = [text("sub"), text("ev-1"), int(5)];
    assert_eq!(
        tx.execute_host(inbox, &args).await.unwrap().rows_affected,
        1,
        "{c}: new"
    );
    assert_eq!(
        tx.execute_host(inbox, &args).await.unwrap().rows_affected,
        0,
        "{c}: duplicate"
    );
    tx.execute_host("RELEASE silo_event", &[]).await.unwrap();
    tx.execute_host("SAVEPOINT silo_event", &[]).await.unwrap();
    let seq = tx
        .query_host(
            "INSERT INTO main._silo_outbox (id, topic, key, time_ms, content_type, data) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
            &[text("e2"), text("t"), text("k"), int(1), text("x"), Value::Blob(vec![0, 255])],
        )
        .await
        .unwrap();
    assert!(
        matches!(seq.rows.as_slice(), [r] if matches!(r.as_slice(), [Value::Integer(_)])),
        "{c}: {}",
        show_rows(&seq)
    );
    tx.execute_host("ROLLBACK TO silo_event", &[])
        .await
        .unwrap();
    tx.execute_host("RELEASE silo_event", &[]).await.unwrap();
    let heads = tx
        .execute_host(
            "UPDATE main._silo_heads SET n = n + 1 WHERE log = ?",
            &[text("outbox")],
        )
        .await
        .unwrap();
    assert_eq!(heads.rows_affected, 1, "{c}: heads");
    tx.execute_host("CREATE TABLE IF NOT EXISTS main._silo_migrations (x)", &[])
        .await
        .unwrap();
    tx.execute_batch(
        &limits(),
        "CREATE TABLE mig (id BIGINT PRIMARY KEY); INSERT INTO mig (id) VALUES (1)",
    )
    .await
    .unwrap();
    tx.execute_host(
        "INSERT INTO main._silo_migrations (version, description, checksum) VALUES (?, ?, ?)",
        &[int(1), text("first"), text("sum")],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let m = s
        .query_host("SELECT version, checksum FROM main._silo_migrations", &[])
        .await
        .unwrap();
    assert_rows(c, "migration recorded", &m, &[vec![int(1), text("sum")]]);
    let n = s
        .query_host("SELECT count(*) FROM main._silo_inbox", &[])
        .await
        .unwrap();
    assert_eq!(scalar(c, "inbox", &n), 1, "{c}");
    let n = s
        .query_host(
            "SELECT count(*) FROM main._silo_outbox WHERE id = ?",
            &[text("e2")],
        )
        .await
        .unwrap();
    assert_eq!(scalar(c, "rolled-back outbox row", &n), 0, "{c}");
    let sagas = s
        .query_host("SELECT rowid, id FROM main._silo_sagas WHERE handled = 0 AND rowid > ? ORDER BY rowid LIMIT ?", &[int(0), int(10)])
        .await
        .unwrap();
    assert_eq!(sagas.columns, ["rid", "id"], "{c}");

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
