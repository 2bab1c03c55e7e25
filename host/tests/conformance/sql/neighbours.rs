//! Two services' stores on one shared server: neither can reach the other's tables.

use super::backends::{MY_ADMIN, PG_ADMIN, drop_my_store, drop_pg_store, run_prefix};
use super::*;

/// Two services' stores on one shared server: through its own handle, with raw SQL, a store
/// cannot read another's table, nor find it in any catalog it can query.
pub(super) async fn neighbours_are_invisible(
    backend: &str,
    mine: &dyn SqlStore,
    other: &dyn SqlStore,
    other_db: &str,
    attacks: &[String],
) {
    let l = limits();
    other
        .execute(&l, "CREATE TABLE neighbour_secret (v TEXT)", &[])
        .await
        .unwrap_or_else(|e| panic!("[{backend}] creating the neighbour's table: {e}"));
    other
        .execute(&l, "INSERT INTO neighbour_secret VALUES ('secret')", &[])
        .await
        .unwrap();
    mine.execute(&l, "CREATE TABLE own_table (v TEXT)", &[])
        .await
        .unwrap();
    let listed = mine
        .query(
            &l,
            "SELECT table_schema, table_name FROM information_schema.tables",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = listed
        .rows
        .iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Text(s), Value::Text(t)) => format!("{s}.{t}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".own_table")),
        "[{backend}] its own table is listed: {names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("neighbour") || n.starts_with(&format!("{other_db}."))),
        "[{backend}] the neighbour's tables are not listed: {names:?}"
    );
    for sql in attacks {
        let got = mine.query(&l, sql, &[]).await;
        assert!(
            got.is_err() || got.as_ref().is_ok_and(|r| r.rows.is_empty()),
            "[{backend}] {sql} must not reach the neighbour: {got:?}"
        );
        if let Ok(r) = got {
            assert!(
                !format!("{:?}", r.rows).contains("secret"),
                "[{backend}] {sql} leaked"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_services_cannot_see_each_other() {
    if !crate::server_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    use silo::sql::postgres::{PgConfig, PgStore};
    let prefix = run_prefix();
    let (a, b) = (
        &format!("{prefix}_alpha_main"),
        &format!("{prefix}_beta_main"),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = PgConfig {
        admin_url: PG_ADMIN.into(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.clone(),
    };
    let alpha = PgStore::open(&config, dir.path(), "alpha", "main")
        .await
        .unwrap();
    let beta = PgStore::open(&config, dir.path(), "beta", "main")
        .await
        .unwrap();
    let attacks = [
        format!("SELECT * FROM {b}.public.neighbour_secret"),
        "SELECT * FROM neighbour_secret".to_string(),
        "SELECT relname FROM pg_class WHERE relname = 'neighbour_secret'".to_string(),
    ];
    neighbours_are_invisible("postgres", &alpha, &beta, b, &attacks).await;
    dblink_cannot_reach_a_neighbour(&alpha, dir.path(), a, b).await;
    drop((alpha, beta));
    drop_pg_store(a).await;
    drop_pg_store(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_services_cannot_see_each_other() {
    if !crate::server_up("MariaDB", "127.0.0.1:3306") {
        return;
    }
    use silo::sql::mysql::{MyConfig, MyStore};
    let prefix = run_prefix();
    let (a, b) = (
        &format!("{prefix}_alpha_main"),
        &format!("{prefix}_beta_main"),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = MyConfig {
        admin_url: MY_ADMIN.into(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        prefix: prefix.clone(),
    };
    let alpha = MyStore::open(&config, dir.path(), "alpha", "main")
        .await
        .unwrap();
    let beta = MyStore::open(&config, dir.path(), "beta", "main")
        .await
        .unwrap();
    let attacks = [
        format!("SELECT * FROM {b}.neighbour_secret"),
        format!("SELECT * FROM `{b}`.neighbour_secret"),
        "SELECT * FROM neighbour_secret".to_string(),
        format!("SELECT * FROM {b}_host._silo_outbox"),
        format!("SELECT * FROM {a}_host._silo_outbox"),
        format!("SELECT schema_name FROM information_schema.schemata WHERE schema_name = '{b}'"),
        "SELECT user, host FROM mysql.user".to_string(),
        // Other accounts' sessions (the neighbour's, the admin's) are not in its process list.
        format!("SELECT id FROM information_schema.processlist WHERE user <> '{a}'"),
    ];
    neighbours_are_invisible("mysql", &alpha, &beta, b, &attacks).await;
    drop((alpha, beta));
    drop_my_store(a).await;
    drop_my_store(b).await;
}

/// `dblink` from one store's database into its neighbour's, with the store's own login and
/// password: the defence is that a store's role may connect to its own database only
/// (`CONNECT` revoked from `PUBLIC`). If the server offers the extension, the superuser
/// installs it in the store's database (what a careless operator could do), and the guest's
/// call must fail at the connection to the neighbour's database: without the defence it
/// would connect, and fail later or not at all. If not, the guest cannot install it.
async fn dblink_cannot_reach_a_neighbour(
    alpha: &dyn SqlStore,
    data_dir: &std::path::Path,
    a: &str,
    b: &str,
) {
    let l = limits();
    let (admin, conn) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .expect("admin connection to PostgreSQL");
    tokio::spawn(conn);
    let offered = admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'dblink'",
            &[],
        )
        .await
        .unwrap()
        .is_some();
    if !offered {
        eprintln!(
            "postgres: dblink is not available on this server: the probe checks that the guest cannot install it"
        );
        let e = alpha
            .execute(&l, "CREATE EXTENSION dblink", &[])
            .await
            .expect_err("a guest cannot install an extension");
        assert!(
            matches!(&e, SqlError::AccessDenied(m) if m.contains("permission denied to create extension")),
            "{e:?}"
        );
        return;
    }
    let mut own = tokio_postgres::Config::new();
    own.host("127.0.0.1").port(5432).user("postgres").dbname(a);
    let (su, conn) = own.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    su.batch_execute("CREATE EXTENSION IF NOT EXISTS dblink SCHEMA public")
        .await
        .expect("the superuser installs dblink in the store's database");
    let secret = std::fs::read_to_string(data_dir.join("sql").join("postgres.secret")).unwrap();
    let password = silo::sql::server::derive(secret.trim(), "password", a);
    let dblink = |db: &str, query: &str| {
        format!(
            "SELECT * FROM dblink('host=127.0.0.1 port=5432 dbname={db} user={a} password={password}', \
             '{query}') AS t(v text)"
        )
    };
    // The control: the same login into its own database connects (the server may then
    // answer, or, where it asks no password, dblink refuses a connection that used none).
    match alpha.query(&l, &dblink(a, "SELECT 1::text"), &[]).await {
        Ok(_) => {}
        Err(SqlError::Other(m)) if m.contains("password is required") => {}
        other => panic!("dblink into the store's own database must connect: {other:?}"),
    }
    let e = alpha
        .query(&l, &dblink(b, "SELECT v FROM neighbour_secret"), &[])
        .await
        .expect_err("dblink must not reach the neighbour's database");
    assert!(
        matches!(&e, SqlError::Unavailable(m) if m.contains("could not establish connection")),
        "{e:?}"
    );
    eprintln!("postgres: dblink into the neighbour's database is refused: {e:?}");
}
