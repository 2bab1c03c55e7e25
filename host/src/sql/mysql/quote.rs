//! Quoting of identifiers and string literals in the statements the host writes itself.

/// An identifier, quoted.
pub(super) fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A string literal (for names, hex secrets and paths the host made).
pub(super) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}
