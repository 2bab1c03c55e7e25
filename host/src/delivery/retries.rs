//! Warnings for retried deliveries, rate-limited: an event delivery or a saga step that
//! failed and will be tried again is logged at warn with its error, but at most one line per
//! subscription (or saga) per [`EVERY`], the next line saying how many retries were not
//! logged in between, so a poison message cannot flood the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one retry line per subscription or saga this often.
pub const EVERY: Duration = Duration::from_secs(10);

/// Keys past which entries older than [`EVERY`] are forgotten (sagas come and go).
const PRUNE_AT: usize = 4096;

/// Per key: when its last line was written, and the retries not logged since.
pub struct RetryLog {
    every: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

/// The host's retry log.
pub static RETRIES: std::sync::LazyLock<RetryLog> =
    std::sync::LazyLock::new(|| RetryLog::new(EVERY));

impl RetryLog {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// One more retry of `key` at `now`: `Some(k)` if a line is due (`k` retries of `key`
    /// were not logged since its last line), `None` if this one is only counted.
    pub fn note(&self, key: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= PRUNE_AT {
            let every = self.every;
            seen.retain(|_, (at, _)| now.saturating_duration_since(*at) < every);
        }
        match seen.get_mut(key) {
            Some((at, skipped)) if now.saturating_duration_since(*at) < self.every => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                *at = now;
                Some(std::mem::take(skipped))
            }
            None => {
                seen.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

/// What a retry line adds for the retries it stands for: ` (k more retries)`, or nothing.
pub fn more(skipped: u64) -> String {
    if skipped == 0 {
        String::new()
    } else {
        format!(" ({skipped} more retries since the last line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_period_with_the_count_of_the_rest() {
        let log = RetryLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.note("sub:a/T", t0), Some(0));
        for i in 1..=5 {
            assert_eq!(log.note("sub:a/T", t0 + Duration::from_secs(i)), None);
        }
        // Another key has its own period.
        assert_eq!(log.note("saga_1", t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(
            log.note("sub:a/T", t0 + Duration::from_secs(11)),
            Some(5),
            "the five retries in between"
        );
        assert_eq!(log.note("sub:a/T", t0 + Duration::from_secs(12)), None);
        assert_eq!(more(0), "");
        assert_eq!(more(5), " (5 more retries since the last line)");
    }
}
