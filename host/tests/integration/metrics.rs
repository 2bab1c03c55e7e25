//! `/metrics` as Prometheus reads it: a real host serving the demo, real requests (a user
//! made, a 404, an order through its saga), the exposition checked by Debian's
//! `promtool check metrics`, exact series values, and a real `prometheus` server scraping
//! the host and answering a query on what it scraped.
//!
//! Without `promtool`/`prometheus` (Debian package `prometheus`) these tests say SKIPPED,
//! or fail when `SILO_REQUIRE_BACKENDS=1` requires them.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::DEMO;
use crate::support::{TestHost, component};

/// The path of `tool` if installed; otherwise SKIPPED (or a failure when required).
fn tool(tool: &str) -> Option<String> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("SILO_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "`{tool}` is required (SILO_REQUIRE_BACKENDS=1) but not installed (Debian package `prometheus`)"
        );
        eprintln!("SKIPPED: `{tool}` is not installed; this test did not run");
    }
    found.map(|p| p.display().to_string())
}

/// The value of the series `series` (name and labels exactly as exposed).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn sample(metrics: &str, series: &str) -> f64 {
    value(metrics, series).unwrap_or_else(|| panic!("no `{series}` in:\n{metrics}"))
}

/// A user, a payment account, a product; then an order, waited for until its saga settled.
async fn demo_traffic(h: &TestHost) {
    let r = h
        .post("/users", r#"{"email":"m@example.com","name":"M"}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let uid = r.json()["id"].as_str().unwrap().to_string();
    let r = h.get("/users/no-such-user").await;
    assert_eq!(r.status, 404, "{}", r.text());
    let body = serde_json::json!({ "userId": uid, "balance": 10_000 });
    let r = h.post("/payments/accounts", &body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = h
        .post("/products", r#"{"name":"Lamp","price":1500,"stock":5}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let pid = r.json()["id"].as_str().unwrap().to_string();
    let body = serde_json::json!({ "userId": uid, "productId": pid, "quantity": 1 });
    let r = h.post("/orders", &body.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let o = h.get(&format!("/orders/{id}")).await.json();
        if o["status"] != "PENDING" {
            assert_eq!(o["status"], "APPROVED", "{o}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still pending: {o}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `promtool check metrics` on `metrics`: its complaints, if any.
fn promtool_check(promtool: &str, metrics: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_metrics_with_the_demos_requests_counted() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let h = TestHost::start(DEMO).await;
    demo_traffic(&h).await;
    let r = h.admin_get("/metrics", None).await;
    assert_eq!(r.status, 200);
    let metrics = r.text();
    let (ok, said) = promtool_check(&promtool, &metrics);
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{metrics}");

    // One `# TYPE` per family (the old output had one per service and fragment).
    let types: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .collect();
    let mut unique = types.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(types.len(), unique.len(), "{metrics}");
    // (A family is written once it has a series: refusals, for one, have none here.)
    for family in [
        "# TYPE silo_http_requests_total counter",
        "# TYPE silo_http_request_duration_seconds histogram",
        "# TYPE silo_rejected_busy_total counter",
        "# TYPE silo_events_pending gauge",
        "# TYPE silo_events_oldest_pending_age_seconds gauge",
        "# TYPE silo_events_delivered_total counter",
        "# TYPE silo_sagas gauge",
        "# TYPE silo_saga_retries_total counter",
        "# TYPE silo_services gauge",
        "# TYPE silo_guest_log_dropped_bytes_total counter",
    ] {
        assert!(types.contains(&family), "no `{family}` in:\n{metrics}");
    }
    assert!(!metrics.contains(" summary"), "no summaries:\n{metrics}");

    let users = |status: &str| {
        format!(
            "silo_http_requests_total{{service=\"users\",route=\"/users\",status=\"{status}\"}}"
        )
    };
    assert_eq!(sample(&metrics, &users("201")), 1.0);
    assert_eq!(sample(&metrics, &users("404")), 1.0);
    assert_eq!(value(&metrics, &users("500")), None);
    let orders = "silo_http_requests_total{service=\"orders\",route=\"/orders\",status=\"202\"}";
    assert_eq!(sample(&metrics, orders), 1.0);
    // Every request of users is in its latency histogram, in the +Inf bucket and the count.
    let users_ok: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("silo_http_requests_total{service=\"users\","))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let count = sample(
        &metrics,
        "silo_http_request_duration_seconds_count{service=\"users\",route=\"/users\"}",
    );
    assert_eq!(count, users_ok, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "silo_http_request_duration_seconds_bucket{service=\"users\",route=\"/users\",le=\"+Inf\"}"
        ),
        count
    );
    let services = DEMO
        .lines()
        .filter(|l| l.starts_with("[services.") && l.matches('.').count() == 1)
        .count();
    assert_eq!(sample(&metrics, "silo_services"), services as f64);
    // The demo's traces are far under the ring's per-trace share: nothing dropped.
    assert_eq!(sample(&metrics, "silo_trace_spans_dropped_total"), 0.0);
    assert_eq!(
        sample(
            &metrics,
            "silo_sagas{service=\"orders\",state=\"completed\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&metrics, "silo_sagas{service=\"orders\",state=\"failed\"}"),
        0.0
    );
    let sub = "subscription=\"orders:users/UserCreated\",source=\"users\",topic=\"UserCreated\",subscriber=\"orders\"";
    for family in ["silo_events_pending", "silo_events_dead_letters"] {
        assert!(
            value(&metrics, &format!("{family}{{{sub}}}")).is_some(),
            "no {family} of orders:users/UserCreated in:\n{metrics}"
        );
    }
}

/// The intruder's attacks on stores it was not granted and with statements the authorizer
/// refuses show up as refusals of the intruder, by kind; its neighbours have none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_stores_and_statements_are_counted() {
    let dir = component("intruder").parent().unwrap().to_path_buf();
    let h = TestHost::start(&silo::isolation::manifest(&dir, None)).await;
    for attack in ["open-other-store", "kv-other-store", "attach"] {
        let r = h.get(&format!("/intruder/attack/{attack}")).await;
        assert_eq!(r.status, 200, "{attack}: {}", r.text());
        assert_eq!(r.json()["outcome"], "blocked", "{attack}: {}", r.text());
    }
    let metrics = h.admin_get("/metrics", None).await.text();
    let refusals = |service: &str, kind: &str| {
        value(
            &metrics,
            &format!("silo_refusals_total{{service=\"{service}\",kind=\"{kind}\"}}"),
        )
    };
    assert!(
        refusals("intruder", "store").unwrap_or(0.0) >= 2.0,
        "{metrics}"
    );
    assert!(
        refusals("intruder", "statement").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert_eq!(refusals("users", "store"), None, "{metrics}");
    assert_eq!(refusals("users", "statement"), None, "{metrics}");
}

/// A `prometheus` server, killed (and its data folder removed) when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `binary` scraping `target`'s `/metrics` every second.
    fn start(binary: &str, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: silo\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("starting prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// `GET path` of its HTTP API as JSON, once it answers.
    async fn api(&self, path: &str) -> Option<Value> {
        let r = crate::support::try_request("GET", &self.addr, path, None).await?;
        (r.status == 200).then(|| r.json())
    }

    /// The last lines of its log, for a failure message.
    fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_server_scrapes_the_host() {
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let h = TestHost::start(DEMO).await;
    demo_traffic(&h).await;
    let p = Prometheus::start(&binary, &h.admin);
    let limit = Duration::from_secs(60);
    let start = Instant::now();
    // The target is up: scraped, parsed, no error.
    let target = loop {
        let targets = p.api("/api/v1/targets").await;
        let t = targets
            .as_ref()
            .and_then(|t| t["data"]["activeTargets"].as_array()?.first().cloned());
        if let Some(t) = t
            && t["health"] == "up"
        {
            break t;
        }
        assert!(
            start.elapsed() < limit,
            "no healthy target after {limit:?}: {targets:?}\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(target["lastError"], "", "{target}");
    assert_eq!(target["scrapeUrl"], format!("http://{}/metrics", h.admin));
    // What it scraped answers a query: users' one 201.
    let query = "/api/v1/query?query=silo_http_requests_total%7Bservice%3D%22users%22%2Cstatus%3D%22201%22%7D";
    let result = loop {
        let v = p.api(query).await;
        let r = v
            .as_ref()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default();
        if !r.is_empty() {
            break r;
        }
        assert!(start.elapsed() < limit, "no result for {query}: {v:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0]["metric"]["route"], "/users", "{result:?}");
    assert_eq!(result[0]["metric"]["job"], "silo", "{result:?}");
    assert_eq!(result[0]["value"][1], "1", "{result:?}");
    // A histogram it can take a quantile of.
    let q = "/api/v1/query?query=histogram_quantile(0.99%2Csum%20by%20(le)(silo_http_request_duration_seconds_bucket%7Bservice%3D%22orders%22%7D))";
    let v = p.api(q).await.expect("the quantile query");
    let p99: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .parse()
        .unwrap();
    assert!(p99 > 0.0 && p99 <= 10.0, "{v}");
    // Nothing of the scrape was dropped as malformed.
    let q = "/api/v1/query?query=scrape_samples_scraped%7Bjob%3D%22silo%22%7D";
    let v = p.api(q).await.expect("scrape_samples_scraped");
    let scraped: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .parse()
        .unwrap();
    let exposed = h
        .admin_get("/metrics", None)
        .await
        .text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    assert!(
        scraped >= 100.0 && scraped <= exposed as f64 + 50.0,
        "{scraped} of {exposed}"
    );
}
