//! Provisioning of a store on the server: its role, its database and their ownership, the
//! host's schema with its row-level security, and removing them again.

use std::time::Duration;

use sha2::Digest;
use tokio_postgres::NoTls;

use crate::sql::SqlError;
use crate::sql::server::{Owner, derive};

use super::config::{PgConfig, PgNames};
use super::errors::{map_err, unavailable};
use super::text::ident;

/// The administrative connection's settings, from `[backends.postgres]`.
pub(super) fn admin_config(config: &PgConfig) -> Result<tokio_postgres::Config, SqlError> {
    let mut admin: tokio_postgres::Config = config
        .admin_url
        .parse()
        .map_err(|e| SqlError::Other(format!("[backends.postgres] url: {e}")))?;
    admin.connect_timeout(config.connect_timeout);
    Ok(admin)
}

/// Opens an administrative connection within the config's `connect-timeout-ms`:
/// tokio-postgres bounds only the TCP connect by it, so a server that accepts and never
/// answers would otherwise hold the start-up handshake (and the host's start) forever.
pub(super) async fn connect_admin(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, SqlError> {
    let limit = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(10));
    let (client, conn) = match tokio::time::timeout(limit, config.connect(NoTls)).await {
        Ok(connected) => connected.map_err(unavailable)?,
        Err(_) => {
            return Err(SqlError::Unavailable(format!(
                "postgres at {}: no answer within connect-timeout-ms = {}",
                server_address(config),
                limit.as_millis()
            )));
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Removes the store's database and role from the server, connections and all (what
/// `silo demo isolation` made for one run). Everything the store held is gone.
pub async fn deprovision(config: &PgConfig, service: &str, store: &str) -> Result<(), SqlError> {
    let names = PgNames::new(&config.prefix, service, store)?;
    let c = connect_admin(&admin_config(config)?).await?;
    let db = ident(&names.database);
    for s in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS {db}"),
    ] {
        c.batch_execute(&s).await.map_err(map_err)?;
    }
    Ok(())
}

/// `HOST:PORT` of a connection's server(s), for messages.
pub(super) fn server_address(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{}:{port}", hosts.join(","))
}

/// Reads the owner on record of the store's database, on an administrative connection to
/// it: none if the database is new. A database made before owners were recorded has none on
/// record; it is this host's if its host tables' gate opens with this host's key (`key_hash`),
/// else another secret's ([`Owner::unrecorded`]).
pub(super) async fn recorded_owner(
    c: &tokio_postgres::Client,
    key_hash: &str,
) -> Result<Option<Owner>, SqlError> {
    let row = c
        .query_one(
            "SELECT to_regclass('silo_host._silo_owner')::text, \
             (SELECT p.prosrc FROM pg_proc p WHERE p.proname = 'gate' \
              AND p.pronamespace = to_regnamespace('silo_host'))",
            &[],
        )
        .await
        .map_err(map_err)?;
    let (table, gate): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    if table.is_some()
        && let Some(r) = c
            .query_opt(
                "SELECT owner_id, folder, machine FROM silo_host._silo_owner WHERE id = 1",
                &[],
            )
            .await
            .map_err(map_err)?
    {
        return Ok(Some(Owner {
            id: r.get(0),
            folder: r.get(1),
            machine: r.get(2),
        }));
    }
    Ok(gate
        .filter(|source| !source.contains(key_hash))
        .map(|_| Owner::unrecorded()))
}

/// Creates (or brings up to date) the store's role, database, schemas and host tables
/// through the administrative connection; returns how the store itself connects.
///
/// Roles and databases are server-wide, so one host at a time provisions (an advisory lock
/// on the admin database, held to the end), and the first thing it does is read who owns
/// the store ([`Owner`], recorded in `silo_host._silo_owner`, which the store's role cannot
/// read): a database another data folder owns is refused before its role's password is
/// touched.
pub async fn provision(
    config: &PgConfig,
    secret: &str,
    names: &PgNames,
    service: &str,
    store: &str,
    owner: &Owner,
) -> Result<tokio_postgres::Config, SqlError> {
    let admin = admin_config(config)?;
    let c = connect_admin(&admin).await?;
    // Waits for another host's provisioning, not forever.
    c.batch_execute("SET lock_timeout = '60s'; SELECT pg_advisory_lock(7318008)")
        .await
        .map_err(map_err)?;
    let result = provision_locked(config, &admin, &c, secret, names, service, store, owner).await;
    let _ = c.batch_execute("SELECT pg_advisory_unlock(7318008)").await;
    result
}

#[allow(
    clippy::too_many_arguments,
    reason = "provision's own arguments, and its connection"
)]
pub(super) async fn provision_locked(
    config: &PgConfig,
    admin: &tokio_postgres::Config,
    c: &tokio_postgres::Client,
    secret: &str,
    names: &PgNames,
    service: &str,
    store: &str,
    owner: &Owner,
) -> Result<tokio_postgres::Config, SqlError> {
    let db = &names.database;
    let password = derive(secret, "password", db);
    let key_hash = hex::encode(sha2::Sha256::digest(derive(secret, "key", db)));
    let pg = |e: tokio_postgres::Error| map_err(e);
    let mut in_db = admin.clone();
    in_db.dbname(db);
    let db_exists = !c
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[db])
        .await
        .map_err(pg)?
        .is_empty();
    if db_exists {
        let existing = connect_admin(&in_db).await?;
        if let Some(theirs) = recorded_owner(&existing, &key_hash).await?
            && theirs.id != owner.id
        {
            return Err(theirs.refusal(
                owner,
                &format!("PostgreSQL database and role `{db}`"),
                &server_address(admin),
                "sql/postgres.secret",
                "backends.postgres",
                &config.prefix,
            ));
        }
    }
    let role_exists = !c
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[db])
        .await
        .map_err(pg)?
        .is_empty();
    let verb = if role_exists { "ALTER" } else { "CREATE" };
    c.batch_execute(&format!(
        "{verb} ROLE {} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE \
         NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {}",
        ident(db),
        config.pool_size + 8
    ))
    .await
    .map_err(pg)?;
    if !db_exists {
        c.batch_execute(&format!("CREATE DATABASE {}", ident(db)))
            .await
            .map_err(pg)?;
    }
    c.batch_execute(&format!(
        "REVOKE ALL ON DATABASE {0} FROM PUBLIC; GRANT CONNECT ON DATABASE {0} TO {0}",
        ident(db)
    ))
    .await
    .map_err(pg)?;

    let c = connect_admin(&in_db).await?;
    let role = ident(db);
    let gate = format!(
        "(SELECT sha256(convert_to(coalesce(current_setting('silo.key', true), ''), 'UTF8'))) = '\\x{key_hash}'::bytea"
    );
    let mut script = vec![
        "SET LOCAL client_min_messages = warning".to_string(),
        "SELECT pg_advisory_xact_lock(7318009)".to_string(),
        "REVOKE ALL ON SCHEMA public FROM PUBLIC".to_string(),
        format!("ALTER SCHEMA public OWNER TO {role}"),
        "CREATE SCHEMA IF NOT EXISTS silo_host".to_string(),
        "REVOKE ALL ON SCHEMA silo_host FROM PUBLIC".to_string(),
        format!("GRANT USAGE ON SCHEMA silo_host TO {role}"),
    ];
    script.extend(crate::sql::host_tables::create_statements("postgres"));
    // Row-level security hides the rows from a guest; this trigger makes its writes fail
    // loudly instead of touching nothing (a statement-level check, once per statement).
    script.push(format!(
        "CREATE OR REPLACE FUNCTION silo_host.gate() RETURNS trigger LANGUAGE plpgsql \
         SET search_path = pg_catalog, pg_temp AS $gate$ BEGIN \
         IF NOT ({gate}) THEN RAISE EXCEPTION 'the host''s tables are not the service''s' \
         USING ERRCODE = '42501'; END IF; RETURN NULL; END $gate$"
    ));
    for t in crate::sql::host_tables::table_names() {
        script.push(format!("DROP TRIGGER IF EXISTS host_only ON silo_host.{t}"));
        script.push(format!(
            "CREATE TRIGGER host_only BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON silo_host.{t} \
             FOR EACH STATEMENT EXECUTE FUNCTION silo_host.gate()"
        ));
        script.push(format!(
            "ALTER TABLE silo_host.{t} ENABLE ROW LEVEL SECURITY"
        ));
        script.push(format!("DROP POLICY IF EXISTS host_only ON silo_host.{t}"));
        script.push(format!(
            "CREATE POLICY host_only ON silo_host.{t} TO {role} USING ({gate}) WITH CHECK ({gate})"
        ));
    }
    script.push(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA silo_host TO {role}"
    ));
    // No USAGE on the host's sequences (their identity columns need none): with it, the
    // role could advance them (`nextval`) or read them (`currval`, `lastval`) from guest SQL.
    script.push(format!(
        "REVOKE ALL ON ALL SEQUENCES IN SCHEMA silo_host FROM {role}"
    ));
    // Who owns the store (checked above, under the lock): out of the role's reach.
    script.push(
        "CREATE TABLE IF NOT EXISTS silo_host._silo_owner (id INT PRIMARY KEY CHECK (id = 1), \
         owner_id TEXT NOT NULL, folder TEXT NOT NULL, machine TEXT NOT NULL)"
            .to_string(),
    );
    script.push(format!("REVOKE ALL ON silo_host._silo_owner FROM {role}"));
    let script = format!("BEGIN; {}; COMMIT", script.join(";\n"));
    // The host's own writes to its tables (the heads' first rows) pass their gate with the
    // key, set for this administrative session only and bound, never in statement text.
    c.execute(
        "SELECT set_config('silo.key', $1, false)",
        &[&derive(secret, "key", db)],
    )
    .await
    .map_err(pg)?;
    c.batch_execute(&script).await.map_err(pg)?;
    c.execute(
        "INSERT INTO silo_host._silo_owner (id, owner_id, folder, machine) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET owner_id = EXCLUDED.owner_id, folder = EXCLUDED.folder, \
         machine = EXCLUDED.machine",
        &[&owner.id, &owner.folder, &owner.machine],
    )
    .await
    .map_err(pg)?;
    tracing::debug!(service, store, database = %db, "postgres store provisioned");

    let mut own = tokio_postgres::Config::new();
    for h in admin.get_hosts() {
        match h {
            tokio_postgres::config::Host::Tcp(h) => own.host(h),
            tokio_postgres::config::Host::Unix(p) => own.host_path(p),
        };
    }
    for p in admin.get_ports() {
        own.port(*p);
    }
    own.user(db)
        .password(password)
        .dbname(db)
        .application_name(format!("silo:{service}/{store}"))
        .connect_timeout(config.connect_timeout);
    Ok(own)
}
