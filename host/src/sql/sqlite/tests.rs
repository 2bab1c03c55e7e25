//! Unit tests of the SQLite backend.

use std::path::Path;
use std::time::Instant;

use super::host_sql::HOST_MARK;
use super::{SqliteConfig, SqliteStore};
use crate::sql::{CallLimits, SqlError, SqlStore, Value};
use std::time::Duration;

fn limits() -> CallLimits {
    CallLimits {
        deadline: Instant::now() + Duration::from_secs(5),
        statement_budget: std::time::Duration::from_secs(3600),
        max_result_bytes: 1 << 20,
    }
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db"), SqliteConfig::default()).unwrap();
    (dir, s)
}

#[tokio::test]
async fn typed_values_round_trip() {
    let (_d, s) = store();
    let l = limits();
    s.execute(
        &l,
        "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)",
        &[],
    )
    .await
    .unwrap();
    let params = [
        Value::Integer(-7),
        Value::Real(1.5),
        Value::Text("héllo".into()),
        Value::Blob(vec![0, 1, 255]),
        Value::Null,
    ];
    let r = s
        .execute(&l, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", &params)
        .await
        .unwrap();
    assert_eq!(r.rows_affected, 1);
    let rows = s
        .query(&l, "SELECT i, r, s, b, n FROM t", &[])
        .await
        .unwrap();
    assert_eq!(rows.columns, ["i", "r", "s", "b", "n"]);
    assert_eq!(rows.rows.len(), 1);
    assert!(matches!(rows.rows[0][0], Value::Integer(-7)));
    assert!(matches!(&rows.rows[0][2], Value::Text(t) if t == "héllo"));
    assert!(matches!(&rows.rows[0][3], Value::Blob(b) if b == &[0, 1, 255]));
    assert!(matches!(rows.rows[0][4], Value::Null));
}

#[tokio::test]
async fn dropped_transaction_rolls_back_and_commit_persists() {
    let (_d, s) = store();
    let l = limits();
    s.execute(&l, "CREATE TABLE t (x INTEGER)", &[])
        .await
        .unwrap();
    let mut tx = s.begin(&l).await.unwrap();
    tx.execute(&l, "INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap();
    drop(tx);
    let n = s.query(&l, "SELECT count(*) FROM t", &[]).await.unwrap();
    assert!(matches!(n.rows[0][0], Value::Integer(0)));
    let mut tx = s.begin(&l).await.unwrap();
    tx.execute(&l, "INSERT INTO t VALUES (2)", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let n = s.query(&l, "SELECT count(*) FROM t", &[]).await.unwrap();
    assert!(matches!(n.rows[0][0], Value::Integer(1)));
}

#[tokio::test]
async fn errors_are_classified() {
    let (_d, s) = store();
    let l = limits();
    s.execute(&l, "CREATE TABLE u (e TEXT UNIQUE)", &[])
        .await
        .unwrap();
    s.execute(&l, "INSERT INTO u VALUES ('a')", &[])
        .await
        .unwrap();
    let e = s
        .execute(&l, "INSERT INTO u VALUES ('a')", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::ConstraintViolation(_)), "{e:?}");
    let e = s.query(&l, "SELEC nonsense", &[]).await.unwrap_err();
    assert!(matches!(e, SqlError::BadQuery(_)), "{e:?}");
    let e = s.query(&l, "SELECT * FROM missing", &[]).await.unwrap_err();
    assert!(matches!(e, SqlError::BadQuery(_)), "{e:?}");
    let e = s.query(&l, "SELECT ?", &[]).await.unwrap_err();
    assert!(matches!(e, SqlError::BadQuery(_)), "{e:?}");
}

#[tokio::test]
async fn guest_statements_cannot_escape_the_store() {
    let (d, s) = store();
    let l = limits();
    let other = d.path().join("other.db");
    for sql in [
        format!("ATTACH DATABASE '{}' AS o", other.display()),
        format!("VACUUM INTO '{}'", other.display()),
        "  vacuum".to_string(),
        "SELECT load_extension('x')".to_string(),
        "PRAGMA writable_schema = 1".to_string(),
        "PRAGMA journal_mode = OFF".to_string(),
        "PRAGMA max_page_count = 999999999".to_string(),
        "BEGIN".to_string(),
        "COMMIT".to_string(),
        "CREATE TABLE _silo_outbox (x)".to_string(),
        "/* hidden */ VACUUM INTO '/tmp/x.db'".to_string(),
        "-- hidden\nVACUUM".to_string(),
        "CREATE TEMP TABLE shadow (x)".to_string(),
        "CREATE TEMP VIEW v AS SELECT 1".to_string(),
        "CREATE TABLE _SILO_x (x)".to_string(),
    ] {
        let e = s.execute(&l, &sql, &[]).await.unwrap_err();
        assert!(
            matches!(e, SqlError::AccessDenied(_) | SqlError::BadQuery(_)),
            "{sql}: {e:?}"
        );
    }
    assert!(!other.exists(), "no file may be created outside the store");
    // The host's own tables exist but a guest cannot read or write them.
    let mut tx = s.begin(&l).await.unwrap();
    tx.execute_host("CREATE TABLE _silo_secret (x)", &[])
        .await
        .unwrap();
    tx.execute_host("INSERT INTO _silo_secret VALUES (42)", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for sql in [
        "SELECT * FROM _silo_secret",
        "SELECT * FROM main._silo_secret",
        "SELECT * FROM \"_SILO_SECRET\"",
        "DELETE FROM _silo_secret",
        "UPDATE _silo_secret SET x = 1",
        "DROP TABLE _silo_secret",
        "ALTER TABLE _silo_secret RENAME TO stolen",
        "CREATE TRIGGER t AFTER INSERT ON _silo_secret BEGIN SELECT 1; END",
        "CREATE INDEX i ON _silo_secret (x)",
    ] {
        let e = s.query(&l, sql, &[]).await.err();
        let e2 = s.execute(&l, sql, &[]).await.err();
        assert!(e.is_some() && e2.is_some(), "{sql} must fail");
    }
    // A view or trigger of the guest's own that names a host table is refused when it
    // is created (a schema statement naming the host's namespace)...
    s.execute(&l, "CREATE TABLE bait (x)", &[]).await.unwrap();
    for sql in [
        "CREATE VIEW peek AS SELECT * FROM _silo_secret",
        "CREATE TRIGGER spill AFTER INSERT ON bait BEGIN INSERT INTO _silo_secret VALUES (1); END",
    ] {
        let e = s.execute(&l, sql, &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
    }
    // ... and were one there, the authorizer checks every table a statement reaches,
    // through views and triggers: the host creates one, the guest uses it.
    let mut tx = s.begin(&l).await.unwrap();
    tx.execute_host(
        "CREATE VIEW main.peek AS SELECT * FROM main._silo_secret",
        &[],
    )
    .await
    .unwrap();
    tx.execute_host(
        "CREATE TRIGGER main.spill AFTER INSERT ON main.bait BEGIN INSERT INTO _silo_secret VALUES (1); END",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let e = s.query(&l, "SELECT * FROM peek", &[]).await.unwrap_err();
    assert!(matches!(e, SqlError::AccessDenied(_)), "{e:?}");
    let e = s
        .execute(&l, "INSERT INTO bait VALUES (1)", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::AccessDenied(_)), "{e:?}");
    let mut tx = s.begin(&l).await.unwrap();
    let n = tx
        .query_host("SELECT count(*) FROM _silo_secret", &[])
        .await
        .unwrap();
    assert!(
        matches!(n.rows[0][0], Value::Integer(1)),
        "host table untouched"
    );
    tx.rollback().await.unwrap();
    // Nothing can be renamed into the host's namespace.
    s.execute(&l, "CREATE TABLE mine2 (x)", &[]).await.unwrap();
    for sql in [
        "ALTER TABLE mine2 RENAME TO _silo_planted",
        "ALTER TABLE mine2 RENAME TO \"_SILO_planted\"",
        "ALTER TABLE main.mine2 RENAME TO [_silo_x]",
    ] {
        let e = s.execute(&l, sql, &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
    }
    // Read-only PRAGMAs are fine.
    s.execute(&l, "CREATE TABLE mine (x)", &[]).await.unwrap();
    let info = s.query(&l, "PRAGMA table_info(mine)", &[]).await;
    assert!(info.is_err() || info.unwrap().rows.len() == 1);
}

#[tokio::test]
async fn runaway_query_stops_at_the_deadline() {
    let (_d, s) = store();
    let l = CallLimits {
        deadline: Instant::now() + Duration::from_millis(200),
        statement_budget: std::time::Duration::from_secs(3600),
        max_result_bytes: 1 << 20,
    };
    let t = Instant::now();
    let e = s
        .query(
            &l,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
             SELECT count(*) FROM c",
            &[],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::LimitExceeded(_)), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// A guest's statement runs under the guest's limits, and each limit it meets reads as
/// `limit-exceeded` naming the limit and its value; the host's statements keep theirs.
#[tokio::test]
async fn guest_statements_run_under_the_guest_limits() {
    let (_d, s) = store();
    let l = CallLimits {
        max_result_bytes: 1 << 20,
        ..limits()
    };
    let args = ["1"; 17].join(", ");
    let deep = ["1"; 101].join(" + ");
    let compound = ["SELECT 1"; 51].join(" UNION ALL ");
    let params = ["?"; 1001].join(", ");
    let cases = [
        (
            "SELECT randomblob(16000000)".to_string(),
            "SQLITE_LIMIT_LENGTH",
            "1048576 bytes",
        ),
        (
            "SELECT length(zeroblob(2000000) || x'00')".into(),
            "SQLITE_LIMIT_LENGTH",
            "1048576 bytes",
        ),
        (
            "SELECT length(replace(hex(zeroblob(500000)), '0', 'xx'))".into(),
            "SQLITE_LIMIT_LENGTH",
            "1048576 bytes",
        ),
        (
            "SELECT 'a' LIKE printf('%.*c', 1001, '%')".into(),
            "SQLITE_LIMIT_LIKE_PATTERN_LENGTH",
            "1000 bytes",
        ),
        (
            "SELECT 'a' GLOB printf('%.*c', 1001, '*')".into(),
            "SQLITE_LIMIT_LIKE_PATTERN_LENGTH",
            "1000 bytes",
        ),
        (
            format!("SELECT max({args})"),
            "SQLITE_LIMIT_FUNCTION_ARG",
            "16 arguments",
        ),
        (
            format!("SELECT {deep}"),
            "SQLITE_LIMIT_EXPR_DEPTH",
            "100 levels",
        ),
        (compound, "SQLITE_LIMIT_COMPOUND_SELECT", "50 terms"),
        (
            format!(
                "SELECT CASE random() {} END",
                (0..3000)
                    .map(|i| format!("WHEN {i} THEN {i}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            "SQLITE_LIMIT_VDBE_OP",
            "5000 ops",
        ),
        (
            format!("SELECT 1 WHERE 1 IN ({params})"),
            "SQLITE_LIMIT_VARIABLE_NUMBER",
            "1000 parameters",
        ),
    ];
    for (sql, limit, value) in &cases {
        let e = s.query(&l, sql, &[]).await.unwrap_err();
        assert!(
            matches!(&e, SqlError::LimitExceeded(m) if m.contains(limit) && m.contains(value)),
            "{}: {e:?}",
            &sql[..sql.len().min(60)]
        );
    }
    // A parameter past the length limit, and one within it.
    s.execute(&l, "CREATE TABLE b (x BLOB)", &[]).await.unwrap();
    let e = s
        .execute(
            &l,
            "INSERT INTO b VALUES (?)",
            &[Value::Blob(vec![0; (1 << 20) + 1])],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SqlError::LimitExceeded(m) if m.contains("SQLITE_LIMIT_LENGTH")),
        "{e:?}"
    );
    s.execute(
        &l,
        "INSERT INTO b VALUES (?)",
        &[Value::Blob(vec![0; 1 << 19])],
    )
    .await
    .unwrap();
    // The service's result cap sets the length limit, within 1..=16 MiB.
    let big = CallLimits {
        max_result_bytes: 4 << 20,
        ..limits()
    };
    s.query(&big, "SELECT length(randomblob(3000000))", &[])
        .await
        .unwrap();
    // Between guest statements of one transaction, the host's statements keep the
    // host's limits: a 2 MiB value (an event payload's row is at most about 1 MiB).
    let mut tx = s.begin(&l).await.unwrap();
    tx.execute(&l, "DELETE FROM b", &[]).await.unwrap();
    tx.execute_host("CREATE TABLE main._silo_big (x BLOB)", &[])
        .await
        .unwrap();
    tx.execute_host(
        "INSERT INTO main._silo_big VALUES (?)",
        &[Value::Blob(vec![1; 2 << 20])],
    )
    .await
    .unwrap();
    let e = tx
        .query(&l, "SELECT length(randomblob(2000000))", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::LimitExceeded(_)), "{e:?}");
    let n = tx
        .query_host("SELECT length(x) FROM main._silo_big", &[])
        .await
        .unwrap();
    assert!(matches!(n.rows[0][0], Value::Integer(2097152)));
    tx.commit().await.unwrap();
}

/// Statements whose cost is in single costly ops (huge values, quadratic searches,
/// sorts) end within a few milliseconds of their budget. The bound asserted is generous
/// for a loaded machine; the figures are printed.
#[tokio::test]
async fn costly_statements_stop_within_a_few_ms_of_their_budget() {
    let (_d, s) = store();
    const BUDGET: Duration = Duration::from_millis(20);
    let many = format!(
        "SELECT {} AS n",
        ["length(randomblob(900000))"; 60].join(" + ")
    );
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)";
    // 300 columns of 1 MB copies: straight-line, never checked by SQLite itself.
    let copies = format!(
        "SELECT {}",
        ["length(upper(printf('%.*c', 1000000, 'x')))"; 300].join(", ")
    );
    let statements = [
        copies,
        format!("{endless} SELECT max(length(randomblob(900000))) FROM c"),
        format!("{endless} SELECT length(group_concat(hex(randomblob(1000)))) FROM c"),
        many,
        "SELECT instr(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1')".into(),
        "SELECT length(replace(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1', 'x'))"
            .into(),
        format!(
            "{endless} SELECT sum((hex(zeroblob(499999)) || '1') LIKE ('%' || substr(hex(zeroblob(60)), 1, 97) || '1_')) FROM c"
        ),
        format!(
            "{endless} SELECT sum((hex(zeroblob(499999)) || '1') GLOB ('*' || substr(hex(zeroblob(60)), 1, 97) || '1?')) FROM c"
        ),
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000) SELECT x FROM c ORDER BY hex(randomblob(8)) LIMIT 1 OFFSET 299999"
            .into(),
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 60) SELECT length(k) FROM (SELECT zeroblob(500000) || randomblob(8) AS k FROM c) ORDER BY k LIMIT 1 OFFSET 59"
            .into(),
    ];
    let mut worst = Duration::ZERO;
    let mut figures = Vec::new();
    for sql in &statements {
        let l = CallLimits {
            deadline: Instant::now() + Duration::from_secs(60),
            statement_budget: BUDGET,
            max_result_bytes: 1 << 20,
        };
        let t = Instant::now();
        let r = s.query(&l, sql, &[]).await;
        let took = t.elapsed();
        figures.push(format!(
            "{:>7.1} ms  {}",
            took.as_secs_f64() * 1e3,
            &sql[..sql.len().min(70)]
        ));
        worst = worst.max(took.saturating_sub(BUDGET));
        // Stopped at a limit, or done within its budget.
        assert!(
            matches!(&r, Err(SqlError::LimitExceeded(_))) || (r.is_ok() && took <= BUDGET),
            "{sql}: {r:?} after {took:?}"
        );
    }
    eprintln!(
        "budget {BUDGET:?}, worst overrun {:.1} ms:\n{}",
        worst.as_secs_f64() * 1e3,
        figures.join("\n")
    );
    // Quiet, the worst is a few ms; the bound is for a loaded 2-core machine (before the
    // fix: 150 ms for the straight-line sum, seconds for `instr`).
    assert!(
        worst < Duration::from_millis(100),
        "worst overrun {worst:?}:\n{}",
        figures.join("\n")
    );
}

#[tokio::test]
async fn result_size_is_capped() {
    let (_d, s) = store();
    let l = CallLimits {
        deadline: Instant::now() + Duration::from_secs(5),
        statement_budget: std::time::Duration::from_secs(3600),
        max_result_bytes: 10_000,
    };
    let e = s
        .query(
            &l,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000) \
             SELECT x, 'padding padding' FROM c",
            &[],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::LimitExceeded(_)), "{e:?}");
}

fn capped(bytes: u64) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db"), SqliteConfig { max_bytes: bytes }).unwrap();
    (dir, s)
}

fn files_len(s: &SqliteStore) -> (u64, u64) {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = s.path().as_os_str().to_owned();
    wal.push("-wal");
    (len(s.path()), len(Path::new(&wal)))
}

#[tokio::test]
async fn size_cap_reports_limit_exceeded() {
    let (_d, s) = capped(1 << 20);
    let l = limits();
    s.execute(&l, "CREATE TABLE b (x BLOB)", &[]).await.unwrap();
    let mut last = None;
    for _ in 0..200 {
        if let Err(e) = s
            .execute(
                &l,
                "INSERT INTO b VALUES (?)",
                &[Value::Blob(vec![7; 8192])],
            )
            .await
        {
            last = Some(e);
            break;
        }
    }
    assert!(
        matches!(&last, Some(SqlError::LimitExceeded(m)) if m.contains("full")),
        "{last:?}"
    );
    // A full store can still free room.
    s.execute(&l, "DELETE FROM b", &[]).await.unwrap();
    s.execute(&l, "INSERT INTO b VALUES (zeroblob(8192))", &[])
        .await
        .unwrap();
}

/// The attack: a 1 MiB store whose database stays under its cap while its write-ahead
/// log grows to four times the cap (SQLite checkpoints only every 1000 pages).
#[tokio::test]
async fn the_write_ahead_log_counts_in_the_cap() {
    const CAP: u64 = 1 << 20;
    let (_d, s) = capped(CAP);
    let l = CallLimits {
        deadline: Instant::now() + Duration::from_secs(120),
        ..limits()
    };
    s.execute(&l, "CREATE TABLE b (x BLOB)", &[]).await.unwrap();
    let mut worst = 0;
    for round in 0..30 {
        // Insert 320 KiB and delete it again, in transactions of 80 KiB.
        for _ in 0..4 {
            let mut tx = s.begin(&l).await.unwrap();
            for _ in 0..20 {
                tx.execute(&l, "INSERT INTO b VALUES (randomblob(4000))", &[])
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            let (db, wal) = files_len(&s);
            worst = worst.max(db + wal);
        }
        s.execute(&l, "DELETE FROM b", &[]).await.unwrap();
        let (db, wal) = files_len(&s);
        worst = worst.max(db + wal);
        assert!(
            db + wal <= CAP,
            "round {round}: {db} + {wal} bytes over {CAP}"
        );
    }
    assert!(worst <= CAP, "database + log reached {worst} bytes");
    // One transaction larger than the log's share is refused as a full store.
    let mut tx = s.begin(&l).await.unwrap();
    let mut refused = None;
    for _ in 0..200 {
        if let Err(e) = tx
            .execute(&l, "INSERT INTO b VALUES (randomblob(4000))", &[])
            .await
        {
            refused = Some(e);
            break;
        }
    }
    let (db, wal) = files_len(&s);
    assert!(db + wal <= CAP, "during: {db} + {wal} bytes over {CAP}");
    let r = match refused {
        Some(e) => {
            drop(tx);
            Err(e)
        }
        None => tx.commit().await,
    };
    assert!(
        matches!(&r, Err(SqlError::LimitExceeded(m)) if m.contains("the store is full")),
        "{r:?}"
    );
    let (db, wal) = files_len(&s);
    assert!(db + wal <= CAP, "after: {db} + {wal} bytes over {CAP}");
    // A transaction over the log's budget but within the database's is refused at
    // commit, and leaves nothing behind.
    s.execute(&l, "DELETE FROM b", &[]).await.unwrap();
    let mut tx = s.begin(&l).await.unwrap();
    let r = tx
        .execute(&l, "INSERT INTO b VALUES (randomblob(300000))", &[])
        .await;
    let r = match r {
        Ok(_) => tx.commit().await,
        Err(e) => Err(e),
    };
    assert!(
        matches!(&r, Err(SqlError::LimitExceeded(m)) if m.contains("write-ahead log")),
        "{r:?}"
    );
    let n = s.query(&l, "SELECT count(*) FROM b", &[]).await.unwrap();
    assert!(matches!(n.rows[0][0], Value::Integer(0)));
}

/// The critical attack: a guest sending the exact text of a host statement got the
/// host's cached, already-authorized statement back, with the host's rights.
#[tokio::test]
async fn host_statement_texts_are_refused_to_guests() {
    let (_d, s) = store();
    let l = limits();
    let mut tx = s.begin(&l).await.unwrap();
    tx.execute_host("CREATE TABLE main._silo_secret (x)", &[])
        .await
        .unwrap();
    tx.execute_host(
        "INSERT INTO main._silo_secret VALUES (?)",
        &[Value::Integer(42)],
    )
    .await
    .unwrap();
    let read = "SELECT x FROM main._silo_secret";
    tx.query_host(read, &[]).await.unwrap();
    // On the writer, in the same transaction: the host's statements are now cached.
    for text in [
        read.to_string(),
        format!("{HOST_MARK}{read}"),
        format!("  {HOST_MARK}{read}  "),
        format!("\n{}{read}", HOST_MARK.trim_end()),
    ] {
        let e = tx.query(&l, &text, &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{text:?}: {e:?}");
    }
    let e = tx
        .execute(
            &l,
            "INSERT INTO main._silo_secret VALUES (?)",
            &[Value::Integer(7)],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::AccessDenied(_)), "{e:?}");
    tx.commit().await.unwrap();
    // On a reader: the host's read is cached there too.
    s.query_host(read, &[]).await.unwrap();
    for text in [read.to_string(), format!("{HOST_MARK}{read}")] {
        let e = s.query(&l, &text, &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{text:?}: {e:?}");
    }
}

#[tokio::test]
async fn temp_objects_are_refused_in_every_spelling() {
    let (_d, s) = store();
    let l = limits();
    s.execute(&l, "CREATE TABLE mine (x)", &[]).await.unwrap();
    for sql in [
        "CREATE TEMP TABLE t (x)",
        "CREATE TEMPORARY TABLE t (x)",
        "CREATE TABLE temp.t (x)",
        "CREATE TABLE TEMP.t (x)",
        "CREATE TABLE \"temp\".t (x)",
        "CREATE TABLE [temp].t AS SELECT 1 AS x",
        "CREATE VIEW temp.v AS SELECT 1",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE TRIGGER temp.t AFTER INSERT ON main.mine BEGIN SELECT 1; END",
        "CREATE TEMP TRIGGER t AFTER INSERT ON mine BEGIN SELECT 1; END",
        "INSERT INTO temp.sqlite_master VALUES ('table','t','t',0,'')",
    ] {
        let e = s.execute(&l, sql, &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
    }
}

#[tokio::test]
async fn denied_functions_read_as_access_denied() {
    let (_d, s) = store();
    let l = limits();
    for sql in [
        "SELECT load_extension('/usr/lib/x')",
        "SELECT LOAD_EXTENSION('x', 'init')",
    ] {
        let e = s.query(&l, sql, &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
    }
}

#[tokio::test]
async fn views_of_the_file_are_hidden() {
    let (_d, s) = store();
    let l = limits();
    s.execute(&l, "CREATE TABLE mine (x)", &[]).await.unwrap();
    for sql in [
        "SELECT name, pgsize FROM dbstat",
        "SELECT * FROM DBSTAT WHERE name LIKE '!_silo!_%' ESCAPE '!'",
        "SELECT * FROM main.dbstat",
    ] {
        let e = s.query(&l, sql, &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
    }
}
