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

use super::sqlite_bounded::Bounds;
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

/// How many VDBE ops run between two checks of the deadline. One op can be one costly
/// function call (up to the length limit's worth of work), so the check is frequent: a
/// statement overruns its budget by at most this many such calls.
const PROGRESS_OPS: i32 = 4;

/// SQLite's run-time limits (`sqlite3_limit`) on one connection. The host's own statements
/// run under [`RunLimits::HOST`]; a guest's statement under [`RunLimits::guest`], set when
/// it is armed and undone when it is disarmed. The progress handler can only stop a
/// statement between two VDBE ops, so these bound what one op can cost: the length limit
/// bounds every value a function builds (`randomblob`, `zeroblob`, `replace`, `printf`,
/// `group_concat`, a row), the pattern limit the work of one `LIKE`/`GLOB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunLimits {
    length: i32,
    sql_length: i32,
    expr_depth: i32,
    compound_select: i32,
    function_arg: i32,
    like_pattern_length: i32,
    variable_number: i32,
    trigger_depth: i32,
    vdbe_op: i32,
}

/// The smallest length limit a guest gets whatever its result cap: room for any value the
/// host itself writes for it (an event's data is at most 1 MiB) and for its schema.
pub const GUEST_MIN_LENGTH: usize = 1 << 20;
/// The largest length limit a guest gets whatever its result cap.
pub const GUEST_MAX_LENGTH: usize = 16 << 20;

impl RunLimits {
    /// The host's statements: values up to 16 MiB (its largest are 1 MiB event payloads
    /// and saga step payloads).
    const HOST: RunLimits = RunLimits {
        length: 16 << 20,
        sql_length: 1 << 20,
        expr_depth: 200,
        compound_select: 50,
        function_arg: 32,
        like_pattern_length: 1000,
        variable_number: 1000,
        trigger_depth: 20,
        vdbe_op: 250_000,
    };

    /// A guest's statement. Its values are at most its service's result cap (`result-kb`:
    /// a larger one could not be read back in one query anyway), clamped to
    /// [`GUEST_MIN_LENGTH`]..=[`GUEST_MAX_LENGTH`]; `LIKE`/`GLOB` patterns at most 1000
    /// bytes (a search text's worth; matching checks the deadline as it goes); programs of at most 5000 VDBE ops
    /// (SQLite checks the deadline only at jumps: this bounds the calls of one
    /// straight-line stretch).
    fn guest(max_result_bytes: usize) -> RunLimits {
        RunLimits {
            length: max_result_bytes.clamp(GUEST_MIN_LENGTH, GUEST_MAX_LENGTH) as i32,
            sql_length: 1 << 20,
            expr_depth: 100,
            compound_select: 50,
            function_arg: 16,
            like_pattern_length: 1000,
            variable_number: 1000,
            trigger_depth: 10,
            vdbe_op: 5_000,
        }
    }

    fn apply(&self, conn: &Connection) {
        // `set_limit` fails only for an unknown limit: these all exist.
        for (limit, value) in [
            (Limit::SQLITE_LIMIT_LENGTH, self.length),
            (Limit::SQLITE_LIMIT_SQL_LENGTH, self.sql_length),
            (Limit::SQLITE_LIMIT_EXPR_DEPTH, self.expr_depth),
            (Limit::SQLITE_LIMIT_COMPOUND_SELECT, self.compound_select),
            (Limit::SQLITE_LIMIT_FUNCTION_ARG, self.function_arg),
            (
                Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH,
                self.like_pattern_length,
            ),
            (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, self.variable_number),
            (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, self.trigger_depth),
            (Limit::SQLITE_LIMIT_VDBE_OP, self.vdbe_op),
        ] {
            let _ = conn.set_limit(limit, value);
        }
    }

    /// The limits in force on `conn`.
    fn of(conn: &Connection) -> RunLimits {
        let get = |l| conn.limit(l).unwrap_or(-1);
        RunLimits {
            length: get(Limit::SQLITE_LIMIT_LENGTH),
            sql_length: get(Limit::SQLITE_LIMIT_SQL_LENGTH),
            expr_depth: get(Limit::SQLITE_LIMIT_EXPR_DEPTH),
            compound_select: get(Limit::SQLITE_LIMIT_COMPOUND_SELECT),
            function_arg: get(Limit::SQLITE_LIMIT_FUNCTION_ARG),
            like_pattern_length: get(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH),
            variable_number: get(Limit::SQLITE_LIMIT_VARIABLE_NUMBER),
            trigger_depth: get(Limit::SQLITE_LIMIT_TRIGGER_DEPTH),
            vdbe_op: get(Limit::SQLITE_LIMIT_VDBE_OP),
        }
    }

