//! A loaded service: its compiled component pre-linked against the host, its grants and its
//! limits. Built once per load (start-up, and later per deploy); every request of the
//! service instantiates from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context;
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::metrics::ServiceMetrics;
use super::state::RequestState;
use crate::manifest::{Limits, ServiceSpec};
use crate::sql::{CallLimits, SqlCtx, StoreGrants};

/// One service, ready to serve.
pub struct Service {
    pub name: Arc<str>,
    pub route: String,
    /// `sha256:` of the component's bytes.
    pub digest: String,
    pub limits: Limits,
    pub grants: StoreGrants,
    pub pre: ProxyPre<RequestState>,
    pub component: Component,
    /// One permit per instance that may run at once.
    pub permits: Arc<Semaphore>,
    pub metrics: Arc<ServiceMetrics>,
}

impl Service {
    /// Compiles and links `bytes` as service `name`. Fails, naming the service, if the bytes
    /// are not a component, import something silo does not grant, or do not export the
    /// wasi:http incoming handler.
    pub fn load(
        engine: &Engine,
        linker: &Linker<RequestState>,
        name: &str,
        spec: &ServiceSpec,
        bytes: &[u8],
        grants: StoreGrants,
    ) -> wasmtime::Result<Self> {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let component = Component::new(engine, bytes)
            .with_context(|| format!("service `{name}`: not a valid WebAssembly component"))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .with_context(|| format!("service `{name}`: imports something silo does not grant"))?;
        let pre = ProxyPre::new(instance_pre).with_context(|| {
            format!("service `{name}`: does not export `wasi:http/incoming-handler@0.2.x`")
        })?;
        Ok(Self {
            name: name.into(),
            route: spec.route.clone(),
            digest,
            limits: spec.limits.clone(),
            grants,
            pre,
            component,
            permits: Arc::new(Semaphore::new(spec.limits.concurrency as usize)),
            metrics: Arc::new(ServiceMetrics::default()),
        })
    }

    /// The deadline a request starting now gets.
    pub fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.limits.deadline_ms)
    }

    /// A fresh store for one instance, with its memory limit and CPU deadline set.
    pub fn new_store(&self, deadline: Instant) -> Store<RequestState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size((self.limits.memory_mb << 20) as usize)
            .instances(32)
            .tables(32)
            .memories(4)
            .trap_on_grow_failure(false)
            .build();
        let sql = SqlCtx::new(
            self.grants.clone(),
            CallLimits {
                deadline,
                max_result_bytes: (self.limits.result_kb << 10) as usize,
            },
        );
        let state = RequestState::new(&self.name, sql, limits);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        arm_deadline(&mut store, deadline);
        store
    }
}

/// Sets the deadline of the request `store` serves next: each epoch tick before it, the
/// guest yields so the other requests on this thread run; past it, the guest traps.
pub fn arm_deadline(store: &mut Store<RequestState>, deadline: Instant) {
    store.data_mut().sql.set_deadline(deadline);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
}
