//! The exposition of every family: names, types, labels and values as Prometheus reads them.
//!
//! The families are process-wide and other tests record into them too, so each test uses
//! service names of its own and looks only at its own series.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::*;

/// The value of the sample line `series` (name and labels exactly) in `out`.
fn value(out: &str, series: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn sample(out: &str, series: &str) -> f64 {
    value(out, series).unwrap_or_else(|| panic!("no `{series}` in:\n{out}"))
}

/// The family a sample line belongs to, given the `# TYPE` lines seen.
fn family_of<'a>(name: &'a str, typed: &HashSet<String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && typed.contains(base)
        {
            return base;
        }
    }
    name
}

/// Checks what a reference parser needs: one `# HELP` and one `# TYPE` per family, every
/// sample right under its family's header (never split into fragments), every sample's
/// value a number.
fn assert_well_formed(out: &str) {
    assert!(
        !out.contains("..\n"),
        "a help text ends in two periods:\n{out}"
    );
    let mut typed = HashSet::new();
    let mut closed = HashSet::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(typed.insert(name.clone()), "second TYPE of {name}:\n{out}");
            if let Some(prev) = current.replace(name) {
                closed.insert(prev);
            }
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap();
        let family = family_of(name, &typed);
        assert_eq!(
            Some(family),
            current.as_deref(),
            "sample `{line}` outside its family's block:\n{out}"
        );
        assert!(!closed.contains(family), "{family} in fragments:\n{out}");
        let v = line.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "value of `{line}`");
    }
}

#[test]
fn http_requests_by_route_and_status() {
    let m = HttpMetrics::new("t-http", "/t-http");
    m.record(201, Duration::from_micros(300));
    m.record(201, Duration::from_millis(20));
    m.record(404, Duration::from_secs(30));
    m.record(999, Duration::from_millis(1));
    m.rejected_busy.fetch_add(2, Relaxed);
    m.traps.fetch_add(1, Relaxed);
    assert_eq!(m.timeouts.fetch_add(1, Relaxed), 0);
    assert_eq!(m.total(), 4);
    let out = render(|_| {});
    assert_well_formed(&out);
    assert!(out.contains("# TYPE silo_http_requests_total counter\n"));
    assert!(out.contains("# TYPE silo_http_request_duration_seconds histogram\n"));
    let req = |s: &str| {
        format!("silo_http_requests_total{{service=\"t-http\",route=\"/t-http\",status=\"{s}\"}}")
    };
    assert_eq!(sample(&out, &req("201")), 2.0);
    assert_eq!(sample(&out, &req("404")), 1.0);
    assert_eq!(
        sample(&out, &req("999")),
        1.0,
        "a code past 599 is counted too"
    );
    let h = |le: &str| {
        format!(
            "silo_http_request_duration_seconds_bucket{{service=\"t-http\",route=\"/t-http\",le=\"{le}\"}}"
        )
    };
    assert_eq!(sample(&out, &h("0.0005")), 1.0);
    assert_eq!(sample(&out, &h("0.001")), 2.0, "a bound includes its value");
    assert_eq!(sample(&out, &h("0.025")), 3.0, "cumulative");
    assert_eq!(sample(&out, &h("10")), 3.0);
    assert_eq!(sample(&out, &h("+Inf")), 4.0);
    assert_eq!(
        sample(
            &out,
            "silo_http_request_duration_seconds_count{service=\"t-http\",route=\"/t-http\"}"
        ),
        4.0
    );
    let sum = sample(
        &out,
        "silo_http_request_duration_seconds_sum{service=\"t-http\",route=\"/t-http\"}",
    );
    assert!((sum - 30.0213).abs() < 1e-9, "{sum}");
    assert_eq!(
        sample(&out, "silo_rejected_busy_total{service=\"t-http\"}"),
        2.0
    );
    assert_eq!(sample(&out, "silo_traps_total{service=\"t-http\"}"), 1.0);
    assert_eq!(sample(&out, "silo_timeouts_total{service=\"t-http\"}"), 1.0);
}

