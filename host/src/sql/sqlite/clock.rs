//! The process-wide clock origin that lets deadlines live in atomics, as nanoseconds.

use std::time::Instant;

/// Process-wide origin for deadlines kept in atomics.
pub(super) fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(super) fn instant_to_nanos(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}
