//! The in-memory ring of recently finished spans behind `/admin/traces`: filled by the
//! tracer provider's own span processor (see `otel.rs`), read by trace id or most recent
//! first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A finished span, as `/admin/traces` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub service: String,
    /// Start, in milliseconds since the Unix epoch.
    pub start_ms: f64,
    pub duration_ms: f64,
    /// `ok` or `error`.
    pub status: &'static str,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// How many finished spans the ring keeps.
pub const RING_CAPACITY: usize = 20_000;

/// How many spans of one trace the ring keeps: the ring is shared by every service, and a
/// guest that runs statements in a loop makes a span each, so one request may not push every
/// other trace out. The spans past it are counted ([`Ring::dropped`]), not kept.
pub const MAX_SPANS_PER_TRACE: usize = 1_000;

/// The recent finished spans, newest last.
pub struct Ring {
    inner: Mutex<Kept>,
    dropped: AtomicU64,
}

struct Kept {
    spans: VecDeque<SpanRecord>,
    /// How many spans of each trace `spans` holds.
    per_trace: BTreeMap<String, usize>,
}

pub static RING: Ring = Ring {
    inner: Mutex::new(Kept {
        spans: VecDeque::new(),
        per_trace: BTreeMap::new(),
    }),
    dropped: AtomicU64::new(0),
};

impl Ring {
    pub(super) fn push(&self, record: SpanRecord) {
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let kept = &mut *kept;
        let n = kept.per_trace.entry(record.trace_id.clone()).or_insert(0);
        if *n >= MAX_SPANS_PER_TRACE {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *n += 1;
        if kept.spans.len() == RING_CAPACITY
            && let Some(old) = kept.spans.pop_front()
            && let Some(c) = kept.per_trace.get_mut(&old.trace_id)
        {
            *c -= 1;
            if *c == 0 {
                kept.per_trace.remove(&old.trace_id);
            }
        }
        kept.spans.push_back(record);
    }

    /// Spans not kept because their trace already had [`MAX_SPANS_PER_TRACE`].
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Every kept span of trace `trace_id` (lowercase hex), in start order.
    pub fn trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        let kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let spans = &kept.spans;
        let mut out: Vec<SpanRecord> = spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        out
    }

    /// The spans of the `limit` most recent traces (by their latest span), newest trace
    /// first, each trace's spans in start order.
    pub fn recent(&self, limit: usize) -> Vec<SpanRecord> {
        let kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let spans = &kept.spans;
        let mut ids: Vec<&str> = Vec::new();
        for s in spans.iter().rev() {
            if !ids.contains(&s.trace_id.as_str()) {
                if ids.len() == limit {
                    break;
                }
                ids.push(&s.trace_id);
            }
        }
        let mut out = Vec::new();
        for id in ids {
            let mut t: Vec<SpanRecord> =
                spans.iter().filter(|s| s.trace_id == id).cloned().collect();
            t.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
            out.extend(t);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(trace: &str, i: usize) -> SpanRecord {
        SpanRecord {
            trace_id: trace.into(),
            span_id: format!("{i:016x}"),
            parent_span_id: None,
            name: "sql query".into(),
            service: "flood".into(),
            start_ms: i as f64,
            duration_ms: 0.0,
            status: "ok",
            attributes: serde_json::Map::new(),
        }
    }

    #[test]
    fn one_trace_keeps_at_most_its_share_and_the_rest_is_counted() {
        let ring = Ring {
            inner: Mutex::new(Kept {
                spans: VecDeque::new(),
                per_trace: BTreeMap::new(),
            }),
            dropped: AtomicU64::new(0),
        };
        ring.push(record("other", 0));
        for i in 0..MAX_SPANS_PER_TRACE + 50 {
            ring.push(record("flood", i));
        }
        assert_eq!(ring.trace("flood").len(), MAX_SPANS_PER_TRACE);
        assert_eq!(ring.dropped(), 50);
        assert_eq!(ring.trace("other").len(), 1, "another trace stays");
    }
}
