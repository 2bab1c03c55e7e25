//! Running statements on a pooled PostgreSQL connection: preparing, binding, streaming
//! rows against the size limit, the deadline and its cancel, the guest's statements, and
//! measuring and vacuuming a store for its size cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Timeouts;
use futures::{StreamExt, pin_mut};
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, Statement};

use crate::sql::server::SizeCap;
use crate::sql::{CallLimits, ExecResult, RowSet, SqlError, Value, value_size};

use super::errors::map_err;
use super::guard::{check_guest, guest_sql};
use super::pool::{CANCEL_GRACE, Object, Pool};
use super::values::{Param, Raw, decode};
use super::{portable, text};

/// The store's size as its cap counts it: every table and materialized view of its
/// database (the host's and temporary ones included) with their indexes and TOAST, but not
/// the server's own catalogs (some 7 MiB in every database). Operators are named by schema:
/// the guest's session may have put its own first on its `search_path`.
const MEASURE: &str = "SELECT COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::pg_catalog.int8 \
     FROM pg_catalog.pg_class c \
     WHERE c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'm']::pg_catalog.\"char\"[]) \
     AND c.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog'::pg_catalog.regnamespace, \
     'information_schema'::pg_catalog.regnamespace])";

/// Measures the store on `client` (in a transaction or not) and records it in `cap`; `None`
/// if it could not (the transaction is aborted: nothing it wrote will stay).
pub(super) async fn measure(client: &Object, cap: &SizeCap) -> Option<u64> {
    let m = async {
        let stmt = prepare(client, MEASURE).await?;
        client.query_one(&stmt, &[]).await.map_err(map_err)
    };
    match tokio::time::timeout(Duration::from_secs(5), m).await {
        Ok(Ok(row)) => {
            let bytes = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
            cap.record(bytes);
            Some(bytes)
        }
        _ => None,
    }
}

/// Runs one prepared statement, bounded by `deadline`; cancels it on the server past it,
/// and terminates its process if it has not stopped [`CANCEL_GRACE`] after the cancel.
pub(super) async fn run<T>(
    client: &Object,
    deadline: Instant,
    f: impl std::future::Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    let mut f = std::pin::pin!(f);
    match tokio::time::timeout_at(deadline.into(), f.as_mut()).await {
        Ok(r) => r,
        Err(_) => {
            let _ = client.cancel_token().cancel_query(NoTls).await;
            if tokio::time::timeout(CANCEL_GRACE, f).await.is_err() {
                client.terminate().await;
            }
            Err(SqlError::LimitExceeded(
                "the statement ran past its time budget or the request's deadline".into(),
            ))
        }
    }
}

/// Prepares `sql` (cached: the host's statements, and the guest's up to a bound).
pub(super) async fn prepare(client: &Object, sql: &str) -> Result<Statement, SqlError> {
    if client.statement_cache.size() > 256 {
        client.statement_cache.clear();
    }
    client.prepare_cached(sql).await.map_err(map_err)
}

pub(super) fn check_params(stmt: &Statement, params: &[Value]) -> Result<(), SqlError> {
    let want = stmt.params().len();
    if want != params.len() {
        return Err(SqlError::BadQuery(format!(
            "the statement has {want} parameters, {} were given",
            params.len()
        )));
    }
    Ok(())
}

/// Runs a statement that returns rows, streaming them against the size limit.
pub(super) async fn query_rows(
    client: &Object,
    stmt: &Statement,
    params: &[Value],
    max_bytes: usize,
) -> Result<RowSet, SqlError> {
    check_params(stmt, params)?;
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let stream = client
        .query_raw(stmt, params.iter().map(Param))
        .await
        .map_err(map_err)?;
    pin_mut!(stream);
    let mut rows = Vec::new();
    let mut size = 0usize;
    while let Some(row) = stream.next().await {
        let row = row.map_err(map_err)?;
        let mut out = Vec::with_capacity(columns.len());
        for (i, ty) in types.iter().enumerate() {
            let raw: Raw<'_> = row.try_get(i).map_err(map_err)?;
            let v = decode(ty, raw.0, &columns[i])?;
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
    Ok(RowSet { columns, rows })
}

pub(super) async fn execute_stmt(
    client: &Object,
    stmt: &Statement,
    params: &[Value],
) -> Result<ExecResult, SqlError> {
    check_params(stmt, params)?;
    if !stmt.columns().is_empty() {
        return Err(SqlError::BadQuery(
            "the statement returns rows: use `query`".into(),
        ));
    }
    let n = client
        .execute_raw(stmt, params.iter().map(Param))
        .await
        .map_err(map_err)?;
    Ok(ExecResult {
        rows_affected: n,
        last_insert_id: None,
    })
}

pub(super) async fn guest_query(
    client: &Object,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
) -> Result<RowSet, SqlError> {
    let sql = guest_sql(sql)?;
    run(client, limits.statement_deadline(), async {
        let stmt = prepare(client, &sql).await?;
        query_rows(client, &stmt, params, limits.max_result_bytes).await
    })
    .await
}

pub(super) async fn guest_execute(
    client: &Object,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
) -> Result<ExecResult, SqlError> {
    let sql = guest_sql(sql)?;
    run(client, limits.statement_deadline(), async {
        let stmt = prepare(client, &sql).await?;
        execute_stmt(client, &stmt, params).await
    })
    .await
}

pub(super) async fn guest_batch(
    client: &Object,
    limits: &CallLimits,
    sql: &str,
) -> Result<(), SqlError> {
    let pieces = text::split(sql);
    for p in &pieces {
        check_guest(p)?;
    }
    for p in pieces {
        // One statement per message: the server refuses a second one the split missed.
        let p = portable::translate(p).into_owned();
        run(client, limits.statement_deadline(), async {
            client.execute(&p, &[]).await.map_err(map_err).map(|_| ())
        })
        .await?;
    }
    Ok(())
}

/// The host's budget for its own statements.
pub(super) fn host_deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// After a full store made room: vacuums its tables (as its own role: the tables it owns),
/// which gives the server back the pages a `DELETE` emptied at their end, and measures it
/// again.
pub(super) async fn vacuum(pool: Pool, cap: Arc<SizeCap>) {
    let t = Timeouts {
        wait: Some(Duration::from_secs(30)),
        create: Some(Duration::from_secs(30)),
        recycle: Some(Duration::from_secs(30)),
    };
    let Ok(c) = pool.timeout_get(&t).await else {
        return;
    };
    let owned = "SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', n.nspname, c.relname), ', ') \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) 'r' AND c.relowner OPERATOR(pg_catalog.=) \
         (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)";
    let work = async {
        let tables: Option<String> = c.query_one(owned, &[]).await.ok()?.get(0);
        if let Some(tables) = tables {
            let _ = c.batch_execute(&format!("VACUUM {tables}")).await;
        }
        measure(&c, &cap).await
    };
    let _ = tokio::time::timeout(Duration::from_secs(120), work).await;
}
