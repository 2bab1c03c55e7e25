//! The battery run against each backend: SQLite, and the PostgreSQL and MariaDB servers on
//! this machine.

use silo::sql::sqlite::{SqliteConfig, SqliteStore};

use super::mysql_host::mysql_host_path;
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("conformance.db"), SqliteConfig::default())
        .expect("open the SQLite store");
    battery(&SQLITE, Arc::new(store)).await;
}

pub const POSTGRES: Dialect = Dialect {
    name: "postgres",
    int_type: "BIGINT",
    real_type: "DOUBLE PRECISION",
    text_type: "TEXT",
    blob_type: "BYTEA",
    sleep_sql: "SELECT pg_sleep(30)",
    host_table: "silo_host._silo_outbox",
    // Provisioning made the host's tables, in schema `silo_host`.
    host_name: "silo_host._silo_outbox",
    failed_statement_aborts_transaction: true,
};

pub(super) const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A prefix no other run uses (`cf` and random lowercase hex): runs on one shared server
/// never meet, and each test drops only what it made under its own.
pub(super) fn run_prefix() -> String {
    format!("cf{:08x}", rand::random::<u32>())
}

/// Drops the conformance store's database and role (each alone: `DROP DATABASE` cannot
/// share a statement batch).
pub(super) async fn drop_pg_store(name: &str) {
    let (c, conn) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .expect("admin connection to PostgreSQL");
    tokio::spawn(conn);
    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
    c.batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    if !crate::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    use silo::sql::postgres::{PgConfig, PgStore};
    let prefix = run_prefix();
    let name = &format!("{prefix}_conformance_main");
    let dir = tempfile::tempdir().unwrap();
    let config = PgConfig {
        admin_url: PG_ADMIN.into(),
        pool_size: 8,
        connect_timeout: Duration::from_secs(2),
        prefix,
    };
    let store = PgStore::open(&config, dir.path(), "conformance", "main")
        .await
        .expect("open the PostgreSQL store");
    assert_eq!(store.database(), name);
    battery(&POSTGRES, Arc::new(store)).await;
    drop_pg_store(name).await;
}

pub const MYSQL: Dialect = Dialect {
    name: "mysql",
    int_type: "BIGINT",
    real_type: "DOUBLE",
    text_type: "LONGTEXT",
    blob_type: "LONGBLOB",
    sleep_sql: "SELECT SLEEP(30)",
    // The host database's name has the run's prefix: see `mysql_conformance`.
    host_table: "PREFIX_conformance_main_host._silo_outbox",
    // Host statements run inside the host database's `silo_exec`.
    host_name: "_silo_outbox",
    // InnoDB undoes only the failed statement (a deadlock aside, which the backend
    // reports as a rolled-back transaction).
    failed_statement_aborts_transaction: false,
};

pub(super) const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/";

/// Drops the conformance store's databases and accounts.
pub(super) async fn drop_my_store(name: &str) {
    use mysql_async::prelude::Queryable;
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(MY_ADMIN).unwrap())
        .await
        .expect("admin connection to MariaDB");
    for s in [
        format!("DROP DATABASE IF EXISTS `{name}`"),
        format!("DROP DATABASE IF EXISTS `{name}_host`"),
        format!("DROP USER IF EXISTS '{name}'@'%'"),
        format!("DROP USER IF EXISTS '{name}_def'@'localhost'"),
    ] {
        c.query_drop(&s).await.unwrap();
    }
    let _ = c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_conformance() {
    if !crate::server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    use silo::sql::mysql::{MyConfig, MyStore};
    let prefix = run_prefix();
    let name = &format!("{prefix}_conformance_main");
    let dialect = Dialect {
        host_table: String::leak(MYSQL.host_table.replace("PREFIX", &prefix)),
        ..MYSQL
    };
    let dir = tempfile::tempdir().unwrap();
    let config = MyConfig {
        admin_url: MY_ADMIN.into(),
        pool_size: 8,
        connect_timeout: Duration::from_secs(2),
        prefix,
    };
    let store = MyStore::open(&config, dir.path(), "conformance", "main")
        .await
        .expect("open the MariaDB store");
    assert_eq!(store.database(), name);
    let store: Store = Arc::new(store);
    battery(&dialect, store.clone()).await;
    mysql_host_path(&store, dir.path(), name).await;
    drop(store);
    drop_my_store(name).await;
}
