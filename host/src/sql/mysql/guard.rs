//! What a guest statement may not send to MariaDB, anywhere and inside a transaction,
//! checked before its text reaches the server.

use super::text;
use crate::sql::SqlError;

// ---------------------------------------------------------------------------------------
// Guest statements.

/// Statements a guest may never send.
pub(super) const DENIED_HEADS: &[&str] = &[
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "LOCK",
    "UNLOCK",
    "LOAD",
    "HANDLER",
    "XA",
    "KILL",
    "CALL",
    "DO",
    "USE",
    "FLUSH",
    "RESET",
    "PURGE",
    "CHANGE",
    "SHUTDOWN",
    "INSTALL",
    "UNINSTALL",
    "GRANT",
    "REVOKE",
    "BINLOG",
    "CACHE",
    "BACKUP",
    "SIGNAL",
    "RESIGNAL",
    "GET",
    "HELP",
];

/// Functions on the server's named locks. Those locks are server-wide, shared by every
/// login: a service holding `GET_LOCK('x')` would make another service (or a host) that
/// takes the same name wait, and `IS_USED_LOCK` would show it who holds which.
pub(super) const NAMED_LOCK_FUNCTIONS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
];

/// Statements that commit the open transaction before they run.
pub(super) const IMPLICIT_COMMIT_HEADS: &[&str] = &[
    "CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "ANALYZE", "OPTIMIZE", "REPAIR", "CHECK",
];

/// What a guest may not send anywhere (checked before the text reaches the server).
pub(super) fn check_guest(sql: &str) -> Result<(), SqlError> {
    if text::has_executable_comment(sql) {
        return Err(SqlError::AccessDenied(
            "executable comments (`/*! … */`) are not accepted".into(),
        ));
    }
    if let Some(f) = NAMED_LOCK_FUNCTIONS.iter().find(|f| text::has_word(sql, f)) {
        return Err(SqlError::AccessDenied(format!(
            "`{f}`: the server's named locks are shared by every service on it"
        )));
    }
    let words = text::leading_words(sql, 2);
    let Some(head) = words.first() else {
        if text::split(sql).is_empty() {
            return Err(SqlError::BadQuery("an empty statement".into()));
        }
        return Ok(());
    };
    if DENIED_HEADS.contains(&head.as_str()) {
        return Err(SqlError::AccessDenied(format!(
            "`{head}` is the host's: transactions are the `begin`/`commit` of the sql interface, and session settings are not a service's to change"
        )));
    }
    Ok(())
}

/// True if `sql` would commit an open transaction (DDL; temporary tables excepted).
pub(super) fn commits_implicitly(sql: &str) -> bool {
    let words = text::leading_words(sql, 3);
    let Some(head) = words.first() else {
        return false;
    };
    if !IMPLICIT_COMMIT_HEADS.contains(&head.as_str()) {
        return false;
    }
    let temporary = words.get(1).is_some_and(|w| w == "TEMPORARY")
        || (words.get(1).is_some_and(|w| w == "OR")
            && words.get(2).is_some_and(|w| w == "TEMPORARY"));
    !(temporary && (head == "CREATE" || head == "DROP"))
}

/// What a guest may send inside a transaction.
pub(super) fn check_guest_in_tx(sql: &str) -> Result<(), SqlError> {
    check_guest(sql)?;
    if commits_implicitly(sql) {
        return Err(SqlError::AccessDenied(
            "MariaDB commits the transaction before a schema change: run it outside a transaction (or in a migration)".into(),
        ));
    }
    Ok(())
}

/// Whether a statement outside a transaction only reads (else it runs as a one-statement
/// transaction, taking the writer like any other write).
pub(super) fn reads_only(sql: &str) -> bool {
    let words = text::leading_words(sql, 1);
    matches!(
        words.first().map(String::as_str),
        Some("SELECT" | "SHOW" | "VALUES" | "TABLE" | "EXPLAIN" | "DESCRIBE" | "DESC" | "WITH")
    ) && !text::has_word(sql, "UPDATE")
        && !text::has_word(sql, "LOCK")
        && !text::has_word(sql, "INTO")
        && !text::has_word(sql, "DELETE")
        && !text::has_word(sql, "INSERT")
        && !text::has_word(sql, "REPLACE")
}
