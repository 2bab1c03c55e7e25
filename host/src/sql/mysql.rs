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

use super::mytext;
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
        // `PREFIX_SERVICE_STORE` is unambiguous read from the right (service and store
        // names have no `_`), but the host database and definer append `_host` and `_def`:
        // store `host` of service `b` under prefix `silo_a` would be database
        // `silo_a_b_host`, the host database of store `b` of service `a` under prefix `silo`
        // (two hosts sharing a server). Those two store names are reserved here instead.
        if matches!(store, "host" | "def") {
            return Err(SqlError::Other(format!(
                "a MariaDB store cannot be named `{store}`: its database or user would be another store's `_{store}`"
            )));
        }
        let database = super::server::store_name(
            prefix,
            service,
            store,
            59,
            "MariaDB's names are 64, and the host database adds `_host`",
        )?;
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

/// The backend's own tables in the host database (`{h}`), beside the host's tables of
/// `host_tables`: the writer row every writing transaction locks, and the parts of the
/// token `silo_exec` checks.
const HOST_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {h}._silo_writer (id TINYINT PRIMARY KEY) ENGINE=InnoDB",
    "INSERT INTO {h}._silo_writer (id) VALUES (1) ON DUPLICATE KEY UPDATE id = id",
    // The token's parts: the master (only the definer reads it) and a salt per connection
    // (MEMORY: emptied by a server restart, so a reused connection id gets a new salt).
    "CREATE TABLE IF NOT EXISTS {h}._silo_key (id TINYINT PRIMARY KEY, master VARCHAR(64) NOT NULL) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS {h}._silo_conn (conn_id BIGINT UNSIGNED PRIMARY KEY, salt CHAR(32) NOT NULL) ENGINE=MEMORY",
];

/// What every session of a store starts with (and gets back after each reset): strict
/// types, and no silent cut of a recursive query (the statement budget bounds it).
const SESSION_SETUP: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_CREATE_USER', \
     max_recursive_iterations = 4294967295, character_set_results = 'utf8mb4'";

/// A database name as a `GRANT … ON db.*` pattern matches it literally: there `_` and `%`
/// are wildcards (`silo_p_ovision` would match `silo_provision`).
fn grant_db(db: &str) -> String {
    ident(
        &db.replace('\\', "\\\\")
            .replace('_', "\\_")
            .replace('%', "\\%"),
    )
}

/// Where hosts serialize provisioning on a server: a row lock in a database only the
/// administrator can reach. Its name starts with `_`, which no store database's name (nor
/// any `GRANT` pattern for one: those start with the prefix's letter) can.
const PROVISION_DB: &str = "_silo_provision";

/// How long provisioning waits for another host's to finish.
const PROVISION_WAIT_S: u64 = 60;

/// Takes the server's provisioning lock on a connection of its own (the provisioning
/// itself runs DDL, which commits, so the lock cannot live in its transaction); it is held
/// until that connection commits or goes away. Never proceeds without it.
async fn provision_lock(admin: &Opts, config: &MyConfig) -> Result<Conn, SqlError> {
    let server = server_address(admin);
    let mut l = connect_admin(admin, config).await?;
    let db = ident(PROVISION_DB);
    for s in [
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.provision_lock (id TINYINT PRIMARY KEY) ENGINE=InnoDB"
        ),
        format!("INSERT IGNORE INTO {db}.provision_lock (id) VALUES (1)"),
        format!("SET SESSION innodb_lock_wait_timeout = {PROVISION_WAIT_S}"),
        "BEGIN".to_string(),
    ] {
        l.query_drop(&s).await.map_err(map_err)?;
    }
    let locked = l
        .query_drop(format!(
            "SELECT id FROM {db}.provision_lock WHERE id = 1 FOR UPDATE"
        ))
        .await;
    match locked {
        Ok(()) => Ok(l),
        Err(mysql_async::Error::Server(e)) if e.code == 1205 => {
            Err(SqlError::Unavailable(format!(
                "mariadb at {server}: another host held the provisioning lock (`{PROVISION_DB}`.provision_lock) for {PROVISION_WAIT_S} s; not provisioning without it"
            )))
        }
        Err(e) => Err(map_err(e)),
    }
}

/// `HOST:PORT` of the server, for messages.
fn server_address(opts: &Opts) -> String {
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
}

