//! The battery's isolation probe of the host's own table inside a store.

use super::*;

/// The host's outbox cannot be read or written by guest statements.
pub(super) async fn host_table_is_out_of_reach(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    let ht = d.host_table;
    let tables = HostTables::of(s).unwrap();
    let row = |id: &str, topic: &str| {
        vec![
            text(id),
            text(topic),
            text("k"),
            int(1),
            text("application/octet-stream"),
            Value::Blob(vec![1, 2, 3]),
        ]
    };
    let mut tx = begin(c, s).await;
    tables
        .create(tx.as_mut(), &[&host_tables::OUTBOX], &[])
        .await
        .unwrap_or_else(|e| panic!("{c}: host setup: {e:?}"));
    let event = NewEvent {
        id: "host-1",
        topic: "host-topic",
        key: "k",
        time_ms: 1,
        content_type: "application/octet-stream",
        data: &[1, 2, 3],
    };
    tables
        .append_event(tx.as_mut(), &event)
        .await
        .unwrap_or_else(|e| panic!("{c}: host insert: {e:?}"));
    tx.commit().await.unwrap();
    let host_view = &format!("SELECT id, topic, data FROM {} ORDER BY id", d.host_name);
    let want = [vec![
        text("host-1"),
        text("host-topic"),
        Value::Blob(vec![1, 2, 3]),
    ]];
    let snapshot = s
        .query_host(host_view, &[])
        .await
        .unwrap_or_else(|e| panic!("{c}: query_host: {e:?}"));
    assert_rows(c, "the host's row", &snapshot, &want);

    // Reads: an error, or no rows at all.
    let reads = [
        format!("SELECT * FROM {ht}"),
        format!("SELECT id, topic FROM {ht} WHERE topic = 'host-topic'"),
        format!("SELECT x FROM (SELECT id AS x FROM {ht}) sub"),
        format!("SELECT id FROM cols_probe WHERE 1 = 0 UNION ALL SELECT id FROM {ht}"),
    ];
    x(
        c,
        s,
        &format!("CREATE TABLE cols_probe (id {})", d.text_type),
        &[],
    )
    .await;
    let mut tx = begin(c, s).await;
    for sql in &reads {
        for (where_, r) in [
            ("query", s.query(&limits(), sql, &[]).await),
            ("tx.query", tx.query(&limits(), sql, &[]).await),
        ] {
            if let Ok(rs) = r {
                assert!(
                    rs.rows.is_empty(),
                    "{c}: {where_} `{sql}` read the host's table: {}",
                    show_rows(&rs)
                );
            }
        }
    }
    drop(tx);
    // A view of the guest's own over the host table reads nothing either.
    if s.execute(
        &limits(),
        &format!("CREATE VIEW peek AS SELECT * FROM {ht}"),
        &[],
    )
    .await
    .is_ok()
        && let Ok(rs) = s.query(&limits(), "SELECT * FROM peek", &[]).await
    {
        assert!(
            rs.rows.is_empty(),
            "{c}: a view read the host's table: {}",
            show_rows(&rs)
        );
    }

    // Writes: all fail (with an error a guest can see, not a host fault).
    const DENIED: &[&str] = &["AccessDenied", "BadQuery", "ConstraintViolation", "Other"];
    let insert = format!(
        "INSERT INTO {ht} (id, topic, key, time_ms, content_type, data) VALUES (?, ?, ?, ?, ?, ?)"
    );
    let forged = row("forged", "forged-topic");
    let writes: Vec<(String, Vec<Value>)> = vec![
        (insert.clone(), forged.clone()),
        (format!("UPDATE {ht} SET topic = 'stolen'"), vec![]),
        (
            format!("UPDATE {ht} SET topic = ? WHERE id = ?"),
            vec![text("stolen"), text("host-1")],
        ),
        (format!("DELETE FROM {ht}"), vec![]),
        (
            format!("DELETE FROM {ht} WHERE id = ?"),
            vec![text("host-1")],
        ),
        (format!("DROP TABLE {ht}"), vec![]),
        (
            format!("ALTER TABLE {ht} ADD COLUMN extra {}", d.int_type),
            vec![],
        ),
        (format!("CREATE INDEX guest_idx ON {ht} (topic)"), vec![]),
    ];
    for (sql, params) in &writes {
        expect_err(
            c,
            &format!("execute `{sql}`"),
            s.execute(&limits(), sql, params).await,
            DENIED,
        );
        let mut tx = begin(c, s).await;
        let r = tx.execute(&limits(), sql, params).await;
        let _ = tx.commit().await;
        expect_err(c, &format!("tx.execute `{sql}`"), r, DENIED);
        if params.is_empty() {
            expect_err(
                c,
                &format!("execute_batch `{sql}`"),
                s.execute_batch(&limits(), sql).await,
                DENIED,
            );
        }
    }
    // Nor through `query` (a write with RETURNING).
    expect_err(
        c,
        "query INSERT … RETURNING",
        s.query(&limits(), &format!("{insert} RETURNING id"), &forged)
            .await,
        DENIED,
    );
    let after = s
        .query_host(host_view, &[])
        .await
        .unwrap_or_else(|e| panic!("{c}: query_host after the attempts: {e:?}"));
    assert_rows(c, "the host's table is unchanged", &after, &want);
    let n = s
        .query_host(&format!("SELECT count(*) FROM {}", d.host_name), &[])
        .await
        .unwrap_or_else(|e| panic!("{c}: query_host count: {e:?}"));
    assert_eq!(scalar(c, "host count", &n), 1, "{c}: host rows");
}
