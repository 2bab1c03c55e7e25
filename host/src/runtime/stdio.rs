//! A guest's stdout and stderr, as lines in the host's log tagged with the service, within a
//! per-service budget.
//!
//! Nothing a component prints reaches the host's own stdout: each complete line becomes one
//! `tracing` event with `service` and `stream` fields. What one service may put in the host's
//! log is bounded, so a component cannot fill the host's disk or drown the other services'
//! lines:
//! - a line is cut at [`MAX_LINE`] bytes (the rest of it, up to its newline, is dropped and
//!   the line says how much was cut), so the host never buffers more than that per stream;
//! - every service has one [`LogBudget`], shared by all its instances and both streams: a
//!   token bucket of [`LOG_BYTES_PER_SEC`] with a burst of [`LOG_BURST_BYTES`], where a line
//!   costs its length plus [`LINE_OVERHEAD`] (the host's own timestamp and fields, so a flood
//!   of empty lines is paid for too). A line the bucket cannot pay is dropped and counted;
//! - at most once per [`NOTICE_EVERY`] the host logs one warning per service saying how many
//!   bytes of its output were dropped, and `/metrics` has the running total
//!   (`silo_guest_log_dropped_bytes_total`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::telemetry::metrics::Scrape;

/// Longest line that reaches the host's log, in bytes.
pub const MAX_LINE: usize = 4096;
/// What one service may write to the host's log, sustained, in bytes per second.
pub const LOG_BYTES_PER_SEC: u64 = 64 << 10;
/// What one service may write at once after a quiet spell, in bytes.
pub const LOG_BURST_BYTES: u64 = 256 << 10;
/// What the host adds to every line it logs (time, level, target, service and stream, and the
/// request span's service and trace id, about 70 bytes of `request{service=… trace_id=…}:`),
/// as charged to the service's budget: a flood of empty lines costs what it writes.
pub const LINE_OVERHEAD: u64 = 160;
/// Shortest time between two notices of dropped output for one service.
pub const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// One service's share of the host's log: a token bucket, and what it dropped.
pub struct LogBudget {
    service: Arc<str>,
    bytes_per_sec: u64,
    burst: u64,
    bucket: Mutex<Bucket>,
    /// Bytes of this service's output dropped since the host started (over its budget, or
    /// cut from over-long lines).
    dropped_total: AtomicU64,
}

struct Bucket {
    tokens: u64,
    refilled: Instant,
    /// Dropped since the last notice.
    unreported: u64,
    noticed: Instant,
    /// A task will report `unreported` once a notice is due.
    flush_scheduled: bool,
}

/// What [`LogBudget::charge`] decided for one line.
struct Charge {
    /// The line may be logged.
    pass: bool,
    /// A notice is due: this many bytes were dropped since the last one.
    notice: Option<u64>,
}

impl LogBudget {
    /// A budget of `bytes_per_sec` with a burst of `burst` bytes.
    pub fn new(service: Arc<str>, bytes_per_sec: u64, burst: u64) -> Self {
        let now = Instant::now();
        Self {
            service,
            bytes_per_sec,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled: now,
                unreported: 0,
                noticed: now,
                flush_scheduled: false,
            }),
            dropped_total: AtomicU64::new(0),
        }
    }

    /// The budget of `service`, shared by every instance (and every version) of it.
    pub fn of(service: &Arc<str>) -> Arc<Self> {
        let mut all = budgets().lock().unwrap_or_else(|p| p.into_inner());
        all.entry(service.clone())
            .or_insert_with(|| {
                Arc::new(Self::new(
                    service.clone(),
                    LOG_BYTES_PER_SEC,
                    LOG_BURST_BYTES,
                ))
            })
            .clone()
    }

    /// Bytes of this service's output dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Pays for a line of `len` bytes if the bucket can (`cut` bytes were already cut from
    /// it: they count as dropped either way).
    fn charge(&self, len: usize, cut: u64, now: Instant) -> Charge {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.refilled);
        let earned = (elapsed.as_nanos() * u128::from(self.bytes_per_sec) / 1_000_000_000) as u64;
        if earned > 0 {
            b.tokens = (b.tokens + earned).min(self.burst);
            b.refilled = now;
        }
        let cost = len as u64 + LINE_OVERHEAD;
        let pass = b.tokens >= cost;
        let mut dropped = cut;
        if pass {
            b.tokens -= cost;
        } else {
            dropped += len as u64;
        }
        b.unreported += dropped;
        self.dropped_total.fetch_add(dropped, Ordering::Relaxed);
        let notice = (b.unreported > 0 && now.saturating_duration_since(b.noticed) >= NOTICE_EVERY)
            .then(|| {
                b.noticed = now;
                std::mem::take(&mut b.unreported)
            });
        Charge { pass, notice }
    }

    /// Logs the notice of `bytes` dropped.
    fn notify(&self, bytes: u64) {
        tracing::warn!(
            target: "silo::guest",
            service = %self.service,
            dropped_bytes = bytes,
            "service `{}`: {bytes} bytes of its output dropped (over its log budget of {} KiB/s, burst {} KiB, lines cut at {MAX_LINE} bytes)",
            self.service,
            self.bytes_per_sec >> 10,
            self.burst >> 10,
        );
    }

    /// Reports what was dropped since the last notice (an instance ends: its service may
    /// write nothing more for a while): now if a notice is due, else once it is due.
    fn flush_notice(self: &Arc<Self>, now: Instant) {
        let (due, later) = {
            let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            if b.unreported == 0 {
                (None, None)
            } else if now.saturating_duration_since(b.noticed) >= NOTICE_EVERY {
                b.noticed = now;
                (Some(std::mem::take(&mut b.unreported)), None)
            } else if !b.flush_scheduled {
                b.flush_scheduled = true;
                (None, Some(b.noticed + NOTICE_EVERY))
            } else {
                (None, None)
            }
        };
        if let Some(bytes) = due {
            self.notify(bytes);
        }
        if let Some(at) = later {
            let budget = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        tokio::time::sleep_until(at.into()).await;
                        budget
                            .bucket
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .flush_scheduled = false;
                        budget.flush_notice(Instant::now());
                    });
                }
                // No runtime (a unit test): the next line reports it.
                Err(_) => {
                    self.bucket
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .flush_scheduled = false;
                }
            }
        }
    }
}

