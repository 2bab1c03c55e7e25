//! One conformance battery for every relational backend: the same checks run against each
//! [`SqlStore`] (SQLite today; PostgreSQL and MariaDB as they land), through the trait the
//! host uses, so a service behaves the same whichever backend its store is on.
//!
//! A backend joins by defining its [`Dialect`] (type names, a runaway statement, where the
//! host keeps its tables) and a `#[tokio::test]` that opens a fresh, empty store and calls
//! [`battery`]. A backend with a server should use `super::server_up` so a missing server is
//! reported as SKIPPED, and is a failure when `SILO_REQUIRE_BACKENDS=1`.
//!
//! Statements use `?` placeholders (silo rewrites them for backends that number theirs) and
//! build DDL from the dialect's type names. Host statements use silo's portable host form:
//! `main._silo_x` table names and `?` placeholders.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silo::sql::host_tables::{self, HostTables, NewEvent};
use silo::sql::sqlite::{SqliteConfig, SqliteStore};
use silo::sql::{CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value};

/// What differs between backends, as far as the battery is concerned.
pub struct Dialect {
    /// The backend's name, for messages (`sqlite`, `postgres`, …).
    pub name: &'static str,
    /// Column type for 64-bit integers.
    pub int_type: &'static str,
    /// Column type for 64-bit floats.
    pub real_type: &'static str,
    /// Column type for unbounded UTF-8 text.
    pub text_type: &'static str,
    /// Column type for unbounded bytes.
    pub blob_type: &'static str,
    /// A statement returning rows that runs (practically) forever.
    pub sleep_sql: &'static str,
    /// The host's outbox table as a guest statement would name it; it must have the
    /// outbox's columns (`id, topic, key, time_ms, content_type, data`).
    pub host_table: &'static str,
    /// The host's outbox table as a host statement in the backend's own dialect names it.
    pub host_name: &'static str,
    /// True if a statement that fails inside a transaction aborts it (PostgreSQL without
    /// per-statement savepoints): later statements fail and so must `commit`, and nothing
    /// of it persists. False if only the failed statement is undone (SQLite).
    pub failed_statement_aborts_transaction: bool,
}

pub const SQLITE: Dialect = Dialect {
    name: "sqlite",
    int_type: "INTEGER",
    real_type: "REAL",
    text_type: "TEXT",
    blob_type: "BLOB",
    sleep_sql: "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                SELECT count(*) FROM c",
    host_table: "_silo_outbox",
    host_name: "main._silo_outbox",
    failed_statement_aborts_transaction: false,
};

/// The check being run, for messages: `backend/check`.
#[derive(Clone, Copy)]
struct Ck<'a> {
    d: &'a Dialect,
    check: &'static str,
}

impl fmt::Display for Ck<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.d.name, self.check)
    }
}

type Store = Arc<dyn SqlStore>;

/// Runs every check, in order, on `store`, which must be fresh and empty.
pub async fn battery(d: &Dialect, store: Store) {
    macro_rules! run {
        ($($check:ident),* $(,)?) => {$(
            let c = Ck { d, check: stringify!($check) };
            let t = Instant::now();
            $check(c, &store).await;
            eprintln!("{c}: ok ({:?})", t.elapsed());
        )*};
    }
    run!(
        typed_values_round_trip,
        columns_come_back_in_order,
        rows_affected_is_counted,
        parameter_count_mismatch_is_bad_query,
        bad_statements_are_bad_query,
        constraint_violations_are_classified,
        execute_of_a_row_returning_statement_is_bad_query,
        insert_returning_through_query,
        commit_persists_rollback_and_drop_discard,
        transaction_is_isolated_until_commit,
        execute_batch_is_atomic_and_accepts_valid_sql,
        failed_statement_inside_a_transaction,
        transaction_control_is_refused,
        host_table_is_out_of_reach,
        runaway_statement_stops_at_the_deadline,
        result_size_is_capped,
        concurrent_increments_serialize,
    );
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn limits() -> CallLimits {
    CallLimits {
        deadline: Instant::now() + Duration::from_secs(10),
        statement_budget: Duration::from_secs(10),
        max_result_bytes: 4 << 20,
    }
}

fn int(i: i64) -> Value {
    Value::Integer(i)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Exact equality (reals bit for bit).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Integer(x), Value::Integer(y)) => x == y,
        (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Blob(x), Value::Blob(y)) => x == y,
        _ => false,
    }
}

/// A value for messages: long texts and blobs shortened.
fn show(v: &Value) -> String {
    match v {
        Value::Text(s) if s.len() > 40 => {
            let head: String = s.chars().take(20).collect();
            format!("Text({head:?}… {} bytes)", s.len())
        }
        Value::Blob(b) if b.len() > 16 => format!("Blob({:?}… {} bytes)", &b[..8], b.len()),
        v => format!("{v:?}"),
    }
}

fn show_row(r: &[Value]) -> String {
    let v: Vec<String> = r.iter().map(show).collect();
    format!("[{}]", v.join(", "))
}

fn show_rows(rs: &RowSet) -> String {
    let v: Vec<String> = rs.rows.iter().map(|r| show_row(r)).collect();
    format!("columns {:?}, rows [{}]", rs.columns, v.join(", "))
}

