//! A loaded service: its compiled component pre-linked against the host, its grants and its
//! limits. Built once per load (start-up, and later per deploy); every request of the
//! service instantiates from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::budget::ServiceMemory;
use super::executor::run_on;
use super::permits::{DELIVERIES, Permits};
use sha2::Digest;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context;
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::metrics::ServiceMetrics;
use super::state::{CapabilityCtxs, InstanceLimits, RequestState};
use crate::bindings::exports::silo::service::command_handler::GuestIndices as CommandIndices;
use crate::bindings::exports::silo::service::event_handler::GuestIndices;
use crate::bindings::exports::silo::service::saga_handler::GuestIndices as SagaIndices;
use crate::calls::{CallCtx, Dispatch};
use crate::events::{EventsCtx, Outbox, PublishGrant};
use crate::kv::KvCtx;
use crate::manifest::ServiceSpec;
use crate::request::RequestCtx;
use crate::runtime::grants::StoreGrants;
use crate::sagas::{DeployedServices, SagaGrant, SagaLog, SagasCtx};
use crate::sql::SqlCtx;

/// One service, ready to serve.
pub struct Service {
    pub name: Arc<str>,
    /// Its version in the deployment history (0 until recorded).
    pub version: u32,
    /// What it was granted and its limits, as declared.
    pub spec: ServiceSpec,
    /// `sha256:` of the component's bytes.
    pub digest: String,
    pub grants: StoreGrants,
    pub pre: ProxyPre<RequestState>,
    pub component: Component,
    /// The services this one may call.
    pub calls: Arc<[String]>,
    /// Where its calls find their targets (the host's routing table, `dispatch::ServiceDirectory`).
    dispatch: Arc<dyn Dispatch>,
    /// Where its sagas find the participants' specs (the same table).
    deployed: Arc<dyn DeployedServices>,
    /// One permit per instance that may run at once, shared fairly between origins.
    pub permits: Arc<Permits>,
    /// The threads its guest code runs on (requests, deliveries, commands), its own.
    pub executor: tokio::runtime::Handle,
    /// Its account in the host's memory budget.
    pub memory: Arc<ServiceMemory>,
    pub metrics: Arc<ServiceMetrics>,
    /// Its `event-handler` export, if it has one.
    pub event_handler: Option<GuestIndices>,
    /// Its outbox, once its event store is open (a service that publishes).
    pub outbox: Option<Arc<Outbox>>,
    /// The topics it may publish (its spec's `publishes`, shared by every instance).
    topics: Arc<[String]>,
    /// Its `command-handler` export (a saga participant), if it has one.
    pub command_handler: Option<CommandIndices>,
    /// Its `saga-handler` export (a saga orchestrator), if it has one.
    pub saga_handler: Option<SagaIndices>,
    /// Its saga log, once its event store is open (a service that starts sagas).
    pub saga_log: Option<Arc<SagaLog>>,
    /// The services its sagas may command.
    participants: Arc<[String]>,
    /// Its event store's name (where its outbox, inbox and saga log are), if it has one.
    event_store: Option<Arc<str>>,
}

/// Where a service runs, given by the host: its executor and its memory account.
pub struct ServiceRuntime {
    pub executor: tokio::runtime::Handle,
    pub memory: Arc<ServiceMemory>,
}

