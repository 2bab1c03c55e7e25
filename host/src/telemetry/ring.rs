//! The in-memory ring of recently finished spans behind `/admin/traces`: filled by the
//! tracer provider's own span processor (see `otel.rs`), read by trace id or most recent
//! first.

use std::collections::VecDeque;
use std::sync::Mutex;

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

/// The recent finished spans, newest last.
pub struct Ring {
    spans: Mutex<VecDeque<SpanRecord>>,
}

pub static RING: Ring = Ring {
    spans: Mutex::new(VecDeque::new()),
};

impl Ring {
    pub(super) fn push(&self, record: SpanRecord) {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() == RING_CAPACITY {
            spans.pop_front();
        }
        spans.push_back(record);
    }

    /// Every kept span of trace `trace_id` (lowercase hex), in start order.
    pub fn trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        let spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
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
        let spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
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
