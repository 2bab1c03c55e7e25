//! The trace context through events, without wasm: `events.publish` called as a guest
//! would, with the request's span set, stores the publish span's context with the event;
//! `inbox::deliver` runs the handler in a `deliver TOPIC` span, a child of it (a stand-in
//! recipient records the context its instance was armed with).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmtime::component::{Resource, ResourceTable};

use super::outbox::{EventRecord, ensure_inbox};
use super::{EventsCtx, EventsCtxView, Outbox, PublishGrant, inbox};
use crate::bindings::silo::service::events::Host as _;
use crate::delivery::lend::Call;
use crate::delivery::{Export, Instance, InstanceError, Lent, Recipient, Work, host_limits};
use crate::manifest::ServiceSpec;
use crate::request::RequestCtx;
use crate::sql::sqlite::{SqliteConfig, SqliteStore};
use crate::sql::{SqlCtx, SqlError, SqlStore, SqlTransaction};
use crate::telemetry::trace::RING;
use crate::telemetry::{Span, TraceContext};

fn sqlite(dir: &std::path::Path, name: &str) -> Arc<dyn SqlStore> {
    Arc::new(SqliteStore::open(&dir.join(name), SqliteConfig::default()).unwrap())
}

/// Publishes one `UserCreated` from `users` in a request whose span is `request_span`, as
/// the guest's `events.publish` would; returns the committed event as the router loads it.
async fn publish_in(
    dir: &std::path::Path,
    request_span: Option<TraceContext>,
) -> (String, Arc<EventRecord>) {
    let store = sqlite(dir, "users.db");
    let outbox = Outbox::open("users", store.clone()).await.unwrap();
    outbox
        .sync_subscriber("orders", &["UserCreated".to_string()])
        .await
        .unwrap();
    let grant = PublishGrant {
        topics: Arc::from(vec!["UserCreated".to_string()]),
        store: Some("main".into()),
        outbox: Some(outbox.clone()),
    };
    let mut ctx = EventsCtx::new(grant);
    let mut request = RequestCtx::new("users".into(), Instant::now() + Duration::from_secs(10));
    request.trace = request_span;
    let mut table = ResourceTable::new();
    let mut sql = SqlCtx::new(Arc::new(HashMap::new()), Duration::from_secs(5), 1 << 20);
    let tx = sql.lend("main", store.begin(&host_limits()).await.unwrap());
    let rep = table.push(tx).unwrap().rep();
    let mut view = EventsCtxView {
        ctx: &mut ctx,
        request: &request,
        table: &mut table,
    };
    let id = view
        .publish(
            Resource::new_borrow(rep),
            "UserCreated".into(),
            "u1".into(),
            "application/json".into(),
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    let refused = view
        .publish(
            Resource::new_borrow(rep),
            "Secret".into(),
            "u1".into(),
            "application/json".into(),
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, SqlError::AccessDenied(m) if m.contains("may not publish `Secret`")),
        "{refused:?}"
    );
    sql.take_back(&mut table, rep)
        .unwrap()
        .commit()
        .await
        .unwrap();
    let rows = outbox.load(0, 10).await.unwrap();
    assert_eq!(rows.len(), 1, "one delivery row, for `orders`");
    (id, rows[0].event.clone())
}

#[tokio::test]
async fn a_published_event_keeps_its_publish_span_a_child_of_the_request_span() {
    let dir = tempfile::tempdir().unwrap();
    let request = Span::start("POST /users", "users", None);
    let rc = request.context();
    let (id, event) = publish_in(dir.path(), Some(rc)).await;
    request.end();
    let stored = event.trace.expect("the outbox row carries a traceparent");
    assert_eq!(stored.trace_id, rc.trace_id, "the request's trace");
    assert_ne!(stored.span_id, rc.span_id, "the publish span's own id");
    let spans = RING.trace(&rc.trace_id_hex());
    let publish = spans
        .iter()
        .find(|s| s.name == "publish UserCreated")
        .expect("a publish span");
    assert_eq!(publish.span_id, stored.span_id_hex());
    assert_eq!(
        publish.parent_span_id.as_deref(),
        Some(rc.span_id_hex().as_str())
    );
    assert_eq!(publish.service, "users");
    assert_eq!(publish.attributes["silo.event_id"], id.as_str());
    assert_eq!(publish.status, "ok");
}

#[tokio::test]
async fn an_event_published_outside_a_trace_starts_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_, event) = publish_in(dir.path(), None).await;
    let stored = event
        .trace
        .expect("a traceparent even without a request span");
    let spans = RING.trace(&stored.trace_id_hex());
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].name, "publish UserCreated");
    assert_eq!(spans[0].parent_span_id, None);
}

/// A subscriber whose instances record the span they were armed with.
struct Subscriber {
    name: Arc<str>,
    spec: ServiceSpec,
    store: Arc<dyn SqlStore>,
    armed: Arc<Mutex<Vec<Option<TraceContext>>>>,
    fail: bool,
}

