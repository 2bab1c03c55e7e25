//! The PostgreSQL backend's settings (`[backends.postgres]`) and the names a store has on
//! the server.

use std::time::Duration;

use crate::sql::SqlError;

/// Settings of the PostgreSQL backend (`[backends.postgres]`).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Administrative connection URL (`postgres://user[:password]@host:port/db`).
    pub admin_url: String,
    /// Most connections one store keeps open.
    pub pool_size: usize,
    /// Longest wait for a new connection.
    pub connect_timeout: Duration,
    /// First part of every database and role name.
    pub prefix: String,
}

/// Names of one store on the server.
#[derive(Debug, Clone)]
pub struct PgNames {
    /// Its database and its login role (the same name).
    pub database: String,
}

impl PgNames {
    pub fn new(prefix: &str, service: &str, store: &str) -> Result<Self, SqlError> {
        let database = crate::sql::server::postgres_database(prefix, service, store)?;
        Ok(Self { database })
    }
}
