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

mod authorizer;
mod bounded;
mod clock;
mod config;
mod errors;
mod host_sql;
mod limits;
mod statements;
mod store;
#[cfg(test)]
mod tests;

pub use self::config::SqliteConfig;
pub use self::host_sql::HOST_TABLE_PREFIX;
pub use self::store::SqliteStore;
