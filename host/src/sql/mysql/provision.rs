//! Provisioning of a store on the server: its two databases, its login user and locked
//! definer, the host's tables and procedures, ownership, and removing them again.

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, PoolConstraints, PoolOpts};

use super::config::{MyConfig, MyNames};
use super::errors::map_err;
use super::quote::{ident, lit};
use crate::sql::SqlError;
use crate::sql::server::{Owner, derive};

/// How many parameters a host statement may have (`silo_exec`'s slots).
pub(super) const HOST_PARAMS: usize = 16;

/// What every session of a store starts with (and gets back after each reset): strict
/// types, and no silent cut of a recursive query (the statement budget bounds it).
const SESSION_SETUP: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_CREATE_USER', \
     max_recursive_iterations = 4294967295, character_set_results = 'utf8mb4'";

/// The backend's own tables in the host database (`{h}`), beside the host's tables of
/// `host_tables`: the writer row every writing transaction locks, and the parts of the
/// token `silo_exec` checks.
pub(super) const HOST_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {h}._silo_writer (id TINYINT PRIMARY KEY) ENGINE=InnoDB",
    "INSERT INTO {h}._silo_writer (id) VALUES (1) ON DUPLICATE KEY UPDATE id = id",
    // The token's parts: the master (only the definer reads it) and a salt per connection
    // (MEMORY: emptied by a server restart, so a reused connection id gets a new salt).
    "CREATE TABLE IF NOT EXISTS {h}._silo_key (id TINYINT PRIMARY KEY, master VARCHAR(64) NOT NULL) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS {h}._silo_conn (conn_id BIGINT UNSIGNED PRIMARY KEY, salt CHAR(32) NOT NULL) ENGINE=MEMORY",
];

/// A database name as a `GRANT … ON db.*` pattern matches it literally: there `_` and `%`
/// are wildcards (`silo_p_ovision` would match `silo_provision`).
pub(super) fn grant_db(db: &str) -> String {
    ident(
        &db.replace('\\', "\\\\")
            .replace('_', "\\_")
            .replace('%', "\\%"),
    )
}

/// Where hosts serialize provisioning on a server: a row lock in a database only the
/// administrator can reach. Its name starts with `_`, which no store database's name (nor
/// any `GRANT` pattern for one: those start with the prefix's letter) can.
pub(super) const PROVISION_DB: &str = "_silo_provision";

/// How long provisioning waits for another host's to finish.
pub(super) const PROVISION_WAIT_S: u64 = 60;

/// Takes the server's provisioning lock on a connection of its own (the provisioning
/// itself runs DDL, which commits, so the lock cannot live in its transaction); it is held
/// until that connection commits or goes away. Never proceeds without it.
pub(super) async fn provision_lock(admin: &Opts, config: &MyConfig) -> Result<Conn, SqlError> {
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
pub(super) fn server_address(opts: &Opts) -> String {
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
}

/// An administrative connection, within the config's `connect-timeout-ms` (the greeting and
/// the login included: a server that accepts and never answers holds nothing up).
pub(super) async fn connect_admin(admin: &Opts, config: &MyConfig) -> Result<Conn, SqlError> {
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
pub(super) async fn recorded_owner(
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

pub(super) async fn recorded_owner_row(
    c: &mut Conn,
    names: &MyNames,
) -> Result<Option<Owner>, SqlError> {
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

pub(super) fn admin_opts(config: &MyConfig) -> Result<Opts, SqlError> {
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
    let host_tables = crate::sql::host_tables::create_statements("mysql");
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