impl Service {
    /// Compiles and links `bytes` as service `name`. Fails, naming the service, if the bytes
    /// are not a component, import something silo does not grant, or lack (or mistype) an
    /// export the host will call: the wasi:http incoming handler, and the handlers the
    /// service's role needs ([`super::exports::check`]). `commanded_by` lists the services
    /// that name this one in their `saga-participants`.
    #[allow(
        clippy::too_many_arguments,
        reason = "one per thing a load needs; called twice"
    )]
    pub fn load<D: Dispatch + DeployedServices + 'static>(
        engine: &Engine,
        linker: &Linker<RequestState>,
        name: &str,
        spec: &ServiceSpec,
        bytes: &[u8],
        grants: StoreGrants,
        directory: Arc<D>,
        commanded_by: &[String],
        runtime: ServiceRuntime,
    ) -> wasmtime::Result<Self> {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        if bytes.starts_with(b"\0asm\x01\0\0\0") {
            wasmtime::bail!(
                "service `{name}`: a core WebAssembly module, not a component: build it for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
            );
        }
        let component = component_binary(bytes)
            .and_then(|binary| Component::new(engine, &binary))
            .with_context(|| format!("service `{name}`: not a valid WebAssembly component"))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .with_context(|| format!("service `{name}`: imports something silo does not grant"))?;
        let exports = super::exports::check(&instance_pre, name, spec, commanded_by)?;
        let pre = ProxyPre::new(instance_pre).with_context(|| {
            format!("service `{name}`: does not export `wasi:http/incoming-handler@0.2.x`")
        })?;
        let super::exports::Exports {
            event_handler,
            command_handler,
            saga_handler,
        } = exports;
        Ok(Self {
            name: name.into(),
            version: 0,
            spec: spec.clone(),
            digest,
            grants,
            pre,
            component,
            calls: spec.calls.iter().cloned().collect(),
            dispatch: directory.clone(),
            deployed: directory,
            permits: Permits::new(spec.limits.concurrency),
            executor: runtime.executor,
            memory: runtime.memory,
            metrics: Arc::new(ServiceMetrics::new(name, &spec.route)),
            event_handler,
            outbox: None,
            topics: spec.publishes.iter().cloned().collect(),
            command_handler,
            saga_handler,
            saga_log: None,
            participants: spec.saga_participants.iter().cloned().collect(),
            event_store: spec.event_store().map(Arc::from),
        })
    }

    /// A fresh instance (for calling one of its exports), with its store.
    pub async fn instance(
        &self,
        deadline: Instant,
    ) -> wasmtime::Result<(Store<RequestState>, wasmtime::component::Instance)> {
        let mut store = self.new_store(deadline, &[]);
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await?;
        Ok((store, instance))
    }

    /// The deadline a request starting now gets.
    pub fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.spec.limits.deadline_ms)
    }

    /// A fresh store for one instance, with its memory limit and CPU deadline set.
    /// `chain` is the services the request passed through before this one.
    pub fn new_store(&self, deadline: Instant, chain: &[Arc<str>]) -> Store<RequestState> {
        let memory_bytes = (self.spec.limits.memory_mb << 20) as usize;
        let limits = InstanceLimits::new(
            StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .instances(32)
                .tables(32)
                .memories(4)
                .trap_on_grow_failure(false)
                .build(),
            memory_bytes,
        )
        .charged_to(self.memory.clone());
        let capabilities = CapabilityCtxs {
            sql: SqlCtx::new(
                self.grants.sql_stores(),
                Duration::from_millis(self.spec.limits.statement_ms),
                (self.spec.limits.result_kb << 10) as usize,
            ),
            kv: KvCtx::new(self.grants.kv_stores()),
            events: EventsCtx::new(PublishGrant {
                topics: self.topics.clone(),
                store: self.event_store.clone(),
                outbox: self.outbox.clone(),
            }),
            sagas: SagasCtx::new(SagaGrant {
                participants: self.participants.clone(),
                store: self.event_store.clone(),
                log: self.saga_log.clone(),
                directory: self.deployed.clone(),
            }),
            calls: CallCtx {
                allowed: self.calls.clone(),
                dispatch: self.dispatch.clone(),
                call_timeout: Duration::from_millis(self.spec.limits.call_timeout_ms),
            },
        };
        let request = RequestCtx::new(self.name.clone(), deadline);
        let state = RequestState::new(request, capabilities, limits);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        arm(&mut store, deadline, chain);
        store
    }
}

/// `bytes` as a binary component, WebAssembly text compiled first. Whatever the file is (a
/// system file named by mistake or on purpose), an error never shows its content: only
/// what it is not, or the line and column where the text stops being WebAssembly.
pub fn component_binary(bytes: &[u8]) -> wasmtime::Result<std::borrow::Cow<'_, [u8]>> {
    match wat::Detect::from_bytes(bytes) {
        wat::Detect::WasmBinary => Ok(std::borrow::Cow::Borrowed(bytes)),
        wat::Detect::WasmText => wat::parse_bytes(bytes).map_err(|e| {
            // The error's text quotes the offending line; keep only where it is.
            let shown = e.to_string();
            let at = shown
                .lines()
                .find_map(|l| l.trim_start().strip_prefix("--> "))
                .and_then(|l| {
                    let mut parts = l.rsplitn(3, ':');
                    let column = parts.next()?.trim();
                    let line = parts.next()?.trim();
                    Some(format!(" at line {line}, column {column}"))
                })
                .unwrap_or_default();
            wasmtime::format_err!("the file is WebAssembly text with an error{at}")
        }),
        wat::Detect::Unknown => wasmtime::bail!(
            "the file is neither a binary component (which starts with `\\0asm`) nor WebAssembly text"
        ),
    }
}

/// The least `memory-mb` that component can start with: its largest initial linear
/// memory, rounded up to whole MiB. `None` when wasmtime cannot tell (a component that
/// imports core modules).
pub fn min_memory_mb(component: &Component) -> Option<u64> {
    let pages = component.resources_required()?.max_initial_memory_size?;
    Some((pages * 65536).div_ceil(1 << 20))
}

/// Prepares `store` for its next request: the deadline (each epoch tick before it, the
/// guest yields so the other requests on this thread run; past it, the guest traps) and the
/// call chain it is part of (`chain`: the services before this one).
pub fn arm(store: &mut Store<RequestState>, deadline: Instant, chain: &[Arc<str>]) {
    store.data_mut().request_mut().arm(deadline, chain);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
}

impl Service {
    /// Runs one delivery of the host's (an event batch, a saga command or ending) on this
    /// service's executor, under one of its permits like a request: the router and the saga
    /// engine only wait for the outcome, so a slow handler holds up nothing but its service.
    /// Gives up if no permit frees within `wait`.
    pub async fn deliver<F, Fut>(
        self: &Arc<Self>,
        wait: Duration,
        work: F,
    ) -> Result<Fut::Output, String>
    where
        F: FnOnce(Arc<Service>) -> Fut,
        Fut: std::future::Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let permit = tokio::time::timeout(wait, self.permits.acquire(DELIVERIES))
            .await
            .map_err(|_| {
                format!(
                    "service `{}` had no free instance within {} ms (all {} busy)",
                    self.name,
                    wait.as_millis(),
                    self.spec.limits.concurrency
                )
            })?;
        let work = work(self.clone());
        run_on(&self.executor, &self.name, async move {
            let _permit = permit;
            work.await
        })
        .await
        .map_err(|e| e.to_string())
    }
}
