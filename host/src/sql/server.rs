//! What the database-server backends (PostgreSQL, MariaDB) share: the names a store gets on a
//! shared server, and the secrets derived for it from the host's own.

use sha2::Digest;

use super::SqlError;

/// `PREFIX_SERVICE_STORE`, the name of a store's database and login on a server, checked
/// against the server's limit (`max_len` bytes; `why` says where the limit comes from).
/// Service and store names are already `[a-z0-9-]` (the manifest checks them) and never
/// contain `_`, so distinct stores get distinct names.
pub fn store_name(
    prefix: &str,
    service: &str,
    store: &str,
    max_len: usize,
    why: &str,
) -> Result<String, SqlError> {
    let prefix_ok = !prefix.is_empty()
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !prefix_ok {
        return Err(SqlError::Other(format!(
            "prefix `{prefix}`: a lowercase letter, then lowercase letters, digits and `_`"
        )));
    }
    let name = format!("{prefix}_{service}_{store}");
    if name.len() > max_len {
        return Err(SqlError::Other(format!(
            "`{name}` is longer than {max_len} bytes ({why}): shorten the service or store name"
        )));
    }
    Ok(name)
}

/// A secret for `purpose` (a password, a key) on database `db`, derived from the host's
/// secret file, so a restarted host finds the same ones.
pub fn derive(secret: &str, purpose: &str, db: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("{secret}:{purpose}:{db}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(
            store_name("silo", "a-b", "main", 63, "x").unwrap(),
            "silo_a-b_main"
        );
        assert!(store_name("Silo", "a", "b", 63, "x").is_err());
        assert!(store_name("", "a", "b", 63, "x").is_err());
        assert!(store_name("1x", "a", "b", 63, "x").is_err());
        assert!(store_name("silo", &"s".repeat(60), "b", 63, "x").is_err());
        assert_ne!(derive("s", "key", "a"), derive("s", "password", "a"));
    }
}
