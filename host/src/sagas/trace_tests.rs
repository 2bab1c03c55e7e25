//! The trace context through sagas, without wasm: `sagas.start` called as a guest would,
//! with the request's span set, records it in the log; a step's span is a child of the saga
//! span derived from it, and the participant's handler runs in the step's span.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmtime::component::{Resource, ResourceTable};

use super::command::{self, Delivery, ensure_inbox};
use super::log::SagaLog;
use super::{DeployedServices, SagaGrant, SagasCtx, SagasCtxView, trace};
use crate::bindings::exports::silo::service::command_handler::Reply;
use crate::bindings::silo::service::sagas::{Host as _, Step};
use crate::delivery::lend::Call;
use crate::delivery::{Export, Instance, InstanceError, Lent, Recipient, Work, host_limits};
use crate::manifest::ServiceSpec;
use crate::request::RequestCtx;
use crate::sql::sqlite::{SqliteConfig, SqliteStore};
use crate::sql::{SqlCtx, SqlError, SqlStore, SqlTransaction};
use crate::telemetry::trace::RING;
use crate::telemetry::{Span, TraceContext};

struct NoneDeployed;

impl DeployedServices for NoneDeployed {
    fn spec(&self, _: &str) -> Option<ServiceSpec> {
        None
    }
}

fn sqlite(dir: &std::path::Path, name: &str) -> Arc<dyn SqlStore> {
    Arc::new(SqliteStore::open(&dir.join(name), SqliteConfig::default()).unwrap())
}

/// A participant whose instances record the span they were armed with, and succeed.
struct Participant {
    name: Arc<str>,
    spec: ServiceSpec,
    store: Arc<dyn SqlStore>,
    armed: Arc<Mutex<Vec<Option<TraceContext>>>>,
}

struct Armed(Arc<Mutex<Vec<Option<TraceContext>>>>);

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
        self.0.lock().unwrap().push(trace);
        Ok((Lent::Returned(Some(Reply::Success(b"ok".to_vec()))), tx))
    }

    fn take_published(&mut self) -> Vec<Arc<tokio::sync::Notify>> {
        Vec::new()
    }
}

#[async_trait]
impl Recipient for Participant {
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
        Ok(Box::new(Armed(self.armed.clone())))
    }
}

