//! The OpenTelemetry side of traces: the one tracer provider of the process, where its
//! ended spans go (always the in-memory [`RING`](super::trace::RING) behind `/admin/traces`;
//! an OTLP/HTTP exporter as well when the standard variables name a collector), and how
//! the exporter is flushed on shutdown.
//!
//! Without [`init`] (unit tests, a library user) the first span builds a provider that only
//! feeds the ring, so spans always work.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanProcessor};

use super::ring::{RING, SpanRecord};

/// The attribute naming the silo service a span belongs to (the resource's `service.name`
/// is the host's, `OTEL_SERVICE_NAME`, default `silo`).
pub const SERVICE_ATTRIBUTE: &str = "silo.service";

/// The default `service.name` of the host's resource.
pub const DEFAULT_SERVICE_NAME: &str = "silo";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The tracer every [`super::Span`] is started with.
pub(super) fn tracer() -> &'static SdkTracer {
    TRACER.get_or_init(|| provider().tracer("silo"))
}

fn provider() -> &'static SdkTracerProvider {
    PROVIDER.get_or_init(|| build(None, DEFAULT_SERVICE_NAME))
}

/// How traces leave the process, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where OTLP/HTTP (protobuf) spans are posted (`…/v1/traces`); `None`: only the ring.
    pub otlp_traces_endpoint: Option<String>,
    /// The resource's `service.name`.
    pub service_name: String,
}

impl Settings {
    /// The standard variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended), and `OTEL_SERVICE_NAME`.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Settings::from_env`] over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let otlp_traces_endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
            set("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        });
        Self {
            otlp_traces_endpoint,
            service_name: set("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string()),
        }
    }
}

/// Builds the process's tracer provider with `settings`. Call once, before the first span;
/// a second call, or one after a span was started, changes nothing and says so.
pub fn init(settings: &Settings) -> Result<(), String> {
    let provider = match &settings.otlp_traces_endpoint {
        Some(endpoint) => {
            let exporter = otlp_exporter(endpoint)?;
            build(Some(exporter), &settings.service_name)
        }
        None => build(None, &settings.service_name),
    };
    PROVIDER
        .set(provider)
        .map_err(|_| "the tracer provider was already set up".to_string())
}

/// Flushes what the exporter still holds and stops it (graceful shutdown). Blocks up to a
/// few seconds; call it outside an async task.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5))
    {
        tracing::warn!("flushing traces: {e}");
    }
}

fn otlp_exporter(endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))
}

fn build(
    exporter: Option<opentelemetry_otlp::SpanExporter>,
    service_name: &str,
) -> SdkTracerProvider {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_id_generator(FixedOrRandomIds::default())
        .with_span_processor(RingProcessor);
    if let Some(exporter) = exporter {
        builder = builder.with_batch_exporter(exporter);
    }
    builder.build()
}

thread_local! {
    /// The ids the next span started on this thread must have (see [`with_fixed_ids`]).
    static FIXED: std::cell::Cell<Option<(opentelemetry::trace::TraceId, opentelemetry::trace::SpanId)>> =
        const { std::cell::Cell::new(None) };
}

/// Runs `start` (which starts one span) so that span gets `trace_id` (when it is a root)
/// and `span_id`: a span whose identity was fixed beforehand, as a saga's is (its steps,
/// even after a restart, already name it as their parent).
pub(super) fn with_fixed_ids<T>(
    trace_id: [u8; 16],
    span_id: [u8; 8],
    start: impl FnOnce() -> T,
) -> T {
    FIXED.with(|f| {
        f.set(Some((
            opentelemetry::trace::TraceId::from_bytes(trace_id),
            opentelemetry::trace::SpanId::from_bytes(span_id),
        )))
    });
    let out = start();
    FIXED.with(|f| f.set(None));
    out
}

/// Random ids, except for a span started inside [`with_fixed_ids`].
#[derive(Debug, Default)]
struct FixedOrRandomIds {
    random: opentelemetry_sdk::trace::RandomIdGenerator,
}

impl opentelemetry_sdk::trace::IdGenerator for FixedOrRandomIds {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        match FIXED.with(|f| f.get()) {
            Some((trace, _)) => trace,
            None => self.random.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        match FIXED.with(|f| f.get()) {
            Some((_, span)) => span,
            None => self.random.new_span_id(),
        }
    }
}

/// Copies every ended span into the ring.
#[derive(Debug)]
struct RingProcessor;

impl SpanProcessor for RingProcessor {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        RING.push(record_of(span));
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// An ended span as `/admin/traces` shows it: `silo.service` becomes its service, an error
/// status its `error` attribute.
fn record_of(span: SpanData) -> SpanRecord {
    let mut service = String::new();
    let mut attributes = serde_json::Map::new();
    for kv in span.attributes {
        if kv.key.as_str() == SERVICE_ATTRIBUTE {
            service = kv.value.as_str().into_owned();
            continue;
        }
        attributes.insert(kv.key.as_str().to_string(), from_otel_value(&kv.value));
    }
    let status = match span.status {
        Status::Error { description } => {
            attributes.insert("error".into(), description.to_string().into());
            "error"
        }
        _ => "ok",
    };
    use opentelemetry::trace::SpanKind as K;
    let kind = match span.span_kind {
        K::Server => Some("server"),
        K::Client => Some("client"),
        K::Producer => Some("producer"),
        K::Consumer => Some("consumer"),
        K::Internal => None,
    };
    if let Some(kind) = kind {
        attributes.insert("span.kind".into(), kind.into());
    }
    let ms = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    };
    let parent = span.parent_span_id;
    SpanRecord {
        trace_id: span.span_context.trace_id().to_string(),
        span_id: span.span_context.span_id().to_string(),
        parent_span_id: (parent != opentelemetry::trace::SpanId::INVALID)
            .then(|| parent.to_string()),
        name: span.name.into_owned(),
        service,
        start_ms: ms(span.start_time),
        duration_ms: span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        status,
        attributes,
    }
}

/// A JSON attribute value as OpenTelemetry's (arrays and objects as their JSON text).
pub(super) fn to_otel_value(v: serde_json::Value) -> opentelemetry::Value {
    use serde_json::Value as J;
    match v {
        J::Bool(b) => b.into(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or_default().into(),
        },
        J::String(s) => s.into(),
        other => other.to_string().into(),
    }
}

fn from_otel_value(v: &opentelemetry::Value) -> serde_json::Value {
    use opentelemetry::Value as O;
    match v {
        O::Bool(b) => (*b).into(),
        O::I64(i) => (*i).into(),
        O::F64(f) => (*f).into(),
        other => other.as_str().into_owned().into(),
    }
}

#[cfg(test)]
mod tests;
