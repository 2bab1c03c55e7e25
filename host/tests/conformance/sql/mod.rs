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
use silo::sql::{CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value};

mod backends;
mod host_table;
mod limits;
mod mysql_host;
mod neighbours;
mod transactions;
mod values;

use self::host_table::host_table_is_out_of_reach;
use self::limits::{
    concurrent_increments_serialize, result_size_is_capped, runaway_statement_stops_at_the_deadline,
};
use self::transactions::{
    commit_persists_rollback_and_drop_discard, execute_batch_is_atomic_and_accepts_valid_sql,
    failed_statement_inside_a_transaction, transaction_control_is_refused,
    transaction_is_isolated_until_commit,
};
use self::values::{
    bad_statements_are_bad_query, columns_come_back_in_order, constraint_violations_are_classified,
    execute_of_a_row_returning_statement_is_bad_query, insert_returning_through_query,
    parameter_count_mismatch_is_bad_query, rows_affected_is_counted, typed_values_round_trip,
};

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
