//! Durable delivery: the one layer under events and sagas that takes work recorded in an
//! owner's store to a guest export, exactly once in effect.
//!
//! Events ([`crate::events`]) and sagas ([`crate::sagas`]) are the same machine with
//! different work: a log in the owner's own store (the outbox, the saga log) written by the
//! guest's transaction; a worker per log ([`worker`]) that wakes on commit, claims what is
//! due, delivers it and records the result; a delivery that opens a transaction on the
//! recipient's store and lends it to one of the recipient's exports ([`lend`]), so the
//! handler's effects and the record that it ran commit together; retries with exponential
//! backoff and jitter ([`backoff`]); and giving up after `max-attempts` ([`give_up`]: the
//! events side dead-letters, the sagas side refuses the step or fails the saga). What each
//! keeps for itself: events their subscriptions, per-key queues and the admit check; sagas
//! the state machine of a saga and the compensation order.
//!
//! # The runtime, seen from here
//!
//! This layer runs guest code but does not know the runtime: it asks for it through
//! [`Directory`] (the services deployed now) and [`Recipient`] (one of them: its manifest
//! entry, its stores, its executor and permits, fresh instances whose exports take a lent
//! transaction). `runtime::recipient` implements both; the host hands them in at start-up.
//!
//! # Transports: the seam
//!
//! A [`Transport`] takes committed work from an owner's log and gets it to the recipient's
//! worker. The only one now is the embedded, in-process transport: the worker of a log runs
//! in this process and calls the recipient directly ([`crate::events::LocalRouter`] for the
//! outboxes, [`crate::sagas::SagaEngine`] for the saga logs). A transport across hosts (NATS
//! JetStream, issue 16) implements the same trait beside it: `attach` relays a log's
//! committed rows to a stream instead of delivering them here, and the consuming host runs
//! the same recipient-side step ([`crate::events::inbox::deliver`],
//! [`crate::sagas::command::deliver`]) and acknowledges back, so services, logs and inboxes
//! do not change. The events side exposes it to the admin API as
//! [`crate::events::EventRouter`], which is a transport plus its figures.
//!
//! Invariants: a log row is a request, never a permission (every delivery is checked
//! against the manifest as deployed now, by the capability that owns the row); a row leaves
//! the log only after the recipient's transaction that recorded it committed, or after it
//! was given up on; this layer never imports `runtime`.

pub mod backoff;
pub mod lend;
pub mod retries;
pub mod worker;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::manifest::ServiceSpec;
use crate::sql::{CallLimits, SqlStore};

pub use backoff::backoff;
pub use lend::{Export, Instance, Lent};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The budget of the host's own statements on a log or an inbox (waiting for the writer
/// included).
pub fn host_limits() -> CallLimits {
    CallLimits {
        deadline: Instant::now() + Duration::from_secs(30),
        statement_budget: Duration::from_secs(30),
        max_result_bytes: usize::MAX,
    }
}

/// Latencies kept per subscription or orchestrator for the p50/p99 (the most recent ones).
pub const LATENCY_WINDOW: usize = 4096;

/// Adds `latency_ms` to `window`, dropping the oldest past [`LATENCY_WINDOW`].
pub fn record_latency(window: &mut VecDeque<u64>, latency_ms: u64) {
    if window.len() == LATENCY_WINDOW {
        window.pop_front();
    }
    window.push_back(latency_ms);
}

/// p50 and p99 of `window`.
pub fn percentiles(window: &VecDeque<u64>) -> (Option<u64>, Option<u64>) {
    if window.is_empty() {
        return (None, None);
    }
    let mut v: Vec<u64> = window.iter().copied().collect();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (Some(at(0.50)), Some(at(0.99)))
}

/// What a failed attempt (the `attempts`-th) comes to, with `max_attempts` allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after the backoff for `attempts`.
    Retry,
    /// Out of attempts: dead-letter it (events) or give up on it (sagas).
    GiveUp,
}

/// Whether the `attempts`-th failed attempt is the last one allowed.
pub fn give_up(attempts: u32, max_attempts: u32) -> AfterFailure {
    if attempts >= max_attempts {
        AfterFailure::GiveUp
    } else {
        AfterFailure::Retry
    }
}

/// Work for a recipient's executor, boxed so [`Recipient`] stays a trait object.
pub type Work = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A deployed service as the delivery layer sees it. `runtime::recipient` implements it
/// for the runtime's services.
#[async_trait]
pub trait Recipient: Send + Sync + 'static {
    /// Its name.
    fn name(&self) -> &Arc<str>;
    /// Its manifest entry as deployed now.
    fn spec(&self) -> &ServiceSpec;
    /// Whether it has `export` (checked at load against its role).
    fn exports(&self, export: Export) -> bool;
    /// Its open store `name`.
    fn store(&self, name: &str) -> Option<Arc<dyn SqlStore>>;
    /// Counts a trap of its guest code in its metrics.
    fn count_trap(&self);
    /// Runs `work` on its own executor under one of its permits, like a request; gives up
    /// if no permit frees within `wait`.
    async fn run(&self, wait: Duration, work: Work) -> Result<(), String>;
    /// A fresh instance for calling `export`, its deadline `deadline`.
    async fn instance(
        &self,
        export: Export,
        deadline: Instant,
    ) -> Result<Box<dyn Instance>, InstanceError>;
}

/// Why no instance could be had.
#[derive(Debug, Clone)]
pub enum InstanceError {
    /// Instantiating failed (`{e:#}`).
    Instantiate(String),
    /// The instance lacks the export's functions (`{e:#}`).
    Export(String),
}

/// The services deployed now, by name. `runtime::recipient` implements it for the host's
/// routing table.
pub trait Directory: Send + Sync + 'static {
    /// The service named `name`, if it is deployed.
    fn recipient(&self, name: &str) -> Option<Arc<dyn Recipient>>;
}

/// Runs `work` on `recipient`'s executor under one of its permits (see [`Recipient::run`])
/// and returns its output: the worker only waits, so a slow handler holds up nothing but
/// its own service.
pub async fn run_on<T, F, Fut>(
    recipient: &Arc<dyn Recipient>,
    wait: Duration,
    work: F,
) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(Arc<dyn Recipient>) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let (send, receive) = tokio::sync::oneshot::channel();
    let work = work(recipient.clone());
    recipient
        .run(
            wait,
            Box::pin(async move {
                let _ = send.send(work.await);
            }),
        )
        .await?;
    receive
        .await
        .map_err(|_| format!("the delivery to `{}` ended early", recipient.name()))
}

/// Takes committed work from owners' logs to recipients' workers: the seam where a
/// transport plugs in (see the module docs). The embedded, in-process transports are
/// [`crate::events::LocalRouter`] and [`crate::sagas::SagaEngine`].
pub trait Transport<Log>: Send + Sync {
    /// Starts relaying `log`'s committed work (at start-up, and when a deploy opened a new
    /// log). Attaching the same log twice does nothing.
    fn attach(&self, log: Arc<Log>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_window() {
        let w: VecDeque<u64> = (1..=100).collect();
        assert_eq!(percentiles(&w), (Some(50), Some(99)));
        assert_eq!(percentiles(&VecDeque::new()), (None, None));
    }

    #[test]
    fn the_last_allowed_attempt_gives_up() {
        assert_eq!(give_up(1, 3), AfterFailure::Retry);
        assert_eq!(give_up(3, 3), AfterFailure::GiveUp);
    }
}