#[test]
fn counts_go_on_across_versions_of_a_service() {
    let v1 = HttpMetrics::new("t-redeploy", "/r");
    v1.record(200, Duration::from_millis(1));
    v1.traps.fetch_add(1, Relaxed);
    let v2 = HttpMetrics::new("t-redeploy", "/r");
    v2.record(200, Duration::from_millis(1));
    assert_eq!(v2.total(), 1, "per version");
    assert_eq!(v2.traps.load(Relaxed), 1, "the same counter");
    let out = render(|_| {});
    assert_eq!(
        sample(
            &out,
            "silo_http_requests_total{service=\"t-redeploy\",route=\"/r\",status=\"200\"}"
        ),
        2.0
    );
}

#[test]
fn calls_by_caller_callee_and_status() {
    observe_call("t-caller", "t-callee", 200, Duration::from_millis(3));
    observe_call("t-caller", "t-callee", 200, Duration::from_millis(30));
    observe_call("t-caller", "t-callee", 503, Duration::from_secs(2));
    let out = render(|_| {});
    assert_well_formed(&out);
    assert!(out.contains("# TYPE silo_calls_total counter\n"));
    assert!(out.contains("# TYPE silo_call_duration_seconds histogram\n"));
    let c = |s: &str| {
        format!("silo_calls_total{{caller=\"t-caller\",callee=\"t-callee\",status=\"{s}\"}}")
    };
    assert_eq!(sample(&out, &c("200")), 2.0);
    assert_eq!(sample(&out, &c("503")), 1.0);
    let b = |le: &str| {
        format!(
            "silo_call_duration_seconds_bucket{{caller=\"t-caller\",callee=\"t-callee\",le=\"{le}\"}}"
        )
    };
    assert_eq!(sample(&out, &b("0.005")), 1.0);
    assert_eq!(sample(&out, &b("0.05")), 2.0);
    assert_eq!(sample(&out, &b("2.5")), 3.0);
}

#[test]
fn capability_calls_by_op_and_result() {
    observe_capability("t-cap", "sql", "query", true, Duration::from_micros(200));
    observe_capability("t-cap", "sql", "query", false, Duration::from_millis(7));
    observe_capability("t-cap", "kv", "get", true, Duration::from_micros(50));
    let out = render(|_| {});
    assert_well_formed(&out);
    assert!(out.contains("# TYPE silo_capability_calls_total counter\n"));
    assert!(out.contains("# TYPE silo_capability_call_duration_seconds histogram\n"));
    let c = |cap: &str, op: &str, r: &str| {
        format!(
            "silo_capability_calls_total{{service=\"t-cap\",capability=\"{cap}\",op=\"{op}\",result=\"{r}\"}}"
        )
    };
    assert_eq!(sample(&out, &c("sql", "query", "ok")), 1.0);
    assert_eq!(sample(&out, &c("sql", "query", "error")), 1.0);
    assert_eq!(sample(&out, &c("kv", "get", "ok")), 1.0);
    assert_eq!(value(&out, &c("kv", "get", "error")), None);
    assert_eq!(
        sample(
            &out,
            "silo_capability_call_duration_seconds_count{service=\"t-cap\",capability=\"sql\",op=\"query\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &out,
            "silo_capability_call_duration_seconds_bucket{service=\"t-cap\",capability=\"sql\",op=\"query\",le=\"0.0005\"}"
        ),
        1.0
    );
}

#[test]
fn refusals_by_kind() {
    for kind in ["store", "store", "call", "statement", "topic", "saga"] {
        count_refusal("t-refused", kind);
    }
    let out = render(|_| {});
    assert_well_formed(&out);
    assert!(out.contains("# TYPE silo_refusals_total counter\n"));
    let r = |k: &str| format!("silo_refusals_total{{service=\"t-refused\",kind=\"{k}\"}}");
    assert_eq!(sample(&out, &r("store")), 2.0);
    for k in ["call", "statement", "topic", "saga"] {
        assert_eq!(sample(&out, &r(k)), 1.0, "{k}");
    }
}

