//! The settings of one SQLite store and how its size cap splits between the database
//! file and the write-ahead log.

/// Settings of one SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Largest size of the store's files on disk, in bytes: the database file and its
    /// write-ahead log together, at every moment (see [`WalBudget`] for how the cap splits).
    pub max_bytes: u64,
}

impl SqliteConfig {
    /// The database file's share of the cap: 3/8 (`max_page_count`).
    pub(super) fn database_bytes(&self) -> u64 {
        self.max_bytes / 8 * 3
    }

    /// What the write-ahead log may hold once a transaction has committed: 1/4.
    pub(super) fn wal_bytes(&self) -> u64 {
        self.max_bytes / 4
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self { max_bytes: 1 << 30 }
    }
}
