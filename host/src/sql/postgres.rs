//! The PostgreSQL backend: each store its own database and its own login role on a shared
//! server, reached through a pool of connections logged in as that role.
//!
//! **Provisioning** ([`provision`]). At open, the host connects with the administrative URL
//! of `[backends.postgres]` and makes sure of: a login role `silo_SERVICE_STORE` (no
//! superuser, no CREATEDB/CREATEROLE, no BYPASSRLS) with a password derived from
//! `DATA/sql/postgres.secret`; a database of the same name whose CONNECT is revoked from
//! PUBLIC and granted to that role alone; in it, schema `public` owned by the role (the
//! service's own tables) and schema `silo_host` owned by the administrator (the host's
//! outbox, inbox, saga and migration tables). A service's role therefore cannot connect to
//! any other service's database, and every catalog it can query lists its own tables only.
//!
//! **The host's tables, in the guest's transaction.** The host writes `silo_host` rows on
//! the same connection, in the same transaction, as the guest's own statements (that is the
//! point of an outbox). The role holds row privileges on those tables, but every table has
//! row-level security with one policy: a row is visible and writable only while the session
//! setting `silo.key` hashes (SHA-256) to the store's key hash. The host brackets each of its
//! statements with setting the key (and pinning `search_path` to `pg_catalog`, so no function
//! or operator of the guest's can run while the key is set) and clearing it again, all in
//! one round trip; the key is a bound parameter, never in statement text. Between host
//! statements a guest sees no rows there and cannot insert, update or delete any; it owns
//! none of these tables, so it cannot alter, drop or disable their policies.
//!
//! **Guest statements** run through the extended protocol, one statement per call (the
//! server refuses more). Statements that would end or split the host's transaction or
//! change the session (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `SET`, `RESET`, `DISCARD`,
//! `PREPARE`, `COPY`, `LISTEN`, …) are refused before they are sent. `?` placeholders are
//! rewritten to `$n`, so a service's SQL written for SQLite binds the same way here.
//!
//! **Connections** come from a bounded pool. Getting one, connecting and every statement
//! are bounded by the request's deadline; a server that is down or restarting answers
//! `unavailable` at once (a 503 from the SDK), and broken connections are replaced on their
//! own once it is back. A statement past its budget is cancelled on the server.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use deadpool_postgres::{ClientWrapper, ManagerConfig, RecyclingMethod, Timeouts};
use futures::{StreamExt, pin_mut};
use sha2::Digest;
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type};
use tokio_postgres::{NoTls, Statement};

use super::pgtext;
use super::server::{Owner, SizeCap, derive, reads_or_frees};
use super::{
    CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value, value_size,
};

/// Statements whose first keyword a guest may not send.
const DENIED_HEADS: &[&str] = &[
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "DISCARD",
    "SET",
    "RESET",
    "LISTEN",
    "UNLISTEN",
    "NOTIFY",
    "COPY",
    "LOAD",
    "CHECKPOINT",
    "VACUUM",
];

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
        let database =
            super::server::store_name(prefix, service, store, 63, "PostgreSQL's names are 63")?;
        Ok(Self { database })
    }
}

/// An identifier, quoted.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// How long a cancelled statement may take to stop before its server process is terminated.
/// A guest's PL/pgSQL can trap the cancel (`EXCEPTION WHEN query_canceled`) and keep
/// running, holding the store's writer lock, as long as it likes: only the end of its
/// process stops it.
const CANCEL_GRACE: Duration = Duration::from_millis(200);

/// A pooled connection: the client, and the server process behind it.
pub struct PgConn {
    client: ClientWrapper,
    /// Its server process (`pg_backend_pid()`), to terminate from the admin side.
    pid: i32,
    /// Set once its process was terminated or its state is unknown: it never goes back to
    /// the pool (the pool's recycling refuses it).
    broken: AtomicBool,
    admin: Arc<tokio_postgres::Config>,
}

impl std::ops::Deref for PgConn {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

impl PgConn {
    /// Ends this connection's server process through an administrative connection (a
    /// statement that traps its cancel runs on, and keeps its locks, until then), waiting
    /// up to a few seconds for it to be gone. The connection is discarded either way.
    async fn terminate(&self) {
        self.broken.store(true, Ordering::Release);
        let pid = self.pid;
        let admin = self.admin.clone();
        let end = async move {
            let c = connect_admin(&admin).await?;
            c.query_one(
                "SELECT pg_catalog.pg_terminate_backend($1::int4, 5000)",
                &[&pid],
            )
            .await
            .map_err(map_err)
        };
        match tokio::time::timeout(Duration::from_secs(10), end).await {
            Ok(Ok(_)) => tracing::warn!(
                pid,
                "postgres: a statement outlived its cancel; its process was terminated"
            ),
            Ok(Err(e)) => tracing::error!(
                pid,
                "postgres: cannot terminate a statement that outlived its cancel: {e}"
            ),
            Err(_) => tracing::error!(
                pid,
                "postgres: terminating a statement that outlived its cancel timed out"
            ),
        }
    }