#[test]
fn delivery_lag_per_subscription() {
    let sub = "t-sub:t-pub/Ping";
    observe_delivery(sub, "t-pub", "Ping", "t-sub", Duration::from_millis(40));
    observe_delivery(sub, "t-pub", "Ping", "t-sub", Duration::from_millis(400));
    let out = render(|_| {});
    assert_well_formed(&out);
    assert!(out.contains("# TYPE silo_events_delivery_lag_seconds histogram\n"));
    let l = format!("subscription=\"{sub}\",source=\"t-pub\",topic=\"Ping\",subscriber=\"t-sub\"");
    assert_eq!(
        sample(
            &out,
            &format!("silo_events_delivery_lag_seconds_count{{{l}}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &out,
            &format!("silo_events_delivery_lag_seconds_bucket{{{l},le=\"0.05\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &out,
            &format!("silo_events_delivery_lag_seconds_bucket{{{l},le=\"0.5\"}}")
        ),
        2.0
    );
    assert!(!out.contains("summary"), "no summaries:\n{out}");
}

#[test]
fn saga_duration_by_outcome() {
    observe_saga("t-orch", "completed", Duration::from_millis(80));
    observe_saga("t-orch", "failed", Duration::from_secs(3));
    let out = render(|_| {});
    assert_well_formed(&out);
    assert!(out.contains("# TYPE silo_saga_duration_seconds histogram\n"));
    let s = |o: &str, le: &str| {
        format!(
            "silo_saga_duration_seconds_bucket{{service=\"t-orch\",outcome=\"{o}\",le=\"{le}\"}}"
        )
    };
    assert_eq!(sample(&out, &s("completed", "0.1")), 1.0);
    assert_eq!(sample(&out, &s("failed", "2.5")), 0.0);
    assert_eq!(sample(&out, &s("failed", "5")), 1.0);
}

#[test]
fn scrape_time_families_sit_with_the_rest() {
    let out = render(|s| {
        s.gauge("t_pending", "Pending.")
            .get_or_create(&vec![("subscription", "a\"b".to_string())])
            .set(3);
        s.seconds("t_age_seconds", "Age.")
            .get_or_create(&vec![("subscription", "a".to_string())])
            .set(1.5);
        s.counter("t_done", "Done.")
            .get_or_create(&vec![])
            .inc_by(7);
        s.gauge("t_empty", "A family with no series.");
    });
    assert_well_formed(&out);
    assert!(out.contains("# TYPE t_pending gauge\n"));
    assert_eq!(
        sample(&out, "t_pending{subscription=\"a\\\"b\"}"),
        3.0,
        "escaped"
    );
    assert!(
        out.contains("t_pending{subscription=\"a\\\"b\"} 3\n"),
        "whole numbers"
    );
    assert_eq!(sample(&out, "t_age_seconds{subscription=\"a\"}"), 1.5);
    assert!(out.contains("# TYPE t_done_total counter\n"));
    assert_eq!(sample(&out, "t_done_total"), 7.0);
    assert!(
        !out.contains("t_empty"),
        "a family without series is left out"
    );
}

#[test]
fn every_latency_bucket_is_exposed() {
    let m = HttpMetrics::new("t-buckets", "/b");
    m.record(200, Duration::from_millis(1));
    let out = render(|_| {});
    let les: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.starts_with("silo_http_request_duration_seconds_bucket{service=\"t-buckets\"")
        })
        .map(|l| l.split("le=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    assert_eq!(
        les,
        [
            "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
            "1", "2.5", "5", "10", "+Inf"
        ]
    );
}