/// An administrative connection, within the config's `connect-timeout-ms` (the greeting and
/// the login included: a server that accepts and never answers holds nothing up).
async fn connect_admin(admin: &Opts, config: &MyConfig) -> Result<Conn, SqlError> {
    match tokio::time::timeout(config.connect_timeout, Conn::new(admin.clone())).await {
        Ok(c) => c.map_err(map_err),
        Err(_) => Err(SqlError::Unavailable(format!(
            "mariadb at {}: no answer within connect-timeout-ms = {}",
            server_address(admin),
            config.connect_timeout.as_millis()
        ))),
    }
}

/// Reads the owner on record of the store: none if the store is new. One made before owners
/// were recorded has none on record; it is this host's if its master (`_silo_key`) is this
/// host's `master`, else another secret's ([`Owner::unrecorded`]).
async fn recorded_owner(
    c: &mut Conn,
    names: &MyNames,
    master: &str,
) -> Result<Option<Owner>, SqlError> {
    let recorded = recorded_owner_row(c, names).await?;
    if recorded.is_some() {
        return Ok(recorded);
    }
    let theirs: Result<Option<String>, _> = c
        .query_first(format!(
            "SELECT master FROM {}._silo_key WHERE id = 1",
            ident(&names.host_db)
        ))
        .await;
    match theirs {
        Ok(Some(m)) if m != master => Ok(Some(Owner::unrecorded())),
        Ok(_) => Ok(None),
        Err(mysql_async::Error::Server(e)) if e.code == 1049 || e.code == 1146 => Ok(None),
        Err(e) => Err(map_err(e)),
    }
}

async fn recorded_owner_row(c: &mut Conn, names: &MyNames) -> Result<Option<Owner>, SqlError> {
    let got: Result<Option<(String, String, String)>, _> = c
        .query_first(format!(
            "SELECT owner_id, folder, machine FROM {}._silo_owner WHERE id = 1",
            ident(&names.host_db)
        ))
        .await;
    match got {
        Ok(row) => Ok(row.map(|(id, folder, machine)| Owner {
            id,
            folder,
            machine,
        })),
        // No such database, no such table.
        Err(mysql_async::Error::Server(e)) if e.code == 1049 || e.code == 1146 => Ok(None),
        Err(e) => Err(map_err(e)),
    }
}

fn admin_opts(config: &MyConfig) -> Result<Opts, SqlError> {
    Opts::from_url(&config.admin_url)
        .map_err(|e| SqlError::Other(format!("[backends.mysql] url: {e}")))
}

/// Removes the store's databases and accounts from the server (what `silo demo isolation`
/// made for one run). Everything the store held is gone.
pub async fn deprovision(config: &MyConfig, service: &str, store: &str) -> Result<(), SqlError> {
    let names = MyNames::new(&config.prefix, service, store)?;
    let mut c = connect_admin(&admin_opts(config)?, config).await?;
    for s in [
        format!("DROP DATABASE IF EXISTS {}", ident(&names.database)),
        format!("DROP DATABASE IF EXISTS {}", ident(&names.host_db)),
        format!("DROP USER IF EXISTS {}@'%'", lit(&names.database)),
        format!("DROP USER IF EXISTS {}@'localhost'", lit(&names.definer)),
    ] {
        c.query_drop(&s).await.map_err(map_err)?;
    }
    let _ = c.disconnect().await;
    Ok(())
}

