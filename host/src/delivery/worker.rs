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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Items due after a delay each; the log retires once all were delivered.
    struct Delays {
        notify: Arc<Notify>,
        retired: Arc<AtomicBool>,
        waiting: Vec<(u32, Instant)>,
        delivered: Vec<u32>,
        loads: u32,
    }

    #[async_trait]
    impl Schedule for Delays {
        type Done = u32;
        fn notify(&self) -> Arc<Notify> {
            self.notify.clone()
        }
        fn retired(&self) -> bool {
            self.retired.load(Ordering::Acquire)
        }
        async fn load(&mut self) -> bool {
            self.loads += 1;
            true
        }
        fn dispatch(&mut self, tasks: &mut JoinSet<u32>) -> Option<Instant> {
            let now = Instant::now();
            let mut wake = None;
            for (item, at) in std::mem::take(&mut self.waiting) {
                if at <= now {
                    tasks.spawn(async move { item });
                } else {
                    earliest(&mut wake, at);
                    self.waiting.push((item, at));
                }
            }
            wake
        }
        fn apply(&mut self, done: u32) {
            self.delivered.push(done);
            if self.delivered.len() == 2 {
                self.retired.store(true, Ordering::Release);
            }
        }
    }

    #[tokio::test]
    async fn delivers_what_falls_due_and_stops_when_retired() {
        let now = Instant::now();
        let schedule = Delays {
            notify: Arc::new(Notify::new()),
            retired: Arc::new(AtomicBool::new(false)),
            // Due well before the idle second: the worker must wake for them.
            waiting: vec![(2, now + Duration::from_millis(60)), (1, now)],
            delivered: Vec::new(),
            loads: 0,
        };
        tokio::time::timeout(Duration::from_millis(900), run(schedule))
            .await
            .expect("the worker delivers both and stops before its idle wake-up");
    }

    #[test]
    fn earliest_keeps_the_first() {
        let now = Instant::now();
        let mut wake = None;
        earliest(&mut wake, now + Duration::from_secs(2));
        earliest(&mut wake, now + Duration::from_secs(1));
        earliest(&mut wake, now + Duration::from_secs(3));
        assert_eq!(wake, Some(now + Duration::from_secs(1)));
    }
}