type Budgets = Mutex<HashMap<Arc<str>, Arc<LogBudget>>>;

fn budgets() -> &'static Budgets {
    static ALL: OnceLock<Budgets> = OnceLock::new();
    ALL.get_or_init(Default::default)
}

/// The `/metrics` series of guest output dropped, one per service that ever logged.
pub fn register_metrics(scrape: &mut Scrape) {
    let all = budgets().lock().unwrap_or_else(|p| p.into_inner());
    let services: Vec<_> = all.values().cloned().collect();
    drop(all);
    let help = format!(
        "Bytes of a service's stdout/stderr dropped: over its log budget, or cut from lines longer than {MAX_LINE} bytes."
    );
    let dropped = scrape.counter("silo_guest_log_dropped_bytes", &help);
    for b in services {
        dropped
            .get_or_create(&vec![("service", b.service.to_string())])
            .inc_by(b.dropped());
    }
}

/// The stdout or stderr a service's instances get.
#[derive(Clone)]
pub struct GuestLog {
    budget: Arc<LogBudget>,
    stream: &'static str,
}

impl GuestLog {
    pub fn new(service: Arc<str>, stream: &'static str) -> Self {
        Self {
            budget: LogBudget::of(&service),
            stream,
        }
    }

    /// A log on an explicit budget (tests).
    pub fn with_budget(budget: Arc<LogBudget>, stream: &'static str) -> Self {
        Self { budget, stream }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestLogStream {
            log: self.clone(),
            line: Vec::new(),
            cut: 0,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this; silo serves WASIp2 components.
        Box::new(tokio::io::sink())
    }
}

struct GuestLogStream {
    log: GuestLog,
    /// The line so far, at most [`MAX_LINE`] bytes.
    line: Vec<u8>,
    /// Bytes of the line past [`MAX_LINE`], dropped.
    cut: u64,
}

impl GuestLogStream {
    fn emit(&mut self) {
        let charge = self
            .log
            .budget
            .charge(self.line.len(), self.cut, Instant::now());
        if charge.pass {
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end_matches(['\n', '\r']);
            let service = &self.log.budget.service;
            if self.cut > 0 {
                tracing::info!(target: "silo::guest", service = %service, stream = self.log.stream, "{text} [{} more bytes cut]", self.cut);
            } else {
                tracing::info!(target: "silo::guest", service = %service, stream = self.log.stream, "{text}");
            }
        }
        if let Some(bytes) = charge.notice {
            self.log.budget.notify(bytes);
        }
        self.line.clear();
        self.cut = 0;
    }
}

impl Drop for GuestLogStream {
    fn drop(&mut self) {
        if !self.line.is_empty() || self.cut > 0 {
            self.emit();
        }
        self.log.budget.flush_notice(Instant::now());
    }
}

#[async_trait::async_trait]
impl Pollable for GuestLogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestLogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (part, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..=i], true),
                None => (rest, false),
            };
            rest = &rest[part.len()..];
            // The newline ends the line; it is neither kept nor cut.
            let text = &part[..part.len() - usize::from(ends_line)];
            let room = MAX_LINE - self.line.len();
            let kept = text.len().min(room);
            self.line.extend_from_slice(&text[..kept]);
            self.cut += (text.len() - kept) as u64;
            if ends_line {
                self.emit();
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(budget: &Arc<LogBudget>) -> GuestLogStream {
        GuestLogStream {
            log: GuestLog::with_budget(budget.clone(), "stdout"),
            line: Vec::new(),
            cut: 0,
        }
    }

    #[test]
    fn a_flood_is_dropped_past_the_burst_and_counted() {
        // 10 KiB/s with a 4 KiB burst: of 1000 lines of 99 bytes and a newline (259 with the
        // overhead), the burst pays for 15, and the rest of this fast loop for a few more.
        let budget = Arc::new(LogBudget::new("flood-test".into(), 10 << 10, 4 << 10));
        let mut s = stream(&budget);
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let start = Instant::now();
        for _ in 0..1000 {
            s.write(Bytes::from(line.clone())).unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let passed = 1000 - budget.dropped() / 99;
        let payable = ((4 << 10) as f64 + secs * f64::from(10 << 10)) / (99 + LINE_OVERHEAD) as f64;
        assert!(
            passed as f64 <= payable.ceil() + 1.0,
            "{passed} lines passed, the budget pays for {payable:.1}"
        );
        assert!(passed >= 15, "the burst pays for 15 lines, {passed} passed");
        assert_eq!(budget.dropped() % 99, 0, "whole lines are dropped");
    }

    #[test]
    fn the_bucket_refills_at_its_rate_up_to_its_burst() {
        let budget = LogBudget::new("refill-test".into(), 1000, 2000);
        let t0 = Instant::now();
        // Lines that cost 200 bytes with the overhead: the burst of 2000 pays for 10.
        let len = 200 - LINE_OVERHEAD as usize;
        for _ in 0..10 {
            assert!(budget.charge(len, 0, t0).pass);
        }
        assert!(!budget.charge(len, 0, t0).pass, "the burst is spent");
        // 0.2 s later: 200 bytes earned, one line.
        let t1 = t0 + Duration::from_millis(200);
        assert!(budget.charge(len, 0, t1).pass);
        assert!(!budget.charge(len, 0, t1).pass);
        // A long quiet spell refills only up to the burst.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert!(budget.charge(len, 0, t2).pass);
        }
        assert!(!budget.charge(len, 0, t2).pass);
        assert_eq!(budget.dropped(), 3 * len as u64);
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_counted() {
        let budget = Arc::new(LogBudget::new("cut-test".into(), 1 << 20, 1 << 20));
        let mut s = stream(&budget);
        // 10 000 bytes without a newline, then the newline in a second write.
        s.write(Bytes::from(vec![b'a'; 10_000])).unwrap();
        assert_eq!(s.line.len(), MAX_LINE, "never more than a line is buffered");
        s.write(Bytes::from_static(b"bc\nnext")).unwrap();
        assert_eq!(budget.dropped(), (10_000 + 2 - MAX_LINE) as u64);
        assert_eq!(s.line, b"next");
        assert_eq!(s.cut, 0);
    }

    #[test]
    fn one_notice_per_interval() {
        // A burst that pays for exactly one line of 20 bytes.
        let budget = LogBudget::new("notice-test".into(), 1, 20 + LINE_OVERHEAD);
        let t0 = Instant::now();
        assert!(budget.charge(20, 0, t0).pass);
        let c = budget.charge(500, 0, t0);
        assert!(!c.pass);
        assert_eq!(c.notice, None, "the last notice was under a second ago");
        let c = budget.charge(500, 0, t0 + Duration::from_millis(1500));
        assert!(!c.pass);
        assert_eq!(c.notice, Some(1000), "both drops in one notice");
        let c = budget.charge(500, 0, t0 + Duration::from_millis(1600));
        assert_eq!(c.notice, None);
    }

    #[test]
    fn the_metric_names_each_service() {
        let a: Arc<str> = "metric-test-a".into();
        let budget = LogBudget::of(&a);
        assert!(Arc::ptr_eq(&budget, &LogBudget::of(&a)), "one per service");
        budget.charge(1 << 30, 0, Instant::now());
        let out = crate::telemetry::metrics::render(register_metrics);
        assert!(
            out.contains(&format!(
                "silo_guest_log_dropped_bytes_total{{service=\"metric-test-a\"}} {}",
                1u64 << 30
            )),
            "{out}"
        );
    }
}