/// Creates (or brings up to date) the store's databases, accounts, host tables and
/// procedures through the administrative connection; returns how the store connects.
///
/// Under the server's provisioning lock, the first thing it does is read who owns the
/// store ([`Owner`], recorded in the host database, which the store's user cannot read): a
/// store another data folder owns is refused before its user's password is touched.
pub async fn provision(
    config: &MyConfig,
    secret: &str,
    names: &MyNames,
    service: &str,
    store: &str,
    owner: &Owner,
) -> Result<Opts, SqlError> {
    let admin = admin_opts(config)?;
    let mut c = connect_admin(&admin, config).await?;
    let db = &names.database;
    let h = ident(&names.host_db);
    let password = derive(secret, "password", db);
    let master = derive(secret, "master", db);
    let user = format!("{}@'%'", lit(db));
    let def = format!("{}@'localhost'", lit(&names.definer));
    // Accounts are server-wide: one host at a time creates them. (Not a named lock: any
    // login, a store's own included, can take `GET_LOCK('…')` of any name.)
    let mut lock = provision_lock(&admin, config).await?;
    let theirs = match recorded_owner(&mut c, names, &master).await {
        Ok(t) => t,
        Err(e) => {
            let _ = lock.disconnect().await;
            return Err(e);
        }
    };
    if let Some(theirs) = theirs
        && theirs.id != owner.id
    {
        let _ = lock.disconnect().await;
        let _ = c.disconnect().await;
        return Err(theirs.refusal(
            owner,
            &format!("MariaDB databases and users of store `{db}`"),
            &server_address(&admin),
            "sql/mysql.secret",
            "backends.mysql",
            &config.prefix,
        ));
    }
    let mut script = vec![
        format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin",
            ident(db)
        ),
        format!(
            "CREATE DATABASE IF NOT EXISTS {h} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
        ),
        format!(
            "CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {}",
            lit(&password)
        ),
        format!(
            "ALTER USER {user} IDENTIFIED BY {} WITH MAX_USER_CONNECTIONS {}",
            lit(&password),
            // Room for connections the pool has let go of but the server has not yet
            // closed (a dropped or killed one disconnects in the background).
            2 * config.pool_size + 8
        ),
        // An explicit list (no CREATE ROUTINE, EVENT, LOCK TABLES or GRANT OPTION), on
        // the database's name with its `_` escaped (unescaped, it is a pattern).
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, \
             CREATE TEMPORARY TABLES, CREATE VIEW, SHOW VIEW, TRIGGER, REFERENCES \
             ON {}.* TO {user}",
            grant_db(db)
        ),
        format!("CREATE USER IF NOT EXISTS {def} ACCOUNT LOCK"),
        format!("ALTER USER {def} ACCOUNT LOCK"),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE ON {}.* TO {def}",
            grant_db(&names.host_db)
        ),
    ];
    let host_tables = super::host_tables::create_statements("mysql");
    script.extend(
        host_tables
            .iter()
            .map(String::as_str)
            .chain(HOST_SCHEMA.iter().copied())
            .map(|s| s.replace("{h}", &h)),
    );
    script.push(format!(
        "INSERT INTO {h}._silo_key (id, master) VALUES (1, {m}) ON DUPLICATE KEY UPDATE master = {m}",
        m = lit(&master)
    ));
    script.push(format!(
        "DELETE FROM {h}._silo_conn WHERE conn_id NOT IN (SELECT ID FROM information_schema.PROCESSLIST)"
    ));
    // Who owns the store (checked above, under the lock).
    script.push(format!(
        "CREATE TABLE IF NOT EXISTS {h}._silo_owner (id TINYINT PRIMARY KEY, owner_id VARCHAR(64) NOT NULL, \
         folder TEXT NOT NULL, machine TEXT NOT NULL) ENGINE=InnoDB"
    ));
    script.push(format!(
        "REPLACE INTO {h}._silo_owner (id, owner_id, folder, machine) VALUES (1, {}, {}, {})",
        lit(&owner.id),
        lit(&owner.folder),
        lit(&owner.machine)
    ));
    script.push(format!(
        "CREATE OR REPLACE DEFINER={def} PROCEDURE {h}.silo_session() SQL SECURITY DEFINER \
         BEGIN \
           INSERT IGNORE INTO {h}._silo_conn VALUES (CONNECTION_ID(), HEX(RANDOM_BYTES(16))); \
           SELECT conn_id, salt FROM {h}._silo_conn WHERE conn_id = CONNECTION_ID(); \
         END"
    ));
    script.push(format!(
        "CREATE OR REPLACE DEFINER={def} PROCEDURE {h}._silo_auth(tok CHAR(64)) SQL SECURITY DEFINER \
         BEGIN \
           IF tok IS NULL OR NOT EXISTS ( \
               SELECT 1 FROM {h}._silo_key k JOIN {h}._silo_conn c ON c.conn_id = CONNECTION_ID() \
               WHERE k.id = 1 AND SHA2(CONCAT(k.master, ':', c.conn_id, ':', c.salt), 256) = tok) THEN \
             SIGNAL SQLSTATE '42000' SET MESSAGE_TEXT = 'silo: access denied'; \
           END IF; \
           IF @@in_transaction = 0 THEN \
             SIGNAL SQLSTATE '25000' SET MESSAGE_TEXT = 'silo: host statement outside a transaction'; \
           END IF; \
         END"
    ));
    let params: Vec<String> = (1..=HOST_PARAMS)
        .map(|i| format!("p{i} LONGBLOB"))
        .collect();
    let mut ladder = String::from("WHEN 0 THEN EXECUTE IMMEDIATE q; ");
    for n in 1..=HOST_PARAMS {
        let using: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
        ladder.push_str(&format!(
            "WHEN {n} THEN EXECUTE IMMEDIATE q USING {}; ",
            using.join(", ")
        ));
    }
    script.push(format!(
        "CREATE OR REPLACE DEFINER={def} PROCEDURE {h}.silo_exec(tok CHAR(64), q LONGTEXT, n TINYINT UNSIGNED, {}) \
         SQL SECURITY DEFINER \
         BEGIN \
           CALL {h}._silo_auth(tok); \
           CASE n {ladder} END CASE; \
         END",
        params.join(", ")
    ));
    script.push(format!(
        "GRANT EXECUTE ON PROCEDURE {h}.silo_session TO {user}"
    ));
    script.push(format!(
        "GRANT EXECUTE ON PROCEDURE {h}.silo_exec TO {user}"
    ));
    let mut result = Ok(());
    for s in &script {
        if let Err(e) = c.query_drop(s).await {
            result = Err(map_err(e));
            break;
        }
    }
    if result.is_ok() {
        // Grants an earlier version made on the unescaped name (a pattern): gone.
        for (who, on) in [(&user, db.as_str()), (&def, names.host_db.as_str())] {
            match c
                .query_drop(format!(
                    "REVOKE ALL PRIVILEGES ON {}.* FROM {who}",
                    ident(on)
                ))
                .await
            {
                Ok(()) => {}
                Err(mysql_async::Error::Server(e)) if e.code == 1141 => {} // none
                Err(e) => {
                    result = Err(map_err(e));
                    break;
                }
            }
        }
    }
    let _ = lock.query_drop("COMMIT").await;
    let _ = lock.disconnect().await;
    let _ = c.disconnect().await;
    result?;
    tracing::debug!(service, store, database = %db, "mariadb store provisioned");

    let own = OptsBuilder::from_opts(admin)
        .user(Some(db.clone()))
        .pass(Some(password))
        .db_name(Some(db.clone()))
        .stmt_cache_size(128)
        .setup(vec![SESSION_SETUP])
        .pool_opts(
            PoolOpts::default()
                .with_constraints(
                    PoolConstraints::new(0, config.pool_size.max(1))
                        .ok_or_else(|| SqlError::Other("mysql pool size".into()))?,
                )
                .with_reset_connection(true),
        );
    Ok(own.into())
}

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
        let secret = crate::admin::private_secret(&data_dir.join("sql").join("mysql.secret"))
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
        if mytext::split(sql)
            .iter()
            .all(|p| reads_or_frees(mytext::leading_words(p, 1).first().map_or("", |w| w)))
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