    /// Cancels what runs on this connection; if it has not stopped within
    /// [`CANCEL_GRACE`] (the connection does not answer), terminates its process.
    async fn cancel_or_terminate(&self) {
        let _ = self.cancel_token().cancel_query(NoTls).await;
        // Answered (even with an error: the cancel aborted the transaction) = it stopped.
        if tokio::time::timeout(CANCEL_GRACE, self.simple_query("SELECT 1"))
            .await
            .is_err()
        {
            self.terminate().await;
        }
    }
}

/// Makes [`PgConn`]s: a connection as deadpool-postgres makes it, plus its process id.
struct PgManager {
    inner: deadpool_postgres::Manager,
    admin: Arc<tokio_postgres::Config>,
}

impl deadpool::managed::Manager for PgManager {
    type Type = PgConn;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<PgConn, tokio_postgres::Error> {
        let client = self.inner.create().await?;
        let pid: i32 = client
            .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
            .await?
            .get(0);
        Ok(PgConn {
            client,
            pid,
            broken: AtomicBool::new(false),
            admin: self.admin.clone(),
        })
    }

    async fn recycle(
        &self,
        c: &mut PgConn,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        if c.broken.load(Ordering::Acquire) {
            return Err(RecycleError::message("its process was terminated"));
        }
        self.inner.recycle(&mut c.client, metrics).await
    }

    fn detach(&self, c: &mut PgConn) {
        self.inner.detach(&mut c.client);
    }
}

type Pool = deadpool::managed::Pool<PgManager>;
type Object = deadpool::managed::Object<PgManager>;

fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(format!("postgres: {e}"))
}

