//! The embedded default backend: one SQLite file per store, hardened per SQLite's own
//! security guidance (<https://sqlite.org/security.html>).
//!
//! Concurrency: one writer connection per store behind an async mutex (a transaction holds
//! the guard, so other requests *await* the writer instead of blocking a runtime thread on
//! SQLite's busy handler), and a small pool of reader connections for read-only statements
//! outside transactions (WAL mode lets them run beside the writer).
//!
//! Hardening, on every connection: opened without URI parsing at a path the host chose;
//! `SQLITE_DBCONFIG_DEFENSIVE` on, `trusted_schema` off, extension loading never enabled;
//! length, depth and count limits; `max_page_count` as the store's size cap; a progress
//! handler that interrupts a statement once the request's deadline passes; and an authorizer
//! that denies ATTACH/DETACH, transaction control, PRAGMAs outside a read-only list, and any
//! access to the host-owned `_silo_*` tables unless the host itself is running the statement.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, config::DbConfig};

use self::authorizer::{authorize, deny_host_names_in_schema, precheck};
use self::bounded::Bounds;
use self::limits::{GuardedConn, Role};
use super::{
    CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value, value_size,
};

/// Prefix of every table the host keeps inside a service's database.
pub const HOST_TABLE_PREFIX: &str = "_silo_";

/// Settings of one SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Largest size of the store's files on disk, in bytes: the database file and its
    /// write-ahead log together, at every moment (see [`WalBudget`] for how the cap splits).
    pub max_bytes: u64,
}

impl SqliteConfig {
    /// The database file's share of the cap: 3/8 (`max_page_count`).
    fn database_bytes(&self) -> u64 {
        self.max_bytes / 8 * 3
    }

    /// What the write-ahead log may hold once a transaction has committed: 1/4.
    fn wal_bytes(&self) -> u64 {
        self.max_bytes / 4
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self { max_bytes: 1 << 30 }
    }
}

/// Process-wide origin for deadlines kept in atomics.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn instant_to_nanos(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Every host statement's text starts with this comment, and a guest statement that starts
/// with it is refused. SQLite authorizes a statement when it is prepared, and a connection
/// caches prepared statements by their exact text: without the mark, a guest sending the
/// host's text (it is public, in this source) would get the host's already-authorized
/// statement back from the cache, with the host's rights.
const HOST_MARK: &str = "/*silo:host*/ ";

/// The cache key of a host statement: its text behind [`HOST_MARK`].
fn host_text(sql: &str) -> String {
    record_host_statement(sql);
    let mut text = String::with_capacity(HOST_MARK.len() + sql.len());
    text.push_str(HOST_MARK);
    text.push_str(sql);
    text
}

/// `SILO_RECORD_HOST_SQL=FILE` appends each distinct host statement text the SQLite backend
/// runs to `FILE`, one JSON string a line: the isolation tests and `silo demo isolation`
/// send every one of them back as guest SQL and expect `access-denied`.
fn record_host_statement(sql: &str) {
    type Seen = std::sync::Mutex<(std::collections::HashSet<String>, std::fs::File)>;
    static RECORD: std::sync::OnceLock<Option<Seen>> = std::sync::OnceLock::new();
    let record = RECORD.get_or_init(|| {
        let path = std::env::var_os("SILO_RECORD_HOST_SQL")?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()?;
        Some(std::sync::Mutex::new((Default::default(), file)))
    });
    if let Some(seen) = record {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.0.insert(sql.to_string()) {
            use std::io::Write;
            let line = serde_json::to_string(sql).unwrap_or_default();
            let _ = writeln!(seen.1, "{line}");
        }
    }
}

/// What SQLite says when the authorizer denies a function: it reports it as a plain
/// SQLITE_ERROR, not SQLITE_AUTH.
const FUNCTION_DENIED: &str = "not authorized to use function";

/// Maps a rusqlite error to what the guest may see.
fn map_err(e: rusqlite::Error) -> SqlError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(_, Some(msg))
        | rusqlite::Error::SqlInputError { msg, .. }
            if msg.starts_with(FUNCTION_DENIED) =>
        {
            SqlError::AccessDenied(msg.clone())
        }
        rusqlite::Error::SqliteFailure(f, msg) => {
            let m = msg.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                C::ConstraintViolation => SqlError::ConstraintViolation(m),
                C::AuthorizationForStatementDenied | C::PermissionDenied => {
                    SqlError::AccessDenied(m)
                }
                C::DatabaseBusy | C::DatabaseLocked => SqlError::Unavailable(m),
                C::OperationInterrupted => SqlError::LimitExceeded(
                    "the statement ran past its time budget or the request's deadline".into(),
                ),
                C::DiskFull => SqlError::LimitExceeded(format!("the store is full: {m}")),
                C::TooBig => SqlError::LimitExceeded(m),
                C::SystemIoFailure | C::CannotOpen | C::NotADatabase | C::DatabaseCorrupt => {
                    SqlError::Unavailable(m)
                }
                C::Unknown | C::ApiMisuse | C::TypeMismatch => SqlError::BadQuery(m),
                _ => SqlError::Other(m),
            }
        }
        // A statement refused while it is prepared: by the authorizer (SQLITE_AUTH), or
        // because it does not parse or names what does not exist.
        rusqlite::Error::SqlInputError { error, msg, .. } => match error.code {
            C::AuthorizationForStatementDenied | C::PermissionDenied => {
                SqlError::AccessDenied(msg.clone())
            }
            _ => SqlError::BadQuery(msg.clone()),
        },
        rusqlite::Error::ExecuteReturnedResults => {
            SqlError::BadQuery("the statement returns rows: use `query`".into())
        }
        rusqlite::Error::MultipleStatement => {
            SqlError::BadQuery("one statement per call (use `execute-batch` for several)".into())
        }
        rusqlite::Error::InvalidParameterCount(got, want) => SqlError::BadQuery(format!(
            "the statement has {want} parameters, {got} were given"
        )),
        rusqlite::Error::InvalidParameterName(_) | rusqlite::Error::InvalidColumnType(..) => {
            SqlError::BadQuery(e.to_string())
        }
        _ => SqlError::Other(e.to_string()),
    }
}

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

fn run_query(
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
fn guest_query(
    conn: &Connection,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
    need_readonly: bool,
) -> Result<Option<RowSet>, SqlError> {
    precheck(sql)?;
    run_query(conn, limits, sql, params, need_readonly)
}

fn guest_execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
    precheck(sql)?;
    run_execute(conn, sql, params)
}

fn run_execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
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

fn run_batch(conn: &Connection, sql: &str) -> Result<(), SqlError> {
    // A batch runs inside a transaction, where SQLite itself refuses VACUUM. It is never
    // cached, so it cannot meet a host statement.
    deny_host_names_in_schema(sql, true)?;
    conn.execute_batch(sql).map_err(map_err)
}

/// What a statement that returns no rows answers to `query`.
fn no_rows() -> RowSet {
    RowSet {
        columns: vec![],
        rows: vec![],
    }
}

/// No time or size limit: the host's own statements.
fn host_limits() -> CallLimits {
    CallLimits {
        deadline: Instant::now() + std::time::Duration::from_secs(3600),
        statement_budget: std::time::Duration::from_secs(3600),
        max_result_bytes: usize::MAX,
    }
}

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

mod authorizer;
mod bounded;
mod limits;
#[cfg(test)]
mod tests;