// ---------------------------------------------------------------------------------------
// Guest statements.

/// Statements a guest may never send.
const DENIED_HEADS: &[&str] = &[
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "LOCK",
    "UNLOCK",
    "LOAD",
    "HANDLER",
    "XA",
    "KILL",
    "CALL",
    "DO",
    "USE",
    "FLUSH",
    "RESET",
    "PURGE",
    "CHANGE",
    "SHUTDOWN",
    "INSTALL",
    "UNINSTALL",
    "GRANT",
    "REVOKE",
    "BINLOG",
    "CACHE",
    "BACKUP",
    "SIGNAL",
    "RESIGNAL",
    "GET",
    "HELP",
];

/// Functions on the server's named locks. Those locks are server-wide, shared by every
/// login: a service holding `GET_LOCK('x')` would make another service (or a host) that
/// takes the same name wait, and `IS_USED_LOCK` would show it who holds which.
const NAMED_LOCK_FUNCTIONS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
];

/// Statements that commit the open transaction before they run.
const IMPLICIT_COMMIT_HEADS: &[&str] = &[
    "CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "ANALYZE", "OPTIMIZE", "REPAIR", "CHECK",
];

/// What a guest may not send anywhere (checked before the text reaches the server).
fn check_guest(sql: &str) -> Result<(), SqlError> {
    if mytext::has_executable_comment(sql) {
        return Err(SqlError::AccessDenied(
            "executable comments (`/*! … */`) are not accepted".into(),
        ));
    }
    if let Some(f) = NAMED_LOCK_FUNCTIONS
        .iter()
        .find(|f| mytext::has_word(sql, f))
    {
        return Err(SqlError::AccessDenied(format!(
            "`{f}`: the server's named locks are shared by every service on it"
        )));
    }
    let words = mytext::leading_words(sql, 2);
    let Some(head) = words.first() else {
        if mytext::split(sql).is_empty() {
            return Err(SqlError::BadQuery("an empty statement".into()));
        }
        return Ok(());
    };
    if DENIED_HEADS.contains(&head.as_str()) {
        return Err(SqlError::AccessDenied(format!(
            "`{head}` is the host's: transactions are the `begin`/`commit` of the sql interface, and session settings are not a service's to change"
        )));
    }
    Ok(())
}

