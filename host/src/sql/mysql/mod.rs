//! The MariaDB (MySQL protocol) backend: each store its own database and its own login user
//! on a shared server, reached through a pool of connections logged in as that user.
//!
//! **Provisioning** ([`provision`]). At open, the host connects with the administrative URL
//! of `[backends.mysql]` and makes sure of: a database `PREFIX_SERVICE_STORE` for the
//! service's tables; a database `PREFIX_SERVICE_STORE_host` for the host's (outbox, inbox,
//! saga log, migrations); a login user `'PREFIX_SERVICE_STORE'@'%'` whose password is
//! derived from `DATA/sql/mysql.secret`, with privileges on its own database only (nothing
//! at global level) and EXECUTE on two procedures of the host database; and a definer
//! account `PREFIX_SERVICE_STORE_def@localhost` that is locked (it can never log in) and
//! holds the row privileges on the host tables.
//!
//! **The host's tables, in the guest's transaction** (docs/mariadb-backend-design.md, design
//! A). The host writes its rows on the same connection, in the same transaction, as the
//! guest's statements. The login user has no privilege on the host database's tables, so
//! the host runs its statements through `silo_exec`, a `SQL SECURITY DEFINER` procedure
//! that runs them as the locked definer, after checking a token bound to the connection:
//! `hex(sha256(master ':' CONNECTION_ID() ':' salt))`, where the master is readable only by
//! the definer and the salt is drawn per connection by `silo_session()`. The host computes
//! the token once per pooled connection; it travels as a bound parameter of the binary
//! protocol, never in statement text. A token seen by another connection is worthless there.
//! `silo_exec` also refuses to run outside an open transaction (`@@in_transaction`).
//!
//! **Guest statements** go through the binary protocol (prepared statements: one statement
//! per call, `?` placeholders native). Transaction control, session changes, `CALL`,
//! dynamic SQL, locks, `LOAD`, `HANDLER`, `XA`, `KILL` and executable comments are refused
//! before they are sent; inside a transaction so is every statement that would commit it
//! implicitly (DDL). Schema set-up in `execute_batch` may run DDL, which MariaDB commits as
//! it goes: such a batch is not atomic (its DML between DDL statements is).
//!
//! **Limits.** Every statement runs under `max_statement_time` set from the call's budget;
//! a server that does not answer past it (plus a grace) has its connection killed. A
//! transaction's writer lock is a row lock in the host database, waited for at most until
//! the request's deadline (`innodb_lock_wait_timeout`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mysql_async::Pool;

pub use self::config::{MyConfig, MyNames};
use self::guard::{check_guest, reads_only};
use self::provision::admin_opts;
pub use self::provision::{deprovision, provision};
use self::shared::Shared;
use self::statement::{exec_result, guest_run, rowset};
use self::transaction::open_tx;
use super::server::{Owner, SizeCap, derive};
use super::{CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value};

/// One MariaDB store.
pub struct MyStore {
    shared: Arc<Shared>,
}

impl MyStore {
    /// Provisions (see [`provision`]) and opens the store `store` of `service`.
    pub async fn open(
        config: &MyConfig,
        data_dir: &Path,
        service: &str,
        store: &str,
    ) -> Result<Self, SqlError> {
        let secret = crate::secrets::private_secret(&data_dir.join("sql").join("mysql.secret"))
            .map_err(|e| SqlError::Other(format!("the mysql secret: {e}")))?;
        let names = MyNames::new(&config.prefix, service, store)?;
        let owner = Owner::this_host(&secret, &names.database, data_dir);
        let opts = provision(config, &secret, &names, service, store, &owner).await?;
        let pool = Pool::new(opts.clone());
        let master = derive(&secret, "master", &names.database);
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                opts,
                master,
                names,
                tokens: Mutex::new(HashMap::new()),
                cap: None,
                admin: admin_opts(config)?,
                meter: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// This store, with its size capped at `max_bytes` (see [`SizeCap`]).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.cap = Some(SizeCap::new(max_bytes));
        }
        self
    }

    /// The service's database (and user) name on the server.
    pub fn database(&self) -> &str {
        &self.shared.names.database
    }

    /// The host's database name on the server.
    pub fn host_database(&self) -> &str {
        &self.shared.names.host_db
    }
}

#[async_trait]
impl SqlStore for MyStore {
    fn backend(&self) -> &'static str {
        "mysql"
    }

    async fn query(
        &self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError> {
        check_guest(sql)?;
        // A full store reads in a transaction too: its commit checks the store's size.
        if !reads_only(sql) || self.shared.cap.as_ref().is_some_and(|c| c.is_full()) {
            let mut tx = self.begin(limits).await?;
            let rows = tx.query(limits, sql, params).await?;
            tx.commit().await?;
            return Ok(rows);
        }
        let mut c = self.shared.conn(limits.deadline).await?;
        guest_run(&self.shared, &mut c, limits, sql, params, true)
            .await
            .map(rowset)
    }

    async fn execute(
        &self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        check_guest(sql)?;
        let mut tx = open_tx(&self.shared, limits.deadline, true).await?;
        self.shared.room(sql, params).await?;
        let c = tx.conn()?;
        let r = guest_run(&self.shared, c, limits, sql, params, false).await?;
        Box::new(tx).commit().await?;
        Ok(exec_result(&r))
    }

    async fn execute_batch(&self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        let mut tx = self.begin(limits).await?;
        tx.execute_batch(limits, sql).await?;
        tx.commit().await
    }

    async fn begin(&self, limits: &CallLimits) -> Result<Box<dyn SqlTransaction>, SqlError> {
        Ok(Box::new(
            open_tx(&self.shared, limits.deadline, true).await?,
        ))
    }

    async fn query_host(&self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tx = open_tx(&self.shared, deadline, false).await?;
        let rows = tx.query_host(sql, params).await?;
        Box::new(tx).commit().await?;
        Ok(rows)
    }
}

mod config;
mod errors;
mod guard;
mod portable;
mod provision;
mod quote;
mod shared;
mod statement;
#[cfg(test)]
mod tests;
mod text;
mod transaction;
mod values;