/// The administrative connection's settings, from `[backends.postgres]`.
fn admin_config(config: &PgConfig) -> Result<tokio_postgres::Config, SqlError> {
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
async fn connect_admin(
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
fn server_address(config: &tokio_postgres::Config) -> String {
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
async fn recorded_owner(
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
async fn provision_locked(
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
    script.extend(super::host_tables::create_statements("postgres"));
    // Row-level security hides the rows from a guest; this trigger makes its writes fail
    // loudly instead of touching nothing (a statement-level check, once per statement).
    script.push(format!(
        "CREATE OR REPLACE FUNCTION silo_host.gate() RETURNS trigger LANGUAGE plpgsql \
         SET search_path = pg_catalog, pg_temp AS $gate$ BEGIN \
         IF NOT ({gate}) THEN RAISE EXCEPTION 'the host''s tables are not the service''s' \
         USING ERRCODE = '42501'; END IF; RETURN NULL; END $gate$"
    ));
    for t in super::host_tables::table_names() {
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

/// One PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    /// The value of `silo.key` that opens the host's tables.
    key: Arc<str>,
    names: PgNames,
    /// Its `max-size-mb`, if it has one.
    cap: Option<Arc<SizeCap>>,
}

/// The store's size as its cap counts it: every table and materialized view of its
/// database (the host's and temporary ones included) with their indexes and TOAST, but not
/// the server's own catalogs (some 7 MiB in every database). Operators are named by schema:
/// the guest's session may have put its own first on its `search_path`.
const MEASURE: &str = "SELECT COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::pg_catalog.int8 \
     FROM pg_catalog.pg_class c \
     WHERE c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'm']::pg_catalog.\"char\"[]) \
     AND c.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog'::pg_catalog.regnamespace, \
     'information_schema'::pg_catalog.regnamespace])";

/// Measures the store on `client` (in a transaction or not) and records it in `cap`; `None`
/// if it could not (the transaction is aborted: nothing it wrote will stay).
async fn measure(client: &Object, cap: &SizeCap) -> Option<u64> {
    let m = async {
        let stmt = prepare(client, MEASURE).await?;
        client.query_one(&stmt, &[]).await.map_err(map_err)
    };
    match tokio::time::timeout(Duration::from_secs(5), m).await {
        Ok(Ok(row)) => {
            let bytes = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
            cap.record(bytes);
            Some(bytes)
        }
        _ => None,
    }
}

impl PgStore {
    /// Provisions (see [`provision`]) and opens the store `store` of `service`.
    pub async fn open(
        config: &PgConfig,
        data_dir: &Path,
        service: &str,
        store: &str,
    ) -> Result<Self, SqlError> {
        let secret = crate::admin::private_secret(&data_dir.join("sql").join("postgres.secret"))
            .map_err(|e| SqlError::Other(format!("the postgres secret: {e}")))?;
        let names = PgNames::new(&config.prefix, service, store)?;
        let owner = Owner::this_host(&secret, &names.database, data_dir);
        let own = provision(config, &secret, &names, service, store, &owner).await?;
        let manager = PgManager {
            inner: deadpool_postgres::Manager::from_config(
                own,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            ),
            admin: Arc::new(admin_config(config)?),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| SqlError::Other(format!("postgres pool: {e}")))?;
        let key = derive(&secret, "key", &names.database);
        Ok(Self {
            pool,
            key: key.into(),
            names,
            cap: None,
        })
    }

    /// This store, with its size capped at `max_bytes` (see [`SizeCap`]).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.cap = Some(Arc::new(SizeCap::new(max_bytes)));
        self
    }

    /// The database (and role) name on the server.
    pub fn database(&self) -> &str {
        &self.names.database
    }

    async fn client(&self, deadline: Instant) -> Result<Object, SqlError> {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let t = Timeouts {
            wait: Some(left),
            create: Some(left),
            recycle: Some(left),
        };
        self.pool.timeout_get(&t).await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(_) => SqlError::Unavailable(
                "postgres: no connection became free before the deadline".into(),
            ),
            deadpool_postgres::PoolError::Backend(e) => map_err(e),
            e => unavailable(e),
        })
    }
}

/// What a guest may not send (checked before the text reaches the server).
fn check_guest(sql: &str) -> Result<(), SqlError> {
    let head = pgtext::first_word(sql);
    if head.is_empty() {
        // `(SELECT …)`, or nothing at all.
        if pgtext::split(sql).is_empty() {
            return Err(SqlError::BadQuery("an empty statement".into()));
        }
        return Ok(());
    }
    if head == "SET" && pgtext::second_word(sql) == "CONSTRAINTS" {
        return Ok(());
    }
    if head == "EXPLAIN" {
        // EXPLAIN ANALYZE counts the rows row-level security hides (`Rows Removed by
        // Filter` on the host's tables), and plain EXPLAIN shows the planner's estimates of
        // them: refused whatever its options (`ANALYZE`, `(ANALYZE)`, `(analyse true)`, …).
        return Err(SqlError::AccessDenied(
            "`EXPLAIN` is not available to services: its counts include rows the store hides"
                .into(),
        ));
    }
    if DENIED_HEADS.contains(&head.as_str()) {
        return Err(SqlError::AccessDenied(format!(
            "`{head}` is the host's: transactions are the `begin`/`commit` of the sql interface, and session settings are not a service's to change"
        )));
    }
    Ok(())
}

/// A guest statement rewritten for PostgreSQL (`?` → `$n`).
fn guest_sql(sql: &str) -> Result<String, SqlError> {
    check_guest(sql)?;
    Ok(pgtext::placeholders(sql).0)
}

/// A value bound as a parameter of whatever type the server inferred for it.
#[derive(Debug)]
struct Param<'a>(&'a Value);

fn is_text_type(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext"
}

impl Param<'_> {
    /// The text form, for types bound in text format (the server parses it).
    fn text(&self) -> Option<String> {
        match self.0 {
            Value::Integer(i) => Some(i.to_string()),
            Value::Real(f) => Some(f.to_string()),
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn binary(&self, ty: &Type) -> bool {
        match (self.0, ty) {
            (Value::Null, _) => true,
            (Value::Blob(_), _) => true,
            (
                Value::Integer(_),
                &Type::INT2
                | &Type::INT4
                | &Type::INT8
                | &Type::FLOAT4
                | &Type::FLOAT8
                | &Type::BOOL,
            ) => true,
            (Value::Real(_), &Type::FLOAT4 | &Type::FLOAT8) => true,
            (Value::Text(_), t) => is_text_type(t),
            _ => false,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        if !self.binary(ty) {
            let Some(t) = self.text() else {
                return Err(format!("a {} cannot bind to a {ty} parameter", kind(self.0)).into());
            };
            out.extend_from_slice(t.as_bytes());
            return Ok(IsNull::No);
        }
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (Value::Blob(_), _) => Err(format!("a blob binds only to bytea, not {ty}").into()),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT4) => (*i as f32).to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Real(f), _) => f.to_sql(ty, out),
            (Value::Text(s), _) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            _ => Err(format!("a {} cannot bind to a {ty} parameter", kind(self.0)).into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if self.binary(ty) {
            Format::Binary
        } else {
            Format::Text
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Integer(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Blob(_) => "blob",
    }
}

/// A column value as the server sent it (binary format), decoded by [`decode`].
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn decode(ty: &Type, raw: Option<&[u8]>, column: &str) -> Result<Value, SqlError> {
    use tokio_postgres::types::FromSql;
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    let bad = |e: BoxError| SqlError::Other(format!("column `{column}`: {e}"));
    Ok(match *ty {
        Type::BOOL => Value::Integer(bool::from_sql(ty, raw).map_err(bad)? as i64),
        Type::INT2 => Value::Integer(i16::from_sql(ty, raw).map_err(bad)?.into()),
        Type::INT4 => Value::Integer(i32::from_sql(ty, raw).map_err(bad)?.into()),
        Type::INT8 => Value::Integer(i64::from_sql(ty, raw).map_err(bad)?),
        Type::OID => Value::Integer(u32::from_sql(ty, raw).map_err(bad)?.into()),
        Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw).map_err(bad)?.into()),
        Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw).map_err(bad)?),
        Type::BYTEA => Value::Blob(raw.to_vec()),
        Type::NUMERIC => Value::Text(numeric_text(raw).ok_or_else(|| bad("bad numeric".into()))?),
        Type::JSONB => Value::Text(String::from_utf8_lossy(raw.get(1..).unwrap_or(&[])).into()),
        Type::JSON | Type::XML => Value::Text(String::from_utf8_lossy(raw).into()),
        Type::UUID => {
            let h = hex::encode(raw);
            if h.len() != 32 {
                return Err(bad("bad uuid".into()));
            }
            Value::Text(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        Type::DATE => Value::Text(date_text(i32::from_sql(ty, raw).map_err(bad)?.into())),
        Type::TIMESTAMP => Value::Text(timestamp_text(i64::from_sql(ty, raw).map_err(bad)?, "")),
        Type::TIMESTAMPTZ => Value::Text(timestamp_text(i64::from_sql(ty, raw).map_err(bad)?, "Z")),
        Type::TIME => Value::Text(time_text(i64::from_sql(ty, raw).map_err(bad)?)),
        ref t if is_text_type(t) || matches!(t.kind(), Kind::Enum(_)) => {
            Value::Text(String::from_utf8_lossy(raw).into())
        }
        ref t => {
            return Err(SqlError::BadQuery(format!(
                "column `{column}` is of type {t}, which silo does not map to a value: cast it (`::text`)"
            )));
        }
    })
}

/// PostgreSQL's binary `numeric` as decimal text.
fn numeric_text(raw: &[u8]) -> Option<String> {
    let word =
        |i: usize| -> Option<i16> { Some(i16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?])) };
    let ndigits = word(0)? as i32;
    let weight = word(2)? as i32;
    let sign = word(4)? as u16;
    let dscale = word(6)? as i32;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i32> = (0..ndigits)
        .map(|k| word(8 + 2 * k as usize).map(i32::from))
        .collect::<Option<_>>()?;
    let digit = |k: i32| {
        if k >= 0 && k < ndigits {
            digits[k as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while (frac.len() as i32) < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale as usize);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

/// Days since 2000-01-01 as `YYYY-MM-DD` (proleptic Gregorian).
fn date_text(days_2000: i64) -> String {
    // Howard Hinnant's civil_from_days, on days since 1970-01-01.
    let z = days_2000 + 10_957 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", if m <= 2 { y + 1 } else { y })
}

fn time_text(micros: i64) -> String {
    let s = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000);
    let mut t = format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
    if us != 0 {
        t.push_str(&format!(".{us:06}"));
    }
    t
}

fn timestamp_text(micros_2000: i64, zone: &str) -> String {
    let day = micros_2000.div_euclid(86_400_000_000);
    let rest = micros_2000.rem_euclid(86_400_000_000);
    format!("{}T{}{zone}", date_text(day), time_text(rest))
}

/// Maps a driver error to what the guest may see.
fn map_err(e: tokio_postgres::Error) -> SqlError {
    let Some(db) = e.as_db_error() else {
        if e.is_closed() || e.to_string().contains("connection") {
            return unavailable(e);
        }
        // Client-side errors: binding a parameter, a closed connection, I/O.
        let msg = e.to_string();
        if msg.contains("error serializing parameter") || msg.contains("parameters but") {
            let detail = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or(msg);
            return SqlError::BadQuery(detail);
        }
        return unavailable(e);
    };
    let code = db.code().code();
    let m = db.message().to_string();
    match &code[..2] {
        "23" => SqlError::ConstraintViolation(m),
        "42" if code == "42501" => SqlError::AccessDenied(m),
        "42" | "22" | "0A" | "26" | "34" | "3F" | "2B" => SqlError::BadQuery(m),
        "25" => SqlError::BadQuery(format!(
            "{m} (an earlier statement failed: roll the transaction back)"
        )),
        "57" if code == "57014" => SqlError::LimitExceeded(
            "the statement ran past its time budget or the request's deadline".into(),
        ),
        "53" | "54" => SqlError::LimitExceeded(m),
        "08" | "57" | "40" | "55" => SqlError::Unavailable(m),
        _ => SqlError::Other(m),
    }
}

/// Runs one prepared statement, bounded by `deadline`; cancels it on the server past it,
/// and terminates its process if it has not stopped [`CANCEL_GRACE`] after the cancel.
async fn run<T>(
    client: &Object,
    deadline: Instant,
    f: impl std::future::Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    let mut f = std::pin::pin!(f);
    match tokio::time::timeout_at(deadline.into(), f.as_mut()).await {
        Ok(r) => r,
        Err(_) => {
            let _ = client.cancel_token().cancel_query(NoTls).await;
            if tokio::time::timeout(CANCEL_GRACE, f).await.is_err() {
                client.terminate().await;
            }
            Err(SqlError::LimitExceeded(
                "the statement ran past its time budget or the request's deadline".into(),
            ))
        }
    }
}

/// Prepares `sql` (cached: the host's statements, and the guest's up to a bound).
async fn prepare(client: &Object, sql: &str) -> Result<Statement, SqlError> {
    if client.statement_cache.size() > 256 {
        client.statement_cache.clear();
    }
    client.prepare_cached(sql).await.map_err(map_err)
}

fn check_params(stmt: &Statement, params: &[Value]) -> Result<(), SqlError> {
    let want = stmt.params().len();
    if want != params.len() {
        return Err(SqlError::BadQuery(format!(
            "the statement has {want} parameters, {} were given",
            params.len()
        )));
    }
    Ok(())
}

/// Runs a statement that returns rows, streaming them against the size limit.
async fn query_rows(
    client: &Object,
    stmt: &Statement,
    params: &[Value],
    max_bytes: usize,
) -> Result<RowSet, SqlError> {
    check_params(stmt, params)?;
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let stream = client
        .query_raw(stmt, params.iter().map(Param))
        .await
        .map_err(map_err)?;
    pin_mut!(stream);
    let mut rows = Vec::new();
    let mut size = 0usize;
    while let Some(row) = stream.next().await {
        let row = row.map_err(map_err)?;
        let mut out = Vec::with_capacity(columns.len());
        for (i, ty) in types.iter().enumerate() {
            let raw: Raw<'_> = row.try_get(i).map_err(map_err)?;
            let v = decode(ty, raw.0, &columns[i])?;
            size += value_size(&v);
            out.push(v);
        }
        if size > max_bytes {
            return Err(SqlError::LimitExceeded(format!(
                "the result is larger than {max_bytes} bytes"
            )));
        }
        rows.push(out);
    }
    Ok(RowSet { columns, rows })
}

async fn execute_stmt(
    client: &Object,
    stmt: &Statement,
    params: &[Value],
) -> Result<ExecResult, SqlError> {
    check_params(stmt, params)?;
    if !stmt.columns().is_empty() {
        return Err(SqlError::BadQuery(
            "the statement returns rows: use `query`".into(),
        ));
    }
    let n = client
        .execute_raw(stmt, params.iter().map(Param))
        .await
        .map_err(map_err)?;
    Ok(ExecResult {
        rows_affected: n,
        last_insert_id: None,
    })
}

async fn guest_query(
    client: &Object,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
) -> Result<RowSet, SqlError> {
    let sql = guest_sql(sql)?;
    run(client, limits.statement_deadline(), async {
        let stmt = prepare(client, &sql).await?;
        query_rows(client, &stmt, params, limits.max_result_bytes).await
    })
    .await
}

async fn guest_execute(
    client: &Object,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
) -> Result<ExecResult, SqlError> {
    let sql = guest_sql(sql)?;
    run(client, limits.statement_deadline(), async {
        let stmt = prepare(client, &sql).await?;
        execute_stmt(client, &stmt, params).await
    })
    .await
}

async fn guest_batch(client: &Object, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
    let pieces = pgtext::split(sql);
    for p in &pieces {
        check_guest(p)?;
    }
    for p in pieces {
        // One statement per message: the server refuses a second one the split missed.
        let p = p.to_string();
        run(client, limits.statement_deadline(), async {
            client.execute(&p, &[]).await.map_err(map_err).map(|_| ())
        })
        .await?;
    }
    Ok(())
}

/// Starts a transaction holding the store's writer lock until it ends.
const BEGIN_WRITER: &str = "BEGIN; SELECT pg_catalog.pg_advisory_xact_lock(7318010)";

/// Whether a statement outside a transaction only reads (else it runs as a one-statement
/// transaction, taking the writer like any other write).
fn reads_only(sql: &str) -> bool {
    matches!(
        pgtext::first_word(sql).as_str(),
        "SELECT" | "SHOW" | "VALUES" | "TABLE"
    ) && !sql.to_ascii_uppercase().contains("FOR UPDATE")
}

const OPEN_GATE: &str = "SELECT pg_catalog.set_config('silo.path', pg_catalog.current_setting('search_path'), true), \
     pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true), \
     pg_catalog.set_config('silo.key', $1, true)";
const CLOSE_GATE: &str = "SELECT pg_catalog.set_config('silo.key', '', true), \
     pg_catalog.set_config('search_path', pg_catalog.current_setting('silo.path'), true)";

/// What a host statement returns.
enum HostOut {
    Rows(RowSet),
    Done(ExecResult),
}

/// Runs a host statement inside the open transaction on `client`, with the gate open for
/// it alone (one round trip: the three statements are pipelined).
async fn host_in_tx(
    client: &Object,
    key: &str,
    sql: &str,
    params: &[Value],
    rows: bool,
) -> Result<HostOut, SqlError> {
    let open = prepare(client, OPEN_GATE).await?;
    let close = prepare(client, CLOSE_GATE).await?;
    let stmt = prepare(client, sql).await?;
    check_params(&stmt, params)?;
    let key = key.to_string();
    let key_param: [&(dyn ToSql + Sync); 1] = [&key];
    let opened = client.query(&open, &key_param);
    let work = async {
        if rows {
            query_rows(client, &stmt, params, usize::MAX)
                .await
                .map(HostOut::Rows)
        } else {
            let n = client
                .execute_raw(&stmt, params.iter().map(Param))
                .await
                .map_err(map_err)?;
            Ok(HostOut::Done(ExecResult {
                rows_affected: n,
                last_insert_id: None,
            }))
        }
    };
    let closed = client.query(&close, &[]);
    let (o, w, c) = tokio::join!(opened, work, closed);
    o.map_err(map_err)?;
    let out = w?;
    c.map_err(map_err)?;
    Ok(out)
}

/// The host's budget for its own statements.
fn host_deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[async_trait]
impl SqlStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn query(
        &self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError> {
        // A full store reads in a transaction too: a function a SELECT calls may write, and
        // a transaction that grew a full store does not commit.
        if !reads_only(sql) || self.cap.as_ref().is_some_and(|c| c.is_full()) {
            check_guest(sql)?;
            let mut tx = self.begin(limits).await?;
            let rows = tx.query(limits, sql, params).await?;
            tx.commit().await?;
            return Ok(rows);
        }
        // A lease, so a request dropped mid-statement does not hand the pool a connection
        // whose statement still runs.
        let mut lease = self.lease(self.client(limits.deadline).await?, false);
        lease.busy = true;
        let r = guest_query(lease.client()?, limits, sql, params).await;
        lease.busy = false;
        r
    }

    async fn execute(
        &self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        check_guest(sql)?;
        let mut tx = self.begin(limits).await?;
        let done = tx.execute(limits, sql, params).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn execute_batch(&self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        let mut tx = self.begin(limits).await?;
        tx.execute_batch(limits, sql).await?;
        tx.commit().await
    }

    async fn begin(&self, limits: &CallLimits) -> Result<Box<dyn SqlTransaction>, SqlError> {
        // The sql interface promises a transaction is its store's only writer (as on
        // SQLite, so a read-then-write in one is safe): every transaction takes the store's
        // writer lock first, waiting at most until the request's deadline. The connection
        // is already the transaction's while it waits: if this future is dropped (its
        // request was), the transaction's drop cancels the wait and discards the connection
        // instead of handing the pool one that is inside a transaction.
        let mut tx = self.lease(self.client(limits.deadline).await?, true);
        tx.busy = true;
        let c = tx.client()?;
        let r = run(c, limits.deadline, async {
            c.batch_execute(BEGIN_WRITER).await.map_err(map_err)
        })
        .await;
        tx.busy = false;
        if let Err(e) = r {
            if let Some(c) = tx.client.take() {
                drop(Object::take(c));
            }
            return Err(match e {
                SqlError::LimitExceeded(_) => {
                    SqlError::Unavailable("the store's writer stayed busy past the deadline".into())
                }
                e => e,
            });
        }
        // As its only writer, it sees what every earlier one left.
        if let Some(cap) = &self.cap {
            if cap.due() {
                measure(tx.client()?, cap).await;
            }
            tx.began = cap.last();
        }
        Ok(Box::new(tx))
    }

    async fn query_host(&self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let mut tx = self.lease(self.client(host_deadline()).await?, true);
        // The host's own reads grow nothing: no size check at their commit.
        tx.cap = None;
        tx.busy = true;
        run_begin(&mut tx).await?;
        tx.busy = false;
        let rows = tx.query_host(sql, params).await?;
        Box::new(tx).commit().await?;
        Ok(rows)
    }
}

/// After a full store made room: vacuums its tables (as its own role: the tables it owns),
/// which gives the server back the pages a `DELETE` emptied at their end, and measures it
/// again.
async fn vacuum(pool: Pool, cap: Arc<SizeCap>) {
    let t = Timeouts {
        wait: Some(Duration::from_secs(30)),
        create: Some(Duration::from_secs(30)),
        recycle: Some(Duration::from_secs(30)),
    };
    let Ok(c) = pool.timeout_get(&t).await else {
        return;
    };
    let owned = "SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', n.nspname, c.relname), ', ') \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) 'r' AND c.relowner OPERATOR(pg_catalog.=) \
         (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)";
    let work = async {
        let tables: Option<String> = c.query_one(owned, &[]).await.ok()?.get(0);
        if let Some(tables) = tables {
            let _ = c.batch_execute(&format!("VACUUM {tables}")).await;
        }
        measure(&c, &cap).await
    };
    let _ = tokio::time::timeout(Duration::from_secs(120), work).await;
}

async fn run_begin(tx: &mut PgTransaction) -> Result<(), SqlError> {
    let c = tx.client()?;
    c.batch_execute("BEGIN").await.map_err(map_err)
}

impl PgStore {
    /// Wraps a pooled connection so that it goes back to the pool only in a known state
    /// (see [`PgTransaction`]'s drop). `in_tx`: it is (about to be) inside a transaction.
    fn lease(&self, c: Object, in_tx: bool) -> PgTransaction {
        PgTransaction {
            client: Some(c),
            key: self.key.clone(),
            aborted: false,
            busy: false,
            in_tx,
            cap: self.cap.clone(),
            began: None,
            freed: false,
            pool: self.pool.clone(),
        }
    }
}

/// A transaction (or a lease of a connection for one statement outside any): holds one
/// pooled connection until it ends.
struct PgTransaction {
    client: Option<Object>,
    key: Arc<str>,
    /// A transaction was (or may have been) begun on the connection: it goes back to the
    /// pool only after a clean rollback.
    in_tx: bool,
    /// The store's size cap, what the store measured when this began, and whether it ran
    /// a statement that makes room (for a full store, which then vacuums after it).
    cap: Option<Arc<SizeCap>>,
    began: Option<u64>,
    freed: bool,
    pool: Pool,
    /// A statement failed and the server aborted the transaction: `commit` rolls back and
    /// says so (PostgreSQL itself would answer a COMMIT of it with a silent ROLLBACK).
    aborted: bool,
    /// A statement was sent and its answer not yet taken: if the transaction is dropped
    /// now (its request was), that statement may still be running on the server.
    busy: bool,
}

impl PgTransaction {
    fn client(&self) -> Result<&Object, SqlError> {
        self.client
            .as_ref()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))
    }

    /// After a failed statement: is the transaction still usable? (A statement refused
    /// before it reached the server leaves it so; one the server ran does not.)
    async fn note<T>(&mut self, r: Result<T, SqlError>) -> Result<T, SqlError> {
        self.busy = false;
        if r.is_err()
            && !self.aborted
            && let Some(c) = self.client.as_ref()
        {
            let probe = tokio::time::timeout(Duration::from_secs(5), c.batch_execute("SELECT 1"));
            self.aborted = !matches!(probe.await, Ok(Ok(())));
        }
        r
    }

    /// Refuses a guest statement that could grow a store that is full (measuring it first
    /// if the last measurement is stale or near the cap); reads and what makes room pass.
    async fn room(&mut self, sql: &str, params: &[Value]) -> Result<(), SqlError> {
        let Some(cap) = self.cap.clone() else {
            return Ok(());
        };
        let pieces = pgtext::split(sql);
        let heads: Vec<String> = pieces.iter().map(|p| pgtext::first_word(p)).collect();
        if heads
            .iter()
            .any(|h| matches!(h.as_str(), "DELETE" | "DROP" | "TRUNCATE"))
        {
            self.freed = true;
        }
        if heads.iter().all(|h| reads_or_frees(h)) {
            return Ok(());
        }
        cap.sent(sql.len() + params.iter().map(value_size).sum::<usize>());
        if cap.due()
            && let Ok(c) = self.client()
        {
            measure(c, &cap).await;
        }
        match cap.last() {
            Some(bytes) if cap.is_full() => Err(cap.full(bytes)),
            _ => Ok(()),
        }
    }

    /// Before a commit: a transaction that took the store past its cap (and grew it) is
    /// rolled back instead. A store that was full and had room made vacuums, so the room
    /// made by a `DELETE` counts (dropping or truncating frees at once).
    async fn check_cap_at_commit(&mut self) -> Result<(), SqlError> {
        let Some(cap) = self.cap.clone() else {
            return Ok(());
        };
        if !(cap.due() || cap.is_full()) {
            return Ok(());
        }
        let Some(now) = measure(self.client()?, &cap).await else {
            return Ok(());
        };
        if cap.grew_past(self.began, now) {
            self.finish("ROLLBACK").await?;
            return Err(cap.full(now));
        }
        Ok(())
    }

    async fn finish(&mut self, sql: &str) -> Result<(), SqlError> {
        let c = self
            .client
            .take()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))?;
        match tokio::time::timeout(Duration::from_secs(30), c.batch_execute(sql)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // The connection's state is unknown: it does not go back to the pool.
                drop(Object::take(c));
                Err(map_err(e))
            }
            Err(_) => {
                drop(Object::take(c));
                Err(unavailable(
                    "the server did not answer the end of the transaction",
                ))
            }
        }
    }
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        let Some(c) = self.client.take() else {
            return;
        };
        // Roll back before the connection goes back to the pool; without a runtime to do
        // it on, the connection is closed instead (the server rolls back). If a statement
        // may still be running (its request was dropped mid-call, or while it waited for
        // the writer lock), cancel it, so it does not hold the store's writer lock until
        // it ends on its own, terminate its process if the cancel does not stop it, and
        // close the connection: a cancel the server delivers late must not hit the next
        // borrower's statement.
        let (busy, in_tx) = (self.busy, self.in_tx);
        if c.broken.load(Ordering::Acquire) {
            drop(Object::take(c));
            return;
        }
        if !busy && !in_tx {
            return; // `c` goes back to the pool as it is: nothing ran on it that is not over
        }
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    if busy {
                        c.cancel_or_terminate().await;
                        drop(Object::take(c));
                        return;
                    }
                    let rolled_back =
                        tokio::time::timeout(Duration::from_secs(10), c.batch_execute("ROLLBACK"))
                            .await;
                    if !matches!(rolled_back, Ok(Ok(()))) {
                        drop(Object::take(c));
                    }
                });
            }
            Err(_) => drop(Object::take(c)),
        }
    }
}

