//! Traces and request logs: an incoming `traceparent` is continued, a call carries the
//! trace to the services it reaches, statements are child spans (their text only with
//! `SILO_TRACE_SQL=1`), `/admin/traces` answers as the contract says, and `--log-format
//! json` writes one request line per request with the trace id of its span.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DEMO;
use crate::support::{Resp, TestHost, request, silo_cmd, write_manifest};

/// A fresh W3C trace id and parent span id, and the `traceparent` naming them.
fn traceparent() -> (String, String, String) {
    let trace = format!("{:032x}", rand::random::<u128>() | 1);
    let parent = format!("{:016x}", rand::random::<u64>() | 1);
    let header = format!("00-{trace}-{parent}-01");
    (trace, parent, header)
}

async fn get_traced(h: &TestHost, path: &str, tp: &str) -> Resp {
    request("GET", &h.http, path, None, &[("traceparent", tp)]).await
}

async fn trace_spans(h: &TestHost, trace: &str) -> Vec<serde_json::Value> {
    // The last spans end as the response is sent: give them a moment to reach the ring.
    for _ in 0..50 {
        let r = h
            .admin_get(&format!("/admin/traces/{trace}"), Some(&h.token))
            .await;
        if r.status == 200 {
            return r.json()["spans"].as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("trace {trace} never appeared");
}

fn find<'a>(
    spans: &'a [serde_json::Value],
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> &'a serde_json::Value {
    spans
        .iter()
        .find(|s| pred(s))
        .unwrap_or_else(|| panic!("no {what} in {}", serde_json::Value::from(spans.to_vec())))
}

/// Creates a user and a product; returns their ids.
async fn seed(h: &TestHost) -> (String, String) {
    let u = h
        .post("/users", r#"{"email":"ada@example.com","name":"Ada"}"#)
        .await;
    assert_eq!(u.status, 201, "{}", u.text());
    let p = h
        .post("/products", r#"{"name":"Engine","price":1250,"stock":5}"#)
        .await;
    assert_eq!(p.status, 201, "{}", p.text());
    (
        u.json()["id"].as_str().unwrap().to_string(),
        p.json()["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_is_continued_and_admin_traces_answers_the_contract() {
    let h = TestHost::start(DEMO).await;
    let (trace, parent, tp) = traceparent();
    let r = get_traced(&h, "/users", &tp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = trace_spans(&h, &trace).await;
    let server = find(&spans, "users' server span", |s| s["name"] == "GET /users");
    assert_eq!(server["traceId"], trace.as_str());
    assert_eq!(server["parentSpanId"], parent.as_str());
    assert_eq!(server["service"], "users");
    assert_eq!(server["status"], "ok");
    assert_eq!(server["attributes"]["span.kind"], "server");
    assert_eq!(server["attributes"]["http.response.status_code"], 200);
    assert_eq!(server["attributes"]["url.path"], "/users");
    assert!(server["spanId"].as_str().unwrap().len() == 16);
    assert!(server["startMs"].as_f64().unwrap() > 1.6e12);
    assert!(server["durationMs"].as_f64().unwrap() >= 0.0);

    // A malformed traceparent starts a new trace instead.
    let bad = format!("00-{}-{parent}-01", trace.to_uppercase());
    let r = get_traced(&h, "/users", &bad).await;
    assert_eq!(r.status, 200);
    let (other, _, _) = traceparent();
    let upper = h
        .admin_get(
            &format!("/admin/traces/{}", trace.to_uppercase()),
            Some(&h.token),
        )
        .await;
    assert_eq!(upper.status, 400, "{}", upper.text());
    assert_eq!(upper.error_code(), "bad_request");
    let missing = h
        .admin_get(&format!("/admin/traces/{other}"), Some(&h.token))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(missing.error_code(), "not_found");
    // The first trace has still exactly one server span: the second request is not in it.
    let again = trace_spans(&h, &trace).await;
    assert_eq!(
        again
            .iter()
            .filter(|s| s["attributes"]["span.kind"] == "server")
            .count(),
        1
    );

    // The list: the most recent traces' spans; limit bounds the number of traces.
    let r = h.admin_get("/admin/traces?limit=1", Some(&h.token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = r.json()["spans"].as_array().unwrap().clone();
    assert!(!listed.is_empty());
    let first = listed[0]["traceId"].clone();
    assert!(listed.iter().all(|s| s["traceId"] == first), "{listed:?}");
    let r = h.admin_get("/admin/traces", Some(&h.token)).await;
    assert_eq!(r.status, 200);
    let ids: std::collections::HashSet<String> = r.json()["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["traceId"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&trace), "{ids:?}");
    for bad in ["limit=0", "limit=201", "limit=abc", "limit=-1", "size=3"] {
        let r = h
            .admin_get(&format!("/admin/traces?{bad}"), Some(&h.token))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.error_code(), "bad_request");
    }
    let r = h.admin_get("/admin/traces", None).await;
    assert_eq!(r.status, 401);

    // Start-up migrations are traced: users' migrate span, each applied step its child.
    let r = h.admin_get("/admin/traces?limit=200", Some(&h.token)).await;
    let all = r.json()["spans"].as_array().unwrap().clone();
    let migrate = find(&all, "users' migrate span", |s| {
        s["name"] == "migrate users"
    });
    assert_eq!(migrate["service"], "users");
    let step = find(&all, "users' first migration step", |s| {
        s["name"] == "migration 1" && s["service"] == "users"
    });
    assert_eq!(step["parentSpanId"], migrate["spanId"]);
    assert_eq!(step["traceId"], migrate["traceId"]);
    assert_eq!(step["attributes"]["db.name"], "main");
    assert_eq!(step["attributes"]["silo.migration.version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composed_request_is_one_trace_across_the_services_it_calls() {
    let h = TestHost::start(DEMO).await;
    let (user, product) = seed(&h).await;
    let body = format!(r#"{{"userId":"{user}","productId":"{product}","quantity":1}}"#);
    let r = h.post("/orders", &body).await;
    assert!(r.status == 201 || r.status == 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();

    let (trace, parent, tp) = traceparent();
    let r = get_traced(&h, &format!("/orders/{id}/details"), &tp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = trace_spans(&h, &trace).await;
    assert!(spans.iter().all(|s| s["traceId"] == trace.as_str()));

    let orders = find(&spans, "orders' server span", |s| {
        s["name"] == "GET /orders" && s["service"] == "orders"
    });
    assert_eq!(orders["parentSpanId"], parent.as_str());
    for callee in ["users", "products"] {
        let client = find(&spans, &format!("the client span to {callee}"), |s| {
            s["name"] == format!("call {callee}").as_str()
        });
        assert_eq!(client["service"], "orders");
        assert_eq!(client["parentSpanId"], orders["spanId"]);
        assert_eq!(client["attributes"]["span.kind"], "client");
        assert_eq!(client["attributes"]["http.response.status_code"], 200);
        let server = find(&spans, &format!("{callee}' server span"), |s| {
            s["service"] == callee && s["attributes"]["span.kind"] == "server"
        });
        assert_eq!(
            server["parentSpanId"], client["spanId"],
            "{callee}'s server span is the call's child"
        );
        assert!(server["attributes"]["silo.caller"] == "orders");
        // The callee's statements are children of its server span.
        let sql = find(&spans, &format!("a statement of {callee}"), |s| {
            s["service"] == callee && s["name"].as_str().unwrap().starts_with("sql ")
        });
        assert_eq!(sql["parentSpanId"], server["spanId"]);
        assert_eq!(sql["attributes"]["db.system"], "sqlite");
        assert_eq!(sql["attributes"]["db.name"], "main");
    }
    // `silo traces ID` prints the same trace as a tree: each call under orders' span, each
    // callee's server span under its call.
    let (code, out, err) = silo_cmd(&[
        "traces",
        &trace,
        "--admin",
        &h.admin,
        "--admin-token",
        &h.token,
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{out}"))
    };
    let root = at("GET /orders [orders]");
    let call = at("  call users [orders]");
    let callee = at("    GET /users [users]");
    assert!(root < call && call < callee, "{out}");
    let (code, out, _) = silo_cmd(&["traces", "--admin", &h.admin, "--admin-token", &h.token]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with(trace.as_str())), "{out}");

    let statements: Vec<_> = spans
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("sql "))
        .collect();
    assert!(statements.iter().any(|s| s["service"] == "orders"));
    assert!(
        statements
            .iter()
            .all(|s| s["attributes"].get("db.statement").is_none()),
        "statement text without the opt-in: {statements:?}"
    );
}

/// Sends `GET path` by hand and returns the response head (hyper's answer, headers and all).
async fn raw_head(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_one_request_line_per_request_with_its_trace_id() {
    let (dir, manifest) = write_manifest(DEMO);
    let log = dir.path().join("host.log");
    let h = TestHost::start_logging(
        dir,
        manifest,
        &[("SILO_LOG_FORMAT", "json"), ("SILO_TRACE_SQL", "1")],
        Some(&log),
    )
    .await;
    let (trace, _, tp) = traceparent();
    assert_eq!(get_traced(&h, "/users", &tp).await.status, 200);
    let created = h
        .post("/users", r#"{"email":"grace@example.com","name":"Grace"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    // The response names its trace.
    let head = raw_head(&h.http, "/users").await;
    let named = head
        .lines()
        .find_map(|l| l.strip_prefix("x-silo-trace-id: "))
        .unwrap_or_else(|| panic!("no x-silo-trace-id in {head}"))
        .trim()
        .to_string();
    let spans = trace_spans(&h, &named).await;
    find(&spans, "the named trace's server span", |s| {
        s["name"] == "GET /users"
    });

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "silo::request")
        .collect();
    assert_eq!(requests.len(), 3, "{requests:?}");
    for r in &requests {
        let f = &r["fields"];
        assert_eq!(r["level"], "INFO");
        assert_eq!(f["service"], "users");
        assert!(f["duration_ms"].as_f64().is_some(), "{r}");
        assert_eq!(f["trace_id"].as_str().unwrap().len(), 32);
        assert_eq!(r["span"]["trace_id"], f["trace_id"], "{r}");
    }
    let get = requests
        .iter()
        .find(|r| r["fields"]["trace_id"] == trace.as_str())
        .expect("the traced request's line");
    assert_eq!(get["fields"]["method"], "GET");
    assert_eq!(get["fields"]["path"], "/users");
    assert_eq!(get["fields"]["status"], 200);
    let post = requests
        .iter()
        .find(|r| r["fields"]["method"] == "POST")
        .expect("the POST's line");
    assert_eq!(post["fields"]["status"], 201);
    assert!(
        requests
            .iter()
            .any(|r| r["fields"]["trace_id"] == named.as_str())
    );

    // The POST's trace: its server span, and with SILO_TRACE_SQL=1 its statements' text.
    let post_trace = post["fields"]["trace_id"].as_str().unwrap();
    let spans = trace_spans(&h, post_trace).await;
    find(&spans, "the POST's server span", |s| {
        s["name"] == "POST /users"
    });
    let insert = find(&spans, "an INSERT statement", |s| {
        s["attributes"]["db.statement"]
            .as_str()
            .is_some_and(|t| t.to_ascii_uppercase().contains("INSERT"))
    });
    assert_eq!(insert["service"], "users");
}

/// A collector on a loopback port: the bodies of every `POST /v1/traces` it receives.
async fn collector() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes)>,
) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let what = format!("{} {}", req.method(), req.uri().path());
                            let body = req.into_body().collect().await?.to_bytes();
                            let _ = tx.send((what, body));
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_spans_reach_the_collector_by_the_time_the_host_stops() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    let (endpoint, mut received) = collector().await;
    let (dir, manifest) = write_manifest(DEMO);
    let h = TestHost::start_with(
        dir,
        manifest,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "silo-under-test"),
        ],
    )
    .await;
    let (trace, parent, tp) = traceparent();
    assert_eq!(get_traced(&h, "/users", &tp).await.status, 200);
    // A graceful stop flushes the exporter's batch (its schedule alone would take seconds).
    let (status, _dir, _) = tokio::task::block_in_place(|| h.stop());
    assert!(status.success(), "{status:?}");
    let mut spans = Vec::new();
    let mut service_names = Vec::new();
    while let Ok((what, body)) = received.try_recv() {
        assert_eq!(what, "POST /v1/traces");
        let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
        for rs in req.resource_spans {
            for a in rs.resource.iter().flat_map(|r| &r.attributes) {
                if a.key == "service.name" {
                    service_names.push(format!("{:?}", a.value));
                }
            }
            spans.extend(rs.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    let ours = spans
        .iter()
        .find(|s| s.name == "GET /users" && hex_of(&s.trace_id) == trace)
        .unwrap_or_else(|| {
            panic!(
                "the request's span was not exported: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(hex_of(&ours.parent_span_id), parent);
    assert!(
        ours.attributes.iter().any(|a| a.key == "silo.service"),
        "{:?}",
        ours.attributes
    );
    assert!(
        service_names.iter().all(|n| n.contains("silo-under-test")),
        "{service_names:?}"
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
