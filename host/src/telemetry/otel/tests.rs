//! Tests of the tracer provider: the variables it reads, what the ring receives, and a real
//! OTLP/HTTP export to a tiny collector on a loopback port.

use std::collections::HashMap;

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use prost::Message as _;

use super::*;
use crate::telemetry::trace::{RING, Span, SpanKind};

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn otlp_is_on_only_when_the_standard_variables_say_so() {
    let none = Settings::from_vars(vars(&[]));
    assert_eq!(none.otlp_traces_endpoint, None);
    assert_eq!(none.service_name, "silo");
    let blank = Settings::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
    assert_eq!(blank.otlp_traces_endpoint, None);
    let base = Settings::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
        ("OTEL_SERVICE_NAME", "shop"),
    ]));
    assert_eq!(
        base.otlp_traces_endpoint.as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    assert_eq!(base.service_name, "shop");
    // The signal's own variable is used as it is, and wins.
    let traces = Settings::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://other:9999/traces",
        ),
    ]));
    assert_eq!(
        traces.otlp_traces_endpoint.as_deref(),
        Some("http://other:9999/traces")
    );
}

#[test]
fn an_ended_span_reaches_the_ring_with_its_service_kind_status_and_attributes() {
    let parent = crate::telemetry::TraceContext::parse(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    .unwrap();
    let mut span = Span::start_kind("GET /users", "users", Some(parent), SpanKind::Server);
    span.attr("http.status", 503);
    span.attr("db.system", "sqlite");
    span.attr("ratio", 0.5);
    span.error("service `users` failed");
    let ctx = span.context();
    assert_eq!(ctx.trace_id, parent.trace_id);
    span.end();
    let spans = RING.trace(&ctx.trace_id_hex());
    let s = spans
        .iter()
        .find(|s| s.span_id == ctx.span_id_hex())
        .expect("the span is in the ring");
    assert_eq!(s.name, "GET /users");
    assert_eq!(s.service, "users");
    assert_eq!(s.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
    assert_eq!(s.status, "error");
    assert_eq!(s.attributes["error"], "service `users` failed");
    assert_eq!(s.attributes["http.status"], 503);
    assert_eq!(s.attributes["db.system"], "sqlite");
    assert_eq!(s.attributes["ratio"], 0.5);
    assert_eq!(s.attributes["span.kind"], "server");
    assert!(!s.attributes.contains_key(SERVICE_ATTRIBUTE));
    assert!(s.duration_ms >= 0.0 && s.start_ms > 1.6e12);
}

#[test]
fn an_unsampled_parent_records_nothing() {
    let parent = crate::telemetry::TraceContext::parse(
        "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    )
    .unwrap();
    let span = Span::start("quiet", "users", Some(parent));
    assert!(!span.context().sampled);
    span.end();
    assert!(RING.trace("1af7651916cd43dd8448eb211c80319c").is_empty());
}

/// A collector on a loopback port: every `POST /v1/traces` body, as received.
fn collector() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use http_body_util::BodyExt;
    let (tx, rx) = std::sync::mpsc::channel();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            async move {
                                let path = format!("{} {}", req.method(), req.uri().path());
                                let body = req.into_body().collect().await?.to_bytes();
                                let _ = tx.send((path, body.to_vec()));
                                Ok::<_, hyper::Error>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::new()),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    (format!("http://{addr}"), rx)
}

#[test]
fn spans_are_exported_by_otlp_http_protobuf_when_an_endpoint_is_set() {
    let (base, received) = collector();
    let settings = Settings::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
        ("OTEL_SERVICE_NAME", "silo-otlp-test"),
    ]));
    let exporter = otlp_exporter(settings.otlp_traces_endpoint.as_deref().unwrap()).unwrap();
    let provider = build(Some(exporter), &settings.service_name);
    let tracer = provider.tracer("silo");
    let builder = opentelemetry::trace::SpanBuilder::from_name("POST /orders")
        .with_kind(opentelemetry::trace::SpanKind::Server)
        .with_attributes([opentelemetry::KeyValue::new(SERVICE_ATTRIBUTE, "orders")]);
    let mut span = tracer.build_with_context(builder, &opentelemetry::Context::new());
    let trace_id = span.span_context().trace_id();
    span.end();
    provider.shutdown().expect("flushed");
    let (path, body) = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the collector received an export");
    assert_eq!(path, "POST /v1/traces");
    let request =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            body.as_slice(),
        )
        .expect("an OTLP protobuf body");
    let rs = &request.resource_spans[0];
    let resource = rs.resource.as_ref().unwrap();
    let name = resource
        .attributes
        .iter()
        .find(|a| a.key == "service.name")
        .and_then(|a| a.value.as_ref())
        .map(|v| format!("{:?}", v.value));
    assert_eq!(
        name.as_deref(),
        Some("Some(StringValue(\"silo-otlp-test\"))")
    );
    let spans: Vec<_> = rs.scope_spans.iter().flat_map(|s| &s.spans).collect();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "POST /orders");
    assert_eq!(spans[0].trace_id, trace_id.to_bytes().to_vec());
    assert!(
        spans[0]
            .attributes
            .iter()
            .any(|a| a.key == SERVICE_ATTRIBUTE)
    );
}