#[async_trait]
impl SqlTransaction for PgTransaction {
    async fn query(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError> {
        self.room(sql, params).await?;
        self.busy = true;
        let r = guest_query(self.client()?, limits, sql, params).await;
        self.note(r).await
    }

    async fn execute(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        self.room(sql, params).await?;
        self.busy = true;
        let r = guest_execute(self.client()?, limits, sql, params).await;
        self.note(r).await
    }

    async fn execute_batch(&mut self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        self.room(sql, &[]).await?;
        self.busy = true;
        let r = guest_batch(self.client()?, limits, sql).await;
        self.note(r).await
    }

    async fn execute_host(&mut self, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
        self.busy = true;
        let c = self.client()?;
        let head = sql.trim_start();
        // Savepoints of the host's own (an event's rollback point) need no gate.
        if head.starts_with("SAVEPOINT ")
            || head.starts_with("RELEASE ")
            || head.starts_with("ROLLBACK TO ")
        {
            let r = run(c, host_deadline(), async {
                c.batch_execute(sql).await.map_err(map_err)
            })
            .await;
            if r.is_ok() && head.starts_with("ROLLBACK TO ") {
                // Back at the savepoint: the failure it undid no longer dooms the rest.
                self.aborted = false;
            }
            let r = r.map(|()| ExecResult {
                rows_affected: 0,
                last_insert_id: None,
            });
            return self.note(r).await;
        }
        let key = self.key.clone();
        let r = run(c, host_deadline(), host_in_tx(c, &key, sql, params, false))
            .await
            .map(|out| match out {
                HostOut::Done(r) => r,
                HostOut::Rows(_) => ExecResult {
                    rows_affected: 0,
                    last_insert_id: None,
                },
            });
        self.note(r).await
    }

    async fn query_host(&mut self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        self.busy = true;
        let c = self.client()?;
        let key = self.key.clone();
        let r = run(c, host_deadline(), host_in_tx(c, &key, sql, params, true))
            .await
            .map(|out| match out {
                HostOut::Rows(r) => r,
                HostOut::Done(_) => RowSet {
                    columns: vec![],
                    rows: vec![],
                },
            });
        self.note(r).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), SqlError> {
        if self.aborted {
            self.finish("ROLLBACK").await?;
            return Err(SqlError::BadQuery(
                "the transaction was rolled back: a statement in it failed, and PostgreSQL aborts the whole transaction on an error".into(),
            ));
        }
        self.check_cap_at_commit().await?;
        self.finish("COMMIT").await?;
        if self.freed
            && let Some(cap) = self.cap.clone()
            && cap.is_full()
        {
            tokio::spawn(vacuum(self.pool.clone(), cap));
        }
        Ok(())
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), SqlError> {
        self.finish("ROLLBACK").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_transaction_control_is_refused() {
        for s in [
            "COMMIT",
            " /* x */ rollback",
            "begin",
            "SAVEPOINT a",
            "release a",
            "set role postgres",
            "RESET ALL",
            "discard all",
            "copy t from stdin",
            "",
            "  -- nothing",
        ] {
            assert!(check_guest(s).is_err(), "{s}");
        }
        for s in [
            "SELECT 1",
            "set constraints all deferred",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "(SELECT 1)",
        ] {
            assert!(check_guest(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn numerics_dates_and_times_read_as_text() {
        // 12345.678: ndigits 3, weight 1, sign +, dscale 3: [1, 2345, 6780].
        let raw = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
        assert_eq!(numeric_text(&raw).unwrap(), "12345.678");
        // -0.05: ndigits 1, weight -1, sign -, dscale 2: [500].
        let raw = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4];
        assert_eq!(numeric_text(&raw).unwrap(), "-0.05");
        assert_eq!(date_text(0), "2000-01-01");
        assert_eq!(date_text(-1), "1999-12-31");
        assert_eq!(date_text(9_190), "2025-02-28");
        assert_eq!(
            timestamp_text(86_400_000_000 + 3_723_000_001, "Z"),
            "2000-01-02T01:02:03.000001Z"
        );
    }
}
