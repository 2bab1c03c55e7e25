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

use super::{
    CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value, value_size,
};

/// Prefix of every table the host keeps inside a service's database.
pub const HOST_TABLE_PREFIX: &str = "_silo_";

/// PRAGMAs a guest may run, and only without a value (they read, never change).
const READ_ONLY_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "user_version",
    "data_version",
    "page_count",
    "page_size",
];

/// Settings of one SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Largest size of the database file, in bytes (`max_page_count`).
    pub max_bytes: u64,
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

/// A connection with the switches its hooks read.
struct GuardedConn {
    conn: Connection,
    /// True only while the host runs its own statement.
    privileged: Arc<AtomicBool>,
    /// Nanoseconds since [`epoch`] after which the progress handler interrupts.
    deadline: Arc<AtomicU64>,
}

impl GuardedConn {
    fn open(path: &Path, config: &SqliteConfig) -> Result<Self, SqlError> {
        // No SQLITE_OPEN_URI: the path is a plain file name, never `file:…?vfs=…`.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
        let setup = || -> rusqlite::Result<()> {
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_WRITABLE_SCHEMA, false)?;
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, true)?;
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let _mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            let page_size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            conn.pragma_update(
                None,
                "max_page_count",
                config.max_bytes / page_size.max(512),
            )?;
            conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, 16 << 20)?;
            conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 1 << 20)?;
            conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, 500)?;
            conn.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, 200)?;
            conn.set_limit(Limit::SQLITE_LIMIT_COMPOUND_SELECT, 50)?;
            conn.set_limit(Limit::SQLITE_LIMIT_VDBE_OP, 250_000)?;
            conn.set_limit(Limit::SQLITE_LIMIT_FUNCTION_ARG, 32)?;
            conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
            conn.set_limit(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1000)?;
            conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 1000)?;
            conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 20)?;
            conn.set_prepared_statement_cache_capacity(64);
            Ok(())
        };
        setup().map_err(map_err)?;

        let privileged = Arc::new(AtomicBool::new(false));
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let p = privileged.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            authorize(&ctx, p.load(Ordering::Relaxed))
        }));
        let d = deadline.clone();
        conn.progress_handler(
            1000,
            Some(move || instant_to_nanos(Instant::now()) > d.load(Ordering::Relaxed)),
        );
        Ok(Self {
            conn,
            privileged,
            deadline,
        })
    }

    fn arm(&self, limits: &CallLimits) {
        self.deadline.store(
            instant_to_nanos(limits.statement_deadline()),
            Ordering::Relaxed,
        );
    }

    fn disarm(&self) {
        self.deadline.store(u64::MAX, Ordering::Relaxed);
    }

    /// Runs `f` with the host's privileges (its own tables reachable), then drops them.
    fn privileged<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        self.privileged.store(true, Ordering::Relaxed);
        let r = f(&self.conn);
        self.privileged.store(false, Ordering::Relaxed);
        r
    }
}

fn is_host_table(name: &str) -> bool {
    name.len() >= HOST_TABLE_PREFIX.len()
        && name[..HOST_TABLE_PREFIX.len()].eq_ignore_ascii_case(HOST_TABLE_PREFIX)
}

