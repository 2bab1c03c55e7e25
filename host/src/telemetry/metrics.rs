//! The host's metrics: counters and histograms every part of the host reports to, exposed
//! in Prometheus' text format (0.0.4) at `/metrics`, through the `prometheus-client` crate.
//!
//! One process-wide set of families ([`METRICS`]) is filled from wherever the work happens:
//! the router (through [`HttpMetrics`], which caches its service's label set so recording a
//! request allocates nothing), capabilities ([`observe_capability`], [`count_refusal`]),
//! calls ([`observe_call`]), deliveries ([`observe_delivery`]) and sagas ([`observe_saga`]).
//! What is only known from the host's state (pending events, sagas by state, guest output
//! dropped) is built at scrape time into a [`Scrape`], next to these, by [`render`].
//!
//! Latencies are histograms with the buckets of [`BUCKETS`] (0.5 ms … 10 s), so Prometheus
//! can aggregate them across hosts and compute any quantile.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`render`] writes (Prometheus' text format, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of every latency histogram's buckets, in seconds (and `+Inf`).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

type Latency<S> = Family<S, Histogram, fn() -> Histogram>;

fn latency_family<S: Clone + std::hash::Hash + Eq>() -> Latency<S> {
    Family::new_with_constructor(latency as fn() -> Histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    service: Arc<str>,
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    service: Arc<str>,
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    caller: Arc<str>,
    callee: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallPair {
    caller: Arc<str>,
    callee: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    service: Arc<str>,
    capability: &'static str,
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityOp {
    service: Arc<str>,
    capability: &'static str,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    service: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    subscription: Arc<str>,
    source: Arc<str>,
    topic: Arc<str>,
    subscriber: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SagaLabels {
    service: Arc<str>,
    outcome: &'static str,
}

/// The process-wide families (the host's own series; see [`Scrape`] for the rest).
struct Metrics {
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Latency<RouteLabels>,
    rejected_busy: Family<ServiceLabel, Counter>,
    traps: Family<ServiceLabel, Counter>,
    timeouts: Family<ServiceLabel, Counter>,
    calls: Family<CallLabels, Counter>,
    call_duration: Latency<CallPair>,
    capability_calls: Family<CapabilityLabels, Counter>,
    capability_duration: Latency<CapabilityOp>,
    refusals: Family<RefusalLabels, Counter>,
    delivery_lag: Latency<DeliveryLabels>,
    saga_duration: Latency<SagaLabels>,
}

impl Metrics {
    fn new() -> Self {
        Self {
            http_requests: Family::default(),
            http_duration: latency_family(),
            rejected_busy: Family::default(),
            traps: Family::default(),
            timeouts: Family::default(),
            calls: Family::default(),
            call_duration: latency_family(),
            capability_calls: Family::default(),
            capability_duration: latency_family(),
            refusals: Family::default(),
            delivery_lag: latency_family(),
            saga_duration: latency_family(),
        }
    }

    /// Registers (shares) every family in `r`. Counters are named without `_total`: the
    /// encoder adds it.
    fn register(&self, r: &mut Registry) {
        r.register(
            "silo_http_requests",
            "Requests answered, by service, route and status code",
            self.http_requests.clone(),
        );
        r.register(
            "silo_http_request_duration_seconds",
            "Time from routing a request to its response headers",
            self.http_duration.clone(),
        );
        r.register(
            "silo_rejected_busy",
            "Requests refused with 503 at the service's concurrency limit",
            self.rejected_busy.clone(),
        );
        r.register(
            "silo_traps",
            "Instances that trapped (including CPU deadline and memory exhaustion)",
            self.traps.clone(),
        );
        r.register(
            "silo_timeouts",
            "Requests that ran past their deadline",
            self.timeouts.clone(),
        );
        r.register(
            "silo_calls",
            "Calls between services, by caller, callee and the status the caller got",
            self.calls.clone(),
        );
        r.register(
            "silo_call_duration_seconds",
            "Time a call between services took, as the caller saw it",
            self.call_duration.clone(),
        );
        r.register(
            "silo_capability_calls",
            "Guest calls into a capability (sql, kv, events, ...), by operation and result (ok or error)",
            self.capability_calls.clone(),
        );
        r.register(
            "silo_capability_call_duration_seconds",
            "Time a guest call into a capability took",
            self.capability_duration.clone(),
        );
        r.register(
            "silo_refusals",
            "Capability uses the host refused a service, by kind: store (not granted), call (not declared), statement (refused), topic (not declared), saga (step not declared)",
            self.refusals.clone(),
        );
        r.register(
            "silo_events_delivery_lag_seconds",
            "Time from an event's commit to its outbox to the commit of its handler, per subscription",
            self.delivery_lag.clone(),
        );
        r.register(
            "silo_saga_duration_seconds",
            "Time from a saga's start to its end, by orchestrating service and outcome",
            self.saga_duration.clone(),
        );
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The one shared copy of `name`, so a label set is built by counting references, not by
/// copying strings (names come from the manifest: services, topics, subscriptions).
fn intern(name: &str) -> Arc<str> {
    static NAMES: LazyLock<RwLock<HashSet<Arc<str>>>> = LazyLock::new(Default::default);
    if let Some(n) = NAMES.read().unwrap_or_else(|p| p.into_inner()).get(name) {
        return n.clone();
    }
    let mut all = NAMES.write().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = all.get(name) {
        return n.clone();
    }
    let n: Arc<str> = name.into();
    all.insert(n.clone());
    n
}

/// One guest call into a capability finished (`ok`: it returned no error).
pub fn observe_capability(
    service: &str,
    capability: &'static str,
    op: &'static str,
    ok: bool,
    elapsed: Duration,
) {
    let service = intern(service);
    METRICS
        .capability_calls
        .get_or_create(&CapabilityLabels {
            service: service.clone(),
            capability,
            op,
            result: if ok { "ok" } else { "error" },
        })
        .inc();
    METRICS
        .capability_duration
        .get_or_create(&CapabilityOp {
            service,
            capability,
            op,
        })
        .observe(elapsed.as_secs_f64());
}

/// A call from `caller` to `callee` answered `status` after `elapsed` (client side).
pub fn observe_call(caller: &str, callee: &str, status: u16, elapsed: Duration) {
    let (caller, callee) = (intern(caller), intern(callee));
    METRICS
        .calls
        .get_or_create(&CallLabels {
            caller: caller.clone(),
            callee: callee.clone(),
            status,
        })
        .inc();
    METRICS
        .call_duration
        .get_or_create(&CallPair { caller, callee })
        .observe(elapsed.as_secs_f64());
}

/// The host refused `service` a capability use: `kind` is `store` (a store not granted),
/// `call` (a call not declared), `statement` (a statement refused), `topic` (a topic not
/// declared), or `saga` (a saga step not declared).
pub fn count_refusal(service: &str, kind: &'static str) {
    METRICS
        .refusals
        .get_or_create(&RefusalLabels {
            service: intern(service),
            kind,
        })
        .inc();
}

/// An event of `topic` from `source` was handled by `subscriber` through `subscription`,
/// `lag` after it was committed to the outbox (publish to handler commit).
pub fn observe_delivery(
    subscription: &str,
    source: &str,
    topic: &str,
    subscriber: &str,
    lag: Duration,
) {
    METRICS
        .delivery_lag
        .get_or_create(&DeliveryLabels {
            subscription: intern(subscription),
            source: intern(source),
            topic: intern(topic),
            subscriber: intern(subscriber),
        })
        .observe(lag.as_secs_f64());
}

/// A saga of `service` ended in `outcome` (`completed`, `compensated` or `failed`) after
/// `elapsed` from its start.
pub fn observe_saga(service: &str, outcome: &'static str, elapsed: Duration) {
    METRICS
        .saga_duration
        .get_or_create(&SagaLabels {
            service: intern(service),
            outcome,
        })
        .observe(elapsed.as_secs_f64());
}

/// A counter of the host's, with the `fetch_add`/`load` of the atomic it replaces (the
/// router counts busy refusals, traps and timeouts through these).
#[derive(Clone)]
pub struct Tally(Counter);

impl Tally {
    /// Adds `n`; returns the count before (`order` is ignored: counts are relaxed).
    pub fn fetch_add(&self, n: u64, _order: Ordering) -> u64 {
        self.0.inc_by(n)
    }

    /// The count so far.
    pub fn load(&self, _order: Ordering) -> u64 {
        self.0.get()
    }
}

/// Status codes with a counter cached per service (every code HTTP defines).
const CACHED_STATUS: std::ops::RangeInclusive<u16> = 100..=599;

/// The request series of one service at one route, resolved once: recording a request is
/// an atomic add and a histogram sample, with no allocation and no map lookup (after the
/// first request of each status code).
pub struct HttpMetrics {
    labels: RouteLabels,
    by_status: Box<[OnceLock<Counter>]>,
    duration: Histogram,
    /// Requests answered, whatever their status.
    answered: AtomicU64,
    /// Requests turned away because the service was at its concurrency limit.
    pub rejected_busy: Tally,
    /// Instances that trapped (including CPU deadline and memory exhaustion).
    pub traps: Tally,
    /// Requests that ran past their deadline.
    pub timeouts: Tally,
}

impl HttpMetrics {
    /// The series of `service` served at `route`. The counters are the process-wide ones, so
    /// a service's counts go on across deploys of new versions.
    pub fn new(service: &str, route: &str) -> Self {
        let labels = RouteLabels {
            service: intern(service),
            route: intern(route),
        };
        let one = ServiceLabel {
            service: labels.service.clone(),
        };
        let m = &*METRICS;
        Self {
            by_status: CACHED_STATUS.map(|_| OnceLock::new()).collect(),
            duration: m.http_duration.get_or_create_owned(&labels),
            answered: AtomicU64::new(0),
            rejected_busy: Tally(m.rejected_busy.get_or_create_owned(&one)),
            traps: Tally(m.traps.get_or_create_owned(&one)),
            timeouts: Tally(m.timeouts.get_or_create_owned(&one)),
            labels,
        }
    }

    /// One request answered `status` after `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.duration.observe(elapsed.as_secs_f64());
        let family = || {
            METRICS.http_requests.get_or_create_owned(&HttpLabels {
                service: self.labels.service.clone(),
                route: self.labels.route.clone(),
                status,
            })
        };
        if CACHED_STATUS.contains(&status) {
            self.by_status[usize::from(status - CACHED_STATUS.start())]
                .get_or_init(family)
                .inc();
        } else {
            family().inc();
        }
    }

    /// Requests this value recorded (this version of the service).
    pub fn total(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

/// `help` without its closing period (the encoder writes one).
fn trim(help: &str) -> &str {
    help.trim_end_matches('.')
}

/// Label pairs of a family built at scrape time.
pub type Labels = Vec<(&'static str, String)>;

/// The families of one scrape built from the host's state (gauges of what is pending, counts
/// kept by the event and saga stores), encoded with the process-wide ones by [`render`].
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A gauge family `name` of whole numbers.
    pub fn gauge(&mut self, name: &'static str, help: &str) -> Family<Labels, Gauge> {
        let f = Family::default();
        self.registry.register(name, trim(help), f.clone());
        f
    }

    /// A gauge family `name` of seconds (fractions).
    pub fn seconds(
        &mut self,
        name: &'static str,
        help: &str,
    ) -> Family<Labels, Gauge<f64, AtomicU64>> {
        let f = Family::default();
        self.registry.register(name, trim(help), f.clone());
        f
    }

    /// A counter family, exposed as `name` + `_total` (its value is set once, from a count
    /// the host keeps elsewhere).
    pub fn counter(&mut self, name: &'static str, help: &str) -> Family<Labels, Counter> {
        let f = Family::default();
        self.registry.register(name, trim(help), f.clone());
        f
    }
}

/// Every series, in Prometheus' text format: the process-wide families, then those
/// `scrape` adds.
pub fn render(scrape: impl FnOnce(&mut Scrape)) -> String {
    let mut registry = Registry::default();
    METRICS.register(&mut registry);
    let mut s = Scrape { registry };
    scrape(&mut s);
    let mut out = String::new();
    prometheus_text::encode(&mut out, &s.registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests;
