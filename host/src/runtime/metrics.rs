//! Per-service counters and latency histograms, rendered as Prometheus text at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// What the router records for one service.
#[derive(Default)]
pub struct ServiceMetrics {
    /// Responses by status class: 1xx..5xx at index 0..4.
    pub responses: [AtomicU64; 5],
    /// Requests turned away because the service was at its concurrency limit.
    pub rejected_busy: AtomicU64,
    /// Instances that trapped (including CPU deadline and memory exhaustion).
    pub traps: AtomicU64,
    /// Requests that ran past their deadline.
    pub timeouts: AtomicU64,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
}

impl ServiceMetrics {
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[i].fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.responses.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Appends this service's series to `out`.
    pub fn render(&self, service: &str, out: &mut String) {
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "silo_http_responses_total{{service=\"{service}\",class=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "silo_rejected_busy_total{{service=\"{service}\"}} {}",
            self.rejected_busy.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "silo_traps_total{{service=\"{service}\"}} {}",
            self.traps.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "silo_timeouts_total{{service=\"{service}\"}} {}",
            self.timeouts.load(Relaxed)
        );
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.latency[i].load(Relaxed);
            let _ = writeln!(
                out,
                "silo_request_duration_seconds_bucket{{service=\"{service}\",le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += self.latency[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "silo_request_duration_seconds_bucket{{service=\"{service}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "silo_request_duration_seconds_sum{{service=\"{service}\"}} {}",
            self.latency_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "silo_request_duration_seconds_count{{service=\"{service}\"}} {cumulative}"
        );
    }
}

/// The `# HELP`/`# TYPE` header of the per-service series.
pub const HEADER: &str = "\
# HELP silo_http_responses_total Responses by service and status class.
# TYPE silo_http_responses_total counter
# HELP silo_rejected_busy_total Requests refused with 503 at the service's concurrency limit.
# TYPE silo_rejected_busy_total counter
# HELP silo_traps_total Instances that trapped.
# TYPE silo_traps_total counter
# HELP silo_timeouts_total Requests that ran past their deadline.
# TYPE silo_timeouts_total counter
# HELP silo_request_duration_seconds Time from routing to response headers.
# TYPE silo_request_duration_seconds histogram
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = ServiceMetrics::default();
        m.record(200, Duration::from_micros(300));
        m.record(404, Duration::from_millis(20));
        m.record(503, Duration::from_secs(10));
        let mut s = String::new();
        m.render("users", &mut s);
        assert!(s.contains("silo_http_responses_total{service=\"users\",class=\"2xx\"} 1"));
        assert!(s.contains("silo_http_responses_total{service=\"users\",class=\"5xx\"} 1"));
        assert!(s.contains("le=\"0.0005\"} 1"));
        assert!(s.contains("le=\"0.025\"} 2"));
        assert!(s.contains("le=\"+Inf\"} 3"));
        assert_eq!(m.total(), 3);
    }
}