/// True if `sql` would commit an open transaction (DDL; temporary tables excepted).
fn commits_implicitly(sql: &str) -> bool {
    let words = mytext::leading_words(sql, 3);
    let Some(head) = words.first() else {
        return false;
    };
    if !IMPLICIT_COMMIT_HEADS.contains(&head.as_str()) {
        return false;
    }
    let temporary = words.get(1).is_some_and(|w| w == "TEMPORARY")
        || (words.get(1).is_some_and(|w| w == "OR")
            && words.get(2).is_some_and(|w| w == "TEMPORARY"));
    !(temporary && (head == "CREATE" || head == "DROP"))
}

/// What a guest may send inside a transaction.
fn check_guest_in_tx(sql: &str) -> Result<(), SqlError> {
    check_guest(sql)?;
    if commits_implicitly(sql) {
        return Err(SqlError::AccessDenied(
            "MariaDB commits the transaction before a schema change: run it outside a transaction (or in a migration)".into(),
        ));
    }
    Ok(())
}

/// Whether a statement outside a transaction only reads (else it runs as a one-statement
/// transaction, taking the writer like any other write).
fn reads_only(sql: &str) -> bool {
    let words = mytext::leading_words(sql, 1);
    matches!(
        words.first().map(String::as_str),
        Some("SELECT" | "SHOW" | "VALUES" | "TABLE" | "EXPLAIN" | "DESCRIBE" | "DESC" | "WITH")
    ) && !mytext::has_word(sql, "UPDATE")
        && !mytext::has_word(sql, "LOCK")
        && !mytext::has_word(sql, "INTO")
        && !mytext::has_word(sql, "DELETE")
        && !mytext::has_word(sql, "INSERT")
        && !mytext::has_word(sql, "REPLACE")
}

fn to_my(v: &Value) -> mysql_async::Value {
    match v {
        Value::Null => mysql_async::Value::NULL,
        Value::Integer(i) => mysql_async::Value::Int(*i),
        Value::Real(f) => mysql_async::Value::Double(*f),
        Value::Text(s) => mysql_async::Value::Bytes(s.as_bytes().to_vec()),
        Value::Blob(b) => mysql_async::Value::Bytes(b.clone()),
    }
}

fn params_of(values: &[Value]) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values.iter().map(to_my).collect())
    }
}

fn is_string_type(t: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        t,
        MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_STRING
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_ENUM
            | MYSQL_TYPE_SET
            | MYSQL_TYPE_JSON
            | MYSQL_TYPE_GEOMETRY
            | MYSQL_TYPE_BIT
    )
}