    /// A limit error SQLite reports, as the guest sees it: `limit-exceeded` naming the
    /// limit and its value. `None` for any other error.
    fn explain(&self, message: &str) -> Option<String> {
        let m = message.to_ascii_lowercase();
        let (what, name, value) = if m.contains("statement too long") {
            (
                "the statement's text is",
                "SQLITE_LIMIT_SQL_LENGTH",
                self.sql_length,
            )
        } else if m.contains("string or blob too big") || m.contains("string or blob exceeds") {
            (
                "a string, blob or row is",
                "SQLITE_LIMIT_LENGTH, the service's result-kb within 1..=16 MiB",
                self.length,
            )
        } else if m.contains("like or glob pattern too complex") {
            (
                "a LIKE or GLOB pattern is",
                "SQLITE_LIMIT_LIKE_PATTERN_LENGTH",
                self.like_pattern_length,
            )
        } else if m.contains("expression tree is too large") {
            (
                "an expression is nested",
                "SQLITE_LIMIT_EXPR_DEPTH",
                self.expr_depth,
            )
        } else if m.contains("too many terms in compound select") {
            (
                "a compound SELECT has",
                "SQLITE_LIMIT_COMPOUND_SELECT",
                self.compound_select,
            )
        } else if m.contains("too many arguments on function") {
            (
                "a function call has",
                "SQLITE_LIMIT_FUNCTION_ARG",
                self.function_arg,
            )
        } else if m.contains("too many sql variables") {
            (
                "the statement has",
                "SQLITE_LIMIT_VARIABLE_NUMBER",
                self.variable_number,
            )
        } else if m.contains("out of memory") {
            // SQLite reports a program past the op limit as an allocation failure.
            (
                "the statement's program (or the host's memory) is",
                "SQLITE_LIMIT_VDBE_OP",
                self.vdbe_op,
            )
        } else if m.contains("too many levels of trigger recursion") {
            (
                "triggers are nested",
                "SQLITE_LIMIT_TRIGGER_DEPTH",
                self.trigger_depth,
            )
        } else {
            return None;
        };
        let unit = match name {
            "SQLITE_LIMIT_EXPR_DEPTH" | "SQLITE_LIMIT_TRIGGER_DEPTH" => "levels",
            "SQLITE_LIMIT_COMPOUND_SELECT" => "terms",
            "SQLITE_LIMIT_FUNCTION_ARG" => "arguments",
            "SQLITE_LIMIT_VARIABLE_NUMBER" => "parameters",
            "SQLITE_LIMIT_VDBE_OP" => "ops",
            _ => "bytes",
        };
        Some(format!(
            "{what} past the limit of {value} {unit} ({name}): {message}"
        ))
    }
}

/// How a store's files stay within its cap, write-ahead log included.
///
/// SQLite alone bounds only the database (`max_page_count`, here 3/8 of the cap `M`); its
/// log grows until a checkpoint (after 1000 pages by default) and, while readers hold old
/// snapshots, without one. Here:
/// - a guest transaction commits only if the log, with what the commit still has to write
///   (at most one page cache), stays within its budget `B` = M/4: the commit hook turns it
///   into a rollback otherwise, so after any commit the log is at most `B`;
/// - after a commit that left the log over `B`/8, the log is truncated (a checkpoint that
///   readers can delay but not grow: the next commit tries again);
/// - while a transaction runs, its frames in the log are at most its pages, which are at
///   most `max_page_count` (SQLite rewrites a page's frame within one transaction).
///
/// So at any moment: database (≤ 3M/8) + log before the transaction (≤ M/4) + the
/// transaction's frames (≤ 3M/8) ≤ M, and a checkpoint only copies pages the database
/// already counts.
struct WalBudget {
    wal: PathBuf,
    bytes: u64,
    cache_bytes: u64,
    /// A guest statement ran on the writer since the transaction began.
    guest_wrote: AtomicBool,
    /// The last statement or commit was stopped by the budget.
    full: AtomicBool,
}

impl WalBudget {
    fn wal_len(&self) -> u64 {
        std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0)
    }

    /// True (and `full` set) if the log has no room for another page cache.
    fn exhausted(&self) -> bool {
        let over = self.wal_len() + self.cache_bytes > self.bytes;
        if over {
            self.full.store(true, Ordering::Relaxed);
        }
        over
    }
}

/// Which connection of a store: the one writer, or a pooled reader.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

/// A connection with the switches its hooks read.
struct GuardedConn {
    conn: Connection,
    /// True only while the host runs its own statement.
    privileged: Arc<AtomicBool>,
    /// Nanoseconds since [`epoch`] after which the progress handler interrupts.
    deadline: Arc<AtomicU64>,
    /// The writer's log budget (none on readers, which never write).
    wal: Option<Arc<WalBudget>>,
    /// What the bounded string functions read: the deadline and the limits in force.
    bounds: Bounds,
}