#[track_caller]
fn assert_rows(c: Ck<'_>, what: &str, got: &RowSet, want: &[Vec<Value>]) {
    let ok = got.rows.len() == want.len()
        && got
            .rows
            .iter()
            .zip(want)
            .all(|(g, w)| g.len() == w.len() && g.iter().zip(w).all(|(a, b)| same(a, b)));
    assert!(
        ok,
        "{c}: {what}: got {}, want rows [{}]",
        show_rows(got),
        want.iter()
            .map(|r| show_row(r))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn kind(e: &SqlError) -> &'static str {
    match e {
        SqlError::AccessDenied(_) => "AccessDenied",
        SqlError::ConstraintViolation(_) => "ConstraintViolation",
        SqlError::BadQuery(_) => "BadQuery",
        SqlError::LimitExceeded(_) => "LimitExceeded",
        SqlError::Unavailable(_) => "Unavailable",
        SqlError::InvalidHandle(_) => "InvalidHandle",
        SqlError::Other(_) => "Other",
        SqlError::OwnedElsewhere(_) => "OwnedElsewhere",
        SqlError::Trap(_) => "Trap",
    }
}

/// Asserts `r` failed with one of the error kinds `allowed`.
#[track_caller]
fn expect_err<T: fmt::Debug>(c: Ck<'_>, what: &str, r: Result<T, SqlError>, allowed: &[&str]) {
    match r {
        Ok(v) => {
            let v: String = format!("{v:?}").chars().take(300).collect();
            panic!("{c}: {what}: must fail with {allowed:?}, but succeeded: {v}")
        }
        Err(e) => assert!(
            allowed.contains(&kind(&e)),
            "{c}: {what}: must fail with {allowed:?}, failed with {}: {e}",
            kind(&e)
        ),
    }
}

async fn q(c: Ck<'_>, s: &dyn SqlStore, sql: &str, params: &[Value]) -> RowSet {
    s.query(&limits(), sql, params)
        .await
        .unwrap_or_else(|e| panic!("{c}: query `{sql}` failed: {e:?}"))
}

async fn x(c: Ck<'_>, s: &dyn SqlStore, sql: &str, params: &[Value]) -> ExecResult {
    s.execute(&limits(), sql, params)
        .await
        .unwrap_or_else(|e| panic!("{c}: execute `{sql}` failed: {e:?}"))
}

async fn tq(c: Ck<'_>, tx: &mut dyn SqlTransaction, sql: &str, params: &[Value]) -> RowSet {
    tx.query(&limits(), sql, params)
        .await
        .unwrap_or_else(|e| panic!("{c}: query `{sql}` in a transaction failed: {e:?}"))
}

async fn tx_exec(
    c: Ck<'_>,
    tx: &mut dyn SqlTransaction,
    sql: &str,
    params: &[Value],
) -> ExecResult {
    tx.execute(&limits(), sql, params)
        .await
        .unwrap_or_else(|e| panic!("{c}: execute `{sql}` in a transaction failed: {e:?}"))
}

async fn begin(c: Ck<'_>, s: &dyn SqlStore) -> Box<dyn SqlTransaction> {
    s.begin(&limits())
        .await
        .unwrap_or_else(|e| panic!("{c}: begin failed: {e:?}"))
}

/// The single integer a `SELECT count(*)`-like statement returned.
#[track_caller]
fn scalar(c: Ck<'_>, what: &str, rs: &RowSet) -> i64 {
    match rs.rows.as_slice() {
        [row] => match row.as_slice() {
            [Value::Integer(n)] => *n,
            _ => panic!("{c}: {what}: want one integer, got {}", show_rows(rs)),
        },
        _ => panic!("{c}: {what}: want one row, got {}", show_rows(rs)),
    }
}

async fn count(c: Ck<'_>, s: &dyn SqlStore, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    scalar(c, &sql, &q(c, s, &sql, &[]).await)
}

async fn tcount(c: Ck<'_>, tx: &mut dyn SqlTransaction, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    scalar(c, &sql, &tq(c, tx, &sql, &[]).await)
}

/// The `id` column of `table`, in order.
async fn ids(c: Ck<'_>, s: &dyn SqlStore, table: &str) -> Vec<i64> {
    let rs = q(c, s, &format!("SELECT id FROM {table} ORDER BY id"), &[]).await;
    rs.rows
        .iter()
        .map(|r| match r.as_slice() {
            [Value::Integer(i)] => *i,
            _ => panic!("{c}: ids of {table}: got {}", show_rows(&rs)),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The checks.

/// Every value kind goes in as a parameter and comes back out as the same kind and value,
/// and compares equal to itself as a parameter.
async fn typed_values_round_trip(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE rt (id {} PRIMARY KEY, i {}, r {}, t {}, b {})",
            d.int_type, d.int_type, d.real_type, d.text_type, d.blob_type
        ),
        &[],
    )
    .await;
    let all_bytes: Vec<u8> = (0..=255).collect();
    let mut cols: Vec<(usize, Value)> = Vec::new();
    for i in [i64::MIN, i64::MAX, 0, -1, -7, 42, 1 << 53] {
        cols.push((1, int(i)));
    }
    for r in [
        0.5,
        -1e300,
        1e300,
        0.0,
        2.0,
        -0.25,
        1.0 / 3.0,
        std::f64::consts::PI,
        f64::MIN_POSITIVE,
    ] {
        cols.push((2, Value::Real(r)));
    }
    let long = "ü".repeat(5000);
    for t in [
        "",
        "a",
        "héllo wörld",
        "日本語のテキスト",
        "emoji 🦀🎉 and a family 👩‍👩‍👧",
        "quotes ' \" \\ and %_ ?",
        "line\nbreak\ttab\r",
        long.as_str(),
    ] {
        cols.push((3, text(t)));
    }
    for b in [
        vec![],
        vec![0],
        all_bytes.clone(),
        vec![0xff; 3],
        b"looks like text".to_vec(),
    ] {
        cols.push((4, Value::Blob(b)));
    }
    let mut want = Vec::new();
    for (n, (col, v)) in cols.iter().enumerate() {
        let mut row = vec![
            int(n as i64),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ];
        row[*col] = v.clone();
        let r = x(
            c,
            s,
            "INSERT INTO rt (id, i, r, t, b) VALUES (?, ?, ?, ?, ?)",
            &row,
        )
        .await;
        assert_eq!(
            r.rows_affected,
            1,
            "{c}: inserting {} affects one row",
            show(v)
        );
        want.push(row);
    }
    // A row of NULLs in every typed column.
    let nulls = vec![
        int(cols.len() as i64),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
    ];
    x(
        c,
        s,
        "INSERT INTO rt (id, i, r, t, b) VALUES (?, ?, ?, ?, ?)",
        &nulls,
    )
    .await;
    want.push(nulls);

    let got = q(c, s, "SELECT id, i, r, t, b FROM rt ORDER BY id", &[]).await;
    assert_eq!(got.columns, ["id", "i", "r", "t", "b"], "{c}");
    for (g, w) in got.rows.iter().zip(&want) {
        assert!(
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| same(a, b)),
            "{c}: round trip: got {}, want {}",
            show_row(g),
            show_row(w)
        );
    }
    assert_eq!(got.rows.len(), want.len(), "{c}: every row comes back");

    // Each value, as a parameter, finds exactly its own row.
    let names = ["id", "i", "r", "t", "b"];
    for (n, (col, v)) in cols.iter().enumerate() {
        let sql = format!("SELECT id FROM rt WHERE {} = ?", names[*col]);
        let got = q(c, s, &sql, std::slice::from_ref(v)).await;
        assert_rows(
            c,
            &format!("{sql} with {}", show(v)),
            &got,
            &[vec![int(n as i64)]],
        );
    }
}

/// Column names come back in the statement's order, also when there are no rows.
async fn columns_come_back_in_order(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE cols (a {}, b {}, c {})",
            d.int_type, d.text_type, d.real_type
        ),
        &[],
    )
    .await;
    let empty = q(c, s, "SELECT c, a, b FROM cols", &[]).await;
    assert_eq!(empty.columns, ["c", "a", "b"], "{c}: empty table");
    assert!(empty.rows.is_empty(), "{c}");
    let empty = q(c, s, "SELECT * FROM cols WHERE 1 = 0", &[]).await;
    assert_eq!(empty.columns, ["a", "b", "c"], "{c}: `*` with no rows");
    x(
        c,
        s,
        "INSERT INTO cols (a, b, c) VALUES (?, ?, ?)",
        &[int(1), text("one"), Value::Real(1.5)],
    )
    .await;
    let got = q(c, s, "SELECT b, c, a FROM cols", &[]).await;
    assert_eq!(got.columns, ["b", "c", "a"], "{c}");
    assert_rows(
        c,
        "reordered",
        &got,
        &[vec![text("one"), Value::Real(1.5), int(1)]],
    );
    let aliased = q(
        c,
        s,
        "SELECT b AS zeta, a AS alpha, a + 1 AS next FROM cols WHERE a = ?",
        &[int(99)],
    )
    .await;
    assert_eq!(
        aliased.columns,
        ["zeta", "alpha", "next"],
        "{c}: aliases, no rows"
    );
    assert!(aliased.rows.is_empty(), "{c}");
    let mut tx = begin(c, s).await;
    let got = tq(
        c,
        &mut *tx,
        "SELECT a AS second, b AS first FROM cols WHERE 1 = 0",
        &[],
    )
    .await;
    assert_eq!(got.columns, ["second", "first"], "{c}: in a transaction");
    tx.rollback().await.unwrap();
}

