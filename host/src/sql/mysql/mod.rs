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
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Statement};
use sha2::Digest;

use self::guard::commits_implicitly;
use self::guard::{check_guest, check_guest_in_tx, reads_only};
use self::provision::admin_opts;
pub use self::provision::{deprovision, provision};
use self::transaction::open_tx;
use self::values::{decode, params_of, to_my};
use super::server::{Owner, SizeCap, derive, reads_or_frees};
use super::{
    CallLimits, ExecResult, RowSet, SqlError, SqlStore, SqlTransaction, Value, value_size,
};

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
        let database = super::server::mysql_database(prefix, service, store)?;
        Ok(Self {
            host_db: format!("{database}_host"),
            definer: format!("{database}_def"),
            database,
        })
    }
}

/// An identifier, quoted.
fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A string literal (for names, hex secrets and paths the host made).
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(format!("mariadb: {e}"))
}

/// How many parameters a host statement may have (`silo_exec`'s slots).
const HOST_PARAMS: usize = 16;

/// What every session of a store starts with (and gets back after each reset): strict
/// types, and no silent cut of a recursive query (the statement budget bounds it).
const SESSION_SETUP: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_CREATE_USER', \
     max_recursive_iterations = 4294967295, character_set_results = 'utf8mb4'";

/// What a store shares between its transactions.
struct Shared {
    pool: Pool,
    /// How to connect as the store's user (for killing a runaway statement).
    opts: Opts,
    master: String,
    names: MyNames,
    /// The host token of each pooled connection, by connection id.
    tokens: Mutex<HashMap<u32, Arc<str>>>,
    /// Its `max-size-mb`, if it has one, and the administrative connection that measures
    /// it (the sizes of tablespace files are the administrator's to read).
    cap: Option<SizeCap>,
    admin: Opts,
    meter: tokio::sync::Mutex<Option<Conn>>,
}

/// The store's size as its cap counts it: the files of its two databases' tables (one per
/// table, `innodb_file_per_table`), less the free extents in them. Parameters: the two
/// tablespace-name patterns, the two database names.
const MEASURE: &str = "SELECT CAST(\
     COALESCE((SELECT SUM(FILE_SIZE) FROM information_schema.INNODB_SYS_TABLESPACES \
               WHERE NAME LIKE ? OR NAME LIKE ?), 0) \
     - COALESCE((SELECT SUM(DATA_FREE) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA IN (?, ?) AND ENGINE = 'InnoDB'), 0) AS SIGNED)";

/// `LIKE` pattern of the tablespaces of database `db`: InnoDB names them `db/table`, with
/// `-` spelled `@002d` as in the file names.
fn tablespaces_of(db: &str) -> String {
    format!("{}/%", db.replace('-', "@002d").replace('_', "\\_"))
}

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