#[tokio::test]
async fn a_saga_records_its_starter_and_its_steps_nest_under_the_saga_span() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path(), "orders.db");
    let log = SagaLog::open("orders", store.clone()).await.unwrap();
    let grant = SagaGrant {
        participants: Arc::from(vec!["products".to_string()]),
        store: Some("main".into()),
        log: Some(log.clone()),
        directory: Arc::new(NoneDeployed),
    };
    let mut ctx = SagasCtx::new(grant);
    let request = Span::start("POST /orders", "orders", None);
    let rc = request.context();
    let mut req = RequestCtx::new("orders".into(), Instant::now() + Duration::from_secs(10));
    req.trace = Some(rc);
    let mut table = ResourceTable::new();
    let mut sql = SqlCtx::new(Arc::new(HashMap::new()), Duration::from_secs(5), 1 << 20);
    let tx = sql.lend("main", store.begin(&host_limits()).await.unwrap());
    let rep = table.push(tx).unwrap().rep();
    let mut view = SagasCtxView {
        ctx: &mut ctx,
        request: &req,
        table: &mut table,
    };
    let step = Step {
        name: "reserve-stock".into(),
        service: "products".into(),
        command: "reserve".into(),
        payload: b"{}".to_vec(),
        compensation: Some("release".into()),
    };
    let id = view
        .start(
            Resource::new_borrow(rep),
            "order".into(),
            "o1".into(),
            vec![step],
        )
        .await
        .unwrap();
    sql.take_back(&mut table, rep)
        .unwrap()
        .commit()
        .await
        .unwrap();
    request.end();

    // The log keeps the starter's context; the saga span is its child, the same on every
    // read of the log (after a restart too).
    let saga = log.load(&id).await.unwrap().unwrap();
    assert_eq!(
        saga.trace_parent.as_deref(),
        Some(rc.traceparent().as_str())
    );
    let (saga_span, parent) = trace::saga_context(&saga).unwrap();
    assert_eq!(saga_span.trace_id, rc.trace_id);
    assert_eq!(parent, Some(rc.span_id));

    // The step's command runs at the participant in the step's span.
    let m = crate::manifest::Manifest::parse(
        "[services.products]\ncomponent = \"p.wasm\"\nroute = \"/products\"\n\
         commands = [\"reserve\", \"release\"]\n[services.products.stores.main]\n",
    )
    .unwrap();
    let pstore = sqlite(dir.path(), "products.db");
    ensure_inbox(pstore.as_ref()).await.unwrap();
    let armed = Arc::new(Mutex::new(Vec::new()));
    let participant: Arc<dyn Recipient> = Arc::new(Participant {
        name: "products".into(),
        spec: m.services["products"].clone(),
        store: pstore,
        armed: armed.clone(),
    });
    let span = trace::step_span(&saga, &saga.steps[0], false, 1);
    let step_ctx = span.context();
    let cmd = crate::bindings::exports::silo::service::command_handler::Command {
        id: format!("{id}/0/do"),
        saga_id: id.clone(),
        source: "orders".into(),
        step: "reserve-stock".into(),
        name: "reserve".into(),
        payload: b"{}".to_vec(),
        succeeded_with: None,
    };
    let dups = Arc::default();
    let delivered = command::deliver(
        &participant,
        &cmd,
        false,
        Duration::from_secs(5),
        &dups,
        Some(step_ctx),
    )
    .await;
    assert_eq!(delivered, Delivery::Success(b"ok".to_vec()));
    drop(span);
    assert_eq!(*armed.lock().unwrap(), [Some(step_ctx)]);

    // The saga ends: its span is recorded with its real start, a child of the request's.
    let mut ended = saga.clone();
    ended.state = "completed".into();
    trace::ended("orders", &ended);
    let spans = RING.trace(&rc.trace_id_hex());
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:?}"))
    };
    let saga_rec = find("saga order");
    assert_eq!(saga_rec.span_id, saga_span.span_id_hex());
    assert_eq!(
        saga_rec.parent_span_id.as_deref(),
        Some(rc.span_id_hex().as_str())
    );
    assert_eq!(saga_rec.service, "orders");
    assert!(
        (saga_rec.start_ms - saga.created_ms as f64).abs() < 0.01,
        "started at {} (the log says {})",
        saga_rec.start_ms,
        saga.created_ms
    );
    assert_eq!(saga_rec.attributes["silo.state"], "completed");
    let step_rec = find("saga order step reserve-stock");
    assert_eq!(step_rec.service, "products");
    assert_eq!(step_rec.span_id, step_ctx.span_id_hex());
    assert_eq!(
        step_rec.parent_span_id.as_deref(),
        Some(saga_span.span_id_hex().as_str())
    );
    assert_eq!(step_rec.attributes["silo.saga_id"], id.as_str());
    assert_eq!(step_rec.attributes["silo.attempt"], 1);
}

#[tokio::test]
async fn an_undeclared_participant_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path(), "orders.db");
    let log = SagaLog::open("orders", store.clone()).await.unwrap();
    let grant = SagaGrant {
        participants: Arc::from(vec!["products".to_string()]),
        store: Some("main".into()),
        log: Some(log),
        directory: Arc::new(NoneDeployed),
    };
    let mut ctx = SagasCtx::new(grant);
    let req = RequestCtx::new("orders".into(), Instant::now() + Duration::from_secs(10));
    let mut table = ResourceTable::new();
    let mut sql = SqlCtx::new(Arc::new(HashMap::new()), Duration::from_secs(5), 1 << 20);
    let tx = sql.lend("main", store.begin(&host_limits()).await.unwrap());
    let rep = table.push(tx).unwrap().rep();
    let mut view = SagasCtxView {
        ctx: &mut ctx,
        request: &req,
        table: &mut table,
    };
    let step = Step {
        name: "steal".into(),
        service: "payments".into(),
        command: "charge".into(),
        payload: Vec::new(),
        compensation: None,
    };
    let e = view
        .start(
            Resource::new_borrow(rep),
            "order".into(),
            "o".into(),
            vec![step],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SqlError::AccessDenied(m) if m.contains("may not send commands to `payments`")),
        "{e:?}"
    );
}