/// `rows_affected` counts the rows a statement changed.
async fn rows_affected_is_counted(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE ra (id {0} PRIMARY KEY, v {0})", d.int_type),
        &[],
    )
    .await;
    for i in 1..=5 {
        x(
            c,
            s,
            "INSERT INTO ra (id, v) VALUES (?, ?)",
            &[int(i), int(0)],
        )
        .await;
    }
    let r = x(c, s, "UPDATE ra SET v = v + 1 WHERE id > ?", &[int(2)]).await;
    assert_eq!(r.rows_affected, 3, "{c}: UPDATE of 3 rows");
    let r = x(c, s, "UPDATE ra SET v = v + 1 WHERE id > ?", &[int(100)]).await;
    assert_eq!(r.rows_affected, 0, "{c}: UPDATE of no rows");
    let r = x(c, s, "DELETE FROM ra WHERE id <= ?", &[int(2)]).await;
    assert_eq!(r.rows_affected, 2, "{c}: DELETE of 2 rows");
    let mut tx = begin(c, s).await;
    let r = tx_exec(c, &mut *tx, "UPDATE ra SET v = v + 10", &[]).await;
    assert_eq!(r.rows_affected, 3, "{c}: UPDATE in a transaction");
    tx.rollback().await.unwrap();
    assert_eq!(ids(c, s, "ra").await, [3, 4, 5], "{c}");
}

/// Too few or too many parameters is `bad-query`, and changes nothing.
async fn parameter_count_mismatch_is_bad_query(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE pc (id {0}, v {0})", d.int_type),
        &[],
    )
    .await;
    let bad = ["BadQuery"];
    let sel = "SELECT id FROM pc WHERE id = ? AND v = ?";
    let ins = "INSERT INTO pc (id, v) VALUES (?, ?)";
    for params in [vec![], vec![int(1)], vec![int(1), int(2), int(3)]] {
        let what = format!("{} parameters for 2", params.len());
        expect_err(
            c,
            &format!("query, {what}"),
            s.query(&limits(), sel, &params).await,
            &bad,
        );
        expect_err(
            c,
            &format!("execute, {what}"),
            s.execute(&limits(), ins, &params).await,
            &bad,
        );
    }
    expect_err(
        c,
        "a parameter for a statement without any",
        s.query(&limits(), "SELECT id FROM pc", &[int(1)]).await,
        &bad,
    );
    expect_err(
        c,
        "a parameter for an execute without any",
        s.execute(&limits(), "DELETE FROM pc", &[int(1)]).await,
        &bad,
    );
    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "execute in a transaction, 1 parameter for 2",
        tx.execute(&limits(), ins, &[int(1)]).await,
        &bad,
    );
    expect_err(
        c,
        "query in a transaction, 3 parameters for 2",
        tx.query(&limits(), sel, &[int(1), int(2), int(3)]).await,
        &bad,
    );
    drop(tx);
    assert_eq!(count(c, s, "pc").await, 0, "{c}: nothing was inserted");
}

/// Syntax errors, unknown tables and unknown columns are `bad-query`.
async fn bad_statements_are_bad_query(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(c, s, &format!("CREATE TABLE bq (id {})", d.int_type), &[]).await;
    let bad = ["BadQuery"];
    for sql in [
        "SELEC 1",
        "SELECT FROM WHERE",
        "SELECT * FROM bq WHERE",
        "SELECT * FROM no_such_table",
        "SELECT no_such_column FROM bq",
    ] {
        expect_err(c, sql, s.query(&limits(), sql, &[]).await, &bad);
    }
    for sql in [
        "INSERT INTO no_such_table (id) VALUES (1)",
        "INSERT INTO bq (no_such_column) VALUES (1)",
        "UPDATE no_such_table SET id = 1",
        "DELETE FROM no_such_table",
        "CREATE TABLE (",
        "INSERT INTO bq VALUES (1",
    ] {
        expect_err(c, sql, s.execute(&limits(), sql, &[]).await, &bad);
    }
    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "unknown table in a transaction",
        tx.query(&limits(), "SELECT * FROM no_such_table", &[])
            .await,
        &bad,
    );
    drop(tx);
    expect_err(
        c,
        "syntax error in a transaction",
        begin(c, s)
            .await
            // (Not `VALUE`: MariaDB accepts it as a synonym of `VALUES`.)
            .execute(&limits(), "INSERT INTO bq VALUS (1)", &[])
            .await,
        &bad,
    );
}

