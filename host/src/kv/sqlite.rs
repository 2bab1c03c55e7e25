//! The embedded key-value backend: one SQLite file per store, a single table.
//!
//! Operations are single short statements on one connection behind a mutex; expired keys
//! are invisible at once and swept out on writes.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::KvStore;
use crate::sql::error::SqlError;

/// Milliseconds since the Unix epoch, the unit of the expiry column (a clock read of its
/// own, so that `kv` imports nothing of `events` or `delivery`).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One SQLite key-value store.
pub struct SqliteKv {
    conn: Mutex<Connection>,
    writes: AtomicU64,
    /// Largest value one `set` may write: an eighth of the store's cap, so that the
    /// write-ahead log (checkpointed and truncated at another eighth) stays in its quarter.
    max_value: usize,
}

fn err(e: rusqlite::Error) -> SqlError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            SqlError::Unavailable(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            SqlError::LimitExceeded(format!("the store is full: {e}"))
        }
        _ => SqlError::Other(e.to_string()),
    }
}

impl SqliteKv {
    /// Opens (creating if needed) the store's file. The caller chose the path. `max_bytes`
    /// bounds the store's files on disk, the database and its write-ahead log together:
    /// three quarters for the database (`max_page_count`), a quarter for the log.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, SqlError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SqlError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let page_size: u64 = conn
            .pragma_query_value(None, "page_size", |r| r.get::<_, u64>(0))
            .map_err(err)?
            .max(512);
        let eighth = max_bytes / 8;
        conn.pragma_update(
            None,
            "max_page_count",
            (max_bytes / 4 * 3 / page_size).max(8),
        )
        .map_err(err)?;
        // One connection and no readers: every checkpoint completes, and the next write
        // truncates the log to `journal_size_limit`.
        conn.pragma_update(None, "journal_size_limit", eighth as i64)
            .map_err(err)?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            (eighth / page_size).clamp(1, 1000) as i64,
        )
        .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                key TEXT PRIMARY KEY,
                value BLOB NOT NULL,
                expires_ms INTEGER
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_ms) WHERE expires_ms IS NOT NULL;",
        )
        .map_err(err)?;
        Ok(Self {
            conn: Mutex::new(conn),
            writes: AtomicU64::new(0),
            max_value: (eighth as usize).saturating_sub(page_size as usize),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, SqlError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| SqlError::Unavailable("the store is poisoned".into()))?;
        f(&conn).map_err(err)
    }
}

/// The smallest string greater than every string starting with `prefix`, if any.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl KvStore for SqliteKv {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn get(&self, _deadline: Instant, key: &str) -> Result<Option<Vec<u8>>, SqlError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT value FROM kv WHERE key = ? AND (expires_ms IS NULL OR expires_ms > ?)",
            )?
            .query_row(params![key, now_ms()], |r| r.get(0))
            .optional()
        })
    }

    async fn set(
        &self,
        _deadline: Instant,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), SqlError> {
        if key.len() + value.len() > self.max_value {
            return Err(SqlError::LimitExceeded(format!(
                "the store is full: one entry may take at most {} bytes here (an eighth of \
                 the store's max-size-mb)",
                self.max_value
            )));
        }
        let now = now_ms();
        let expires = ttl_ms.map(|t| now.saturating_add(t.min(i64::MAX as u64) as i64));
        let sweep = self
            .writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(256);
        let upsert = |c: &Connection| {
            c.prepare_cached(
                "INSERT INTO kv (key, value, expires_ms) VALUES (?, ?, ?)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_ms = excluded.expires_ms",
            )?
            .execute(params![key, value, expires])
        };
        let expire = |c: &Connection| {
            c.prepare_cached("DELETE FROM kv WHERE expires_ms <= ?")?
                .execute(params![now])
        };
        self.with(|c| {
            match upsert(c) {
                // Full: expired entries still take room until swept; sweep, then try again.
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DiskFull && expire(c)? > 0 =>
                {
                    upsert(c)?;
                }
                r => {
                    r?;
                    if sweep {
                        expire(c)?;
                    }
                }
            }
            Ok(())
        })
    }

    async fn delete(&self, _deadline: Instant, key: &str) -> Result<bool, SqlError> {
        self.with(|c| {
            let live = c
                .prepare_cached(
                    "DELETE FROM kv WHERE key = ? AND (expires_ms IS NULL OR expires_ms > ?)",
                )?
                .execute(params![key, now_ms()])?;
            c.prepare_cached("DELETE FROM kv WHERE key = ?")?
                .execute(params![key])?;
            Ok(live > 0)
        })
    }

    async fn list_keys(
        &self,
        _deadline: Instant,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, SqlError> {
        let end = prefix_end(prefix);
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key FROM kv WHERE key >= ?1 AND (?2 IS NULL OR key < ?2)
                   AND (expires_ms IS NULL OR expires_ms > ?3)
                 ORDER BY key LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![prefix, end, now_ms(), limit], |r| r.get(0))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attack: the embedded kv store had no size cap at all.
    #[tokio::test]
    async fn the_store_stays_within_its_cap() {
        const CAP: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let kv = SqliteKv::open(&path, CAP).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let value = vec![7u8; 60_000];
        let mut refused = None;
        for i in 0..200 {
            match kv.set(deadline, &format!("k{i}"), &value, None).await {
                Ok(()) => {}
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert!(
            matches!(&refused, Some(SqlError::LimitExceeded(m)) if m.contains("the store is full")),
            "{refused:?}"
        );
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let wal = dir.path().join("kv.db-wal");
        assert!(
            len(&path) + len(&wal) <= CAP,
            "{} + {}",
            len(&path),
            len(&wal)
        );
        // A value past an eighth of the cap is refused before it is written.
        let e = kv.set(deadline, "big", &vec![0u8; 200_000], None).await;
        assert!(matches!(&e, Err(SqlError::LimitExceeded(_))), "{e:?}");
        // Deleting frees room.
        assert!(kv.delete(deadline, "k0").await.unwrap());
        assert!(kv.delete(deadline, "k1").await.unwrap());
        kv.set(deadline, "again", &value, None).await.unwrap();
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("user:"), Some("user;".into()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".into()));
    }
}
