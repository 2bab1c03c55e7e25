//! The pool of a store's connections: each connection with its server process id, so a
//! statement past its budget can be cancelled and, failing that, its process ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio_postgres::NoTls;

use super::errors::map_err;
use super::provision::connect_admin;

/// How long a cancelled statement may take to stop before its server process is terminated.
/// A guest's PL/pgSQL can trap the cancel (`EXCEPTION WHEN query_canceled`) and keep
/// running, holding the store's writer lock, as long as it likes: only the end of its
/// process stops it.
pub(super) const CANCEL_GRACE: Duration = Duration::from_millis(200);

/// A pooled connection: the client, and the server process behind it.
pub struct PgConn {
    client: ClientWrapper,
    /// Its server process (`pg_backend_pid()`), to terminate from the admin side.
    pid: i32,
    /// Set once its process was terminated or its state is unknown: it never goes back to
    /// the pool (the pool's recycling refuses it).
    pub(super) broken: AtomicBool,
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
    pub(super) async fn terminate(&self) {
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
    pub(super) async fn cancel_or_terminate(&self) {
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
pub(super) struct PgManager {
    pub(super) inner: deadpool_postgres::Manager,
    pub(super) admin: Arc<tokio_postgres::Config>,
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

pub(super) type Pool = deadpool::managed::Pool<PgManager>;
pub(super) type Object = deadpool::managed::Object<PgManager>;
