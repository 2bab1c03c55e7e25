//! What a guest statement may not send to PostgreSQL, checked before its text reaches the
//! server, and the guest text as the server gets it.

use crate::sql::SqlError;

use super::{portable, text};

/// Statements whose first keyword a guest may not send.
pub(super) const DENIED_HEADS: &[&str] = &[
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "DISCARD",
    "SET",
    "RESET",
    "LISTEN",
    "UNLISTEN",
    "NOTIFY",
    "COPY",
    "LOAD",
    "CHECKPOINT",
    "VACUUM",
];

/// What a guest may not send (checked before the text reaches the server).
pub(super) fn check_guest(sql: &str) -> Result<(), SqlError> {
    let head = text::first_word(sql);
    if head.is_empty() {
        // `(SELECT …)`, or nothing at all.
        if text::split(sql).is_empty() {
            return Err(SqlError::BadQuery("an empty statement".into()));
        }
        return Ok(());
    }
    if head == "SET" && text::second_word(sql) == "CONSTRAINTS" {
        return Ok(());
    }
    if head == "EXPLAIN" {
        // EXPLAIN ANALYZE counts the rows row-level security hides (`Rows Removed by
        // Filter` on the host's tables), and plain EXPLAIN shows the planner's estimates of
        // them: refused whatever its options (`ANALYZE`, `(ANALYZE)`, `(analyse true)`, …).
        return Err(SqlError::AccessDenied(
            "`EXPLAIN` is not available to services: its counts include rows the store hides"
                .into(),
        ));
    }
    if DENIED_HEADS.contains(&head.as_str()) {
        return Err(SqlError::AccessDenied(format!(
            "`{head}` is the host's: transactions are the `begin`/`commit` of the sql interface, and session settings are not a service's to change"
        )));
    }
    Ok(())
}

/// A guest statement rewritten for PostgreSQL (`?` → `$n`, and the portable forms of
/// [`portable`]).
pub(super) fn guest_sql(sql: &str) -> Result<String, SqlError> {
    check_guest(sql)?;
    Ok(text::placeholders(&portable::translate(sql)).0)
}
