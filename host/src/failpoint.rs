//! Fault injection for the crash tests: named points in the host where a test can make the
//! process die at the worst moment, or misbehave on purpose.
//!
//! Points are switched on only by the `SILO_FAILPOINTS` environment variable, read once:
//! a comma-separated list of `NAME` or `NAME=N` (act on the N-th time the point is reached;
//! default the first). With the variable unset, every point is one relaxed atomic load.
//!
//! The points:
//! - `after-publish-commit`: a transaction that published events has committed, and the
//!   router has not been told yet.
//! - `after-handler-commit`: a subscriber's inbox transaction has committed, and the
//!   publisher's outbox does not know yet.
//! - `mid-batch`: an event handler ran inside an inbox transaction that is still open.
//! - `after-saga-start-commit`: a transaction that started a saga has committed, and the
//!   saga engine has not been told yet.
//! - `after-command-commit`, `after-compensation-commit`: a saga participant's command (or
//!   compensation) transaction has committed, and the orchestrator's log does not know yet.
//! - `duplicate-delivery` (a switch, not a crash): every batch is delivered twice, as if
//!   the first acknowledgement had been lost.
//! - `slow-compile=MS` (a delay, not a crash): every deploy's compile step also sleeps MS
//!   milliseconds where the compile runs, so a test can act while a deploy compiles.
//!
//! A crash is a real `SIGKILL` of the host's own process (sent by `kill -9`, since the host
//! forbids `unsafe` code): no destructor, flush or graceful shutdown runs, exactly as when
//! the machine's OOM killer or an operator ends the process.
//!
//! The `fail` crate (tikv/fail-rs) does the same but only when compiled with its `failpoints`
//! feature, which would mean a second build of the host for the tests.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The points switched on, and how many times each was reached.
struct Points {
    fire_at: HashMap<String, u64>,
    hits: HashMap<String, AtomicU64>,
}

fn points() -> &'static Option<Points> {
    static POINTS: OnceLock<Option<Points>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let spec = std::env::var("SILO_FAILPOINTS").ok()?;
        let mut fire_at = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, n) = match item.split_once('=') {
                Some((name, n)) => (name, n.parse().unwrap_or(1)),
                None => (item, 1),
            };
            fire_at.insert(name.to_string(), n);
        }
        tracing::warn!(failpoints = %spec, "fault injection is on (SILO_FAILPOINTS)");
        let hits = fire_at
            .keys()
            .map(|k| (k.clone(), AtomicU64::new(0)))
            .collect();
        Some(Points { fire_at, hits })
    })
}

/// True if point `name` is switched on (for switches such as `duplicate-delivery`).
pub fn enabled(name: &str) -> bool {
    points()
        .as_ref()
        .is_some_and(|p| p.fire_at.contains_key(name))
}

/// Sleeps for the milliseconds given to point `name` (`NAME=MS`), if it is switched on.
/// Blocks the thread: for code that runs on a blocking thread, as a compile does.
pub fn delay(name: &str) {
    if let Some(ms) = points().as_ref().and_then(|p| p.fire_at.get(name)) {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}

/// Kills this process with SIGKILL if point `name` is reached for the configured time.
pub fn crash(name: &str) {
    let Some(p) = points() else { return };
    let (Some(at), Some(hits)) = (p.fire_at.get(name), p.hits.get(name)) else {
        return;
    };
    if hits.fetch_add(1, Ordering::SeqCst) + 1 == *at {
        eprintln!("silo: failpoint `{name}` reached: killing the process");
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        // The signal is asynchronous; never run past the point.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