/// UNIQUE, PRIMARY KEY, NOT NULL, CHECK and FOREIGN KEY violations are
/// `constraint-violation`, and leave the table as it was.
async fn constraint_violations_are_classified(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    let i = d.int_type;
    x(
        c,
        s,
        &format!("CREATE TABLE cv_parent (id {i} PRIMARY KEY)"),
        &[],
    )
    .await;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE cv (id {i} PRIMARY KEY, u {i} UNIQUE, nn {i} NOT NULL, \
             ck {i} CHECK (ck >= 0), p {i}, FOREIGN KEY (p) REFERENCES cv_parent (id))"
        ),
        &[],
    )
    .await;
    x(c, s, "INSERT INTO cv_parent (id) VALUES (?)", &[int(1)]).await;
    let ins = "INSERT INTO cv (id, u, nn, ck, p) VALUES (?, ?, ?, ?, ?)";
    x(c, s, ins, &[int(1), int(10), int(0), int(0), int(1)]).await;
    let cv = ["ConstraintViolation"];
    for (what, params) in [
        (
            "duplicate primary key",
            [int(1), int(11), int(0), int(0), int(1)],
        ),
        (
            "duplicate UNIQUE",
            [int(2), int(10), int(0), int(0), int(1)],
        ),
        (
            "NULL in NOT NULL",
            [int(3), int(12), Value::Null, int(0), int(1)],
        ),
        ("failed CHECK", [int(4), int(13), int(0), int(-1), int(1)]),
        (
            "missing FOREIGN KEY parent",
            [int(5), int(14), int(0), int(0), int(999)],
        ),
    ] {
        expect_err(c, what, s.execute(&limits(), ins, &params).await, &cv);
    }
    expect_err(
        c,
        "UPDATE into a NOT NULL violation",
        s.execute(&limits(), "UPDATE cv SET nn = NULL", &[]).await,
        &cv,
    );
    expect_err(
        c,
        "DELETE of a referenced parent",
        s.execute(&limits(), "DELETE FROM cv_parent", &[]).await,
        &cv,
    );
    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "duplicate UNIQUE in a transaction",
        tx.execute(&limits(), ins, &[int(6), int(10), int(0), int(0), int(1)])
            .await,
        &cv,
    );
    tx.rollback().await.unwrap();
    assert_eq!(ids(c, s, "cv").await, [1], "{c}: cv unchanged");
    assert_eq!(
        ids(c, s, "cv_parent").await,
        [1],
        "{c}: cv_parent unchanged"
    );
    let row = q(c, s, "SELECT id, u, nn, ck, p FROM cv", &[]).await;
    assert_rows(
        c,
        "cv row unchanged",
        &row,
        &[vec![int(1), int(10), int(0), int(0), int(1)]],
    );
}

/// `execute` refuses a statement that returns rows (and it has no effect).
async fn execute_of_a_row_returning_statement_is_bad_query(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE er (id {} PRIMARY KEY, name {})",
            d.int_type, d.text_type
        ),
        &[],
    )
    .await;
    let bad = ["BadQuery"];
    for (sql, params) in [
        ("SELECT 1", vec![]),
        ("SELECT id, name FROM er", vec![]),
        (
            "INSERT INTO er (id, name) VALUES (?, ?) RETURNING id",
            vec![int(1), text("x")],
        ),
    ] {
        expect_err(c, sql, s.execute(&limits(), sql, &params).await, &bad);
    }
    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "INSERT … RETURNING through execute in a transaction",
        tx.execute(
            &limits(),
            "INSERT INTO er (id, name) VALUES (?, ?) RETURNING id",
            &[int(2), text("y")],
        )
        .await,
        &bad,
    );
    expect_err(
        c,
        "SELECT through execute in a transaction",
        tx.execute(&limits(), "SELECT id FROM er", &[]).await,
        &bad,
    );
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: commit after refusals: {e:?}"));
    assert_eq!(
        count(c, s, "er").await,
        0,
        "{c}: a refused INSERT … RETURNING inserted nothing"
    );
}

/// `INSERT … RETURNING` through `query` inserts and returns the row.
async fn insert_returning_through_query(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE ret (id {} PRIMARY KEY, name {}, b {})",
            d.int_type, d.text_type, d.blob_type
        ),
        &[],
    )
    .await;
    let got = q(
        c,
        s,
        "INSERT INTO ret (id, name, b) VALUES (?, ?, ?) RETURNING name, id",
        &[int(7), text("seven"), Value::Blob(vec![7])],
    )
    .await;
    assert_eq!(got.columns, ["name", "id"], "{c}");
    assert_rows(c, "RETURNING", &got, &[vec![text("seven"), int(7)]]);
    assert_eq!(ids(c, s, "ret").await, [7], "{c}: the row was inserted");
    let mut tx = begin(c, s).await;
    let got = tq(
        c,
        &mut *tx,
        "INSERT INTO ret (id, name, b) VALUES (?, ?, ?) RETURNING id, b",
        &[int(8), text("eight"), Value::Blob(vec![0, 8])],
    )
    .await;
    assert_rows(
        c,
        "RETURNING in a transaction",
        &got,
        &[vec![int(8), Value::Blob(vec![0, 8])]],
    );
    assert_eq!(tcount(c, &mut *tx, "ret").await, 2, "{c}");
    tx.rollback().await.unwrap();
    assert_eq!(ids(c, s, "ret").await, [7], "{c}: rolled back");
}

