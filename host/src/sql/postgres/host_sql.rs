//! The rewriting of the host's own statements (written in SQLite's dialect) for PostgreSQL.

use super::*;

/// Rewrites a host statement (SQLite-flavoured: `main._silo_x`, `?`, `rowid`) for
/// PostgreSQL. Host DDL is applied at provisioning, so it becomes `None` (nothing to run).
pub(super) fn host_sql(sql: &str) -> Option<String> {
    let head = sql.trim_start();
    if head.starts_with("CREATE TABLE IF NOT EXISTS main._silo_")
        || head.starts_with("CREATE INDEX IF NOT EXISTS main._silo_")
    {
        return None;
    }
    let s = sql
        .replace("main._silo_", "silo_host._silo_")
        .replace("rowid", "rid");
    Some(text::placeholders(&s).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_statements_are_rewritten() {
        assert_eq!(
            host_sql("SELECT rowid, id FROM main._silo_sagas WHERE rowid > ? AND x = ?").unwrap(),
            "SELECT rid, id FROM silo_host._silo_sagas WHERE rid > $1 AND x = $2"
        );
        assert!(host_sql("CREATE TABLE IF NOT EXISTS main._silo_inbox (x)").is_none());
    }
}
