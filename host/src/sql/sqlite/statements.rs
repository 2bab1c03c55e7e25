//! Running one statement on a connection: binding parameters, reading rows within the
//! result cap, and the guest's and the host's ways in.

use std::time::Instant;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::authorizer::{deny_host_names_in_schema, precheck};
use super::errors::map_err;
use crate::sql::{CallLimits, ExecResult, RowSet, SqlError, Value, value_size};

fn to_sql(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Integer(i) => V::Integer(*i),
        Value::Real(f) => V::Real(*f),
        Value::Text(s) => V::Text(s.clone()),
        Value::Blob(b) => V::Blob(b.clone()),
    }
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &[Value]) -> Result<(), SqlError> {
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(SqlError::BadQuery(format!(
            "the statement has {expected} parameters, {} were given",
            params.len()
        )));
    }
    for (i, p) in params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, to_sql(p)).map_err(map_err)?;
    }
    Ok(())
}

pub(super) fn run_query(
    conn: &Connection,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
    need_readonly: bool,
) -> Result<Option<RowSet>, SqlError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    if need_readonly && !stmt.readonly() {
        return Ok(None);
    }
    bind(&mut stmt, params)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let mut rows = Vec::new();
    let mut size = 0usize;
    let mut raw = stmt.raw_query();
    while let Some(row) = raw.next().map_err(map_err)? {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let v = from_sql(row.get_ref(i).map_err(map_err)?);
            size += value_size(&v);
            out.push(v);
        }
        if size > limits.max_result_bytes {
            return Err(SqlError::LimitExceeded(format!(
                "the result is larger than {} bytes",
                limits.max_result_bytes
            )));
        }
        rows.push(out);
    }
    Ok(Some(RowSet { columns, rows }))
}

/// A guest's statement: checked for what the authorizer cannot see, then run.
pub(super) fn guest_query(
    conn: &Connection,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
    need_readonly: bool,
) -> Result<Option<RowSet>, SqlError> {
    precheck(sql)?;
    run_query(conn, limits, sql, params, need_readonly)
}

pub(super) fn guest_execute(
    conn: &Connection,
    sql: &str,
    params: &[Value],
) -> Result<ExecResult, SqlError> {
    precheck(sql)?;
    run_execute(conn, sql, params)
}

pub(super) fn run_execute(
    conn: &Connection,
    sql: &str,
    params: &[Value],
) -> Result<ExecResult, SqlError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    bind(&mut stmt, params)?;
    if stmt.column_count() > 0 {
        return Err(SqlError::BadQuery(
            "the statement returns rows: use `query`".into(),
        ));
    }
    let changed = stmt.raw_execute().map_err(map_err)?;
    let last = conn.last_insert_rowid();
    Ok(ExecResult {
        rows_affected: changed as u64,
        last_insert_id: (last != 0).then_some(last),
    })
}

pub(super) fn run_batch(conn: &Connection, sql: &str) -> Result<(), SqlError> {
    // A batch runs inside a transaction, where SQLite itself refuses VACUUM. It is never
    // cached, so it cannot meet a host statement.
    deny_host_names_in_schema(sql, true)?;
    conn.execute_batch(sql).map_err(map_err)
}

/// What a statement that returns no rows answers to `query`.
pub(super) fn no_rows() -> RowSet {
    RowSet {
        columns: vec![],
        rows: vec![],
    }
}

/// No time or size limit: the host's own statements.
pub(super) fn host_limits() -> CallLimits {
    CallLimits {
        deadline: Instant::now() + std::time::Duration::from_secs(3600),
        statement_budget: std::time::Duration::from_secs(3600),
        max_result_bytes: usize::MAX,
    }
}
