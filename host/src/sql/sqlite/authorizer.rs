//! What a guest statement may touch on its own SQLite store: the authorizer, and the checks
//! of statement text made before SQLite sees it.

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use super::host_sql::{HOST_MARK, HOST_TABLE_PREFIX};
use crate::sql::SqlError;

/// PRAGMAs a guest may run, and only without a value (they read, never change).
pub(super) const READ_ONLY_PRAGMAS: &[&str] = &[
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

pub(super) fn is_host_table(name: &str) -> bool {
    name.len() >= HOST_TABLE_PREFIX.len()
        && name[..HOST_TABLE_PREFIX.len()].eq_ignore_ascii_case(HOST_TABLE_PREFIX)
}

/// Virtual tables that show the file itself (page sizes and contents of every table, the
/// host's included) or the connection's prepared statements (the host's included).
pub(super) const HIDDEN_TABLES: &[&str] = &["dbstat", "sqlite_dbpage", "sqlite_stmt"];

/// The authorizer: what a guest statement may do on its own store.
pub(super) fn authorize(ctx: &AuthContext<'_>, privileged: bool) -> Authorization {
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

/// Skips whitespace and SQL comments at the start of `sql`.
pub(super) fn skip_trivia(mut sql: &str) -> &str {
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
pub(super) fn precheck(sql: &str) -> Result<(), SqlError> {
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
pub(super) fn deny_host_names_in_schema(sql: &str, batch: bool) -> Result<(), SqlError> {
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
