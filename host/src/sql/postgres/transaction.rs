//! A PostgreSQL transaction (or a lease of a connection for one statement), and the gate
//! its host statements pass through.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use crate::sql::server::{SizeCap, reads_or_frees};
use crate::sql::{CallLimits, ExecResult, RowSet, SqlError, SqlTransaction, Value, value_size};

use super::errors::{map_err, unavailable};
use super::pool::{Object, Pool};
use super::statements::{
    check_params, guest_batch, guest_execute, guest_query, host_deadline, measure, prepare,
    query_rows, run, vacuum,
};
use super::text;
use super::values::Param;

pub(super) const OPEN_GATE: &str = "SELECT pg_catalog.set_config('silo.path', pg_catalog.current_setting('search_path'), true), \
     pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true), \
     pg_catalog.set_config('silo.key', $1, true)";
pub(super) const CLOSE_GATE: &str = "SELECT pg_catalog.set_config('silo.key', '', true), \
     pg_catalog.set_config('search_path', pg_catalog.current_setting('silo.path'), true)";

/// What a host statement returns.
pub(super) enum HostOut {
    Rows(RowSet),
    Done(ExecResult),
}

/// Runs a host statement inside the open transaction on `client`, with the gate open for
/// it alone (one round trip: the three statements are pipelined).
pub(super) async fn host_in_tx(
    client: &Object,
    key: &str,
    sql: &str,
    params: &[Value],
    rows: bool,
) -> Result<HostOut, SqlError> {
    let open = prepare(client, OPEN_GATE).await?;
    let close = prepare(client, CLOSE_GATE).await?;
    let stmt = prepare(client, sql).await?;
    check_params(&stmt, params)?;
    let key = key.to_string();
    let key_param: [&(dyn ToSql + Sync); 1] = [&key];
    let opened = client.query(&open, &key_param);
    let work = async {
        if rows {
            query_rows(client, &stmt, params, usize::MAX)
                .await
                .map(HostOut::Rows)
        } else {
            let n = client
                .execute_raw(&stmt, params.iter().map(Param))
                .await
                .map_err(map_err)?;
            Ok(HostOut::Done(ExecResult {
                rows_affected: n,
                last_insert_id: None,
            }))
        }
    };
    let closed = client.query(&close, &[]);
    let (o, w, c) = tokio::join!(opened, work, closed);
    o.map_err(map_err)?;
    let out = w?;
    c.map_err(map_err)?;
    Ok(out)
}

/// A transaction (or a lease of a connection for one statement outside any): holds one
/// pooled connection until it ends.
pub(super) struct PgTransaction {
    pub(super) client: Option<Object>,
    pub(super) key: Arc<str>,
    /// A transaction was (or may have been) begun on the connection: it goes back to the
    /// pool only after a clean rollback.
    pub(super) in_tx: bool,
    /// The store's size cap, what the store measured when this began, and whether it ran
    /// a statement that makes room (for a full store, which then vacuums after it).
    pub(super) cap: Option<Arc<SizeCap>>,
    pub(super) began: Option<u64>,
    pub(super) freed: bool,
    pub(super) pool: Pool,
    /// A statement failed and the server aborted the transaction: `commit` rolls back and
    /// says so (PostgreSQL itself would answer a COMMIT of it with a silent ROLLBACK).
    pub(super) aborted: bool,
    /// A statement was sent and its answer not yet taken: if the transaction is dropped
    /// now (its request was), that statement may still be running on the server.
    pub(super) busy: bool,
}

