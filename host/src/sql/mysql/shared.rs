//! What a MariaDB store shares between its transactions: the pool, the host tokens of its
//! connections, its size cap and how it measures it, and killing a runaway connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};
use sha2::Digest;

use super::config::MyNames;
use super::errors::map_err;
use super::quote::ident;
use super::text;
use crate::sql::server::{SizeCap, reads_or_frees};
use crate::sql::{SqlError, Value, value_size};

/// What a store shares between its transactions.
pub(super) struct Shared {
    pub(super) pool: Pool,
    /// How to connect as the store's user (for killing a runaway statement).
    pub(super) opts: Opts,
    pub(super) master: String,
    pub(super) names: MyNames,
    /// The host token of each pooled connection, by connection id.
    pub(super) tokens: Mutex<HashMap<u32, Arc<str>>>,
    /// Its `max-size-mb`, if it has one, and the administrative connection that measures
    /// it (the sizes of tablespace files are the administrator's to read).
    pub(super) cap: Option<SizeCap>,
    pub(super) admin: Opts,
    pub(super) meter: tokio::sync::Mutex<Option<Conn>>,
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

impl Shared {
    pub(super) async fn conn(&self, deadline: Instant) -> Result<Conn, SqlError> {
        match tokio::time::timeout_at(deadline.into(), self.pool.get_conn()).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(SqlError::Unavailable(
                "mariadb: no connection became free before the deadline".into(),
            )),
        }
    }

    /// The host token of `conn` (drawing its salt the first time).
    pub(super) async fn token(&self, conn: &mut Conn, fresh: bool) -> Result<Arc<str>, SqlError> {
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
    pub(super) async fn measure(&self) -> Option<u64> {
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
    pub(super) async fn room(&self, sql: &str, params: &[Value]) -> Result<(), SqlError> {
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
    pub(super) async fn kill(&self, id: u32) {
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