/// Commit persists; rollback and drop without commit discard; the store stays usable.
async fn commit_persists_rollback_and_drop_discard(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE cr (id {} PRIMARY KEY)", d.int_type),
        &[],
    )
    .await;
    let ins = "INSERT INTO cr (id) VALUES (?)";
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(1)]).await;
    tx_exec(c, &mut *tx, ins, &[int(2)]).await;
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: commit: {e:?}"));
    assert_eq!(ids(c, s, "cr").await, [1, 2], "{c}: committed");

    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(3)]).await;
    tx_exec(c, &mut *tx, "DELETE FROM cr WHERE id = ?", &[int(1)]).await;
    tx.rollback()
        .await
        .unwrap_or_else(|e| panic!("{c}: rollback: {e:?}"));
    assert_eq!(ids(c, s, "cr").await, [1, 2], "{c}: rolled back");

    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(4)]).await;
    tx_exec(c, &mut *tx, "DELETE FROM cr WHERE id = ?", &[int(2)]).await;
    drop(tx);
    assert_eq!(ids(c, s, "cr").await, [1, 2], "{c}: dropped without commit");

    // The writer is free again: a new transaction and a plain write both go through.
    let t = Instant::now();
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(5)]).await;
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: commit after a drop: {e:?}"));
    x(c, s, ins, &[int(6)]).await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "{c}: the writer was held after the drop ({:?})",
        t.elapsed()
    );
    assert_eq!(ids(c, s, "cr").await, [1, 2, 5, 6], "{c}");
}

/// A transaction sees its own writes; a reader outside it does not, until it commits.
async fn transaction_is_isolated_until_commit(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE iso (id {0} PRIMARY KEY, v {0})", d.int_type),
        &[],
    )
    .await;
    x(c, s, "INSERT INTO iso (id, v) VALUES (1, 10)", &[]).await;
    let read = "SELECT id, v FROM iso ORDER BY id";
    let before = [vec![int(1), int(10)]];
    let after = [vec![int(1), int(11)], vec![int(2), int(20)]];

    let mut tx = begin(c, s).await;
    tx_exec(
        c,
        &mut *tx,
        "INSERT INTO iso (id, v) VALUES (?, ?)",
        &[int(2), int(20)],
    )
    .await;
    tx_exec(c, &mut *tx, "UPDATE iso SET v = 11 WHERE id = 1", &[]).await;
    let inside = tq(c, &mut *tx, read, &[]).await;
    assert_rows(c, "the transaction sees its own writes", &inside, &after);
    let t = Instant::now();
    let outside = q(c, s, read, &[]).await;
    assert_rows(
        c,
        "a reader outside sees no uncommitted write",
        &outside,
        &before,
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "{c}: a reader outside waited on the transaction ({:?})",
        t.elapsed()
    );
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: commit: {e:?}"));
    assert_rows(c, "after commit", &q(c, s, read, &[]).await, &after);
}

/// `execute_batch` runs everything valid (comments, literals with `;`), and a failure
/// anywhere in it leaves nothing behind.
async fn execute_batch_is_atomic_and_accepts_valid_sql(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    let (i, t) = (d.int_type, d.text_type);
    let valid = format!(
        "-- a schema set-up; with a semicolon in a comment
        CREATE TABLE ba (id {i} PRIMARY KEY, note {t}, n {i});
        CREATE INDEX ba_n ON ba (n);
        /* a block comment; also with one */
        INSERT INTO ba (id, note, n) VALUES (1, 'semi;colon', 1);
        INSERT INTO ba (id, note, n) VALUES (2, 'it''s', 2);
        UPDATE ba SET id = id + 10 WHERE id = 2;
        CREATE TABLE bb (id {i} PRIMARY KEY);
        "
    );
    s.execute_batch(&limits(), &valid)
        .await
        .unwrap_or_else(|e| panic!("{c}: a valid batch was refused: {e:?}"));
    let got = q(c, s, "SELECT id, note FROM ba ORDER BY id", &[]).await;
    assert_rows(
        c,
        "the batch ran",
        &got,
        &[
            vec![int(1), text("semi;colon")],
            vec![int(12), text("it's")],
        ],
    );

    for (what, batch, kinds) in [
        (
            "a duplicate key in the middle",
            "INSERT INTO bb (id) VALUES (1); INSERT INTO bb (id) VALUES (2); \
             INSERT INTO bb (id) VALUES (1); INSERT INTO bb (id) VALUES (3)",
            &["ConstraintViolation"][..],
        ),
        (
            "an unknown table in the middle",
            "INSERT INTO bb (id) VALUES (1); INSERT INTO no_such_table (id) VALUES (2); \
             INSERT INTO bb (id) VALUES (3)",
            &["BadQuery"][..],
        ),
        (
            "a syntax error at the end",
            "INSERT INTO bb (id) VALUES (1); INSERT INTO bb (id) VALUES (2); INSERT INTO",
            &["BadQuery"][..],
        ),
        (
            "a failing DELETE after an UPDATE",
            "INSERT INTO bb (id) VALUES (1); UPDATE ba SET note = 'changed'; \
             DELETE FROM no_such_table",
            &["BadQuery"][..],
        ),
    ] {
        expect_err(c, what, s.execute_batch(&limits(), batch).await, kinds);
        assert_eq!(
            count(c, s, "bb").await,
            0,
            "{c}: {what}: the statements before the failure were undone"
        );
    }
    let got = q(c, s, "SELECT id, note FROM ba ORDER BY id", &[]).await;
    assert_rows(
        c,
        "ba untouched by the failed batches",
        &got,
        &[
            vec![int(1), text("semi;colon")],
            vec![int(12), text("it's")],
        ],
    );

    // Inside a transaction, a batch's writes are the transaction's.
    let mut tx = begin(c, s).await;
    tx.execute_batch(
        &limits(),
        "INSERT INTO bb (id) VALUES (1); INSERT INTO bb (id) VALUES (2)",
    )
    .await
    .unwrap_or_else(|e| panic!("{c}: batch in a transaction: {e:?}"));
    assert_eq!(tcount(c, &mut *tx, "bb").await, 2, "{c}");
    tx.rollback().await.unwrap();
    assert_eq!(
        count(c, s, "bb").await,
        0,
        "{c}: rolled back with its transaction"
    );
}