impl PgTransaction {
    pub(super) fn client(&self) -> Result<&Object, SqlError> {
        self.client
            .as_ref()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))
    }

    /// After a failed statement: is the transaction still usable? (A statement refused
    /// before it reached the server leaves it so; one the server ran does not.)
    pub(super) async fn note<T>(&mut self, r: Result<T, SqlError>) -> Result<T, SqlError> {
        self.busy = false;
        if r.is_err()
            && !self.aborted
            && let Some(c) = self.client.as_ref()
        {
            let probe = tokio::time::timeout(Duration::from_secs(5), c.batch_execute("SELECT 1"));
            self.aborted = !matches!(probe.await, Ok(Ok(())));
        }
        r
    }

    /// Refuses a guest statement that could grow a store that is full (measuring it first
    /// if the last measurement is stale or near the cap); reads and what makes room pass.
    pub(super) async fn room(&mut self, sql: &str, params: &[Value]) -> Result<(), SqlError> {
        let Some(cap) = self.cap.clone() else {
            return Ok(());
        };
        let pieces = text::split(sql);
        let heads: Vec<String> = pieces.iter().map(|p| text::first_word(p)).collect();
        if heads
            .iter()
            .any(|h| matches!(h.as_str(), "DELETE" | "DROP" | "TRUNCATE"))
        {
            self.freed = true;
        }
        if heads.iter().all(|h| reads_or_frees(h)) {
            return Ok(());
        }
        cap.sent(sql.len() + params.iter().map(value_size).sum::<usize>());
        if cap.due()
            && let Ok(c) = self.client()
        {
            measure(c, &cap).await;
        }
        match cap.last() {
            Some(bytes) if cap.is_full() => Err(cap.full(bytes)),
            _ => Ok(()),
        }
    }

    /// Before a commit: a transaction that took the store past its cap (and grew it) is
    /// rolled back instead. A store that was full and had room made vacuums, so the room
    /// made by a `DELETE` counts (dropping or truncating frees at once).
    pub(super) async fn check_cap_at_commit(&mut self) -> Result<(), SqlError> {
        let Some(cap) = self.cap.clone() else {
            return Ok(());
        };
        if !(cap.due() || cap.is_full()) {
            return Ok(());
        }
        let Some(now) = measure(self.client()?, &cap).await else {
            return Ok(());
        };
        if cap.grew_past(self.began, now) {
            self.finish("ROLLBACK").await?;
            return Err(cap.full(now));
        }
        Ok(())
    }

    pub(super) async fn finish(&mut self, sql: &str) -> Result<(), SqlError> {
        let c = self
            .client
            .take()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))?;
        match tokio::time::timeout(Duration::from_secs(30), c.batch_execute(sql)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // The connection's state is unknown: it does not go back to the pool.
                drop(Object::take(c));
                Err(map_err(e))
            }
            Err(_) => {
                drop(Object::take(c));
                Err(unavailable(
                    "the server did not answer the end of the transaction",
                ))
            }
        }
    }
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        let Some(c) = self.client.take() else {
            return;
        };
        // Roll back before the connection goes back to the pool; without a runtime to do
        // it on, the connection is closed instead (the server rolls back). If a statement
        // may still be running (its request was dropped mid-call, or while it waited for
        // the writer lock), cancel it, so it does not hold the store's writer lock until
        // it ends on its own, terminate its process if the cancel does not stop it, and
        // close the connection: a cancel the server delivers late must not hit the next
        // borrower's statement.
        let (busy, in_tx) = (self.busy, self.in_tx);
        if c.broken.load(Ordering::Acquire) {
            drop(Object::take(c));
            return;
        }
        if !busy && !in_tx {
            return; // `c` goes back to the pool as it is: nothing ran on it that is not over
        }
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    if busy {
                        c.cancel_or_terminate().await;
                        drop(Object::take(c));
                        return;
                    }
                    let rolled_back =
                        tokio::time::timeout(Duration::from_secs(10), c.batch_execute("ROLLBACK"))
                            .await;
                    if !matches!(rolled_back, Ok(Ok(()))) {
                        drop(Object::take(c));
                    }
                });
            }
            Err(_) => drop(Object::take(c)),
        }
    }
}

#[async_trait]
impl SqlTransaction for PgTransaction {
    async fn query(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError> {
        self.room(sql, params).await?;
        self.busy = true;
        let r = guest_query(self.client()?, limits, sql, params).await;
        self.note(r).await
    }

    async fn execute(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        self.room(sql, params).await?;
        self.busy = true;
        let r = guest_execute(self.client()?, limits, sql, params).await;
        self.note(r).await
    }

    async fn execute_batch(&mut self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        self.room(sql, &[]).await?;
        self.busy = true;
        let r = guest_batch(self.client()?, limits, sql).await;
        self.note(r).await
    }

    async fn execute_host(&mut self, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
        self.busy = true;
        let c = self.client()?;
        let head = sql.trim_start();
        // Savepoints of the host's own (an event's rollback point) need no gate.
        if head.starts_with("SAVEPOINT ")
            || head.starts_with("RELEASE ")
            || head.starts_with("ROLLBACK TO ")
        {
            let r = run(c, host_deadline(), async {
                c.batch_execute(sql).await.map_err(map_err)
            })
            .await;
            if r.is_ok() && head.starts_with("ROLLBACK TO ") {
                // Back at the savepoint: the failure it undid no longer dooms the rest.
                self.aborted = false;
            }
            let r = r.map(|()| ExecResult {
                rows_affected: 0,
                last_insert_id: None,
            });
            return self.note(r).await;
        }
        let key = self.key.clone();
        let r = run(c, host_deadline(), host_in_tx(c, &key, sql, params, false))
            .await
            .map(|out| match out {
                HostOut::Done(r) => r,
                HostOut::Rows(_) => ExecResult {
                    rows_affected: 0,
                    last_insert_id: None,
                },
            });
        self.note(r).await
    }

    async fn query_host(&mut self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        self.busy = true;
        let c = self.client()?;
        let key = self.key.clone();
        let r = run(c, host_deadline(), host_in_tx(c, &key, sql, params, true))
            .await
            .map(|out| match out {
                HostOut::Rows(r) => r,
                HostOut::Done(_) => RowSet {
                    columns: vec![],
                    rows: vec![],
                },
            });
        self.note(r).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), SqlError> {
        if self.aborted {
            self.finish("ROLLBACK").await?;
            return Err(SqlError::BadQuery(
                "the transaction was rolled back: a statement in it failed, and PostgreSQL aborts the whole transaction on an error".into(),
            ));
        }
        self.check_cap_at_commit().await?;
        self.finish("COMMIT").await?;
        if self.freed
            && let Some(cap) = self.cap.clone()
            && cap.is_full()
        {
            tokio::spawn(vacuum(self.pool.clone(), cap));
        }
        Ok(())
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), SqlError> {
        self.finish("ROLLBACK").await
    }
}
