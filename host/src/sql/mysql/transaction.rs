//! A MariaDB transaction, the writer lock it holds, and the host statements it runs
//! through `silo_exec`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mysql_async::prelude::*;
use mysql_async::{Conn, Params};

use super::errors::{map_err, unavailable};
use super::guard::{check_guest, check_guest_in_tx, commits_implicitly};
use super::provision::HOST_PARAMS;
use super::quote::ident;
use super::shared::Shared;
use super::statement::{Outcome, bounded, exec_result, guest_run, rowset, run_stmt};
use super::text;
use super::values::to_my;
use crate::sql::{CallLimits, ExecResult, RowSet, SqlError, SqlTransaction, Value};

/// Runs a host statement through `silo_exec` on `conn`, inside its open transaction.
pub(super) async fn host_call(
    shared: &Shared,
    conn: &mut Conn,
    sql: &str,
    params: &[Value],
) -> Result<Outcome, SqlError> {
    if params.len() > HOST_PARAMS {
        return Err(SqlError::Other(format!(
            "a host statement binds more than {HOST_PARAMS} parameters"
        )));
    }
    let (q, binds) = (sql, params);
    let call = format!(
        "CALL {}.silo_exec(?, ?, ?{})",
        ident(&shared.names.host_db),
        ", ?".repeat(HOST_PARAMS)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fresh = false;
    loop {
        let tok = shared.token(conn, fresh).await?;
        let mut args = vec![
            mysql_async::Value::Bytes(tok.as_bytes().to_vec()),
            mysql_async::Value::Bytes(q.as_bytes().to_vec()),
            mysql_async::Value::Int(binds.len() as i64),
        ];
        args.extend(binds.iter().map(to_my));
        args.resize(3 + HOST_PARAMS, mysql_async::Value::NULL);
        let r = bounded(shared, conn, deadline, async |c: &mut Conn| {
            let stmt = c.prep(&call).await.map_err(map_err)?;
            run_stmt(c, &stmt, Params::Positional(args), usize::MAX).await
        })
        .await;
        match r {
            // A connection id reused after a server restart: draw a new salt once.
            Err(SqlError::AccessDenied(m)) if !fresh && m.starts_with("silo: access denied") => {
                fresh = true;
            }
            r => return r,
        }
    }
}

/// True for the host's own savepoint statements (no gate needed).
pub(super) fn is_host_savepoint(sql: &str) -> bool {
    let head = sql.trim_start();
    head.starts_with("SAVEPOINT ")
        || head.starts_with("RELEASE ")
        || head.starts_with("ROLLBACK TO ")
}

// ---------------------------------------------------------------------------------------
// The store and its transactions.

/// Reads the writer row: while the transaction lives it is the store's only writer.
pub(super) const LOCK_WRITER: &str = "SELECT id FROM _silo_writer WHERE id = 1 FOR UPDATE";

pub(super) async fn open_tx(
    shared: &Arc<Shared>,
    deadline: Instant,
    writer: bool,
) -> Result<MyTransaction, SqlError> {
    let mut conn = shared.conn(deadline).await?;
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .as_secs()
        .clamp(1, 1 << 30);
    let r = async {
        conn.query_drop(format!("SET SESSION innodb_lock_wait_timeout = {wait}"))
            .await
            .map_err(map_err)?;
        conn.query_drop("BEGIN").await.map_err(map_err)?;
        if writer {
            let r = tokio::time::timeout_at(
                deadline.into(),
                host_call(shared, &mut conn, LOCK_WRITER, &[]),
            )
            .await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(SqlError::Unavailable(_)))
                | Ok(Err(SqlError::LimitExceeded(_)))
                | Err(_) => {
                    return Err(SqlError::Unavailable(
                        "the store's writer stayed busy past the deadline".into(),
                    ));
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        let id = conn.id();
        drop(conn);
        if matches!(e, SqlError::Unavailable(_)) {
            shared.kill(id).await;
        }
        return Err(e);
    }
    // As the store's only writer, it sees what every earlier one left.
    let mut began = None;
    if writer && let Some(cap) = &shared.cap {
        if cap.due() {
            shared.measure().await;
        }
        began = cap.last();
    }
    Ok(MyTransaction {
        conn: Some(conn),
        shared: shared.clone(),
        writer,
        aborted: false,
        began,
    })
}

/// A transaction: holds one pooled connection until it ends. Dropping the connection
/// returns it to the pool, which resets it (rolling back whatever is open).
pub(super) struct MyTransaction {
    pub(super) conn: Option<Conn>,
    pub(super) shared: Arc<Shared>,
    /// Whether it holds the writer row (re-taken after a schema change committed early).
    pub(super) writer: bool,
    /// The server rolled the whole transaction back (a deadlock): what follows would run
    /// outside any transaction, so every statement and `commit` fail.
    pub(super) aborted: bool,
    /// What the store measured when it began (for its size cap).
    pub(super) began: Option<u64>,
}

impl MyTransaction {
    pub(super) fn conn(&mut self) -> Result<&mut Conn, SqlError> {
        if self.aborted {
            return Err(SqlError::BadQuery(
                "the transaction was rolled back by the server (a deadlock): roll it back and retry".into(),
            ));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))
    }

    /// After a failed statement: is the transaction still open? (MariaDB undoes only the
    /// failed statement, except on a deadlock, where the whole transaction is gone.)
    pub(super) async fn note<T>(&mut self, r: Result<T, SqlError>) -> Result<T, SqlError> {
        if r.is_err()
            && !self.aborted
            && let Some(c) = self.conn.as_mut()
        {
            let probe = tokio::time::timeout(
                Duration::from_secs(5),
                c.query_first::<(i64,), _>("SELECT @@in_transaction"),
            )
            .await;
            self.aborted = !matches!(probe, Ok(Ok(Some((1,)))));
        }
        r
    }

    pub(super) async fn finish(&mut self, sql: &str) -> Result<(), SqlError> {
        if self.aborted && sql == "COMMIT" {
            self.conn.take();
            return Err(SqlError::BadQuery(
                "the transaction was rolled back by the server (a deadlock or a lost connection)"
                    .into(),
            ));
        }
        let mut c = self
            .conn
            .take()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))?;
        match tokio::time::timeout(Duration::from_secs(30), c.query_drop(sql)).await {
            Ok(Ok(())) => Ok(()),
            // A connection that cannot roll back is gone, and the server rolled back with it.
            Ok(Err(_)) if sql == "ROLLBACK" => Ok(()),
            Ok(Err(e)) => Err(map_err(e)),
            Err(_) => {
                let id = c.id();
                drop(c);
                self.shared.kill(id).await;
                Err(unavailable(
                    "the server did not answer the end of the transaction",
                ))
            }
        }
    }

    /// After a schema change committed the transaction: open a new one (and take the
    /// writer again), so what follows is still inside a transaction.
    pub(super) async fn reopen(&mut self) -> Result<(), SqlError> {
        let shared = self.shared.clone();
        let writer = self.writer;
        let c = self.conn()?;
        let open: Option<(i64,)> = c
            .query_first("SELECT @@in_transaction")
            .await
            .map_err(map_err)?;
        if open.is_some_and(|(o,)| o != 0) {
            return Ok(());
        }
        c.query_drop("BEGIN").await.map_err(map_err)?;
        if writer {
            host_call(&shared, c, LOCK_WRITER, &[]).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SqlTransaction for MyTransaction {
    async fn query(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError> {
        check_guest_in_tx(sql)?;
        let shared = self.shared.clone();
        shared.room(sql, params).await?;
        let c = self.conn()?;
        let r = guest_run(&shared, c, limits, sql, params, true)
            .await
            .map(rowset);
        self.note(r).await
    }

    async fn execute(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        check_guest_in_tx(sql)?;
        let shared = self.shared.clone();
        shared.room(sql, params).await?;
        let c = self.conn()?;
        let r = guest_run(&shared, c, limits, sql, params, false)
            .await
            .map(|o| exec_result(&o));
        self.note(r).await
    }

    /// Schema set-up (a migration, a database-level batch): DDL is accepted here, and
    /// MariaDB commits before each such statement; the transaction is opened again after
    /// it, so only the statements between two schema changes are atomic.
    async fn execute_batch(&mut self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        let pieces = text::split(sql);
        for p in &pieces {
            check_guest(p)?;
        }
        let shared = self.shared.clone();
        shared.room(sql, &[]).await?;
        for p in pieces {
            let ddl = commits_implicitly(p);
            let c = self.conn()?;
            let r = guest_run(&shared, c, limits, p, &[], false).await;
            self.note(r).await?;
            if ddl {
                self.reopen().await?;
            }
        }
        Ok(())
    }

    async fn execute_host(&mut self, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
        let shared = self.shared.clone();
        let c = self.conn()?;
        if is_host_savepoint(sql) {
            // MariaDB spells the release `RELEASE SAVEPOINT name`.
            let sql = match sql.trim_start().strip_prefix("RELEASE ") {
                Some(rest)
                    if !rest
                        .trim_start()
                        .to_ascii_uppercase()
                        .starts_with("SAVEPOINT") =>
                {
                    format!("RELEASE SAVEPOINT {rest}")
                }
                _ => sql.to_string(),
            };
            let r = tokio::time::timeout(Duration::from_secs(30), c.query_drop(sql)).await;
            return match r {
                Ok(Ok(())) => Ok(ExecResult {
                    rows_affected: 0,
                    last_insert_id: None,
                }),
                Ok(Err(e)) => Err(map_err(e)),
                Err(_) => Err(unavailable("the server did not answer a savepoint")),
            };
        }
        let r = host_call(&shared, c, sql, params)
            .await
            .map(|o| exec_result(&o));
        self.note(r).await
    }

    async fn query_host(&mut self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let shared = self.shared.clone();
        let c = self.conn()?;
        let r = host_call(&shared, c, sql, params).await.map(rowset);
        self.note(r).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), SqlError> {
        // A transaction that took the store past its cap (and grew it) is rolled back.
        let shared = self.shared.clone();
        if let Some(cap) = &shared.cap
            && self.writer
            && !self.aborted
            && (cap.due() || cap.is_full())
            && let Some(now) = shared.measure().await
            && cap.grew_past(self.began, now)
        {
            self.finish("ROLLBACK").await?;
            return Err(cap.full(now));
        }
        self.finish("COMMIT").await
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), SqlError> {
        self.finish("ROLLBACK").await
    }
}
