//! Running one statement on a MariaDB connection: under the call's time budget, against
//! the result size limit, and shaping what it returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Statement};

use super::errors::map_err;
use super::shared::Shared;
use super::values::{decode, params_of};
use super::{portable, text};
use crate::sql::{CallLimits, ExecResult, RowSet, SqlError, Value, value_size};

/// What a statement returned: its first row set (if it had one) and the counts.
pub(super) struct Outcome {
    rows: Option<RowSet>,
    affected: u64,
    last_insert_id: Option<u64>,
}

/// Executes a prepared statement and reads every result set (a `CALL` may send several),
/// keeping the first with columns, against the size limit.
pub(super) async fn run_stmt(
    conn: &mut Conn,
    stmt: &Statement,
    params: Params,
    max_bytes: usize,
) -> Result<Outcome, SqlError> {
    let mut r = conn.exec_iter(stmt, params).await.map_err(map_err)?;
    let mut first: Option<RowSet> = None;
    let mut guard = 0;
    while !r.is_empty() && guard < 64 {
        guard += 1;
        let cols = r.columns().unwrap_or_else(|| Arc::from(Vec::new()));
        let mut rows = Vec::new();
        let mut size = 0usize;
        let keep = first.is_none() && !cols.is_empty();
        while let Some(row) = r.next().await.map_err(map_err)? {
            if !keep {
                continue;
            }
            let mut out = Vec::with_capacity(cols.len());
            for (i, v) in row.unwrap().into_iter().enumerate() {
                let v = decode(&cols[i], v);
                size += value_size(&v);
                out.push(v);
            }
            if size > max_bytes {
                return Err(SqlError::LimitExceeded(format!(
                    "the result is larger than {max_bytes} bytes"
                )));
            }
            rows.push(out);
        }
        if keep {
            first = Some(RowSet {
                columns: cols.iter().map(|c| c.name_str().into_owned()).collect(),
                rows,
            });
        }
    }
    Ok(Outcome {
        rows: first,
        affected: r.affected_rows(),
        last_insert_id: r.last_insert_id(),
    })
}

/// Runs `f` on `conn` under the server's `max_statement_time` for `deadline`; if the server
/// does not stop it (plus a grace), the connection is killed and the call fails.
pub(super) async fn bounded<T>(
    shared: &Shared,
    conn: &mut Conn,
    deadline: Instant,
    f: impl AsyncFnOnce(&mut Conn) -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(SqlError::LimitExceeded(
            "the statement ran past its time budget or the request's deadline".into(),
        ));
    }
    let secs = left.as_secs_f64().max(0.001);
    let id = conn.id();
    let work = async {
        conn.query_drop(format!("SET SESSION max_statement_time = {secs:.3}"))
            .await
            .map_err(map_err)?;
        f(conn).await
    };
    match tokio::time::timeout_at((deadline + Duration::from_secs(1)).into(), work).await {
        Ok(r) => r,
        Err(_) => {
            shared.kill(id).await;
            Err(SqlError::LimitExceeded(
                "the statement ran past its time budget or the request's deadline".into(),
            ))
        }
    }
}

/// Runs a guest statement on `conn` (already checked).
pub(super) async fn guest_run(
    shared: &Shared,
    conn: &mut Conn,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
    rows: bool,
) -> Result<Outcome, SqlError> {
    let max = limits.max_result_bytes;
    let sql: &str = &portable::translate(sql);
    bounded(
        shared,
        conn,
        limits.statement_deadline(),
        async |c: &mut Conn| {
            let stmt = c.prep(sql).await.map_err(map_err)?;
            let want = usize::from(stmt.num_params());
            if want != params.len() {
                return Err(SqlError::BadQuery(format!(
                    "the statement has {want} parameters, {} were given",
                    params.len()
                )));
            }
            // (MariaDB's prepare announces no columns for `… RETURNING`: the word tells.)
            if !rows && (!stmt.columns().is_empty() || text::has_word(sql, "RETURNING")) {
                return Err(SqlError::BadQuery(
                    "the statement returns rows: use `query`".into(),
                ));
            }
            run_stmt(c, &stmt, params_of(params), max).await
        },
    )
    .await
}

pub(super) fn rowset(o: Outcome) -> RowSet {
    o.rows.unwrap_or(RowSet {
        columns: vec![],
        rows: vec![],
    })
}

pub(super) fn exec_result(o: &Outcome) -> ExecResult {
    ExecResult {
        rows_affected: o.affected,
        last_insert_id: o
            .last_insert_id
            .filter(|&i| i != 0)
            .and_then(|i| i64::try_from(i).ok()),
    }
}
