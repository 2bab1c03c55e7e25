//! Retry timing: exponential backoff with jitter, the one policy of events and sagas.

use std::time::Duration;

/// Exponential backoff with "equal jitter": half the doubled delay, plus up to the other half.
pub fn backoff(attempts: u32, base_ms: u64, max_ms: u64) -> Duration {
    let exp = base_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
        .min(max_ms);
    let half = exp / 2;
    Duration::from_millis(half + rand::random_range(0..=half.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds() {
        for attempts in 1..40 {
            let d = backoff(attempts, 100, 30_000).as_millis() as u64;
            let exp = (100u64 << (attempts - 1).min(30)).min(30_000);
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempts}: {d} ms vs {exp}"
            );
        }
    }
}
