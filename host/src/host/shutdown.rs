//! Shutdown: refusing deploys once the host stops, and the signals that stop it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Host;

/// How long shutdown waits for in-flight requests before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl Host {
    /// Marks the host as stopping: deploys are refused from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}

/// SIGINT and SIGTERM, caught from the moment this is installed (so a signal that arrives
/// right after start-up still shuts down gracefully).
pub struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Must be called inside a tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub async fn wait(mut self) {
        self.recv().await
    }

    /// Resolves on the next SIGINT or SIGTERM (the handlers stay installed).
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