/// A statement that fails inside a transaction (a constraint, a typo) does what the
/// dialect declares. Either it fails alone: the transaction keeps its earlier writes, takes
/// more, and commits (SQLite). Or it aborts the transaction: every later statement fails,
/// `commit` fails rather than reporting success for writes that are gone, and nothing
/// persists. Either way the store is usable afterwards.
async fn failed_statement_inside_a_transaction(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE fs (id {} PRIMARY KEY)", d.int_type),
        &[],
    )
    .await;
    let ins = "INSERT INTO fs (id) VALUES (?)";
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(1)]).await;
    expect_err(
        c,
        "duplicate key in a transaction",
        tx.execute(&limits(), ins, &[int(1)]).await,
        &["ConstraintViolation"],
    );
    if d.failed_statement_aborts_transaction {
        let r = tx.execute(&limits(), ins, &[int(2)]).await;
        assert!(
            r.is_err(),
            "{c}: declared to abort the transaction on a failed statement, but a later \
             statement succeeded: {r:?}"
        );
        let r = tx.commit().await;
        assert!(
            r.is_err(),
            "{c}: `commit` of an aborted transaction must fail, not report success for \
             writes that were discarded"
        );
        assert_eq!(
            ids(c, s, "fs").await,
            Vec::<i64>::new(),
            "{c}: nothing persisted"
        );
    } else {
        tx_exec(c, &mut *tx, ins, &[int(2)]).await;
        expect_err(
            c,
            "unknown table in a transaction",
            tx.query(&limits(), "SELECT * FROM no_such_table", &[])
                .await,
            &["BadQuery"],
        );
        tx_exec(c, &mut *tx, ins, &[int(3)]).await;
        assert_eq!(tcount(c, &mut *tx, "fs").await, 3, "{c}");
        tx.commit()
            .await
            .unwrap_or_else(|e| panic!("{c}: commit after failed statements: {e:?}"));
        assert_eq!(ids(c, s, "fs").await, [1, 2, 3], "{c}");
    }
    // The store is usable afterwards.
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(10)]).await;
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: a fresh transaction after the failure: {e:?}"));
    assert!(ids(c, s, "fs").await.contains(&10), "{c}");
}

/// Transaction control sent as guest SQL is refused, inside a transaction (which stays
/// usable and still rolls back cleanly) and outside one (the store stays usable).
async fn transaction_control_is_refused(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE tc (id {} PRIMARY KEY)", d.int_type),
        &[],
    )
    .await;
    let refused = ["AccessDenied", "BadQuery"];
    let control = [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT sp1",
        "RELEASE sp1",
        "RELEASE SAVEPOINT sp1",
        "ROLLBACK TO SAVEPOINT sp1",
        "END",
        "START TRANSACTION",
        "  commit",
        "/* hidden */ COMMIT",
        "-- hidden\nROLLBACK",
    ];
    let ins = "INSERT INTO tc (id) VALUES (?)";
    let mut tx = begin(c, s).await;
    let mut n = 0;
    for sql in control {
        n += 1;
        tx_exec(c, &mut *tx, ins, &[int(n)]).await;
        expect_err(
            c,
            &format!("tx.execute({sql:?})"),
            tx.execute(&limits(), sql, &[]).await,
            &refused,
        );
        expect_err(
            c,
            &format!("tx.query({sql:?})"),
            tx.query(&limits(), sql, &[]).await,
            &refused,
        );
        expect_err(
            c,
            &format!("tx.execute_batch({sql:?})"),
            tx.execute_batch(&limits(), sql).await,
            &refused,
        );
        assert_eq!(
            tcount(c, &mut *tx, "tc").await,
            n,
            "{c}: the transaction is still usable after {sql:?}"
        );
    }
    let outside = q(c, s, "SELECT id FROM tc", &[]).await;
    assert!(
        outside.rows.is_empty(),
        "{c}: nothing was committed by guest statements: {}",
        show_rows(&outside)
    );
    tx.rollback()
        .await
        .unwrap_or_else(|e| panic!("{c}: rollback after refused control statements: {e:?}"));
    assert_eq!(count(c, s, "tc").await, 0, "{c}: everything rolled back");

    for sql in control {
        expect_err(
            c,
            &format!("execute({sql:?})"),
            s.execute(&limits(), sql, &[]).await,
            &refused,
        );
        expect_err(
            c,
            &format!("query({sql:?})"),
            s.query(&limits(), sql, &[]).await,
            &refused,
        );
        expect_err(
            c,
            &format!("execute_batch({sql:?})"),
            s.execute_batch(&limits(), sql).await,
            &refused,
        );
    }
    // No connection was left inside a guest's transaction: writes land, and a
    // transaction opens, commits and is visible.
    x(c, s, ins, &[int(100)]).await;
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(101)]).await;
    tx.commit().await.unwrap();
    assert_eq!(ids(c, s, "tc").await, [100, 101], "{c}");
}

/// The host's outbox cannot be read or written by guest statements.
async fn host_table_is_out_of_reach(c: Ck<'_>, s: &Store) {
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

/// A runaway statement stops with `limit-exceeded` soon after its deadline (the request's
/// or the statement budget, whichever is first), outside and inside a transaction, and the
/// store is usable right after.
async fn runaway_statement_stops_at_the_deadline(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    let short = Duration::from_millis(300);
    let within = Duration::from_secs(3);
    let by_deadline = || CallLimits {
        deadline: Instant::now() + short,
        statement_budget: Duration::from_secs(3600),
        max_result_bytes: 1 << 20,
    };
    let by_budget = || CallLimits {
        deadline: Instant::now() + Duration::from_secs(3600),
        statement_budget: short,
        max_result_bytes: 1 << 20,
    };
    for (what, l) in [
        ("deadline", by_deadline()),
        ("statement budget", by_budget()),
    ] {
        let t = Instant::now();
        let r = s.query(&l, d.sleep_sql, &[]).await;
        let took = t.elapsed();
        expect_err(c, &format!("runaway query, {what}"), r, &["LimitExceeded"]);
        assert!(
            took < within,
            "{c}: a runaway query ({what} 300 ms) took {took:?}"
        );
    }
    let mut tx = begin(c, s).await;
    let t = Instant::now();
    let r = tx.query(&by_budget(), d.sleep_sql, &[]).await;
    let took = t.elapsed();
    expect_err(c, "runaway query in a transaction", r, &["LimitExceeded"]);
    assert!(
        took < within,
        "{c}: a runaway query in a transaction took {took:?}"
    );
    tx.rollback()
        .await
        .unwrap_or_else(|e| panic!("{c}: rollback after a runaway: {e:?}"));
    // The next statements are unaffected: no leftover deadline, no held writer.
    let t = Instant::now();
    x(c, s, &format!("CREATE TABLE rw (id {})", d.int_type), &[]).await;
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, "INSERT INTO rw (id) VALUES (1)", &[]).await;
    tx.commit().await.unwrap();
    assert_eq!(count(c, s, "rw").await, 1, "{c}");
    assert!(
        t.elapsed() < within,
        "{c}: the store was slow after a runaway ({:?})",
        t.elapsed()
    );
}

