//! The names a store gets on a shared server and the URLs of those servers, checked without
//! a connection: the manifest checks them at start-up and the backends build the same names.
//! Imports nothing of the host, so both floors may use it.

use redis::IntoConnectionInfo;

/// Checks a `prefix` of `[backends.*]`: a lowercase letter, then lowercase letters, digits
/// and `_` (never `-` or `:`, which separate the parts of Redis names).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let prefix_ok = !prefix.is_empty()
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if prefix_ok {
        Ok(())
    } else {
        Err(format!(
            "prefix `{prefix}`: a lowercase letter, then lowercase letters, digits and `_`"
        ))
    }
}

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
) -> Result<String, String> {
    check_prefix(prefix)?;
    let name = format!("{prefix}_{service}_{store}");
    if name.len() > max_len {
        return Err(format!(
            "`{name}` is longer than {max_len} bytes ({why}): shorten the service or store name"
        ));
    }
    Ok(name)
}

/// The PostgreSQL database (and login role, the same name) of store `store` of `service`.
pub fn postgres_database(prefix: &str, service: &str, store: &str) -> Result<String, String> {
    store_name(prefix, service, store, 63, "PostgreSQL's names are 63")
}

/// The MariaDB database (and login user, the same name) of store `store` of `service`; the
/// backend adds `_host` and `_def` to it for the host's database and definer.
pub fn mariadb_database(prefix: &str, service: &str, store: &str) -> Result<String, String> {
    // `PREFIX_SERVICE_STORE` is unambiguous read from the right (service and store
    // names have no `_`), but the host database and definer append `_host` and `_def`:
    // store `host` of service `b` under prefix `silo_a` would be database
    // `silo_a_b_host`, the host database of store `b` of service `a` under prefix `silo`
    // (two hosts sharing a server). Those two store names are reserved here instead.
    if matches!(store, "host" | "def") {
        return Err(format!(
            "a MariaDB store cannot be named `{store}`: its database or user would be another store's `_{store}`"
        ));
    }
    store_name(
        prefix,
        service,
        store,
        59,
        "MariaDB's names are 64, and the host database adds `_host`",
    )
}

/// Checks that `url` is a PostgreSQL URL (`postgres://user[:password]@host:port/db`).
pub fn check_postgres_url(url: &str) -> Result<(), String> {
    url.parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks that `url` is a MariaDB URL (`mysql://user[:password]@host:port/`).
pub fn check_mysql_url(url: &str) -> Result<(), String> {
    mysql_async::Opts::from_url(url)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks that `url` is a Redis URL (`redis://[user:password@]host:port[/db]`), without
/// connecting: the manifest's `[backends.redis] url` is refused at start-up otherwise.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| format!("not a Redis URL (redis://[user:password@]host:port): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_against_each_servers_limit() {
        assert!(check_prefix("silo_1").is_ok());
        assert!(check_prefix("Silo").is_err());
        assert!(check_prefix("silo-a").is_err());
        assert_eq!(
            postgres_database("silo", "users", "main").unwrap(),
            "silo_users_main"
        );
        assert!(postgres_database("silo", &"a".repeat(60), "main").is_err());
        assert!(mariadb_database("silo", "users", "host").is_err());
        assert!(mariadb_database("silo", &"a".repeat(50), "main").is_err());
        assert!(check_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_redis_url("http://x").is_err());
        assert!(check_postgres_url("postgres://u@localhost/db").is_ok());
        assert!(check_mysql_url("mysql://root@localhost:3306/").is_ok());
        assert!(check_mysql_url("nope").is_err());
    }
}