/// The authorizer: what a guest statement may do on its own store.
fn authorize(ctx: &AuthContext<'_>, privileged: bool) -> Authorization {
    if privileged {
        return Authorization::Allow;
    }
    use AuthAction as A;
    let table = match ctx.action {
        A::Attach { .. } | A::Detach { .. } => return Authorization::Deny,
        A::Transaction { .. } | A::Savepoint { .. } => return Authorization::Deny,
        A::CreateVtable { .. } | A::DropVtable { .. } => return Authorization::Deny,
        // TEMP objects would outlive the request on a shared connection and could shadow
        // the host's tables: none at all.
        A::CreateTempTable { .. }
        | A::CreateTempIndex { .. }
        | A::CreateTempTrigger { .. }
        | A::CreateTempView { .. } => return Authorization::Deny,
        A::Function { function_name } => {
            let f = function_name.to_ascii_lowercase();
            return if f == "load_extension" || f == "readfile" || f == "writefile" {
                Authorization::Deny
            } else {
                Authorization::Allow
            };
        }
        A::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let allowed = pragma_value.is_none()
                && READ_ONLY_PRAGMAS
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(pragma_name));
            return if allowed {
                Authorization::Allow
            } else {
                Authorization::Deny
            };
        }
        A::Read { table_name, .. }
        | A::Insert { table_name }
        | A::Update { table_name, .. }
        | A::Delete { table_name }
        | A::CreateTable { table_name }
        | A::DropTable { table_name }
        | A::DropTempTable { table_name }
        | A::CreateIndex { table_name, .. }
        | A::DropIndex { table_name, .. }
        | A::DropTempIndex { table_name, .. }
        | A::CreateTrigger { table_name, .. }
        | A::DropTrigger { table_name, .. }
        | A::DropTempTrigger { table_name, .. }
        | A::AlterTable { table_name, .. }
        | A::Analyze { table_name } => table_name,
        A::CreateView { view_name } | A::DropView { view_name } | A::DropTempView { view_name } => {
            view_name
        }
        A::Reindex { index_name } => index_name,
        A::Select | A::Recursive => return Authorization::Allow,
        _ => return Authorization::Deny,
    };
    if is_host_table(table)
        || ctx
            .database_name
            .is_some_and(|d| d != "main" && d != "temp")
    {
        Authorization::Deny
    } else {
        Authorization::Allow
    }
}

