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
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{ManagerConfig, RecyclingMethod, Timeouts};
use tokio_postgres::NoTls;

pub use self::config::{PgConfig, PgNames};
use self::errors::{map_err, unavailable};
use self::guard::check_guest;
use self::pool::{Object, PgManager, Pool};
use self::provision::admin_config;
pub use self::provision::{deprovision, provision};
use self::statements::{guest_query, host_deadline, measure, run};
use self::transaction::PgTransaction;
use super::server::{Owner, SizeCap, derive};
use super::{CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value};

/// One PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    /// The value of `silo.key` that opens the host's tables.
    key: Arc<str>,
    names: PgNames,
    /// Its `max-size-mb`, if it has one.
    cap: Option<Arc<SizeCap>>,
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

mod config;
mod errors;
mod guard;
mod pool;
mod portable;
mod provision;
mod statements;
#[cfg(test)]
mod tests;
mod text;
mod transaction;
mod values;