/// A result larger than `max_result_bytes` is `limit-exceeded`; one under it is whole.
async fn result_size_is_capped(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE big (id {}, b {})", d.int_type, d.blob_type),
        &[],
    )
    .await;
    let blob: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    x(
        c,
        s,
        "INSERT INTO big (id, b) VALUES (?, ?)",
        &[int(1), Value::Blob(blob.clone())],
    )
    .await;
    let capped = |max| CallLimits {
        max_result_bytes: max,
        ..limits()
    };
    expect_err(
        c,
        "one 64 KiB value, 16 KiB allowed",
        s.query(&capped(16 * 1024), "SELECT b FROM big", &[]).await,
        &["LimitExceeded"],
    );
    let whole = s
        .query(&capped(1 << 20), "SELECT id, b FROM big", &[])
        .await
        .unwrap_or_else(|e| panic!("{c}: 64 KiB under a 1 MiB cap: {e:?}"));
    assert_rows(c, "the blob", &whole, &[vec![int(1), Value::Blob(blob)]]);

    let many = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000) \
                SELECT x, 'padding padding padding' AS p FROM n";
    expect_err(
        c,
        "5000 rows, 10 000 bytes allowed",
        s.query(&capped(10_000), many, &[]).await,
        &["LimitExceeded"],
    );
    let all = s
        .query(&capped(4 << 20), many, &[])
        .await
        .unwrap_or_else(|e| panic!("{c}: 5000 small rows under a 4 MiB cap: {e:?}"));
    assert_eq!(all.rows.len(), 5000, "{c}");

    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "one 64 KiB value in a transaction, 16 KiB allowed",
        tx.query(&capped(16 * 1024), "SELECT b FROM big", &[]).await,
        &["LimitExceeded"],
    );
    drop(tx);
}

/// 20 concurrent transactions each read a counter and write it back plus one: since a
/// transaction is its store's only writer, none is lost. `unavailable` is retried.
async fn concurrent_increments_serialize(c: Ck<'_>, s: &Store) {
    let d = c.d;
    x(
        c,
        &**s,
        &format!(
            "CREATE TABLE ctr (id {0} PRIMARY KEY, n {0} NOT NULL)",
            d.int_type
        ),
        &[],
    )
    .await;
    x(c, &**s, "INSERT INTO ctr (id, n) VALUES (1, 0)", &[]).await;
    const TASKS: u64 = 20;
    const ATTEMPTS: u64 = 50;
    let label = c.to_string();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let s = s.clone();
        let label = label.clone();
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for attempt in 0..ATTEMPTS {
                let r: Result<(), SqlError> = async {
                    let mut tx = s.begin(&limits()).await?;
                    let rs = tx
                        .query(&limits(), "SELECT n FROM ctr WHERE id = 1", &[])
                        .await?;
                    let n = match rs.rows.as_slice() {
                        [row] => match row.as_slice() {
                            [Value::Integer(n)] => *n,
                            r => panic!("{label}: task {task}: counter row {r:?}"),
                        },
                        _ => panic!("{label}: task {task}: counter rows {:?}", rs.rows),
                    };
                    // Give the others every chance to interleave.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let e = tx
                        .execute(
                            &limits(),
                            "UPDATE ctr SET n = ? WHERE id = 1",
                            &[Value::Integer(n + 1)],
                        )
                        .await?;
                    assert_eq!(e.rows_affected, 1, "{label}: task {task}");
                    tx.commit().await
                }
                .await;
                match r {
                    Ok(()) => return retries,
                    Err(SqlError::Unavailable(_)) => {
                        retries += 1;
                        let ms = (task * 7 + attempt * 13) % 40;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    Err(e) => panic!("{label}: task {task}, attempt {attempt}: {e:?}"),
                }
            }
            panic!("{label}: task {task}: still unavailable after {ATTEMPTS} attempts");
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t
            .await
            .unwrap_or_else(|e| panic!("{c}: a task failed: {e}"));
    }
    let n = scalar(
        c,
        "counter",
        &q(c, &**s, "SELECT n FROM ctr WHERE id = 1", &[]).await,
    );
    assert_eq!(
        n, TASKS as i64,
        "{c}: {TASKS} committed increments ({retries} retries) must leave the counter at {TASKS}"
    );
    eprintln!("{c}: {retries} retries on `unavailable`");
}

// ---------------------------------------------------------------------------------------
// The backends.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("conformance.db"), SqliteConfig::default())
        .expect("open the SQLite store");
    battery(&SQLITE, Arc::new(store)).await;
}

pub const POSTGRES: Dialect = Dialect {
    name: "postgres",
    int_type: "BIGINT",
    real_type: "DOUBLE PRECISION",
    text_type: "TEXT",
    blob_type: "BYTEA",
    sleep_sql: "SELECT pg_sleep(30)",
    host_table: "silo_host._silo_outbox",
    // Provisioning made the host's tables, in schema `silo_host`.
    host_name: "silo_host._silo_outbox",
    failed_statement_aborts_transaction: true,
};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A prefix no other run uses (`cf` and random lowercase hex): runs on one shared server
/// never meet, and each test drops only what it made under its own.
fn run_prefix() -> String {
    format!("cf{:08x}", rand::random::<u32>())
}

/// Drops the conformance store's database and role (each alone: `DROP DATABASE` cannot
/// share a statement batch).
async fn drop_pg_store(name: &str) {
    let (c, conn) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .expect("admin connection to PostgreSQL");
    tokio::spawn(conn);
    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
    c.batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    if !super::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    use silo::sql::postgres::{PgConfig, PgStore};
    let prefix = run_prefix();
    let name = &format!("{prefix}_conformance_main");
    let dir = tempfile::tempdir().unwrap();
    let config = PgConfig {
        admin_url: PG_ADMIN.into(),
        pool_size: 8,
        connect_timeout: Duration::from_secs(2),
        prefix,
    };
    let store = PgStore::open(&config, dir.path(), "conformance", "main")
        .await
        .expect("open the PostgreSQL store");
    assert_eq!(store.database(), name);
    battery(&POSTGRES, Arc::new(store)).await;
    drop_pg_store(name).await;
}

