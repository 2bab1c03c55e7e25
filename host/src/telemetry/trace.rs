//! Spans and their W3C Trace Context: what a trace id and a span id are, how they travel in
//! a `traceparent` header, and where finished spans go (the in-memory ring behind
//! `/admin/traces`, and an OTLP exporter when one is configured: see [`super::otel`]).

use std::borrow::Cow;
use std::time::SystemTime;

pub use super::ring::{RING, RING_CAPACITY, Ring, SpanRecord};

/// The identity of one span and the trace it belongs to, as W3C Trace Context carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// Reads a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`); `None` for anything
    /// malformed or for the all-zero ids the specification forbids.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        let mut flag = [0u8; 1];
        hex::decode_to_slice(flags, &mut flag).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] || !is_lower_hex(trace) || !is_lower_hex(span) {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flag[0] & 1 == 1,
        })
    }

    /// The `traceparent` header naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            u8::from(self.sampled)
        )
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a span is to the trace: the work of a server answering a request, a client
/// waiting for another service, or something the host does inside either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// A piece of work being timed: an OpenTelemetry span of the host's tracer provider (see
/// [`super::otel`]). Ends (and is recorded) when dropped or [`Span::end`]ed.
pub struct Span {
    inner: opentelemetry_sdk::trace::Span,
    context: TraceContext,
}

impl Span {
    /// Starts a span named `name` of `service`: a child of `parent`, or the root of a new
    /// trace.
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        service: &str,
        parent: Option<TraceContext>,
    ) -> Self {
        Self::start_kind(name, service, parent, SpanKind::Internal)
    }

    /// [`Span::start`] with the span's kind (a request served is `Server`, a call made is
    /// `Client`).
    pub fn start_kind(
        name: impl Into<Cow<'static, str>>,
        service: &str,
        parent: Option<TraceContext>,
        kind: SpanKind,
    ) -> Self {
        Self::build(name, service, parent, kind, None, None)
    }

    /// [`Span::start`] for work that began at `start` (wall clock) and is recorded only now:
    /// a saga's span, written when the saga ends, perhaps after a restart.
    pub fn start_at(
        name: impl Into<Cow<'static, str>>,
        service: &str,
        parent: Option<TraceContext>,
        start: SystemTime,
    ) -> Self {
        Self::build(name, service, parent, SpanKind::Internal, None, Some(start))
    }

    /// A span whose identity was fixed beforehand (`context`, so work started elsewhere or
    /// before a restart could already name it as its parent), a child of span `parent` of
    /// the same trace (`None`: the trace's root), begun at `start` (wall clock).
    pub fn with_context(
        name: impl Into<Cow<'static, str>>,
        service: &str,
        context: TraceContext,
        parent: Option<[u8; 8]>,
        start: SystemTime,
    ) -> Self {
        let parent = parent.map(|span_id| TraceContext {
            trace_id: context.trace_id,
            span_id,
            sampled: context.sampled,
        });
        Self::build(
            name,
            service,
            parent,
            SpanKind::Internal,
            Some(context),
            Some(start),
        )
    }

    /// The one place spans are made: a child of `parent` (or a root), with the identity
    /// `fixed` when given, begun at `start` when given (else now).
    fn build(
        name: impl Into<Cow<'static, str>>,
        service: &str,
        parent: Option<TraceContext>,
        kind: SpanKind,
        fixed: Option<TraceContext>,
        start: Option<SystemTime>,
    ) -> Self {
        use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _};
        let parent_cx = match parent {
            Some(p) => opentelemetry::Context::new().with_remote_span_context(p.to_otel()),
            None => opentelemetry::Context::new(),
        };
        let mut builder = opentelemetry::trace::SpanBuilder::from_name(name)
            .with_kind(kind.to_otel())
            .with_attributes([opentelemetry::KeyValue::new(
                super::otel::SERVICE_ATTRIBUTE,
                service.to_string(),
            )]);
        if let Some(start) = start {
            builder = builder.with_start_time(start);
        }
        let tracer = super::otel::tracer();
        let inner = match fixed {
            Some(f) => super::otel::with_fixed_ids(f.trace_id, f.span_id, || {
                tracer.build_with_context(builder, &parent_cx)
            }),
            None => tracer.build_with_context(builder, &parent_cx),
        };
        let sc = inner.span_context();
        let context = TraceContext {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled: sc.is_sampled(),
        };
        Self { inner, context }
    }

    /// This span's context: the parent of the spans it starts, and what travels on.
    pub fn context(&self) -> TraceContext {
        self.context
    }

    pub fn attr(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        use opentelemetry::trace::Span as _;
        self.inner.set_attribute(opentelemetry::KeyValue::new(
            key.to_string(),
            super::otel::to_otel_value(value.into()),
        ));
    }

    /// Marks the span failed.
    pub fn error(&mut self, message: impl Into<String>) {
        use opentelemetry::trace::Span as _;
        self.inner
            .set_status(opentelemetry::trace::Status::error(message.into()));
    }

    pub fn end(mut self) {
        use opentelemetry::trace::Span as _;
        self.inner.end();
    }
}

impl SpanKind {
    fn to_otel(self) -> opentelemetry::trace::SpanKind {
        use opentelemetry::trace::SpanKind as K;
        match self {
            SpanKind::Internal => K::Internal,
            SpanKind::Server => K::Server,
            SpanKind::Client => K::Client,
            SpanKind::Producer => K::Producer,
            SpanKind::Consumer => K::Consumer,
        }
    }
}

impl TraceContext {
    /// This context as OpenTelemetry's (a parent handed in from elsewhere).
    fn to_otel(self) -> opentelemetry::trace::SpanContext {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            if self.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_malformed() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(t).expect("valid");
        assert_eq!(c.traceparent(), t);
        assert!(c.sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_child_span_shares_the_trace_and_names_its_parent() {
        let root = Span::start("root", "orders", None);
        let rc = root.context();
        let child = Span::start("child", "users", Some(rc));
        let cc = child.context();
        assert_eq!(cc.trace_id, rc.trace_id);
        assert_ne!(cc.span_id, rc.span_id);
        child.end();
        root.end();
        let spans = RING.trace(&rc.trace_id_hex());
        assert_eq!(spans.len(), 2);
        let child = spans.iter().find(|s| s.name == "child").unwrap();
        assert_eq!(
            child.parent_span_id.as_deref(),
            Some(rc.span_id_hex().as_str())
        );
        assert_eq!(child.service, "users");
    }

    #[test]
    fn a_span_with_a_fixed_identity_keeps_it_and_its_real_start() {
        let ctx = TraceContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled: true,
        };
        let begun = SystemTime::now() - std::time::Duration::from_secs(3);
        Span::with_context("saga order", "orders", ctx, Some([5; 8]), begun).end();
        let spans = RING.trace(&ctx.trace_id_hex());
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.span_id, ctx.span_id_hex());
        assert_eq!(s.parent_span_id.as_deref(), Some("0505050505050505"));
        let start_ms = begun
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1e3;
        assert!(
            (s.start_ms - start_ms).abs() < 1.0,
            "{} vs {start_ms}",
            s.start_ms
        );
        assert!(
            s.duration_ms >= 3000.0 && s.duration_ms < 4000.0,
            "{}",
            s.duration_ms
        );
    }
}
