//! What bounds one SQLite connection: run-time limits per statement, the write-ahead log
//! budget, and the guarded connection whose hooks read them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::hooks::AuthContext;
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags, config::DbConfig};

use super::authorizer::authorize;
use super::bounded::Bounds;
use super::clock::instant_to_nanos;
use super::config::SqliteConfig;
use super::errors::map_err;
use crate::sql::{CallLimits, SqlError};

/// How many VDBE ops run between two checks of the deadline. One op can be one costly
/// function call (up to the length limit's worth of work), so the check is frequent: a
/// statement overruns its budget by at most this many such calls.
pub(super) const PROGRESS_OPS: i32 = 4;

/// SQLite's run-time limits (`sqlite3_limit`) on one connection. The host's own statements
/// run under [`RunLimits::HOST`]; a guest's statement under [`RunLimits::guest`], set when
/// it is armed and undone when it is disarmed. The progress handler can only stop a
/// statement between two VDBE ops, so these bound what one op can cost: the length limit
/// bounds every value a function builds (`randomblob`, `zeroblob`, `replace`, `printf`,
/// `group_concat`, a row), the pattern limit the work of one `LIKE`/`GLOB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RunLimits {
    pub(super) length: i32,
    pub(super) sql_length: i32,
    pub(super) expr_depth: i32,
    pub(super) compound_select: i32,
    pub(super) function_arg: i32,
    pub(super) like_pattern_length: i32,
    pub(super) variable_number: i32,
    pub(super) trigger_depth: i32,
    pub(super) vdbe_op: i32,
}

/// The smallest length limit a guest gets whatever its result cap: room for any value the
/// host itself writes for it (an event's data is at most 1 MiB) and for its schema.
pub const GUEST_MIN_LENGTH: usize = 1 << 20;
/// The largest length limit a guest gets whatever its result cap.
pub const GUEST_MAX_LENGTH: usize = 16 << 20;

impl RunLimits {
    /// The host's statements: values up to 16 MiB (its largest are 1 MiB event payloads
    /// and saga step payloads).
    pub(super) const HOST: RunLimits = RunLimits {
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
    pub(super) fn guest(max_result_bytes: usize) -> RunLimits {
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

    pub(super) fn apply(&self, conn: &Connection) {
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
    pub(super) fn of(conn: &Connection) -> RunLimits {
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
    pub(super) fn explain(&self, message: &str) -> Option<String> {
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
pub(super) struct WalBudget {
    pub(super) wal: PathBuf,
    pub(super) bytes: u64,
    pub(super) cache_bytes: u64,
    /// A guest statement ran on the writer since the transaction began.
    pub(super) guest_wrote: AtomicBool,
    /// The last statement or commit was stopped by the budget.
    pub(super) full: AtomicBool,
}

impl WalBudget {
    pub(super) fn wal_len(&self) -> u64 {
        std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0)
    }

    /// True (and `full` set) if the log has no room for another page cache.
    pub(super) fn exhausted(&self) -> bool {
        let over = self.wal_len() + self.cache_bytes > self.bytes;
        if over {
            self.full.store(true, Ordering::Relaxed);
        }
        over
    }
}

/// Which connection of a store: the one writer, or a pooled reader.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Writer,
    Reader,
}

/// A connection with the switches its hooks read.
pub(super) struct GuardedConn {
    pub(super) conn: Connection,
    /// True only while the host runs its own statement.
    pub(super) privileged: Arc<AtomicBool>,
    /// Nanoseconds since [`epoch`] after which the progress handler interrupts.
    pub(super) deadline: Arc<AtomicU64>,
    /// The writer's log budget (none on readers, which never write).
    pub(super) wal: Option<Arc<WalBudget>>,
    /// What the bounded string functions read: the deadline and the limits in force.
    pub(super) bounds: Bounds,
}

impl GuardedConn {
    pub(super) fn open(path: &Path, config: &SqliteConfig, role: Role) -> Result<Self, SqlError> {
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
        super::bounded::register(&conn, &bounds).map_err(map_err)?;
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
    pub(super) fn set_limits(&self, limits: RunLimits) {
        limits.apply(&self.conn);
        self.bounds
            .length
            .store(limits.length as u64, Ordering::Relaxed);
        self.bounds
            .like_pattern_length
            .store(limits.like_pattern_length as u64, Ordering::Relaxed);
    }

    /// Prepares a guest statement: its time budget and the guest's run-time limits.
    pub(super) fn arm(&self, limits: &CallLimits) {
        self.deadline.store(
            instant_to_nanos(limits.statement_deadline()),
            Ordering::Relaxed,
        );
        self.set_limits(RunLimits::guest(limits.max_result_bytes));
    }

    /// After a guest statement: no deadline, the host's limits back.
    pub(super) fn disarm(&self) {
        self.deadline.store(u64::MAX, Ordering::Relaxed);
        self.set_limits(RunLimits::HOST);
    }

    /// Runs `f` with the host's privileges (its own tables reachable), then drops them.
    pub(super) fn privileged<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        self.privileged.store(true, Ordering::Relaxed);
        let r = f(&self.conn);
        self.privileged.store(false, Ordering::Relaxed);
        r
    }

    /// Runs a guest statement on this connection: unprivileged, and on the writer counted
    /// as a write for the log budget, which the commit hook then checks (once per commit,
    /// not per statement: no file system call on the statement path).
    pub(super) fn guest<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, SqlError>,
    ) -> Result<R, SqlError> {
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
    pub(super) fn new_transaction(&self) {
        if let Some(w) = &self.wal {
            w.guest_wrote.store(false, Ordering::Relaxed);
            w.full.store(false, Ordering::Relaxed);
        }
    }

    /// Ends the open transaction with `COMMIT` or `ROLLBACK`. A COMMIT the log budget
    /// refused (the commit hook turned it into a rollback) reads as a full store; any
    /// other failed COMMIT is rolled back so the writer is clean.
    pub(super) fn end(&self, sql: &str) -> Result<(), SqlError> {
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
    pub(super) fn trim_wal(&self) {
        if let Some(w) = &self.wal
            && w.wal_len() > w.bytes / 8
        {
            let _ =
                self.privileged(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())));
        }
    }
}

pub(super) fn wal_full(w: &WalBudget) -> SqlError {
    SqlError::LimitExceeded(format!(
        "the store is full: the transaction's changes do not fit its write-ahead log's {} KiB \
         (a quarter of max-size-mb)",
        w.bytes / 1024
    ))
}
