//! The running host: the [`Host`] type, what it shares between threads, and how it is built.
//!
//! Lifecycle, kept visible: link once ([`Host::new`]: engine, linker, epoch ticker), load and
//! validate per service ([`Host::load_manifest`], in `start`: compile, link, open stores,
//! migrate; or [`Host::start_each`], in `startup`, serving each service as soon as it is
//! open), then serve ([`serve_workers`], in `listeners`) with one single-threaded tokio
//! runtime per core, each accepting on its own `SO_REUSEPORT` socket of the same address and
//! parsing requests there; each request's instance then runs on its service's own executor
//! (`runtime::executor`), so no service's guest code runs on a thread another service needs.
//! Deploys, rollbacks and undeploys are in `deploys`, plan and apply in `apply`, and the end of
//! it all in `shutdown`.

mod apply;
mod board;
mod compare;
mod deploys;
mod listeners;
mod shutdown;
mod start;
mod startup;

pub use apply::{Change, Plan, RunningVersion, ServiceChange};
pub use board::{Phase, StartupStatus};
pub use deploys::{DeployError, DeployOutcome, DeployRequest};
pub use listeners::{BindError, HEADER_READ_TIMEOUT, Listeners, serve_workers};
pub use shutdown::{SHUTDOWN_GRACE, ShutdownSignal};
pub use start::{Chosen, Planned};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::events::{EventRouter, LocalRouter, Outbox};
use crate::manifest::{HostSettings, MIN_INSTANCES, Manifest, ManifestError, ServiceSpec};
use crate::runtime::budget::MemoryBudget;
use crate::runtime::dispatch::RouteTable;
use crate::runtime::dispatch::ServiceDirectory;
use crate::runtime::engine::{build_engine, build_linker, start_epoch_ticker};
use crate::runtime::executor::Executors;
use crate::runtime::service::ServiceRuntime;
use crate::runtime::state::RequestState;
use crate::sagas::{SagaEngine, SagaLog};

/// A start-up failure: a bad manifest or component (the command's fault, exit status 2)
/// or anything else (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// Stores whose objects on a shared server belong to another data folder: `KEY:
    /// message` lines (exit status 2, like a manifest error: nothing of theirs was changed).
    #[error("{}", .0.join("\n"))]
    OwnedElsewhere(Vec<String>),
    #[error("{0:#}")]
    Other(#[from] wasmtime::Error),
}

/// Everything the host shares between its threads.
pub struct Host {
    pub engine: Engine,
    pub linker: Arc<Linker<RequestState>>,
    pub data_dir: PathBuf,
    /// The manifest the host started from, read again by [`Host::plan`] and [`Host::apply`].
    manifest_path: std::sync::Mutex<Option<PathBuf>>,
    routes: ServiceDirectory,
    ready: AtomicBool,
    /// Each service's phase while the host starts ([`Host::start_each`]).
    startup: std::sync::Mutex<board::StartupBoard>,
    shutting_down: AtomicBool,
    deploying: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Moves committed events from outboxes to subscribers.
    pub events: Arc<dyn EventRouter>,
    /// The open outbox of every publishing service, by name (kept across deploys: a new
    /// version on the same store uses the same outbox).
    outboxes: std::sync::Mutex<std::collections::HashMap<String, Arc<Outbox>>>,
    /// Runs the sagas of every orchestrating service.
    pub sagas: Arc<SagaEngine>,
    /// The open saga log of every orchestrating service, by name (kept across deploys).
    saga_logs: std::sync::Mutex<std::collections::HashMap<String, Arc<SagaLog>>>,
    /// The shared servers of the manifest (`[backends]`).
    backends: std::sync::Mutex<crate::manifest::Backends>,
    /// Each service's own threads.
    executors: Executors,
    /// Guest memory, shared between services.
    memory: MemoryBudget,
    /// Instances that may exist at once (the pooling allocator's slots).
    pool: u32,
}

/// The services that list `name` in their `saga-participants`.
fn commanded_by<'a>(
    name: &str,
    specs: impl Iterator<Item = (&'a String, &'a ServiceSpec)>,
) -> Vec<String> {
    specs
        .filter(|(_, s)| s.saga_participants.iter().any(|p| p == name))
        .map(|(n, _)| n.clone())
        .collect()
}

impl Host {
    /// Where service `name` runs: its executor, and its account in the memory budget
    /// (weighed by what `spec` declares).
    fn runtime_for(&self, name: &str, spec: &ServiceSpec) -> std::io::Result<ServiceRuntime> {
        let demand = (spec.limits.concurrency as u64 * spec.limits.memory_mb) << 20;
        Ok(ServiceRuntime {
            executor: self.executors.for_service(name)?,
            memory: self.memory.register(name, demand),
        })
    }

    /// The instance pool's size and the memory budget, for the admin API.
    pub fn capacity(&self) -> (u32, u64) {
        (self.pool, self.memory.total())
    }

    /// Builds the engine and linker. Writes nothing to disk; compiled code goes to
    /// `cache_dir` when given.
    pub fn new(data_dir: &Path, cache_dir: Option<&Path>) -> wasmtime::Result<Self> {
        Self::with_capacity(
            data_dir,
            cache_dir,
            MIN_INSTANCES,
            MemoryBudget::default_total(),
        )
    }

    /// A host sized for `manifest`: its instance pool holds every service's concurrency,
    /// its memory budget is `[host] memory-mb` (or half the machine's memory).
    pub fn for_manifest(
        data_dir: &Path,
        cache_dir: Option<&Path>,
        path: &Path,
        manifest: &Manifest,
    ) -> Result<Self, StartError> {
        let pool = manifest
            .host
            .pool_for(manifest.services.values(), HostSettings::service_threads())
            .map_err(|(key, message)| ManifestError {
                file: path.to_path_buf(),
                key,
                message,
            })?;
        let memory = manifest
            .host
            .memory_mb
            .map(|mb| mb << 20)
            .unwrap_or_else(MemoryBudget::default_total);
        Ok(Self::with_capacity(data_dir, cache_dir, pool, memory)?)
    }

    /// A host with an instance pool of `pool` and a guest memory budget of `memory` bytes.
    pub fn with_capacity(
        data_dir: &Path,
        cache_dir: Option<&Path>,
        pool: u32,
        memory: u64,
    ) -> wasmtime::Result<Self> {
        let engine = build_engine(cache_dir, pool)?;
        let linker = build_linker(&engine)?;
        start_epoch_ticker(&engine);
        let routes: ServiceDirectory = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
        // Event delivery and sagas run on their own thread, off the request workers.
        let background = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("silo-events")
            .enable_all()
            .build()?;
        let handle = background.handle().clone();
        // The background thread lives as long as the process.
        std::mem::forget(background);
        let events = Arc::new(LocalRouter::new(routes.clone(), handle.clone()));
        let sagas = Arc::new(SagaEngine::new(routes.clone(), handle));
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            data_dir: data_dir.to_path_buf(),
            manifest_path: Default::default(),
            routes,
            ready: AtomicBool::new(false),
            startup: Default::default(),
            shutting_down: AtomicBool::new(false),
            deploying: Default::default(),
            events,
            outboxes: Default::default(),
            sagas,
            saga_logs: Default::default(),
            backends: Default::default(),
            executors: Executors::new(HostSettings::service_threads() as usize),
            memory: MemoryBudget::new(memory),
            pool,
        })
    }

    /// The shared servers the manifest configured.
    pub fn backends(&self) -> crate::manifest::Backends {
        self.backends.lock().expect("backends").clone()
    }

    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