pub const MYSQL: Dialect = Dialect {
    name: "mysql",
    int_type: "BIGINT",
    real_type: "DOUBLE",
    text_type: "LONGTEXT",
    blob_type: "LONGBLOB",
    sleep_sql: "SELECT SLEEP(30)",
    // The host database's name has the run's prefix: see `mysql_conformance`.
    host_table: "PREFIX_conformance_main_host._silo_outbox",
    // Host statements run inside the host database's `silo_exec`.
    host_name: "_silo_outbox",
    // InnoDB undoes only the failed statement (a deadlock aside, which the backend
    // reports as a rolled-back transaction).
    failed_statement_aborts_transaction: false,
};

const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/";

/// Drops the conformance store's databases and accounts.
async fn drop_my_store(name: &str) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_conformance() {
    if !super::server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    use silo::sql::mysql::{MyConfig, MyStore};
    let prefix = run_prefix();
    let name = &format!("{prefix}_conformance_main");
    let dialect = Dialect {
        host_table: String::leak(MYSQL.host_table.replace("PREFIX", &prefix)),
        ..MYSQL
    };
    let dir = tempfile::tempdir().unwrap();
    let config = MyConfig {
        admin_url: MY_ADMIN.into(),
        pool_size: 8,
        connect_timeout: Duration::from_secs(2),
        prefix,
    };
    let store = MyStore::open(&config, dir.path(), "conformance", "main")
        .await
        .expect("open the MariaDB store");
    assert_eq!(store.database(), name);
    let store: Store = Arc::new(store);
    battery(&dialect, store.clone()).await;
    mysql_host_path(&store, dir.path(), name).await;
    drop(store);
    drop_my_store(name).await;
}

/// MariaDB only: the host's statements come back as their callers expect (RETURNING rows,
/// 0 or 1 from the inbox's insert-if-absent, savepoints, a migration's DDL followed by its
/// record), and the store's own login cannot reach the host procedures' power without the
/// connection's token.
async fn mysql_host_path(s: &Store, data_dir: &std::path::Path, name: &str) {
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
    let secret = silo::admin::private_secret(&data_dir.join("sql").join("mysql.secret")).unwrap();
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

/// Two services' stores on one shared server: through its own handle, with raw SQL, a store
/// cannot read another's table, nor find it in any catalog it can query.
async fn neighbours_are_invisible(
    backend: &str,
    mine: &dyn SqlStore,
    other: &dyn SqlStore,
    other_db: &str,
    attacks: &[String],
) {
    let l = limits();
    other
        .execute(&l, "CREATE TABLE neighbour_secret (v TEXT)", &[])
        .await
        .unwrap_or_else(|e| panic!("[{backend}] creating the neighbour's table: {e}"));
    other
        .execute(&l, "INSERT INTO neighbour_secret VALUES ('secret')", &[])
        .await
        .unwrap();
    mine.execute(&l, "CREATE TABLE own_table (v TEXT)", &[])
        .await
        .unwrap();
    let listed = mine
        .query(
            &l,
            "SELECT table_schema, table_name FROM information_schema.tables",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = listed
        .rows
        .iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Text(s), Value::Text(t)) => format!("{s}.{t}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".own_table")),
        "[{backend}] its own table is listed: {names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("neighbour") || n.starts_with(&format!("{other_db}."))),
        "[{backend}] the neighbour's tables are not listed: {names:?}"
    );
    for sql in attacks {
        let got = mine.query(&l, sql, &[]).await;
        assert!(
            got.is_err() || got.as_ref().is_ok_and(|r| r.rows.is_empty()),
            "[{backend}] {sql} must not reach the neighbour: {got:?}"
        );
        if let Ok(r) = got {
            assert!(
                !format!("{:?}", r.rows).contains("secret"),
                "[{backend}] {sql} leaked"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_services_cannot_see_each_other() {
    if !super::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    use silo::sql::postgres::{PgConfig, PgStore};
    let prefix = run_prefix();
    let (a, b) = (
        &format!("{prefix}_alpha_main"),
        &format!("{prefix}_beta_main"),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = PgConfig {
        admin_url: PG_ADMIN.into(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.clone(),
    };
    let alpha = PgStore::open(&config, dir.path(), "alpha", "main")
        .await
        .unwrap();
    let beta = PgStore::open(&config, dir.path(), "beta", "main")
        .await
        .unwrap();
    let attacks = [
        format!("SELECT * FROM {b}.public.neighbour_secret"),
        "SELECT * FROM neighbour_secret".to_string(),
        format!(
            "SELECT * FROM dblink('dbname={b}', 'SELECT v FROM neighbour_secret') AS t(v text)"
        ),
        "SELECT relname FROM pg_class WHERE relname = 'neighbour_secret'".to_string(),
    ];
    neighbours_are_invisible("postgres", &alpha, &beta, b, &attacks).await;
    drop((alpha, beta));
    drop_pg_store(a).await;
    drop_pg_store(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_services_cannot_see_each_other() {
    if !super::server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    use silo::sql::mysql::{MyConfig, MyStore};
    let prefix = run_prefix();
    let (a, b) = (
        &format!("{prefix}_alpha_main"),
        &format!("{prefix}_beta_main"),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = MyConfig {
        admin_url: MY_ADMIN.into(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.clone(),
    };
    let alpha = MyStore::open(&config, dir.path(), "alpha", "main")
        .await
        .unwrap();
    let beta = MyStore::open(&config, dir.path(), "beta", "main")
        .await
        .unwrap();
    let attacks = [
        format!("SELECT * FROM {b}.neighbour_secret"),
        format!("SELECT * FROM `{b}`.neighbour_secret"),
        "SELECT * FROM neighbour_secret".to_string(),
        format!("SELECT * FROM {b}_host._silo_outbox"),
        format!("SELECT * FROM {a}_host._silo_outbox"),
        format!("SELECT schema_name FROM information_schema.schemata WHERE schema_name = '{b}'"),
        "SELECT user, host FROM mysql.user".to_string(),
        // Other accounts' sessions (the neighbour's, the admin's) are not in its process list.
        format!("SELECT id FROM information_schema.processlist WHERE user <> '{a}'"),
    ];
    neighbours_are_invisible("mysql", &alpha, &beta, b, &attacks).await;
    drop((alpha, beta));
    drop_my_store(a).await;
    drop_my_store(b).await;
}
