//! The portable SQL silo accepts, as MariaDB spells it: what the demo services' schemas
//! write once for every backend (SQLite's forms) becomes the server's own here.
//!
//! - `INTEGER PRIMARY KEY [AUTOINCREMENT]`, a key the server assigns, is `BIGINT
//!   AUTO_INCREMENT PRIMARY KEY` (a plain `BIGINT` key if it has a `CHECK`, which MariaDB
//!   refuses beside `AUTO_INCREMENT`);
//! - type names: `INTEGER`/`INT` are `BIGINT` (SQLite's integers have 64 bits), `REAL` is
//!   `DOUBLE`, `BLOB` is `LONGBLOB`; a `TEXT` primary key is `VARCHAR(255)` (MariaDB keys no
//!   `TEXT`; `UNIQUE` on `TEXT` it does take);
//! - a new table keyed by anything else (a text id) gets an invisible column `rowid`
//!   (`AUTO_INCREMENT`), so that `ORDER BY rowid` lists its rows in the order they were
//!   created, as on SQLite (`SELECT *` and an `INSERT` without a column list do not see it).

use std::borrow::Cow;

use crate::sql::server::{PortableForms, portable_ddl};

const FORMS: PortableForms = PortableForms {
    auto_key: "BIGINT AUTO_INCREMENT",
    rowid_column: "rowid BIGINT NOT NULL AUTO_INCREMENT INVISIBLE UNIQUE",
    types: &[
        ("INTEGER", "BIGINT"),
        ("INT", "BIGINT"),
        ("REAL", "DOUBLE"),
        ("BLOB", "LONGBLOB"),
    ],
    key_text: Some("VARCHAR(255)"),
    auto_key_checked: false,
    backslash_escapes: true,
};

/// A guest statement as MariaDB takes it (only schema changes ever differ).
pub(super) fn translate(sql: &str) -> Cow<'_, str> {
    portable_ddl(sql, &FORMS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_gets_server_types_and_a_creation_order() {
        assert_eq!(
            translate(
                "CREATE TABLE products (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, price INTEGER NOT NULL CHECK (price >= 0))"
            ),
            "CREATE TABLE products (id VARCHAR(255) PRIMARY KEY, name TEXT NOT NULL UNIQUE, price BIGINT NOT NULL CHECK (price >= 0), rowid BIGINT NOT NULL AUTO_INCREMENT INVISIBLE UNIQUE)"
        );
    }

    #[test]
    fn an_integer_primary_key_is_assigned_by_the_server_unless_checked() {
        assert_eq!(
            translate(
                "CREATE TABLE seen (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, n REAL, b BLOB)"
            ),
            "CREATE TABLE seen (seq BIGINT AUTO_INCREMENT PRIMARY KEY , id TEXT, n DOUBLE, b LONGBLOB)"
        );
        assert_eq!(
            translate("CREATE TABLE s (id INTEGER PRIMARY KEY CHECK (id = 1), t INTEGER)"),
            "CREATE TABLE s (id BIGINT PRIMARY KEY CHECK (id = 1), t BIGINT)"
        );
    }

    #[test]
    fn added_columns_get_server_types() {
        assert_eq!(
            translate("ALTER TABLE t ADD COLUMN v INTEGER NOT NULL DEFAULT 0"),
            "ALTER TABLE t ADD COLUMN v BIGINT NOT NULL DEFAULT 0"
        );
    }

    #[test]
    fn literals_names_and_other_statements_are_left_alone() {
        for sql in [
            "SELECT CAST(x AS INTEGER) FROM t ORDER BY rowid",
            "INSERT INTO t (a) VALUES ('it\\'s INTEGER PRIMARY KEY')",
            "CREATE TABLE t (`rowid` BIGINT, a VARCHAR(9) PRIMARY KEY)",
            "CREATE TABLE t (a BIGINT, b LONGTEXT)",
            "CREATE TABLE t (id BIGINT AUTO_INCREMENT PRIMARY KEY, b LONGTEXT)",
        ] {
            assert_eq!(translate(sql), sql);
        }
    }
}