/// Maps a rusqlite error to what the guest may see.
fn map_err(e: rusqlite::Error) -> SqlError {
    use rusqlite::ErrorCode as C;
    match &e {
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
        rusqlite::Error::SqlInputError { msg, .. } => SqlError::BadQuery(msg.clone()),
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

/// Skips whitespace and SQL comments at the start of `sql`.
fn skip_trivia(mut sql: &str) -> &str {
    loop {
        let t = sql.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(rest) = t.strip_prefix("--") {
            sql = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else if let Some(rest) = t.strip_prefix("/*") {
            sql = rest.split_once("*/").map(|(_, r)| r).unwrap_or("");
        } else {
            return t;
        }
    }
}

/// Rejects what the authorizer cannot see: `VACUUM` (and `VACUUM INTO 'file'`), and renaming
/// anything into the host's `_silo_` namespace (the authorizer is told only the old name).
fn precheck(sql: &str) -> Result<(), SqlError> {
    let head = skip_trivia(sql).get(..6).unwrap_or("");
    if head.eq_ignore_ascii_case("vacuum") {
        return Err(SqlError::AccessDenied("VACUUM is the host's to run".into()));
    }
    deny_renames_into_host_namespace(sql)
}

/// The authorizer is told only the old name of a renamed table: refuse any statement that
/// renames something and names the host's prefix.
fn deny_renames_into_host_namespace(sql: &str) -> Result<(), SqlError> {
    let lower = sql.to_ascii_lowercase();
    if lower.contains("rename") && lower.contains(HOST_TABLE_PREFIX) {
        return Err(SqlError::AccessDenied(format!(
            "names starting with `{HOST_TABLE_PREFIX}` belong to the host"
        )));
    }
    Ok(())
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
    precheck(sql)?;
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

fn run_execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
    precheck(sql)?;
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
    // A batch runs inside a transaction, where SQLite itself refuses VACUUM.
    deny_renames_into_host_namespace(sql)?;
    conn.execute_batch(sql).map_err(map_err)
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
        let writer = GuardedConn::open(path, &config)?;
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
        GuardedConn::open(&self.path, &self.config)
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
        let r = f(&w);
        w.disarm();
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
        let r = run_query(&reader.conn, limits, sql, params, true);
        reader.disarm();
        self.put_reader(reader);
        match r? {
            Some(rows) => Ok(rows),
            // A statement that writes (INSERT … RETURNING) runs on the writer.
            None => {
                self.with_writer(limits, |w| {
                    run_query(&w.conn, limits, sql, params, false).map(|r| {
                        r.unwrap_or_else(|| RowSet {
                            columns: vec![],
                            rows: vec![],
                        })
                    })
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
        self.with_writer(limits, |w| run_execute(&w.conn, sql, params))
            .await
    }

    async fn execute_batch(&self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        self.with_writer(limits, |w| {
            w.privileged(|c| c.execute_batch("BEGIN IMMEDIATE"))
                .map_err(map_err)?;
            let r = run_batch(&w.conn, sql);
            let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
            w.privileged(|c| c.execute_batch(end)).map_err(map_err)?;
            r
        })
        .await
    }

    async fn query_host(&self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let reader = self.take_reader()?;
        let r = reader.privileged(|c| run_query(c, &host_limits(), sql, params, true));
        self.put_reader(reader);
        r?.ok_or_else(|| SqlError::BadQuery("query_host reads; it cannot write".into()))
    }

    async fn begin(&self, limits: &CallLimits) -> Result<Box<dyn SqlTransaction>, SqlError> {
        let w = self.lock_writer(limits).await?;
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
        let r = w.privileged(|c| c.execute_batch(sql)).map_err(map_err);
        if r.is_err() && !w.conn.is_autocommit() {
            // A failed COMMIT leaves the transaction open: end it so the writer is clean.
            let _ = w.privileged(|c| c.execute_batch("ROLLBACK"));
        }
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
        let r = run_query(&w.conn, limits, sql, params, false);
        w.disarm();
        Ok(r?.unwrap_or(RowSet {
            columns: vec![],
            rows: vec![],
        }))
    }

    async fn execute(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        let w = self.conn()?;
        w.arm(limits);
        let r = run_execute(&w.conn, sql, params);
        w.disarm();
        tokio::task::yield_now().await;
        r
    }

    async fn execute_batch(&mut self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        let w = self.conn()?;
        w.arm(limits);
        let r = run_batch(&w.conn, sql);
        w.disarm();
        r
    }

    async fn execute_host(&mut self, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
        let w = self.conn()?;
        w.privileged(|c| run_execute(c, sql, params))
    }

    async fn query_host(&mut self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let w = self.conn()?;
        w.privileged(|c| run_query(c, &host_limits(), sql, params, false))
            .map(|r| {
                r.unwrap_or(RowSet {
                    columns: vec![],
                    rows: vec![],
                })
            })
    }

    async fn commit(mut self: Box<Self>) -> Result<(), SqlError> {
        self.finish("COMMIT")
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), SqlError> {
        self.finish("ROLLBACK")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> CallLimits {
        CallLimits {
            deadline: Instant::now() + Duration::from_secs(5),
            statement_budget: std::time::Duration::from_secs(3600),
            max_result_bytes: 1 << 20,
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db"), SqliteConfig::default()).unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn typed_values_round_trip() {
        let (_d, s) = store();
        let l = limits();
        s.execute(
            &l,
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)",
            &[],
        )
        .await
        .unwrap();
        let params = [
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 1, 255]),
            Value::Null,
        ];
        let r = s
            .execute(&l, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", &params)
            .await
            .unwrap();
        assert_eq!(r.rows_affected, 1);
        let rows = s
            .query(&l, "SELECT i, r, s, b, n FROM t", &[])
            .await
            .unwrap();
        assert_eq!(rows.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(rows.rows.len(), 1);
        assert!(matches!(rows.rows[0][0], Value::Integer(-7)));
        assert!(matches!(&rows.rows[0][2], Value::Text(t) if t == "héllo"));
        assert!(matches!(&rows.rows[0][3], Value::Blob(b) if b == &[0, 1, 255]));
        assert!(matches!(rows.rows[0][4], Value::Null));
    }

    #[tokio::test]
    async fn dropped_transaction_rolls_back_and_commit_persists() {
        let (_d, s) = store();
        let l = limits();
        s.execute(&l, "CREATE TABLE t (x INTEGER)", &[])
            .await
            .unwrap();
        let mut tx = s.begin(&l).await.unwrap();
        tx.execute(&l, "INSERT INTO t VALUES (1)", &[])
            .await
            .unwrap();
        drop(tx);
        let n = s.query(&l, "SELECT count(*) FROM t", &[]).await.unwrap();
        assert!(matches!(n.rows[0][0], Value::Integer(0)));
        let mut tx = s.begin(&l).await.unwrap();
        tx.execute(&l, "INSERT INTO t VALUES (2)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let n = s.query(&l, "SELECT count(*) FROM t", &[]).await.unwrap();
        assert!(matches!(n.rows[0][0], Value::Integer(1)));
    }

    #[tokio::test]
    async fn errors_are_classified() {
        let (_d, s) = store();
        let l = limits();
        s.execute(&l, "CREATE TABLE u (e TEXT UNIQUE)", &[])
            .await
            .unwrap();
        s.execute(&l, "INSERT INTO u VALUES ('a')", &[])
            .await
            .unwrap();
        let e = s
            .execute(&l, "INSERT INTO u VALUES ('a')", &[])
            .await
            .unwrap_err();
        assert!(matches!(e, SqlError::ConstraintViolation(_)), "{e:?}");
        let e = s.query(&l, "SELEC nonsense", &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::BadQuery(_)), "{e:?}");
        let e = s.query(&l, "SELECT * FROM missing", &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::BadQuery(_)), "{e:?}");
        let e = s.query(&l, "SELECT ?", &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::BadQuery(_)), "{e:?}");
    }

    #[tokio::test]
    async fn guest_statements_cannot_escape_the_store() {
        let (d, s) = store();
        let l = limits();
        let other = d.path().join("other.db");
        for sql in [
            format!("ATTACH DATABASE '{}' AS o", other.display()),
            format!("VACUUM INTO '{}'", other.display()),
            "  vacuum".to_string(),
            "SELECT load_extension('x')".to_string(),
            "PRAGMA writable_schema = 1".to_string(),
            "PRAGMA journal_mode = OFF".to_string(),
            "PRAGMA max_page_count = 999999999".to_string(),
            "BEGIN".to_string(),
            "COMMIT".to_string(),
            "CREATE TABLE _silo_outbox (x)".to_string(),
            "/* hidden */ VACUUM INTO '/tmp/x.db'".to_string(),
            "-- hidden\nVACUUM".to_string(),
            "CREATE TEMP TABLE shadow (x)".to_string(),
            "CREATE TEMP VIEW v AS SELECT 1".to_string(),
            "CREATE TABLE _SILO_x (x)".to_string(),
        ] {
            let e = s.execute(&l, &sql, &[]).await.unwrap_err();
            assert!(
                matches!(e, SqlError::AccessDenied(_) | SqlError::BadQuery(_)),
                "{sql}: {e:?}"
            );
        }
        assert!(!other.exists(), "no file may be created outside the store");
        // The host's own tables exist but a guest cannot read or write them.
        let mut tx = s.begin(&l).await.unwrap();
        tx.execute_host("CREATE TABLE _silo_secret (x)", &[])
            .await
            .unwrap();
        tx.execute_host("INSERT INTO _silo_secret VALUES (42)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for sql in [
            "SELECT * FROM _silo_secret",
            "SELECT * FROM main._silo_secret",
            "SELECT * FROM \"_SILO_SECRET\"",
            "DELETE FROM _silo_secret",
            "UPDATE _silo_secret SET x = 1",
            "DROP TABLE _silo_secret",
            "ALTER TABLE _silo_secret RENAME TO stolen",
            "CREATE TRIGGER t AFTER INSERT ON _silo_secret BEGIN SELECT 1; END",
            "CREATE INDEX i ON _silo_secret (x)",
        ] {
            let e = s.query(&l, sql, &[]).await.err();
            let e2 = s.execute(&l, sql, &[]).await.err();
            assert!(e.is_some() && e2.is_some(), "{sql} must fail");
        }
        // A view or trigger of the guest's own may name a host table, but using it fails:
        // the authorizer checks every table a statement reaches, through views and triggers.
        s.execute(&l, "CREATE VIEW peek AS SELECT * FROM _silo_secret", &[])
            .await
            .ok();
        assert!(s.query(&l, "SELECT * FROM peek", &[]).await.is_err());
        s.execute(&l, "CREATE TABLE bait (x)", &[]).await.unwrap();
        s.execute(
            &l,
            "CREATE TRIGGER spill AFTER INSERT ON bait BEGIN INSERT INTO _silo_secret VALUES (1); END",
            &[],
        )
        .await
        .ok();
        assert!(
            s.execute(&l, "INSERT INTO bait VALUES (1)", &[])
                .await
                .is_err()
        );
        let mut tx = s.begin(&l).await.unwrap();
        let n = tx
            .query_host("SELECT count(*) FROM _silo_secret", &[])
            .await
            .unwrap();
        assert!(
            matches!(n.rows[0][0], Value::Integer(1)),
            "host table untouched"
        );
        tx.rollback().await.unwrap();
        // Nothing can be renamed into the host's namespace.
        s.execute(&l, "CREATE TABLE mine2 (x)", &[]).await.unwrap();
        for sql in [
            "ALTER TABLE mine2 RENAME TO _silo_planted",
            "ALTER TABLE mine2 RENAME TO \"_SILO_planted\"",
            "ALTER TABLE main.mine2 RENAME TO [_silo_x]",
        ] {
            let e = s.execute(&l, sql, &[]).await.unwrap_err();
            assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
        }
        // Read-only PRAGMAs are fine.
        s.execute(&l, "CREATE TABLE mine (x)", &[]).await.unwrap();
        let info = s.query(&l, "PRAGMA table_info(mine)", &[]).await;
        assert!(info.is_err() || info.unwrap().rows.len() == 1);
    }

    #[tokio::test]
    async fn runaway_query_stops_at_the_deadline() {
        let (_d, s) = store();
        let l = CallLimits {
            deadline: Instant::now() + Duration::from_millis(200),
            statement_budget: std::time::Duration::from_secs(3600),
            max_result_bytes: 1 << 20,
        };
        let t = Instant::now();
        let e = s
            .query(
                &l,
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                 SELECT count(*) FROM c",
                &[],
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SqlError::LimitExceeded(_)), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn result_size_is_capped() {
        let (_d, s) = store();
        let l = CallLimits {
            deadline: Instant::now() + Duration::from_secs(5),
            statement_budget: std::time::Duration::from_secs(3600),
            max_result_bytes: 10_000,
        };
        let e = s
            .query(
                &l,
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000) \
                 SELECT x, 'padding padding' FROM c",
                &[],
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SqlError::LimitExceeded(_)), "{e:?}");
    }

    #[tokio::test]
    async fn size_cap_reports_limit_exceeded() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(
            &dir.path().join("s.db"),
            SqliteConfig {
                max_bytes: 64 * 1024,
            },
        )
        .unwrap();
        let l = limits();
        s.execute(&l, "CREATE TABLE b (x BLOB)", &[]).await.unwrap();
        let mut last = None;
        for _ in 0..100 {
            if let Err(e) = s
                .execute(
                    &l,
                    "INSERT INTO b VALUES (?)",
                    &[Value::Blob(vec![7; 8192])],
                )
                .await
            {
                last = Some(e);
                break;
            }
        }
        assert!(matches!(last, Some(SqlError::LimitExceeded(_))), "{last:?}");
    }
}