struct Armed {
    armed: Arc<Mutex<Vec<Option<TraceContext>>>>,
    fail: bool,
}

#[async_trait]
impl Instance for Armed {
    async fn call(
        &mut self,
        _store: &str,
        _call: &Call,
        tx: Box<dyn SqlTransaction>,
        _deadline: Instant,
        trace: Option<TraceContext>,
    ) -> Result<(Lent, Box<dyn SqlTransaction>), SqlError> {
        self.armed.lock().unwrap().push(trace);
        let lent = if self.fail {
            Lent::Failed("poisoned".into())
        } else {
            Lent::Returned(None)
        };
        Ok((lent, tx))
    }

    fn take_published(&mut self) -> Vec<Arc<tokio::sync::Notify>> {
        Vec::new()
    }
}

#[async_trait]
impl Recipient for Subscriber {
    fn name(&self) -> &Arc<str> {
        &self.name
    }
    fn spec(&self) -> &ServiceSpec {
        &self.spec
    }
    fn exports(&self, _: Export) -> bool {
        true
    }
    fn store(&self, name: &str) -> Option<Arc<dyn SqlStore>> {
        (name == "main").then(|| self.store.clone())
    }
    fn count_trap(&self) {}
    async fn run(&self, _: Duration, work: Work) -> Result<(), String> {
        work.await;
        Ok(())
    }
    async fn instance(&self, _: Export, _: Instant) -> Result<Box<dyn Instance>, InstanceError> {
        Ok(Box::new(Armed {
            armed: self.armed.clone(),
            fail: self.fail,
        }))
    }
}

async fn subscriber(dir: &std::path::Path, fail: bool) -> Arc<Subscriber> {
    let m = crate::manifest::Manifest::parse(
        "[services.users]\ncomponent = \"u.wasm\"\nroute = \"/users\"\npublishes = [\"UserCreated\"]\n\
         [services.users.stores.main]\n\
         [services.orders]\ncomponent = \"o.wasm\"\nroute = \"/orders\"\n\
         subscribes = [{ source = \"users\", topic = \"UserCreated\" }]\n[services.orders.stores.main]\n",
    )
    .unwrap();
    let store = sqlite(dir, "orders.db");
    ensure_inbox(store.as_ref()).await.unwrap();
    Arc::new(Subscriber {
        name: "orders".into(),
        spec: m.services["orders"].clone(),
        store,
        armed: Arc::default(),
        fail,
    })
}

#[tokio::test]
async fn the_handler_runs_in_a_delivery_span_under_the_publish_span() {
    let dir = tempfile::tempdir().unwrap();
    let request = Span::start("POST /users", "users", None);
    let (_, event) = publish_in(dir.path(), Some(request.context())).await;
    request.end();
    let publish = event.trace.unwrap();
    let sub = subscriber(dir.path(), false).await;
    let recipient: Arc<dyn Recipient> = sub.clone();
    let outcomes = inbox::deliver(
        &recipient,
        "orders:users/UserCreated",
        &[(2, event.clone())],
    )
    .await
    .unwrap();
    assert!(
        matches!(outcomes[..], [inbox::Outcome::Handled { .. }]),
        "{outcomes:?}"
    );
    let armed = sub.armed.lock().unwrap().clone();
    assert_eq!(armed.len(), 1);
    let handler = armed[0].expect("the instance was armed with the delivery's span");
    assert_eq!(handler.trace_id, publish.trace_id);
    let spans = RING.trace(&publish.trace_id_hex());
    let deliver = spans
        .iter()
        .find(|s| s.name == "deliver UserCreated")
        .expect("a delivery span");
    assert_eq!(deliver.span_id, handler.span_id_hex());
    assert_eq!(
        deliver.parent_span_id.as_deref(),
        Some(publish.span_id_hex().as_str())
    );
    assert_eq!(deliver.service, "orders");
    assert_eq!(deliver.status, "ok");
    assert_eq!(deliver.attributes["silo.attempt"], 3);
    assert_eq!(
        deliver.attributes["silo.subscription"],
        "orders:users/UserCreated"
    );
    assert_eq!(deliver.attributes["silo.event_id"], event.id.as_str());
}

#[tokio::test]
async fn a_failed_attempt_marks_its_span_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, event) = publish_in(dir.path(), None).await;
    let sub = subscriber(dir.path(), true).await;
    let recipient: Arc<dyn Recipient> = sub.clone();
    let outcomes = inbox::deliver(
        &recipient,
        "orders:users/UserCreated",
        &[(0, event.clone())],
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [inbox::Outcome::Failed(
            "the handler failed: poisoned".into()
        )]
    );
    let spans = RING.trace(&event.trace.unwrap().trace_id_hex());
    let deliver = spans
        .iter()
        .find(|s| s.name == "deliver UserCreated")
        .expect("a delivery span");
    assert_eq!(deliver.status, "error");
    assert_eq!(deliver.attributes["error"], "the handler failed: poisoned");
    assert_eq!(deliver.attributes["silo.attempt"], 1);
}