impl Shared {
    async fn conn(&self, deadline: Instant) -> Result<Conn, SqlError> {
        match tokio::time::timeout_at(deadline.into(), self.pool.get_conn()).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(SqlError::Unavailable(
                "mariadb: no connection became free before the deadline".into(),
            )),
        }
    }

    /// The host token of `conn` (drawing its salt the first time).
    async fn token(&self, conn: &mut Conn, fresh: bool) -> Result<Arc<str>, SqlError> {
        let id = conn.id();
        if !fresh && let Some(t) = self.tokens.lock().unwrap().get(&id) {
            return Ok(t.clone());
        }
        let row: Option<(u64, String)> = conn
            .exec_first(
                format!("CALL {}.silo_session()", ident(&self.names.host_db)),
                (),
            )
            .await
            .map_err(map_err)?;
        let (cid, salt) =
            row.ok_or_else(|| SqlError::Other("silo_session returned no row".into()))?;
        let tok: Arc<str> = hex::encode(sha2::Sha256::digest(format!(
            "{}:{cid}:{salt}",
            self.master
        )))
        .into();
        let mut map = self.tokens.lock().unwrap();
        if map.len() > 4096 {
            map.clear();
        }
        map.insert(id, tok.clone());
        Ok(tok)
    }

    /// Measures the store and records it in its cap; `None` if it has none or the
    /// measurement failed.
    async fn measure(&self) -> Option<u64> {
        let cap = self.cap.as_ref()?;
        let mut meter = self.meter.lock().await;
        let db = &self.names.database;
        let params = (
            tablespaces_of(db),
            tablespaces_of(&self.names.host_db),
            db.clone(),
            self.names.host_db.clone(),
        );
        let m = async {
            if meter.is_none() {
                *meter = Some(Conn::new(self.admin.clone()).await.map_err(map_err)?);
            }
            let c = meter.as_mut().expect("just connected");
            c.exec_first::<(i64,), _, _>(MEASURE, params)
                .await
                .map_err(map_err)
        };
        match tokio::time::timeout(Duration::from_secs(5), m).await {
            Ok(Ok(Some((bytes,)))) => {
                let bytes = u64::try_from(bytes).unwrap_or(0);
                cap.record(bytes);
                Some(bytes)
            }
            _ => {
                *meter = None;
                None
            }
        }
    }

    /// Refuses a guest statement that could grow a full store (see [`SizeCap`]).
    async fn room(&self, sql: &str, params: &[Value]) -> Result<(), SqlError> {
        let Some(cap) = &self.cap else {
            return Ok(());
        };
        if text::split(sql)
            .iter()
            .all(|p| reads_or_frees(text::leading_words(p, 1).first().map_or("", |w| w)))
        {
            return Ok(());
        }
        cap.sent(sql.len() + params.iter().map(value_size).sum::<usize>());
        if cap.due() {
            self.measure().await;
        }
        match cap.last() {
            Some(bytes) if cap.is_full() => Err(cap.full(bytes)),
            _ => Ok(()),
        }
    }

    /// Kills connection `id` from a connection of its own (the store's user may end its
    /// own threads): its statement stops and the connection is gone.
    async fn kill(&self, id: u32) {
        let opts = OptsBuilder::from_opts(self.opts.clone()).setup(Vec::<String>::new());
        let kill = async {
            if let Ok(mut c) = Conn::new(opts).await {
                let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
                let _ = c.disconnect().await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), kill).await;
        self.tokens.lock().unwrap().remove(&id);
    }
}

/// Maps a driver error to what the guest may see.
fn map_err(e: mysql_async::Error) -> SqlError {
    use mysql_async::Error as E;
    match e {
        E::Server(s) => map_server(s.code, &s.state, s.message),
        E::Driver(d) => {
            let m = d.to_string();
            if matches!(d, mysql_async::DriverError::StmtParamsMismatch { .. }) {
                SqlError::BadQuery(m)
            } else if matches!(d, mysql_async::DriverError::PoolDisconnected) {
                unavailable(m)
            } else {
                SqlError::Other(format!("mariadb: {m}"))
            }
        }
        E::Io(e) => unavailable(e),
        E::Url(e) => SqlError::Other(format!("mariadb url: {e}")),
        E::Other(e) => SqlError::Other(format!("mariadb: {e}")),
    }
}

fn map_server(code: u16, state: &str, m: String) -> SqlError {
    match code {
        1062 | 1022 | 1169 | 1451 | 1452 | 1216 | 1217 | 1048 | 1364 | 4025 | 3819 | 1557
        | 1761 | 1762 | 1859 => SqlError::ConstraintViolation(m),
        1142 | 1143 | 1044 | 1045 | 1227 | 1370 | 1211 | 1410 | 1698 | 1356 | 1449 => {
            SqlError::AccessDenied(m)
        }
        1644 if m.starts_with("silo: access denied") => SqlError::AccessDenied(m),
        1644 if m.starts_with("silo: host statement outside") => SqlError::BadQuery(format!(
            "{m} (a schema change committed the transaction early)"
        )),
        1969 | 3024 | 1317 | 1028 => SqlError::LimitExceeded(
            "the statement ran past its time budget or the request's deadline".into(),
        ),
        1205 | 1213 | 1040 | 1203 | 1226 | 1053 | 1927 | 2006 | 2013 => SqlError::Unavailable(m),
        1114 | 1041 | 1037 | 1038 | 1135 => SqlError::LimitExceeded(m),
        1210 => SqlError::BadQuery(m),
        _ => match state.get(..2).unwrap_or("") {
            "23" => SqlError::ConstraintViolation(m),
            "42" | "22" | "21" | "0A" | "3D" | "3F" | "25" | "HY" if code < 2000 => {
                SqlError::BadQuery(m)
            }
            "08" | "40" => SqlError::Unavailable(m),
            "70" => SqlError::LimitExceeded(m),
            _ => SqlError::Other(m),
        },
    }
}

