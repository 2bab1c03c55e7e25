//! The MariaDB backend's settings (`[backends.mysql]`) and the names of one store on the
//! server.

use std::time::Duration;

use crate::sql::SqlError;

/// Settings of the MariaDB backend (`[backends.mysql]`).
#[derive(Debug, Clone)]
pub struct MyConfig {
    /// Administrative connection URL (`mysql://user[:password]@host:port/`).
    pub admin_url: String,
    /// Most connections one store keeps open.
    pub pool_size: usize,
    /// Longest wait for a new connection.
    pub connect_timeout: Duration,
    /// First part of every database and user name.
    pub prefix: String,
}

/// Names of one store on the server.
#[derive(Debug, Clone)]
pub struct MyNames {
    /// The service's database, and its login user (the same name).
    pub database: String,
    /// The host's database.
    pub host_db: String,
    /// The locked account that owns the host procedures.
    pub definer: String,
}

impl MyNames {
    pub fn new(prefix: &str, service: &str, store: &str) -> Result<Self, SqlError> {
        let database = crate::sql::server::mysql_database(prefix, service, store)?;
        Ok(Self {
            host_db: format!("{database}_host"),
            definer: format!("{database}_def"),
            database,
        })
    }
}
