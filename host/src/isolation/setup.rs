//! What the catalogue runs against: the manifest of its host (the demo services, the
//! intruder and its limits) and, for the server attacks, the machine's shared servers.

use std::time::Duration;

use super::INTRUDER_STORE_MB;

/// The shared servers the server attacks use: the machine's PostgreSQL, MariaDB and Redis
/// on loopback, with databases, roles and users named under `prefix`.
#[derive(Debug, Clone)]
pub struct Servers {
    pub prefix: String,
}

impl Servers {
    pub const POSTGRES: &str = "127.0.0.1:5432";
    pub const MARIADB: &str = "127.0.0.1:3306";
    pub const REDIS: &str = "127.0.0.1:6379";

    /// The servers that do not accept a connection, by name and address.
    pub fn missing() -> Vec<String> {
        [
            ("PostgreSQL", Self::POSTGRES),
            ("MariaDB", Self::MARIADB),
            ("Redis", Self::REDIS),
        ]
        .iter()
        .filter(|(_, addr)| {
            let addr = addr.parse().expect("a socket address");
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
        })
        .map(|(name, addr)| format!("{name} at {addr}"))
        .collect()
    }

    /// Servers for one run: objects named under a prefix of its own, so runs on one
    /// machine never meet (remove them with [`Servers::remove`]).
    pub fn for_one_run(what: &str) -> Self {
        Self {
            prefix: format!("silo{what}{:08x}", rand::random::<u32>()),
        }
    }

    /// Drops the intruder's PostgreSQL, MariaDB and Redis stores of this run from the servers.
    pub async fn remove(&self) -> Result<(), String> {
        let timeout = Duration::from_secs(5);
        crate::sql::postgres::deprovision(
            &crate::sql::postgres::PgConfig {
                admin_url: format!("postgres://postgres@{}/postgres", Self::POSTGRES),
                pool_size: 1,
                connect_timeout: timeout,
                prefix: self.prefix.clone(),
            },
            "intruder",
            "pg",
        )
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
        crate::sql::mysql::deprovision(
            &crate::sql::mysql::MyConfig {
                admin_url: format!("mysql://root@{}/", Self::MARIADB),
                pool_size: 1,
                connect_timeout: timeout,
                prefix: self.prefix.clone(),
            },
            "intruder",
            "my",
        )
        .await
        .map_err(|e| format!("MariaDB: {e}"))?;
        crate::kv::redis::deprovision(
            &crate::kv::redis::RedisConfig {
                admin_url: format!("redis://{}", Self::REDIS),
                connect_timeout: timeout,
                prefix: self.prefix.clone(),
            },
            "intruder",
            "rkv",
        )
        .await
        .map_err(|e| format!("Redis: {e}"))
    }

    /// The manifest lines that put the intruder's server stores on them.
    fn manifest(&self) -> String {
        let prefix = &self.prefix;
        format!(
            r#"
[services.intruder.stores.pg]
backend = "postgres"
max-size-mb = 2
[services.intruder.stores.my]
backend = "mysql"
max-size-mb = 2
[services.intruder.kv.rkv]
backend = "redis"
max-size-mb = 1

[backends.postgres]
url = "postgres://postgres@{pg}/postgres"
prefix = "{prefix}"
pool-size = 4
[backends.mysql]
url = "mysql://root@{my}/"
prefix = "{prefix}"
pool-size = 4
[backends.redis]
url = "redis://{redis}"
prefix = "{prefix}"
"#,
            pg = Self::POSTGRES,
            my = Self::MARIADB,
            redis = Self::REDIS,
        )
    }
}

/// The manifest the catalogue runs against: the demo services and the intruder, with the
/// limits the attacks test. `{dir}` is the folder of built components.
pub fn manifest(components: &std::path::Path, servers: Option<&Servers>) -> String {
    let c = |name: &str| {
        components
            .join(format!("{name}.wasm"))
            .display()
            .to_string()
    };
    format!(
        r#"[services.users]
component = "{users}"
route = "/users"
publishes = ["UserCreated", "UserUpdated"]
[services.users.stores.main]

[services.products]
component = "{products}"
route = "/products"
publishes = ["ProductCreated", "ProductUpdated"]
[services.products.stores.main]

[services.reference]
component = "{reference}"
route = "/reference"
[services.reference.stores.main]
[services.reference.limits]
concurrency = 16

[services.probe]
component = "{probe}"
route = "/probe"
subscribes = [{{ source = "users", topic = "UserCreated" }}]
[services.probe.stores.main]

[services.intruder]
component = "{intruder}"
route = "/intruder"
calls = ["reference"]
publishes = ["Intruded"]
subscribes = [{{ source = "users", topic = "UserCreated" }}]
saga-participants = ["reference"]
[services.intruder.stores.main]
max-size-mb = {cap}
[services.intruder.stores.tiny]
max-size-mb = 1
[services.intruder.limits]
deadline-ms = 1000
memory-mb = 32
concurrency = 4
result-kb = 1024
statement-ms = 50
"#,
        users = c("users"),
        products = c("products"),
        reference = c("reference"),
        probe = c("events_probe"),
        intruder = c("intruder"),
        cap = INTRUDER_STORE_MB,
    ) + &servers.map(Servers::manifest).unwrap_or_default()
}
