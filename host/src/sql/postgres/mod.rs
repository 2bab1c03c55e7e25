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

use self::guard::{check_guest, guest_sql};
use self::pool::{CANCEL_GRACE, Object, PgManager, Pool};
use self::provision::{admin_config, connect_admin};
pub use self::provision::{deprovision, provision};
use self::transaction::PgTransaction;
use self::values::{Param, Raw, decode};
use super::server::{Owner, SizeCap, derive, reads_or_frees};
use super::{
    CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value, value_size,
};

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
        let database = super::server::postgres_database(prefix, service, store)?;
        Ok(Self { database })
    }
}

/// An identifier, quoted.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(format!("postgres: {e}"))
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
        let secret = crate::secrets::private_secret(&data_dir.join("sql").join("postgres.secret"))
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
    let pieces = text::split(sql);
    for p in &pieces {
        check_guest(p)?;
    }
    for p in pieces {
        // One statement per message: the server refuses a second one the split missed.
        let p = portable::translate(p).into_owned();
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
        text::first_word(sql).as_str(),
        "SELECT" | "SHOW" | "VALUES" | "TABLE"
    ) && !sql.to_ascii_uppercase().contains("FOR UPDATE")
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

mod guard;
mod pool;
mod portable;
mod provision;
#[cfg(test)]
mod tests;
mod text;
mod transaction;
mod values;