impl GuardedConn {
    fn open(path: &Path, config: &SqliteConfig, role: Role) -> Result<Self, SqlError> {
        // No SQLITE_OPEN_URI: the path is a plain file name, never `file:…?vfs=…`.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
        let mut page_size = 4096u64;
        let setup = |page_size: &mut u64| -> rusqlite::Result<()> {
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
            *page_size = conn
                .pragma_query_value(None, "page_size", |r| r.get::<_, u64>(0))?
                .max(512);
            conn.pragma_update(
                None,
                "max_page_count",
                (config.database_bytes() / *page_size).max(1),
            )?;
            if role == Role::Writer {
                let wal = config.wal_bytes();
                conn.pragma_update(None, "journal_size_limit", (wal / 8) as i64)?;
                conn.pragma_update(
                    None,
                    "wal_autocheckpoint",
                    (wal / 8 / *page_size).clamp(1, 1000) as i64,
                )?;
                let cache_kib = (wal / 16 / 1024).clamp(16, 2048);
                conn.pragma_update(None, "cache_size", -(cache_kib as i64))?;
            }
            conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, 500)?;
            conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
            RunLimits::HOST.apply(&conn);
            conn.set_prepared_statement_cache_capacity(64);
            Ok(())
        };
        setup(&mut page_size).map_err(map_err)?;

        let privileged = Arc::new(AtomicBool::new(false));
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let bounds = Bounds {
            deadline: deadline.clone(),
            length: Arc::new(AtomicU64::new(RunLimits::HOST.length as u64)),
            like_pattern_length: Arc::new(AtomicU64::new(
                RunLimits::HOST.like_pattern_length as u64,
            )),
            now: instant_to_nanos,
        };
        super::sqlite_bounded::register(&conn, &bounds).map_err(map_err)?;
        let wal = (role == Role::Writer).then(|| {
            let mut name = path.as_os_str().to_owned();
            name.push("-wal");
            let bytes = config.wal_bytes();
            Arc::new(WalBudget {
                wal: PathBuf::from(name),
                bytes,
                // What one flush of the page cache may append (SQLite keeps at least
                // a few pages, whatever `cache_size` says).
                cache_bytes: ((bytes / 16 / 1024).clamp(16, 2048) * 1024).max(16 * page_size),
                guest_wrote: AtomicBool::new(false),
                full: AtomicBool::new(false),
            })
        });
        let p = privileged.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            authorize(&ctx, p.load(Ordering::Relaxed))
        }));
        let d = deadline.clone();
        conn.progress_handler(
            PROGRESS_OPS,
            Some(move || instant_to_nanos(Instant::now()) > d.load(Ordering::Relaxed)),
        );
        if let Some(w) = &wal {
            let w = w.clone();
            // Rolls back a guest transaction whose log would end up over its budget.
            conn.commit_hook(Some(move || {
                w.guest_wrote.swap(false, Ordering::Relaxed) && w.exhausted()
            }));
        }
        Ok(Self {
            conn,
            privileged,
            deadline,
            wal,
            bounds,
        })
    }

    /// Puts `limits` in force on the connection and for its bounded functions.
    fn set_limits(&self, limits: RunLimits) {
        limits.apply(&self.conn);
        self.bounds
            .length
            .store(limits.length as u64, Ordering::Relaxed);
        self.bounds
            .like_pattern_length
            .store(limits.like_pattern_length as u64, Ordering::Relaxed);
    }

    /// Prepares a guest statement: its time budget and the guest's run-time limits.
    fn arm(&self, limits: &CallLimits) {
        self.deadline.store(
            instant_to_nanos(limits.statement_deadline()),
            Ordering::Relaxed,
        );
        self.set_limits(RunLimits::guest(limits.max_result_bytes));
    }

    /// After a guest statement: no deadline, the host's limits back.
    fn disarm(&self) {
        self.deadline.store(u64::MAX, Ordering::Relaxed);
        self.set_limits(RunLimits::HOST);
    }

    /// Runs `f` with the host's privileges (its own tables reachable), then drops them.
    fn privileged<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        self.privileged.store(true, Ordering::Relaxed);
        let r = f(&self.conn);
        self.privileged.store(false, Ordering::Relaxed);
        r
    }

    /// Runs a guest statement on this connection: unprivileged, and on the writer counted
    /// as a write for the log budget, which the commit hook then checks (once per commit,
    /// not per statement: no file system call on the statement path).
    fn guest<R>(&self, f: impl FnOnce(&Connection) -> Result<R, SqlError>) -> Result<R, SqlError> {
        if let Some(w) = &self.wal {
            w.guest_wrote.store(true, Ordering::Relaxed);
        }
        // A run-time limit's error names the limit and its value.
        f(&self.conn).map_err(|e| {
            let explained = match &e {
                SqlError::LimitExceeded(m) | SqlError::BadQuery(m) | SqlError::Other(m) => {
                    RunLimits::of(&self.conn).explain(m)
                }
                _ => None,
            };
            explained.map_or(e, SqlError::LimitExceeded)
        })
    }

    /// Forgets whether a guest wrote: a transaction (or a statement outside one) begins.
    fn new_transaction(&self) {
        if let Some(w) = &self.wal {
            w.guest_wrote.store(false, Ordering::Relaxed);
            w.full.store(false, Ordering::Relaxed);
        }
    }

    /// Ends the open transaction with `COMMIT` or `ROLLBACK`. A COMMIT the log budget
    /// refused (the commit hook turned it into a rollback) reads as a full store; any
    /// other failed COMMIT is rolled back so the writer is clean.
    fn end(&self, sql: &str) -> Result<(), SqlError> {
        let r = self.privileged(|c| c.execute_batch(sql)).map_err(map_err);
        let full = self
            .wal
            .as_ref()
            .filter(|w| w.full.swap(false, Ordering::Relaxed));
        if r.is_err() && !self.conn.is_autocommit() {
            let _ = self.privileged(|c| c.execute_batch("ROLLBACK"));
        }
        self.new_transaction();
        match (r, full) {
            (Err(_), Some(w)) => Err(wal_full(w)),
            (r, _) => r,
        }
    }

    /// After a commit: truncates the log once it is over an eighth of its budget (readers
    /// that still use it make this a no-op; the next commit tries again). For the default
    /// 1 GiB store that is 32 MiB, past SQLite's own checkpoint at 1000 pages: only small
    /// stores pay for it.
    fn trim_wal(&self) {
        if let Some(w) = &self.wal
            && w.wal_len() > w.bytes / 8
        {
            let _ =
                self.privileged(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())));
        }
    }
}

