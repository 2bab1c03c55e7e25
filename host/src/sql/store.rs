//! The `sql` backend traits and the host objects behind a guest's `database` and
//! `transaction` handles.
//!
//! Apart from `mod.rs` because the generated bindings name [`Database`] and [`Transaction`]:
//! this file imports only the generated WIT types (`wit_types`) and [`SqlError`], nothing of
//! the bindings, so the bindings and the capability do not import each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;

use super::error::SqlError;
use crate::wit_types::{ExecResult, RowSet, Value};

/// The per-call budget a backend enforces: the request's deadline, the longest one statement
/// may run (a runaway query is interrupted at whichever comes first; an embedded backend
/// runs on a thread of the service's own executor, so this is also the longest one statement
/// can hold up its service's other requests there), and the largest result it may build.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub deadline: Instant,
    pub statement_budget: std::time::Duration,
    pub max_result_bytes: usize,
}

impl CallLimits {
    /// When a statement starting now must stop.
    pub fn statement_deadline(&self) -> Instant {
        self.deadline.min(Instant::now() + self.statement_budget)
    }
}

/// One store of one service, as a backend serves it. Implementations are shared by every
/// request of the service and must be cheap to call concurrently.
#[async_trait]
pub trait SqlStore: Send + Sync + 'static {
    /// The backend's name as the manifest spells it (`sqlite`, …).
    fn backend(&self) -> &'static str;
    /// Runs one statement that returns rows, outside any transaction.
    async fn query(
        &self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError>;
    /// Runs one statement that changes data or schema, outside any transaction.
    async fn execute(
        &self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError>;
    /// Runs `;`-separated statements without parameters, atomically.
    async fn execute_batch(&self, limits: &CallLimits, sql: &str) -> Result<(), SqlError>;
    /// Opens a transaction; while it lives it is the store's only writer.
    async fn begin(&self, limits: &CallLimits) -> Result<Box<dyn SqlTransaction>, SqlError>;
    /// Runs a read of the host's own (the event router's outbox scans) that may read the
    /// host-owned `_silo_*` tables, outside any transaction and without taking the writer.
    /// Host statements are in the backend's own dialect, written by `host_tables`.
    async fn query_host(&self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError>;
}

/// An open transaction. Dropping it without [`SqlTransaction::commit`] rolls it back.
#[async_trait]
pub trait SqlTransaction: Send + 'static {
    async fn query(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError>;
    async fn execute(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError>;
    /// Runs guest-level statements (checked like any guest statement) without parameters.
    async fn execute_batch(&mut self, limits: &CallLimits, sql: &str) -> Result<(), SqlError>;
    /// Runs a statement of the host's own, in the backend's own dialect (`host_tables`
    /// writes them), that may touch the host-owned `_silo_*` tables no guest statement can
    /// reach.
    async fn execute_host(&mut self, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError>;
    /// Same as [`SqlTransaction::execute_host`] for a statement returning rows.
    async fn query_host(&mut self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError>;
    async fn commit(self: Box<Self>) -> Result<(), SqlError>;
    async fn rollback(self: Box<Self>) -> Result<(), SqlError>;
}

/// A service's relational stores by declared name, shared by its requests.
pub type SqlStores = Arc<HashMap<String, Arc<dyn SqlStore>>>;

/// The host object behind a guest's `database` handle.
pub struct Database {
    pub(super) name: String,
    pub(super) store: Arc<dyn SqlStore>,
    pub(super) tx_open: Arc<AtomicBool>,
}

/// The host object behind a guest's `transaction` handle.
pub struct Transaction {
    /// The declared name of the store it is on.
    pub(super) store: Arc<str>,
    pub(super) inner: Option<Box<dyn SqlTransaction>>,
    pub(super) tx_open: Arc<AtomicBool>,
    /// What to wake once it commits: the outbox an event was published into, the saga
    /// log a saga was started in.
    pub(crate) on_commit: Vec<Arc<tokio::sync::Notify>>,
    /// An event was published in it / a saga was started in it (for the failpoints).
    pub(crate) published: bool,
    pub(crate) started_saga: bool,
}

impl Transaction {
    /// The declared name of the store it is on.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The open backend transaction, or `invalid-handle` once it has ended.
    pub(crate) fn inner_mut(&mut self) -> Result<&mut Box<dyn SqlTransaction>, SqlError> {
        self.inner
            .as_mut()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))
    }

    /// Takes the backend transaction back from a handle the host lent to a guest (an event
    /// handler's): the guest can no longer reach it, and the host commits or rolls it back.
    /// Also returns what to wake once it commits (see [`Transaction::wake_on_commit`]).
    pub fn reclaim(
        mut self,
    ) -> (
        Option<Box<dyn SqlTransaction>>,
        Vec<Arc<tokio::sync::Notify>>,
    ) {
        self.tx_open.store(false, Ordering::Release);
        (self.inner.take(), std::mem::take(&mut self.on_commit))
    }

    /// Wakes `n` once this transaction commits (an outbox or saga log it wrote to).
    pub(crate) fn wake_on_commit(&mut self, n: &Arc<tokio::sync::Notify>) {
        if !self.on_commit.iter().any(|m| Arc::ptr_eq(m, n)) {
            self.on_commit.push(n.clone());
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // The backend's own drop rolls back an unfinished transaction.
        self.inner.take();
        self.tx_open.store(false, Ordering::Release);
    }
}