/// A column value as silo's value: integers and floats as such, strings by their
/// character set (63 is binary: a blob), everything else (DECIMAL, dates) as text.
fn decode(col: &mysql_async::Column, v: mysql_async::Value) -> Value {
    use mysql_async::Value as M;
    match v {
        M::NULL => Value::Null,
        M::Int(i) => Value::Integer(i),
        M::UInt(u) => match i64::try_from(u) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Text(u.to_string()),
        },
        M::Float(f) => Value::Real(f.into()),
        M::Double(f) => Value::Real(f),
        M::Bytes(b) => {
            let t = col.column_type();
            let binary = col.character_set() == 63
                && (is_string_type(t) && !matches!(t, ColumnType::MYSQL_TYPE_JSON));
            if binary
                || matches!(
                    t,
                    ColumnType::MYSQL_TYPE_GEOMETRY | ColumnType::MYSQL_TYPE_BIT
                )
            {
                Value::Blob(b)
            } else {
                match String::from_utf8(b) {
                    Ok(s) => Value::Text(s),
                    Err(e) => Value::Blob(e.into_bytes()),
                }
            }
        }
        M::Date(y, mo, d, h, mi, s, us) => {
            if col.column_type() == ColumnType::MYSQL_TYPE_DATE {
                Value::Text(format!("{y:04}-{mo:02}-{d:02}"))
            } else {
                let mut t = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
                if us != 0 {
                    t.push_str(&format!(".{us:06}"));
                }
                Value::Text(t)
            }
        }
        M::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let mut t = format!("{}{hours:02}:{mi:02}:{s:02}", if neg { "-" } else { "" });
            if us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            Value::Text(t)
        }
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
            if !rows && (!stmt.columns().is_empty() || mytext::has_word(sql, "RETURNING")) {
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

// ---------------------------------------------------------------------------------------
// Host statements.

/// True for the host's own savepoint statements (no gate needed).
fn is_host_savepoint(sql: &str) -> bool {
    let head = sql.trim_start();
    head.starts_with("SAVEPOINT ")
        || head.starts_with("RELEASE ")
        || head.starts_with("ROLLBACK TO ")
}

/// Runs a host statement through `silo_exec` on `conn`, inside its open transaction.
async fn host_call(
    shared: &Shared,
    conn: &mut Conn,
    sql: &str,
    params: &[Value],
) -> Result<Outcome, SqlError> {
    if params.len() > HOST_PARAMS {
        return Err(SqlError::Other(format!(
            "a host statement binds more than {HOST_PARAMS} parameters"
        )));
    }
    let (q, binds) = (sql, params);
    let call = format!(
        "CALL {}.silo_exec(?, ?, ?{})",
        ident(&shared.names.host_db),
        ", ?".repeat(HOST_PARAMS)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fresh = false;
    loop {
        let tok = shared.token(conn, fresh).await?;
        let mut args = vec![
            mysql_async::Value::Bytes(tok.as_bytes().to_vec()),
            mysql_async::Value::Bytes(q.as_bytes().to_vec()),
            mysql_async::Value::Int(binds.len() as i64),
        ];
        args.extend(binds.iter().map(to_my));
        args.resize(3 + HOST_PARAMS, mysql_async::Value::NULL);
        let r = bounded(shared, conn, deadline, async |c: &mut Conn| {
            let stmt = c.prep(&call).await.map_err(map_err)?;
            run_stmt(c, &stmt, Params::Positional(args), usize::MAX).await
        })
        .await;
        match r {
            // A connection id reused after a server restart: draw a new salt once.
            Err(SqlError::AccessDenied(m)) if !fresh && m.starts_with("silo: access denied") => {
                fresh = true;
            }
            r => return r,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store and its transactions.

/// Reads the writer row: while the transaction lives it is the store's only writer.
const LOCK_WRITER: &str = "SELECT id FROM _silo_writer WHERE id = 1 FOR UPDATE";

async fn open_tx(
    shared: &Arc<Shared>,
    deadline: Instant,
    writer: bool,
) -> Result<MyTransaction, SqlError> {
    let mut conn = shared.conn(deadline).await?;
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .as_secs()
        .clamp(1, 1 << 30);
    let r = async {
        conn.query_drop(format!("SET SESSION innodb_lock_wait_timeout = {wait}"))
            .await
            .map_err(map_err)?;
        conn.query_drop("BEGIN").await.map_err(map_err)?;
        if writer {
            let r = tokio::time::timeout_at(
                deadline.into(),
                host_call(shared, &mut conn, LOCK_WRITER, &[]),
            )
            .await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(SqlError::Unavailable(_)))
                | Ok(Err(SqlError::LimitExceeded(_)))
                | Err(_) => {
                    return Err(SqlError::Unavailable(
                        "the store's writer stayed busy past the deadline".into(),
                    ));
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        let id = conn.id();
        drop(conn);
        if matches!(e, SqlError::Unavailable(_)) {
            shared.kill(id).await;
        }
        return Err(e);
    }
    // As the store's only writer, it sees what every earlier one left.
    let mut began = None;
    if writer && let Some(cap) = &shared.cap {
        if cap.due() {
            shared.measure().await;
        }
        began = cap.last();
    }
    Ok(MyTransaction {
        conn: Some(conn),
        shared: shared.clone(),
        writer,
        aborted: false,
        began,
    })
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

/// A transaction: holds one pooled connection until it ends. Dropping the connection
/// returns it to the pool, which resets it (rolling back whatever is open).
struct MyTransaction {
    conn: Option<Conn>,
    shared: Arc<Shared>,
    /// Whether it holds the writer row (re-taken after a schema change committed early).
    writer: bool,
    /// The server rolled the whole transaction back (a deadlock): what follows would run
    /// outside any transaction, so every statement and `commit` fail.
    aborted: bool,
    /// What the store measured when it began (for its size cap).
    began: Option<u64>,
}

impl MyTransaction {
    fn conn(&mut self) -> Result<&mut Conn, SqlError> {
        if self.aborted {
            return Err(SqlError::BadQuery(
                "the transaction was rolled back by the server (a deadlock): roll it back and retry".into(),
            ));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))
    }

    /// After a failed statement: is the transaction still open? (MariaDB undoes only the
    /// failed statement, except on a deadlock, where the whole transaction is gone.)
    async fn note<T>(&mut self, r: Result<T, SqlError>) -> Result<T, SqlError> {
        if r.is_err()
            && !self.aborted
            && let Some(c) = self.conn.as_mut()
        {
            let probe = tokio::time::timeout(
                Duration::from_secs(5),
                c.query_first::<(i64,), _>("SELECT @@in_transaction"),
            )
            .await;
            self.aborted = !matches!(probe, Ok(Ok(Some((1,)))));
        }
        r
    }

    async fn finish(&mut self, sql: &str) -> Result<(), SqlError> {
        if self.aborted && sql == "COMMIT" {
            self.conn.take();
            return Err(SqlError::BadQuery(
                "the transaction was rolled back by the server (a deadlock or a lost connection)"
                    .into(),
            ));
        }
        let mut c = self
            .conn
            .take()
            .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))?;
        match tokio::time::timeout(Duration::from_secs(30), c.query_drop(sql)).await {
            Ok(Ok(())) => Ok(()),
            // A connection that cannot roll back is gone, and the server rolled back with it.
            Ok(Err(_)) if sql == "ROLLBACK" => Ok(()),
            Ok(Err(e)) => Err(map_err(e)),
            Err(_) => {
                let id = c.id();
                drop(c);
                self.shared.kill(id).await;
                Err(unavailable(
                    "the server did not answer the end of the transaction",
                ))
            }
        }
    }

    /// After a schema change committed the transaction: open a new one (and take the
    /// writer again), so what follows is still inside a transaction.
    async fn reopen(&mut self) -> Result<(), SqlError> {
        let shared = self.shared.clone();
        let writer = self.writer;
        let c = self.conn()?;
        let open: Option<(i64,)> = c
            .query_first("SELECT @@in_transaction")
            .await
            .map_err(map_err)?;
        if open.is_some_and(|(o,)| o != 0) {
            return Ok(());
        }
        c.query_drop("BEGIN").await.map_err(map_err)?;
        if writer {
            host_call(&shared, c, LOCK_WRITER, &[]).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SqlTransaction for MyTransaction {
    async fn query(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, SqlError> {
        check_guest_in_tx(sql)?;
        let shared = self.shared.clone();
        shared.room(sql, params).await?;
        let c = self.conn()?;
        let r = guest_run(&shared, c, limits, sql, params, true)
            .await
            .map(rowset);
        self.note(r).await
    }

    async fn execute(
        &mut self,
        limits: &CallLimits,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecResult, SqlError> {
        check_guest_in_tx(sql)?;
        let shared = self.shared.clone();
        shared.room(sql, params).await?;
        let c = self.conn()?;
        let r = guest_run(&shared, c, limits, sql, params, false)
            .await
            .map(|o| exec_result(&o));
        self.note(r).await
    }

    /// Schema set-up (a migration, a database-level batch): DDL is accepted here, and
    /// MariaDB commits before each such statement; the transaction is opened again after
    /// it, so only the statements between two schema changes are atomic.
    async fn execute_batch(&mut self, limits: &CallLimits, sql: &str) -> Result<(), SqlError> {
        let pieces = mytext::split(sql);
        for p in &pieces {
            check_guest(p)?;
        }
        let shared = self.shared.clone();
        shared.room(sql, &[]).await?;
        for p in pieces {
            let ddl = commits_implicitly(p);
            let c = self.conn()?;
            let r = guest_run(&shared, c, limits, p, &[], false).await;
            self.note(r).await?;
            if ddl {
                self.reopen().await?;
            }
        }
        Ok(())
    }

    async fn execute_host(&mut self, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
        let shared = self.shared.clone();
        let c = self.conn()?;
        if is_host_savepoint(sql) {
            // MariaDB spells the release `RELEASE SAVEPOINT name`.
            let sql = match sql.trim_start().strip_prefix("RELEASE ") {
                Some(rest)
                    if !rest
                        .trim_start()
                        .to_ascii_uppercase()
                        .starts_with("SAVEPOINT") =>
                {
                    format!("RELEASE SAVEPOINT {rest}")
                }
                _ => sql.to_string(),
            };
            let r = tokio::time::timeout(Duration::from_secs(30), c.query_drop(sql)).await;
            return match r {
                Ok(Ok(())) => Ok(ExecResult {
                    rows_affected: 0,
                    last_insert_id: None,
                }),
                Ok(Err(e)) => Err(map_err(e)),
                Err(_) => Err(unavailable("the server did not answer a savepoint")),
            };
        }
        let r = host_call(&shared, c, sql, params)
            .await
            .map(|o| exec_result(&o));
        self.note(r).await
    }

    async fn query_host(&mut self, sql: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let shared = self.shared.clone();
        let c = self.conn()?;
        let r = host_call(&shared, c, sql, params).await.map(rowset);
        self.note(r).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), SqlError> {
        // A transaction that took the store past its cap (and grew it) is rolled back.
        let shared = self.shared.clone();
        if let Some(cap) = &shared.cap
            && self.writer
            && !self.aborted
            && (cap.due() || cap.is_full())
            && let Some(now) = shared.measure().await
            && cap.grew_past(self.began, now)
        {
            self.finish("ROLLBACK").await?;
            return Err(cap.full(now));
        }
        self.finish("COMMIT").await
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), SqlError> {
        self.finish("ROLLBACK").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Store `host` of service `b` under prefix `silo_a` would have been database
    /// `silo_a_b_host`: the host database of store `b` of service `a` under prefix `silo`.
    #[test]
    fn host_database_and_definer_names_cannot_be_another_stores() {
        let a = MyNames::new("silo", "a", "b").unwrap();
        assert_eq!(a.host_db, "silo_a_b_host");
        for store in ["host", "def"] {
            let e = MyNames::new("silo_a", "b", store).expect_err(store);
            assert!(e.to_string().contains("cannot be named"), "{e}");
        }
        assert_eq!(grant_db("silo_a-b_main"), "`silo\\_a-b\\_main`");
    }

    #[test]
    fn guest_control_and_session_statements_are_refused() {
        for s in [
            "COMMIT",
            " /* x */ rollback",
            "begin",
            "START TRANSACTION",
            "SAVEPOINT a",
            "release savepoint a",
            "set autocommit = 0",
            "SET ROLE r",
            "SET DEFAULT ROLE r",
            "PREPARE s FROM 'SET ROLE r'",
            "EXECUTE IMMEDIATE 'COMMIT'",
            "deallocate prepare s",
            "LOCK TABLES t WRITE",
            "unlock tables",
            "LOAD DATA INFILE 'x' INTO TABLE t",
            "HANDLER t OPEN",
            "XA START 'x'",
            "KILL 5",
            "CALL p()",
            "DO SLEEP(1)",
            "SELECT /*!50000 1 */",
            "/*M!100000 SET ROLE r*/",
            "SELECT GET_LOCK('silo_provision', 60)",
            "select get_lock ('x', 1), is_used_lock('x')",
            "SELECT RELEASE_ALL_LOCKS()",
            "",
            "  -- nothing",
        ] {
            assert!(check_guest(s).is_err(), "{s}");
        }
        for s in [
            "SELECT 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "(SELECT 1)",
            "SELECT 'COMMIT', '/*!50000 1 */'",
            "CREATE TABLE t (id INT)",
        ] {
            assert!(check_guest(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn statements_that_commit_implicitly_are_refused_in_a_transaction() {
        for s in [
            "CREATE TABLE t (id INT)",
            "create index i on t (x)",
            "ALTER TABLE t ADD x INT",
            "DROP TABLE IF EXISTS t",
            "TRUNCATE t",
            "RENAME TABLE a TO b",
            "CREATE VIEW v AS SELECT 1",
            "ANALYZE TABLE t",
        ] {
            assert!(check_guest_in_tx(s).is_err(), "{s}");
            assert!(check_guest(s).is_ok(), "{s}");
        }
        for s in [
            "CREATE TEMPORARY TABLE t (id INT)",
            "DROP TEMPORARY TABLE t",
            "INSERT INTO t VALUES (1)",
            "SELECT * FROM t FOR UPDATE",
        ] {
            assert!(check_guest_in_tx(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn reads_only_spots_locking_and_writing_reads() {
        assert!(reads_only("SELECT a FROM t"));
        assert!(!reads_only("SELECT a FROM t FOR UPDATE"));
        assert!(!reads_only("SELECT a FROM t LOCK IN SHARE MODE"));
        assert!(!reads_only("INSERT INTO t VALUES (1) RETURNING id"));
        assert!(!reads_only("WITH x AS (SELECT 1) DELETE FROM t"));
    }
}