fn wal_full(w: &WalBudget) -> SqlError {
    SqlError::LimitExceeded(format!(
        "the store is full: the transaction's changes do not fit its write-ahead log's {} KiB \
         (a quarter of max-size-mb)",
        w.bytes / 1024
    ))
}

fn is_host_table(name: &str) -> bool {
    name.len() >= HOST_TABLE_PREFIX.len()
        && name[..HOST_TABLE_PREFIX.len()].eq_ignore_ascii_case(HOST_TABLE_PREFIX)
}

/// Virtual tables that show the file itself (page sizes and contents of every table, the
/// host's included) or the connection's prepared statements (the host's included).
const HIDDEN_TABLES: &[&str] = &["dbstat", "sqlite_dbpage", "sqlite_stmt"];

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
        // TEMP objects live outside the store's file (and its size cap), would outlive the
        // request on a shared connection and could shadow the host's tables: none at all.
        // `CREATE TABLE temp.x` is reported as a plain CREATE TABLE in database `temp`,
        // which the database check below refuses.
        A::CreateTempTable { .. }
        | A::CreateTempIndex { .. }
        | A::CreateTempTrigger { .. }
        | A::CreateTempView { .. }
        | A::DropTempTable { .. }
        | A::DropTempIndex { .. }
        | A::DropTempTrigger { .. }
        | A::DropTempView { .. } => return Authorization::Deny,
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
        A::Read { table_name, .. } => {
            if HIDDEN_TABLES
                .iter()
                .any(|t| t.eq_ignore_ascii_case(table_name))
            {
                return Authorization::Deny;
            }
            table_name
        }
        A::Insert { table_name }
        | A::Update { table_name, .. }
        | A::Delete { table_name }
        | A::CreateTable { table_name }
        | A::DropTable { table_name }
        | A::CreateIndex { table_name, .. }
        | A::DropIndex { table_name, .. }
        | A::CreateTrigger { table_name, .. }
        | A::DropTrigger { table_name, .. }
        | A::AlterTable { table_name, .. }
        | A::Analyze { table_name } => table_name,
        A::CreateView { view_name } | A::DropView { view_name } => view_name,
        A::Reindex { index_name } => index_name,
        A::Select | A::Recursive => return Authorization::Allow,
        _ => return Authorization::Deny,
    };
    // Only the store's own file: never `temp` (TEMP by schema name), never an attachment.
    if is_host_table(table) || ctx.database_name.is_some_and(|d| d != "main") {
        Authorization::Deny
    } else {
        Authorization::Allow
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

/// Rejects what the authorizer cannot see: statements marked as the host's, `VACUUM` (and
/// `VACUUM INTO 'file'`), and schema statements naming the host's `_silo_` namespace.
fn precheck(sql: &str) -> Result<(), SqlError> {
    // The statement cache looks texts up trimmed: so does this check.
    if sql.trim().starts_with(HOST_MARK.trim_end()) {
        return Err(SqlError::AccessDenied(
            "statements marked as the host's are the host's to run".into(),
        ));
    }
    let head = skip_trivia(sql).get(..6).unwrap_or("");
    if head.eq_ignore_ascii_case("vacuum") {
        return Err(SqlError::AccessDenied("VACUUM is the host's to run".into()));
    }
    deny_host_names_in_schema(sql, false)
}

/// Schema statements that name the host's `_silo_` namespace are the host's. The authorizer
/// cannot see all of them: it is told only the old name of a renamed table, and SQLite
/// answers `CREATE … IF NOT EXISTS` for an existing host object before asking it. So any
/// schema statement (and any batch, which is schema work) that names the prefix is refused,
/// wherever the name appears.
fn deny_host_names_in_schema(sql: &str, batch: bool) -> Result<(), SqlError> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains(HOST_TABLE_PREFIX) {
        return Ok(());
    }
    let head = skip_trivia(&lower);
    let schema = ["create", "drop", "alter"]
        .iter()
        .any(|k| head.starts_with(k))
        || lower.contains("rename");
    if batch || schema {
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
        // A view or trigger of the guest's own that names a host table is refused when it
        // is created (a schema statement naming the host's namespace)...
        s.execute(&l, "CREATE TABLE bait (x)", &[]).await.unwrap();
        for sql in [
            "CREATE VIEW peek AS SELECT * FROM _silo_secret",
            "CREATE TRIGGER spill AFTER INSERT ON bait BEGIN INSERT INTO _silo_secret VALUES (1); END",
        ] {
            let e = s.execute(&l, sql, &[]).await.unwrap_err();
            assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
        }
        // ... and were one there, the authorizer checks every table a statement reaches,
        // through views and triggers: the host creates one, the guest uses it.
        let mut tx = s.begin(&l).await.unwrap();
        tx.execute_host(
            "CREATE VIEW main.peek AS SELECT * FROM main._silo_secret",
            &[],
        )
        .await
        .unwrap();
        tx.execute_host(
            "CREATE TRIGGER main.spill AFTER INSERT ON main.bait BEGIN INSERT INTO _silo_secret VALUES (1); END",
            &[],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let e = s.query(&l, "SELECT * FROM peek", &[]).await.unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{e:?}");
        let e = s
            .execute(&l, "INSERT INTO bait VALUES (1)", &[])
            .await
            .unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{e:?}");
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

    /// A guest's statement runs under the guest's limits, and each limit it meets reads as
    /// `limit-exceeded` naming the limit and its value; the host's statements keep theirs.
    #[tokio::test]
    async fn guest_statements_run_under_the_guest_limits() {
        let (_d, s) = store();
        let l = CallLimits {
            max_result_bytes: 1 << 20,
            ..limits()
        };
        let args = ["1"; 17].join(", ");
        let deep = ["1"; 101].join(" + ");
        let compound = ["SELECT 1"; 51].join(" UNION ALL ");
        let params = ["?"; 1001].join(", ");
        let cases = [
            (
                "SELECT randomblob(16000000)".to_string(),
                "SQLITE_LIMIT_LENGTH",
                "1048576 bytes",
            ),
            (
                "SELECT length(zeroblob(2000000) || x'00')".into(),
                "SQLITE_LIMIT_LENGTH",
                "1048576 bytes",
            ),
            (
                "SELECT length(replace(hex(zeroblob(500000)), '0', 'xx'))".into(),
                "SQLITE_LIMIT_LENGTH",
                "1048576 bytes",
            ),
            (
                "SELECT 'a' LIKE printf('%.*c', 1001, '%')".into(),
                "SQLITE_LIMIT_LIKE_PATTERN_LENGTH",
                "1000 bytes",
            ),
            (
                "SELECT 'a' GLOB printf('%.*c', 1001, '*')".into(),
                "SQLITE_LIMIT_LIKE_PATTERN_LENGTH",
                "1000 bytes",
            ),
            (
                format!("SELECT max({args})"),
                "SQLITE_LIMIT_FUNCTION_ARG",
                "16 arguments",
            ),
            (
                format!("SELECT {deep}"),
                "SQLITE_LIMIT_EXPR_DEPTH",
                "100 levels",
            ),
            (compound, "SQLITE_LIMIT_COMPOUND_SELECT", "50 terms"),
            (
                format!(
                    "SELECT CASE random() {} END",
                    (0..3000)
                        .map(|i| format!("WHEN {i} THEN {i}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                "SQLITE_LIMIT_VDBE_OP",
                "5000 ops",
            ),
            (
                format!("SELECT 1 WHERE 1 IN ({params})"),
                "SQLITE_LIMIT_VARIABLE_NUMBER",
                "1000 parameters",
            ),
        ];
        for (sql, limit, value) in &cases {
            let e = s.query(&l, sql, &[]).await.unwrap_err();
            assert!(
                matches!(&e, SqlError::LimitExceeded(m) if m.contains(limit) && m.contains(value)),
                "{}: {e:?}",
                &sql[..sql.len().min(60)]
            );
        }
        // A parameter past the length limit, and one within it.
        s.execute(&l, "CREATE TABLE b (x BLOB)", &[]).await.unwrap();
        let e = s
            .execute(
                &l,
                "INSERT INTO b VALUES (?)",
                &[Value::Blob(vec![0; (1 << 20) + 1])],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SqlError::LimitExceeded(m) if m.contains("SQLITE_LIMIT_LENGTH")),
            "{e:?}"
        );
        s.execute(
            &l,
            "INSERT INTO b VALUES (?)",
            &[Value::Blob(vec![0; 1 << 19])],
        )
        .await
        .unwrap();
        // The service's result cap sets the length limit, within 1..=16 MiB.
        let big = CallLimits {
            max_result_bytes: 4 << 20,
            ..limits()
        };
        s.query(&big, "SELECT length(randomblob(3000000))", &[])
            .await
            .unwrap();
        // Between guest statements of one transaction, the host's statements keep the
        // host's limits: a 2 MiB value (an event payload's row is at most about 1 MiB).
        let mut tx = s.begin(&l).await.unwrap();
        tx.execute(&l, "DELETE FROM b", &[]).await.unwrap();
        tx.execute_host("CREATE TABLE main._silo_big (x BLOB)", &[])
            .await
            .unwrap();
        tx.execute_host(
            "INSERT INTO main._silo_big VALUES (?)",
            &[Value::Blob(vec![1; 2 << 20])],
        )
        .await
        .unwrap();
        let e = tx
            .query(&l, "SELECT length(randomblob(2000000))", &[])
            .await
            .unwrap_err();
        assert!(matches!(e, SqlError::LimitExceeded(_)), "{e:?}");
        let n = tx
            .query_host("SELECT length(x) FROM main._silo_big", &[])
            .await
            .unwrap();
        assert!(matches!(n.rows[0][0], Value::Integer(2097152)));
        tx.commit().await.unwrap();
    }

    /// Statements whose cost is in single costly ops (huge values, quadratic searches,
    /// sorts) end within a few milliseconds of their budget. The bound asserted is generous
    /// for a loaded machine; the figures are printed.
    #[tokio::test]
    async fn costly_statements_stop_within_a_few_ms_of_their_budget() {
        let (_d, s) = store();
        const BUDGET: Duration = Duration::from_millis(20);
        let many = format!(
            "SELECT {} AS n",
            ["length(randomblob(900000))"; 60].join(" + ")
        );
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)";
        // 300 columns of 1 MB copies: straight-line, never checked by SQLite itself.
        let copies = format!(
            "SELECT {}",
            ["length(upper(printf('%.*c', 1000000, 'x')))"; 300].join(", ")
        );
        let statements = [
            copies,
            format!("{endless} SELECT max(length(randomblob(900000))) FROM c"),
            format!("{endless} SELECT length(group_concat(hex(randomblob(1000)))) FROM c"),
            many,
            "SELECT instr(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1')".into(),
            "SELECT length(replace(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1', 'x'))"
                .into(),
            format!(
                "{endless} SELECT sum((hex(zeroblob(499999)) || '1') LIKE ('%' || substr(hex(zeroblob(60)), 1, 97) || '1_')) FROM c"
            ),
            format!(
                "{endless} SELECT sum((hex(zeroblob(499999)) || '1') GLOB ('*' || substr(hex(zeroblob(60)), 1, 97) || '1?')) FROM c"
            ),
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000) SELECT x FROM c ORDER BY hex(randomblob(8)) LIMIT 1 OFFSET 299999"
                .into(),
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 60) SELECT length(k) FROM (SELECT zeroblob(500000) || randomblob(8) AS k FROM c) ORDER BY k LIMIT 1 OFFSET 59"
                .into(),
        ];
        let mut worst = Duration::ZERO;
        let mut figures = Vec::new();
        for sql in &statements {
            let l = CallLimits {
                deadline: Instant::now() + Duration::from_secs(60),
                statement_budget: BUDGET,
                max_result_bytes: 1 << 20,
            };
            let t = Instant::now();
            let r = s.query(&l, sql, &[]).await;
            let took = t.elapsed();
            figures.push(format!(
                "{:>7.1} ms  {}",
                took.as_secs_f64() * 1e3,
                &sql[..sql.len().min(70)]
            ));
            worst = worst.max(took.saturating_sub(BUDGET));
            // Stopped at a limit, or done within its budget.
            assert!(
                matches!(&r, Err(SqlError::LimitExceeded(_))) || (r.is_ok() && took <= BUDGET),
                "{sql}: {r:?} after {took:?}"
            );
        }
        eprintln!(
            "budget {BUDGET:?}, worst overrun {:.1} ms:\n{}",
            worst.as_secs_f64() * 1e3,
            figures.join("\n")
        );
        // Quiet, the worst is a few ms; the bound is for a loaded 2-core machine (before the
        // fix: 150 ms for the straight-line sum, seconds for `instr`).
        assert!(
            worst < Duration::from_millis(100),
            "worst overrun {worst:?}:\n{}",
            figures.join("\n")
        );
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

    fn capped(bytes: u64) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s =
            SqliteStore::open(&dir.path().join("s.db"), SqliteConfig { max_bytes: bytes }).unwrap();
        (dir, s)
    }

    fn files_len(s: &SqliteStore) -> (u64, u64) {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = s.path().as_os_str().to_owned();
        wal.push("-wal");
        (len(s.path()), len(Path::new(&wal)))
    }

    #[tokio::test]
    async fn size_cap_reports_limit_exceeded() {
        let (_d, s) = capped(1 << 20);
        let l = limits();
        s.execute(&l, "CREATE TABLE b (x BLOB)", &[]).await.unwrap();
        let mut last = None;
        for _ in 0..200 {
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
        assert!(
            matches!(&last, Some(SqlError::LimitExceeded(m)) if m.contains("full")),
            "{last:?}"
        );
        // A full store can still free room.
        s.execute(&l, "DELETE FROM b", &[]).await.unwrap();
        s.execute(&l, "INSERT INTO b VALUES (zeroblob(8192))", &[])
            .await
            .unwrap();
    }

    /// The attack: a 1 MiB store whose database stays under its cap while its write-ahead
    /// log grows to four times the cap (SQLite checkpoints only every 1000 pages).
    #[tokio::test]
    async fn the_write_ahead_log_counts_in_the_cap() {
        const CAP: u64 = 1 << 20;
        let (_d, s) = capped(CAP);
        let l = CallLimits {
            deadline: Instant::now() + Duration::from_secs(120),
            ..limits()
        };
        s.execute(&l, "CREATE TABLE b (x BLOB)", &[]).await.unwrap();
        let mut worst = 0;
        for round in 0..30 {
            // Insert 320 KiB and delete it again, in transactions of 80 KiB.
            for _ in 0..4 {
                let mut tx = s.begin(&l).await.unwrap();
                for _ in 0..20 {
                    tx.execute(&l, "INSERT INTO b VALUES (randomblob(4000))", &[])
                        .await
                        .unwrap();
                }
                tx.commit().await.unwrap();
                let (db, wal) = files_len(&s);
                worst = worst.max(db + wal);
            }
            s.execute(&l, "DELETE FROM b", &[]).await.unwrap();
            let (db, wal) = files_len(&s);
            worst = worst.max(db + wal);
            assert!(
                db + wal <= CAP,
                "round {round}: {db} + {wal} bytes over {CAP}"
            );
        }
        assert!(worst <= CAP, "database + log reached {worst} bytes");
        // One transaction larger than the log's share is refused as a full store.
        let mut tx = s.begin(&l).await.unwrap();
        let mut refused = None;
        for _ in 0..200 {
            if let Err(e) = tx
                .execute(&l, "INSERT INTO b VALUES (randomblob(4000))", &[])
                .await
            {
                refused = Some(e);
                break;
            }
        }
        let (db, wal) = files_len(&s);
        assert!(db + wal <= CAP, "during: {db} + {wal} bytes over {CAP}");
        let r = match refused {
            Some(e) => {
                drop(tx);
                Err(e)
            }
            None => tx.commit().await,
        };
        assert!(
            matches!(&r, Err(SqlError::LimitExceeded(m)) if m.contains("the store is full")),
            "{r:?}"
        );
        let (db, wal) = files_len(&s);
        assert!(db + wal <= CAP, "after: {db} + {wal} bytes over {CAP}");
        // A transaction over the log's budget but within the database's is refused at
        // commit, and leaves nothing behind.
        s.execute(&l, "DELETE FROM b", &[]).await.unwrap();
        let mut tx = s.begin(&l).await.unwrap();
        let r = tx
            .execute(&l, "INSERT INTO b VALUES (randomblob(300000))", &[])
            .await;
        let r = match r {
            Ok(_) => tx.commit().await,
            Err(e) => Err(e),
        };
        assert!(
            matches!(&r, Err(SqlError::LimitExceeded(m)) if m.contains("write-ahead log")),
            "{r:?}"
        );
        let n = s.query(&l, "SELECT count(*) FROM b", &[]).await.unwrap();
        assert!(matches!(n.rows[0][0], Value::Integer(0)));
    }

    /// The critical attack: a guest sending the exact text of a host statement got the
    /// host's cached, already-authorized statement back, with the host's rights.
    #[tokio::test]
    async fn host_statement_texts_are_refused_to_guests() {
        let (_d, s) = store();
        let l = limits();
        let mut tx = s.begin(&l).await.unwrap();
        tx.execute_host("CREATE TABLE main._silo_secret (x)", &[])
            .await
            .unwrap();
        tx.execute_host(
            "INSERT INTO main._silo_secret VALUES (?)",
            &[Value::Integer(42)],
        )
        .await
        .unwrap();
        let read = "SELECT x FROM main._silo_secret";
        tx.query_host(read, &[]).await.unwrap();
        // On the writer, in the same transaction: the host's statements are now cached.
        for text in [
            read.to_string(),
            format!("{HOST_MARK}{read}"),
            format!("  {HOST_MARK}{read}  "),
            format!("\n{}{read}", HOST_MARK.trim_end()),
        ] {
            let e = tx.query(&l, &text, &[]).await.unwrap_err();
            assert!(matches!(e, SqlError::AccessDenied(_)), "{text:?}: {e:?}");
        }
        let e = tx
            .execute(
                &l,
                "INSERT INTO main._silo_secret VALUES (?)",
                &[Value::Integer(7)],
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SqlError::AccessDenied(_)), "{e:?}");
        tx.commit().await.unwrap();
        // On a reader: the host's read is cached there too.
        s.query_host(read, &[]).await.unwrap();
        for text in [read.to_string(), format!("{HOST_MARK}{read}")] {
            let e = s.query(&l, &text, &[]).await.unwrap_err();
            assert!(matches!(e, SqlError::AccessDenied(_)), "{text:?}: {e:?}");
        }
    }

    #[tokio::test]
    async fn temp_objects_are_refused_in_every_spelling() {
        let (_d, s) = store();
        let l = limits();
        s.execute(&l, "CREATE TABLE mine (x)", &[]).await.unwrap();
        for sql in [
            "CREATE TEMP TABLE t (x)",
            "CREATE TEMPORARY TABLE t (x)",
            "CREATE TABLE temp.t (x)",
            "CREATE TABLE TEMP.t (x)",
            "CREATE TABLE \"temp\".t (x)",
            "CREATE TABLE [temp].t AS SELECT 1 AS x",
            "CREATE VIEW temp.v AS SELECT 1",
            "CREATE TEMP VIEW v AS SELECT 1",
            "CREATE TRIGGER temp.t AFTER INSERT ON main.mine BEGIN SELECT 1; END",
            "CREATE TEMP TRIGGER t AFTER INSERT ON mine BEGIN SELECT 1; END",
            "INSERT INTO temp.sqlite_master VALUES ('table','t','t',0,'')",
        ] {
            let e = s.execute(&l, sql, &[]).await.unwrap_err();
            assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
        }
    }

    #[tokio::test]
    async fn denied_functions_read_as_access_denied() {
        let (_d, s) = store();
        let l = limits();
        for sql in [
            "SELECT load_extension('/usr/lib/x')",
            "SELECT LOAD_EXTENSION('x', 'init')",
        ] {
            let e = s.query(&l, sql, &[]).await.unwrap_err();
            assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
        }
    }

    #[tokio::test]
    async fn views_of_the_file_are_hidden() {
        let (_d, s) = store();
        let l = limits();
        s.execute(&l, "CREATE TABLE mine (x)", &[]).await.unwrap();
        for sql in [
            "SELECT name, pgsize FROM dbstat",
            "SELECT * FROM DBSTAT WHERE name LIKE '!_silo!_%' ESCAPE '!'",
            "SELECT * FROM main.dbstat",
        ] {
            let e = s.query(&l, sql, &[]).await.unwrap_err();
            assert!(matches!(e, SqlError::AccessDenied(_)), "{sql}: {e:?}");
        }
    }
}
