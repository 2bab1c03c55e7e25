//! The worker of one log: load what committed, start what is due, take in what finished,
//! sleep until the next thing falls due or a commit wakes it, stop when the log is retired.
//!
//! What is due and how it is delivered is the log's own business ([`Schedule`]): the
//! events side keeps per-subscription, per-key queues; the sagas side one action per saga.
//! The loop around them is this one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// How long a worker whose log could not be read waits before reading it again.
pub const RELOAD_WAIT: Duration = Duration::from_millis(500);
/// The longest a worker sleeps with nothing due (a safety net: commits wake it).
const IDLE: Duration = Duration::from_secs(1);

/// What one log's worker does in each turn of [`run`].
#[async_trait]
pub trait Schedule: Send + 'static {
    /// What one delivery task comes to.
    type Done: Send + 'static;
    /// Notified when a transaction that wrote to the log commits.
    fn notify(&self) -> Arc<Notify>;
    /// The log was retired (its service redeployed or removed): stop once idle.
    fn retired(&self) -> bool;
    /// Whether to load even without a wake-up (more rows than fit in memory wait).
    fn wants_load(&self) -> bool {
        false
    }
    /// Loads what is new in the log. `false`: it failed (and said why in the log); the
    /// worker waits [`RELOAD_WAIT`] and tries again.
    async fn load(&mut self) -> bool;
    /// Starts a task in `tasks` for everything due now; returns when the next thing falls
    /// due (a backoff or a wait ending), if anything waits.
    fn dispatch(&mut self, tasks: &mut JoinSet<Self::Done>) -> Option<Instant>;
    /// Takes a finished task's outcome in.
    fn apply(&mut self, done: Self::Done);
}

/// Runs `schedule` until its log is retired and nothing is in flight.
pub async fn run<S: Schedule>(mut schedule: S) {
    let notify = schedule.notify();
    let mut tasks: JoinSet<S::Done> = JoinSet::new();
    let mut need_load = true;
    loop {
        if schedule.retired() && tasks.is_empty() {
            return;
        }
        if need_load || schedule.wants_load() {
            if schedule.load().await {
                need_load = false;
            } else {
                tokio::time::sleep(RELOAD_WAIT).await;
                continue;
            }
        }
        let wake = schedule.dispatch(&mut tasks);
        let sleep = tokio::time::sleep_until(wake.unwrap_or_else(|| Instant::now() + IDLE).into());
        tokio::select! {
            _ = notify.notified() => need_load = true,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(done) = done {
                    schedule.apply(done);
                }
            }
            _ = sleep => {}
        }
    }
}

/// `wake` moved to `at` if `at` comes first.
pub fn earliest(wake: &mut Option<Instant>, at: Instant) {
    *wake = Some(wake.map_or(at, |w| w.min(at)));
}