/// What a statement returned: its first row set (if it had one) and the counts.
struct Outcome {
    rows: Option<RowSet>,
    affected: u64,
    last_insert_id: Option<u64>,
}

/// Executes a prepared statement and reads every result set (a `CALL` may send several),
/// keeping the first with columns, against the size limit.
async fn run_stmt(
    conn: &mut Conn,
    stmt: &Statement,
    params: Params,
    max_bytes: usize,
) -> Result<Outcome, SqlError> {
    let mut r = conn.exec_iter(stmt, params).await.map_err(map_err)?;
    let mut first: Option<RowSet> = None;
    let mut guard = 0;
    while !r.is_empty() && guard < 64 {
        guard += 1;
        let cols = r.columns().unwrap_or_else(|| Arc::from(Vec::new()));
        let mut rows = Vec::new();
        let mut size = 0usize;
        let keep = first.is_none() && !cols.is_empty();
        while let Some(row) = r.next().await.map_err(map_err)? {
            if !keep {
                continue;
            }
            let mut out = Vec::with_capacity(cols.len());
            for (i, v) in row.unwrap().into_iter().enumerate() {
                let v = decode(&cols[i], v);
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
        if keep {
            first = Some(RowSet {
                columns: cols.iter().map(|c| c.name_str().into_owned()).collect(),
                rows,
            });
        }
    }
    Ok(Outcome {
        rows: first,
        affected: r.affected_rows(),
        last_insert_id: r.last_insert_id(),
    })
}

/// Runs `f` on `conn` under the server's `max_statement_time` for `deadline`; if the server
/// does not stop it (plus a grace), the connection is killed and the call fails.
async fn bounded<T>(
    shared: &Shared,
    conn: &mut Conn,
    deadline: Instant,
    f: impl AsyncFnOnce(&mut Conn) -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(SqlError::LimitExceeded(
            "the statement ran past its time budget or the request's deadline".into(),
        ));
    }
    let secs = left.as_secs_f64().max(0.001);
    let id = conn.id();
    let work = async {
        conn.query_drop(format!("SET SESSION max_statement_time = {secs:.3}"))
            .await
            .map_err(map_err)?;
        f(conn).await
    };
    match tokio::time::timeout_at((deadline + Duration::from_secs(1)).into(), work).await {
        Ok(r) => r,
        Err(_) => {
            shared.kill(id).await;
            Err(SqlError::LimitExceeded(
                "the statement ran past its time budget or the request's deadline".into(),
            ))
        }
    }
}

/// Runs a guest statement on `conn` (already checked).
async fn guest_run(
    shared: &Shared,
    conn: &mut Conn,
    limits: &CallLimits,
    sql: &str,
    params: &[Value],
    rows: bool,
) -> Result<Outcome, SqlError> {
    let max = limits.max_result_bytes;
    let sql: &str = &portable::translate(sql);
    bounded(
        shared,
        conn,
        limits.statement_deadline(),
        async |c: &mut Conn| {
            let stmt = c.prep(sql).await.map_err(map_err)?;
            let want = usize::from(stmt.num_params());
            if want != params.len() {
                return Err(SqlError::BadQuery(format!(
                    "the statement has {want} parameters, {} were given",
                    params.len()
                )));
            }
            // (MariaDB's prepare announces no columns for `… RETURNING`: the word tells.)
            if !rows && (!stmt.columns().is_empty() || text::has_word(sql, "RETURNING")) {
                return Err(SqlError::BadQuery(
                    "the statement returns rows: use `query`".into(),
                ));
            }
            run_stmt(c, &stmt, params_of(params), max).await
        },
    )
    .await
}

fn rowset(o: Outcome) -> RowSet {
    o.rows.unwrap_or(RowSet {
        columns: vec![],
        rows: vec![],
    })
}

fn exec_result(o: &Outcome) -> ExecResult {
    ExecResult {
        rows_affected: o.affected,
        last_insert_id: o
            .last_insert_id
            .filter(|&i| i != 0)
            .and_then(|i| i64::try_from(i).ok()),
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

mod guard;
mod portable;
mod provision;
#[cfg(test)]
mod tests;
mod text;
mod transaction;
mod values;
