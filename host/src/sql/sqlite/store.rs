//! One SQLite store: its writer behind an async mutex, its pool of readers, and its
//! transactions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::config::SqliteConfig;
use super::errors::map_err;
use super::host_sql::host_text;
use super::limits::{GuardedConn, Role};
use super::statements::{
    guest_execute, guest_query, host_limits, no_rows, run_batch, run_execute, run_query,
};
use crate::sql::{CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value};

/// One SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    config: SqliteConfig,
    writer: Arc<tokio::sync::Mutex<GuardedConn>>,
    readers: std::sync::Mutex<Vec<GuardedConn>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store's file. The caller chose the path.
    pub fn open(path: &Path, config: SqliteConfig) -> Result<Self, SqlError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SqlError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let writer = GuardedConn::open(path, &config, Role::Writer)?;
        Ok(Self {
            path: path.to_path_buf(),
            config,
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn take_reader(&self) -> Result<GuardedConn, SqlError> {
        if let Some(c) = self.readers.lock().expect("reader pool").pop() {
            return Ok(c);
        }
        GuardedConn::open(&self.path, &self.config, Role::Reader)
    }

    fn put_reader(&self, c: GuardedConn) {
        let mut pool = self.readers.lock().expect("reader pool");
        if pool.len() < 16 {
            pool.push(c);
        }
    }

    async fn lock_writer(
        &self,
        limits: &CallLimits,
    ) -> Result<tokio::sync::OwnedMutexGuard<GuardedConn>, SqlError> {
        tokio::time::timeout_at(limits.deadline.into(), self.writer.clone().lock_owned())
            .await
            .map_err(|_| {
                SqlError::Unavailable("the store's writer stayed busy past the deadline".into())
            })
    }

    /// Runs `f` on the writer outside any guest transaction, then lets the other requests
    /// of this thread run (a write may have blocked it on the disk).
    async fn with_writer<R>(
        &self,
        limits: &CallLimits,
        f: impl FnOnce(&GuardedConn) -> Result<R, SqlError>,
    ) -> Result<R, SqlError> {
        let w = self.lock_writer(limits).await?;
        w.arm(limits);
        w.new_transaction();
        let r = f(&w);
        w.disarm();
        w.new_transaction();
        w.trim_wal();
        drop(w);
        tokio::task::yield_now().await;
        r
    }
}

#[async_trait]
impl SqlStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn query(
        &self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError> {
        let reader = self.take_reader()?;
        reader.arm(limits);
        let r = reader.guest(|c| guest_query(c, limits, sql, params, true));
        reader.disarm();
        self.put_reader(reader);
        // As after a write: the other requests of this thread run before the guest's next
        // statement (a statement may have held the thread for its whole budget).
        tokio::task::yield_now().await;
        match r? {
            Some(rows) => Ok(rows),
            // A statement that writes (INSERT … RETURNING) runs on the writer.
            None => {
                self.with_writer(limits, |w| {
                    w.guest(|c| guest_query(c, limits, sql, params, false))
                        .map(|r| r.unwrap_or_else(no_rows))
                })
                .await
            }
        }
    }

    async fn execute(
        &self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        self.with_writer(limits, |w| w.guest(|c| guest_execute(c, sql, params)))
            .await
    }

    async fn execute_batch(&self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        self.with_writer(limits, |w| {
            w.privileged(|c| c.execute_batch("BEGIN IMMEDIATE"))
                .map_err(map_err)?;
            let r = w.guest(|c| run_batch(c, sql));
            let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
            let ended = w.end(end);
            r.and(ended)
        })
        .await
    }

    async fn query_host(&self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let reader = self.take_reader()?;
        let text = host_text(sql);
        let r = reader.privileged(|c| run_query(c, &host_limits(), &text, params, true));
        self.put_reader(reader);
        r?.ok_or_else(|| SqlError::BadQuery("query_host reads; it cannot write".into()))
    }

    async fn begin(&self, limits: &CallLimits) -> Result<Box<dyn SqlTransaction>, SqlError> {
        let w = self.lock_writer(limits).await?;
        w.new_transaction();
        w.privileged(|c| c.execute_batch("BEGIN IMMEDIATE"))
            .map_err(map_err)?;
        Ok(Box::new(SqliteTransaction { writer: Some(w) }))
    }
}

/// A transaction: holds the store's writer until it ends.
struct SqliteTransaction {
    writer: Option<tokio::sync::OwnedMutexGuard<GuardedConn>>,
}

impl SqliteTransaction {
    fn conn(&self) -> Result<&GuardedConn, SqlError> {
        self.writer
            .as_deref()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))
    }

    fn finish(&mut self, sql: &str) -> Result<(), SqlError> {
        let w = self
            .writer
            .take()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))?;
        let r = w.end(sql);
        w.trim_wal();
        r
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.finish("ROLLBACK");
        }
    }
}

#[async_trait]
impl SqlTransaction for SqliteTransaction {
    async fn query(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError> {
        let w = self.conn()?;
        w.arm(limits);
        let r = w.guest(|c| guest_query(c, limits, sql, params, false));
        w.disarm();
        Ok(r?.unwrap_or_else(no_rows))
    }

    async fn execute(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        let w = self.conn()?;
        w.arm(limits);
        let r = w.guest(|c| guest_execute(c, sql, params));
        w.disarm();
        tokio::task::yield_now().await;
        r
    }

    async fn execute_batch(&mut self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        let w = self.conn()?;
        w.arm(limits);
        let r = w.guest(|c| run_batch(c, sql));
        w.disarm();
        r
    }

    async fn execute_host(&mut self, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
        let w = self.conn()?;
        let text = host_text(sql);
        w.privileged(|c| run_execute(c, &text, params))
    }

    async fn query_host(&mut self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let w = self.conn()?;
        let text = host_text(sql);
        w.privileged(|c| run_query(c, &host_limits(), &text, params, false))
            .map(|r| r.unwrap_or_else(no_rows))
    }

    async fn commit(mut self: Box<Self>) -> Result<(), SqlError> {
        self.finish("COMMIT")
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), SqlError> {
        self.finish("ROLLBACK")
    }
}
