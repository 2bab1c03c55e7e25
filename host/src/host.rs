//! The running host: start-up, the listeners, and graceful shutdown.
//!
//! Lifecycle, kept visible: link once ([`Host::new`]: engine, linker, epoch ticker), load and
//! validate per service ([`Host::load_manifest`]: compile, link, open stores, migrate), then
//! serve ([`serve`]) with one single-threaded tokio runtime per core, each accepting on its
//! own `SO_REUSEPORT` socket of the same address and parsing requests there; each request's
//! instance then runs on its service's own executor (`runtime::executor`), so no service's
//! guest code runs on a thread another service needs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime::error::Context;

use crate::deploy::{History, VersionRecord, now_secs};
use crate::events::outbox::ensure_inbox;
use crate::events::{EventRouter, LocalRouter, Outbox};
use crate::manifest::{HostSettings, MIN_INSTANCES, Manifest, ManifestError, ServiceSpec};
use crate::runtime::budget::MemoryBudget;
use crate::runtime::dispatch::{RouteTable, ServiceDirectory, dispatch, json_error};
use crate::runtime::engine::{build_engine, build_linker, start_epoch_ticker};
use crate::runtime::executor::Executors;
use crate::runtime::migrations::migrate;
use crate::runtime::refusals::JsonRefusals;
use crate::runtime::service::{Service, ServiceRuntime};
use crate::runtime::state::RequestState;
use crate::sagas::{SagaEngine, SagaLog};
use crate::sql::StoreGrants;
use crate::sql::runtime_config::{OwnedElsewhere, open_grants};

/// How long an outside client has for its request line and headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for in-flight requests before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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

/// A service about to be opened: compiled and linked, not yet connected to its stores.
pub struct Planned {
    service: Service,
    spec: ServiceSpec,
    bytes: Vec<u8>,
    /// Its version in the history; `None` for a manifest component never recorded.
    version: Option<u32>,
}

/// What a deploy may change besides the component.
#[derive(Debug, Default, Clone)]
pub struct DeployRequest {
    /// The route (required for a new service).
    pub route: Option<String>,
    /// Stores to grant (added to those already granted).
    pub stores: Vec<String>,
    /// Services it may call (replaces the list when given).
    pub calls: Option<Vec<String>>,
    /// Topics it may publish (replaces the list when given).
    pub publishes: Option<Vec<String>>,
    /// Its subscriptions (replaces the list when given).
    pub subscribes: Option<Vec<crate::manifest::Subscription>>,
}

/// What a deploy did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployOutcome {
    pub service: String,
    pub version: u32,
    pub digest: String,
    pub migrations_applied: usize,
    pub took_ms: u64,
    /// True when the component and grants were the ones already serving: nothing was
    /// deployed and no version recorded.
    pub unchanged: bool,
}

/// Why a deploy, rollback or undeploy was refused. The previous version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// Another deploy, rollback, undeploy or apply of the service is running.
    #[error("{0}")]
    InProgress(String),
    /// The manifest [`Host::apply`] reads is invalid (one line naming file and key).
    #[error("{0}")]
    BadManifest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Internal(String),
}

impl DeployError {
    pub fn status(&self) -> u16 {
        match self {
            DeployError::BadRequest(_) => 400,
            DeployError::Invalid(_) => 422,
            DeployError::Conflict(_) => 409,
            DeployError::InProgress(_) => 409,
            DeployError::BadManifest(_) => 422,
            DeployError::NotFound(_) => 404,
            DeployError::ShuttingDown => 503,
            DeployError::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            DeployError::BadRequest(_) => "bad_request",
            DeployError::Invalid(_) => "invalid_component",
            DeployError::Conflict(_) => "conflict",
            DeployError::InProgress(_) => "deploy_in_progress",
            DeployError::BadManifest(_) => "invalid_manifest",
            DeployError::NotFound(_) => "not_found",
            DeployError::ShuttingDown => "shutting_down",
            DeployError::Internal(_) => "internal",
        }
    }
}

struct DeployGuard<'h> {
    host: &'h Host,
    name: String,
}

impl Drop for DeployGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.host.deploying.lock() {
            busy.remove(&self.name);
        }
    }
}

/// How [`Host::activate`] came to run, which decides the version it records.
#[derive(Clone, Copy)]
enum Activation<'a> {
    /// A deploy: a new version, origin `deploy`.
    Deploy,
    /// A rollback to this existing version.
    Rollback(u32),
    /// A step of an apply: a new version, origin `manifest`, checked against the state the
    /// apply brings the host to.
    Apply(&'a Manifest),
}

/// What an apply does to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// In the manifest, not serving: deployed.
    New,
    /// Serving another component or other declarations than the manifest's: deployed.
    Changed,
    /// Serving, not in the manifest (deployed by hand): undeployed, its data kept.
    Removed,
    /// Serving what the manifest says.
    Unchanged,
}

/// The version serving now.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningVersion {
    pub version: u32,
    pub digest: String,
    /// `manifest` or `deploy`.
    pub origin: String,
}

/// One service's line of a [`Plan`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceChange {
    pub service: String,
    pub change: Change,
    /// What differs, for people.
    pub reasons: Vec<String>,
    pub running: Option<RunningVersion>,
    /// `sha256:` of the manifest's component file, if the manifest lists the service.
    pub manifest_digest: Option<String>,
    /// What the apply deployed, once applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<DeployOutcome>,
}

/// The difference between a running host and its manifest.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub manifest: PathBuf,
    pub services: Vec<ServiceChange>,
    #[serde(skip)]
    target: Manifest,
    #[serde(skip)]
    bytes: std::collections::HashMap<String, Vec<u8>>,
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

/// `spec` as compared between versions: without the component's path.
fn declarations(spec: &ServiceSpec) -> serde_json::Map<String, serde_json::Value> {
    let mut spec = spec.clone();
    spec.component = PathBuf::new();
    match serde_json::to_value(spec) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => Default::default(),
    }
}

/// The manifest keys (`limits`, `calls`, …) whose values differ between `a` and `b`.
fn differing_keys(a: &ServiceSpec, b: &ServiceSpec) -> Vec<String> {
    let (a, b) = (declarations(a), declarations(b));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// True if `a` and `b` grant the same and set the same limits.
fn same_grants(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    differing_keys(a, b).is_empty()
}

/// `sha256:0123456789ab`: enough of a digest to tell versions apart.
fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// `names` ordered so that a service comes after the ones among them it subscribes to,
/// sends saga commands to or calls; a cycle keeps name order.
fn dependency_order(names: &[String], view: &Manifest) -> Vec<String> {
    let deps = |n: &str| -> Vec<String> {
        view.services
            .get(n)
            .map(|s| {
                s.subscribes
                    .iter()
                    .map(|x| x.source.clone())
                    .chain(s.saga_participants.iter().cloned())
                    .chain(s.calls.iter().cloned())
                    .filter(|d| d != n && names.contains(d))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut left: Vec<String> = names.to_vec();
    left.sort();
    let mut out: Vec<String> = Vec::new();
    while !left.is_empty() {
        let ready = left
            .iter()
            .position(|n| deps(n).iter().all(|d| out.contains(d)))
            .unwrap_or(0);
        out.push(left.remove(ready));
    }
    out
}

/// Logs, at start-up, where what serves differs from the manifest.
fn log_drift(
    name: &str,
    manifest_digest: Option<&str>,
    recorded: Option<&crate::deploy::ServiceHistory>,
    manifest_is_new: bool,
) {
    if let Some(message) = crate::deploy::drift(name, manifest_digest, recorded, manifest_is_new) {
        tracing::warn!(service = name, "{message}");
    }
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

    /// Compiles and links every service of the manifest, then opens their stores and applies
    /// their migrations.
    pub async fn load_manifest(&self, path: &Path, manifest: &Manifest) -> Result<(), StartError> {
        let plans = self.compile(path, manifest)?;
        self.open(plans).await
    }

    /// Decides what each service serves (its active deployed version if the data folder has
    /// one, else the manifest's component), then compiles and links it: the checks that
    /// write nothing. A bad component fails here, naming the service's `component` key.
    pub fn compile(&self, path: &Path, manifest: &Manifest) -> Result<Vec<Planned>, StartError> {
        *self.manifest_path.lock().expect("manifest path") = Some(path.to_path_buf());
        let history = History::new(&self.data_dir);
        let io = |e: std::io::Error| {
            StartError::Other(wasmtime::format_err!("{}: {e}", self.data_dir.display()))
        };
        let mut names: std::collections::BTreeSet<String> =
            manifest.services.keys().cloned().collect();
        names.extend(history.services().map_err(io)?);
        let mut plans = Vec::new();
        let mut chosen = Vec::new();
        for name in names {
            let recorded = history.load(&name).map_err(io)?;
            let from_manifest = match manifest.services.get(&name) {
                Some(spec) => {
                    let bytes = std::fs::read(&spec.component).map_err(|e| ManifestError {
                        file: path.to_path_buf(),
                        key: format!("services.{name}.component"),
                        message: format!("cannot read `{}`: {e}", spec.component.display()),
                    })?;
                    Some((spec, bytes))
                }
                None => None,
            };
            // The manifest's component is new if the history never loaded these bytes from
            // the manifest (and they are not what serves already): then it is deployed as a
            // new version. Otherwise the history's active version serves (a deploy made
            // since the manifest was last changed). Either way a difference is logged.
            let active = recorded.as_ref().and_then(|h| h.active_record());
            let manifest_digest = from_manifest
                .as_ref()
                .map(|(_, bytes)| crate::deploy::digest_of(bytes));
            let manifest_is_new = match (&manifest_digest, &recorded) {
                (Some(digest), Some(h)) => {
                    h.versions
                        .iter()
                        .rev()
                        .find(|r| r.origin == "manifest")
                        .is_none_or(|r| &r.digest != digest)
                        && active.is_none_or(|a| &a.digest != digest)
                }
                (Some(_), None) => true,
                (None, _) => false,
            };
            log_drift(
                &name,
                manifest_digest.as_deref(),
                recorded.as_ref(),
                manifest_is_new,
            );
            let (spec, bytes, version) = match (from_manifest, recorded) {
                (Some((spec, bytes)), _) if manifest_is_new => (spec.clone(), bytes, None),
                (_, Some(h)) if h.active.is_none() => continue, // undeployed: stays down
                (from_manifest, Some(h)) => {
                    let rec = h.active_record().ok_or_else(|| {
                        io(std::io::Error::other(format!(
                            "history of `{name}` names a missing version"
                        )))
                    })?;
                    let bytes = history.read_component(&rec.digest).map_err(io)?;
                    let mut spec = from_manifest
                        .map(|(s, _)| s.clone())
                        .unwrap_or_else(|| rec.spec.clone());
                    spec.component = PathBuf::from(&rec.digest);
                    (spec, bytes, Some(rec.version))
                }
                (_, None) => continue,
            };
            chosen.push((name, spec, bytes, version));
        }
        let specs: std::collections::BTreeMap<String, ServiceSpec> = chosen
            .iter()
            .map(|(name, spec, _, _)| (name.clone(), spec.clone()))
            .collect();
        for (name, spec, bytes, version) in chosen {
            let service = Service::load(
                &self.engine,
                &self.linker,
                &name,
                &spec,
                &bytes,
                StoreGrants::default(),
                self.routes.clone(),
                &commanded_by(&name, specs.iter()),
                self.runtime_for(&name, &spec)
                    .map_err(wasmtime::Error::from)?,
            )
            .map_err(|e| ManifestError {
                file: path.to_path_buf(),
                key: format!("services.{name}.component"),
                message: format!("{e:#}"),
            })?;
            if let Some(least) = crate::runtime::service::min_memory_mb(&service.component)
                && spec.limits.memory_mb < least
            {
                return Err(ManifestError {
                    file: path.to_path_buf(),
                    key: format!("services.{name}.limits.memory-mb"),
                    message: format!(
                        "{} MiB is less than the component's initial linear memory: give at least {least}",
                        spec.limits.memory_mb
                    ),
                }
                .into());
            }
            plans.push(Planned {
                service,
                spec,
                bytes,
                version,
            });
        }
        *self.backends.lock().expect("backends") = manifest.backends.clone();
        let all = Manifest {
            services: plans
                .iter()
                .map(|p| (p.service.name.to_string(), p.spec.clone()))
                .collect(),
            backends: manifest.backends.clone(),
            host: HostSettings {
                instances: Some(self.pool),
                ..manifest.host.clone()
            },
        };
        all.validate().map_err(|(key, message)| ManifestError {
            file: path.to_path_buf(),
            key,
            message,
        })?;
        Ok(plans)
    }

    /// The checks of `plans` that need an instance and write nothing: each component's
    /// migrations are read and must target only the stores its spec declares. `silo run`
    /// runs them before the data folder is created; a failure names the service's `stores`.
    pub async fn check(&self, path: &Path, plans: &[Planned]) -> Result<(), StartError> {
        for plan in plans {
            let name = &plan.service.name;
            let steps = crate::runtime::migrations::read_migrations(&plan.service)
                .await
                .map_err(|e| ManifestError {
                    file: path.to_path_buf(),
                    key: format!("services.{name}.component"),
                    message: format!("{e:#}"),
                })?;
            crate::runtime::migrations::by_store(name, steps, |s| plan.spec.stores.contains_key(s))
                .map_err(|e| ManifestError {
                    file: path.to_path_buf(),
                    key: format!("services.{name}.stores"),
                    message: format!("{e:#}: add it as `[services.{name}.stores.STORE]`"),
                })?;
        }
        Ok(())
    }

    /// Opens the planned services' stores, applies their migrations, records first versions,
    /// and starts routing to them.
    pub async fn open(&self, plans: Vec<Planned>) -> Result<(), StartError> {
        let history = History::new(&self.data_dir);
        let mut services = Vec::new();
        for plan in plans {
            let Planned {
                mut service,
                spec,
                bytes,
                version,
            } = plan;
            service.grants =
                open_grants(&self.data_dir, &service.name, &spec, None, &self.backends())
                    .await
                    .map_err(|e| match e.downcast::<OwnedElsewhere>() {
                        Ok(OwnedElsewhere(lines)) => StartError::OwnedElsewhere(lines),
                        Err(e) => StartError::Other(e),
                    })?;
            let report = migrate(&service).await?;
            self.prepare_events(&mut service).await?;
            for (store, v) in &report.applied {
                tracing::info!(service = %service.name, store, version = v, "migration applied");
            }
            service.version = match version {
                Some(v) => v,
                None => self
                    .record(&history, &service.name, &bytes, &spec, "manifest")
                    .map_err(|e| wasmtime::format_err!("recording `{}`: {e}", service.name))?,
            };
            tracing::info!(service = %service.name, version = service.version, route = %service.spec.route, digest = %service.digest, "service loaded");
            services.push(Arc::new(service));
        }
        self.routes.store(Arc::new(RouteTable::new(services)));
        // Every outbox first: a subscriber registers with its source's outbox.
        let routes = self.routes();
        for service in routes.services() {
            self.start_outbox(service);
        }
        for service in routes.services() {
            self.register_subscriptions(service).await?;
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Creates the event tables a service needs in its event store (outbox if it
    /// publishes, inbox if it subscribes) and gives it its outbox: the one already open
    /// for it when the store is the same (a new version of a running service), else a new one.
    async fn prepare_events(&self, service: &mut Service) -> wasmtime::Result<()> {
        let spec = &service.spec;
        let Some(store_name) = spec.event_store() else {
            return Ok(());
        };
        let participant = service.command_handler.is_some();
        if spec.publishes.is_empty()
            && spec.subscribes.is_empty()
            && spec.saga_participants.is_empty()
            && !participant
        {
            return Ok(());
        }
        let name = service.name.clone();
        let store = service.grants.get(store_name).cloned().ok_or_else(|| {
            wasmtime::format_err!("service `{name}`: event store `{store_name}` is not open")
        })?;
        if !spec.subscribes.is_empty() {
            ensure_inbox(store.as_ref())
                .await
                .with_context(|| format!("service `{name}`: creating its inbox"))?;
        }
        if participant {
            crate::sagas::command::ensure_inbox(store.as_ref())
                .await
                .with_context(|| format!("service `{name}`: creating its command inbox"))?;
        }
        if !spec.saga_participants.is_empty() {
            let existing = self
                .saga_logs
                .lock()
                .expect("saga logs")
                .get(&*name)
                .cloned();
            service.saga_log = Some(match existing {
                Some(l) if Arc::ptr_eq(&l.store, &store) => l,
                _ => SagaLog::open(&name, store.clone())
                    .await
                    .with_context(|| format!("service `{name}`: creating its saga log"))?,
            });
        }
        if spec.publishes.is_empty() {
            return Ok(());
        }
        let existing = self.outboxes.lock().expect("outboxes").get(&*name).cloned();
        service.outbox = Some(match existing {
            Some(o) if Arc::ptr_eq(&o.store, &store) => o,
            _ => Outbox::open(&name, store)
                .await
                .with_context(|| format!("service `{name}`: creating its outbox"))?,
        });
        Ok(())
    }

    /// Starts relaying a routed service's outbox (if it publishes) and running its sagas
    /// (if it starts any).
    fn start_outbox(&self, service: &Service) {
        if let Some(log) = &service.saga_log {
            install(&self.saga_logs, &service.name, log, |l| &l.retired);
            self.sagas.attach(log.clone());
        }
        if let Some(outbox) = &service.outbox {
            install(&self.outboxes, &service.name, outbox, |o| &o.retired);
            self.events.attach(outbox.clone());
        }
    }

    /// Registers a routed service's subscriptions with its sources' outboxes (and drops
    /// the ones it no longer declares).
    async fn register_subscriptions(&self, service: &Service) -> wasmtime::Result<()> {
        let outboxes: Vec<Arc<Outbox>> = self
            .outboxes
            .lock()
            .expect("outboxes")
            .values()
            .cloned()
            .collect();
        for outbox in outboxes {
            let topics: Vec<String> = service
                .spec
                .subscribes
                .iter()
                .filter(|s| *s.source == *outbox.source)
                .map(|s| s.topic.clone())
                .collect();
            let dropped = outbox
                .sync_subscriber(&service.name, &topics)
                .await
                .with_context(|| {
                    format!(
                        "registering `{}`'s subscriptions with `{}`",
                        service.name, outbox.source
                    )
                })?;
            if dropped > 0 {
                tracing::warn!(subscriber = %service.name, source = %outbox.source, dropped, "subscriptions removed with their pending events");
            }
        }
        Ok(())
    }

    /// Stores `bytes` and appends a new active version to the service's history.
    fn record(
        &self,
        history: &History,
        name: &str,
        bytes: &[u8],
        spec: &ServiceSpec,
        origin: &str,
    ) -> std::io::Result<u32> {
        let digest = history.store_component(bytes)?;
        let mut h = history.load(name)?.unwrap_or_default();
        let version = h.next_version();
        let mut spec = spec.clone();
        spec.component = PathBuf::from(&digest);
        h.versions.push(VersionRecord {
            version,
            digest,
            deployed_at: now_secs(),
            origin: origin.into(),
            spec,
        });
        h.active = Some(version);
        history.save(name, &h)?;
        Ok(version)
    }

    /// Marks the host as stopping: deploys are refused from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Adds or replaces one service while the others keep serving. The new version is
    /// compiled, linked, checked and migrated before any request reaches it; then one
    /// atomic swap of the routing table sends new requests to it while requests already
    /// running finish on the old one.
    pub async fn deploy(
        &self,
        name: &str,
        bytes: &[u8],
        request: DeployRequest,
    ) -> Result<DeployOutcome, DeployError> {
        let _guard = self.claim(name)?;
        let started = std::time::Instant::now();
        let history = History::new(&self.data_dir);
        let current = self.routes().by_name(name).cloned();
        let recorded = history
            .load(name)
            .map_err(|e| DeployError::Internal(e.to_string()))?;
        let mut spec = match (&current, recorded.as_ref().and_then(|h| h.versions.last())) {
            (Some(svc), _) => svc.spec.clone(),
            (None, Some(rec)) => rec.spec.clone(),
            (None, None) => {
                let route = request.route.clone().ok_or_else(|| {
                    DeployError::BadRequest(format!(
                        "`{name}` is a new service: give it a route (--route /prefix)"
                    ))
                })?;
                ServiceSpec {
                    component: PathBuf::new(),
                    route,
                    stores: Default::default(),
                    kv: Default::default(),
                    calls: Vec::new(),
                    publishes: Vec::new(),
                    subscribes: Vec::new(),
                    events: Default::default(),
                    saga_participants: Vec::new(),
                    sagas: Default::default(),
                    commands: None,
                    limits: Default::default(),
                }
            }
        };
        if let Some(route) = request.route {
            spec.route = route;
        }
        for store in request.stores {
            spec.stores.entry(store).or_default();
        }
        if let Some(calls) = request.calls {
            spec.calls = calls;
        }
        if let Some(publishes) = request.publishes {
            spec.publishes = publishes;
        }
        if let Some(subscribes) = request.subscribes {
            spec.subscribes = subscribes;
        }
        if let Some(cur) = &current
            && cur.digest == crate::deploy::digest_of(bytes)
            && same_grants(&cur.spec, &spec)
        {
            tracing::info!(service = name, version = cur.version, digest = %cur.digest, "deploy of the serving component: nothing to do");
            return Ok(DeployOutcome {
                service: name.to_string(),
                version: cur.version,
                digest: cur.digest.clone(),
                migrations_applied: 0,
                took_ms: started.elapsed().as_millis() as u64,
                unchanged: true,
            });
        }
        let outcome = self
            .activate(name, bytes, spec, current, &history, Activation::Deploy)
            .await?;
        Ok(DeployOutcome {
            took_ms: started.elapsed().as_millis() as u64,
            ..outcome
        })
    }

    /// Returns a service to the version before its active one.
    pub async fn rollback(&self, name: &str) -> Result<DeployOutcome, DeployError> {
        let _guard = self.claim(name)?;
        let started = std::time::Instant::now();
        let history = History::new(&self.data_dir);
        let h = history
            .load(name)
            .map_err(|e| DeployError::Internal(e.to_string()))?
            .ok_or_else(|| DeployError::NotFound(format!("no service `{name}`")))?;
        let prev = h.previous().cloned().ok_or_else(|| {
            DeployError::Conflict(format!("`{name}` has no version before the active one"))
        })?;
        let bytes = history
            .read_component(&prev.digest)
            .map_err(|e| DeployError::Internal(e.to_string()))?;
        let current = self.routes().by_name(name).cloned();
        let outcome = self
            .activate(
                name,
                &bytes,
                prev.spec.clone(),
                current,
                &history,
                Activation::Rollback(prev.version),
            )
            .await?;
        Ok(DeployOutcome {
            took_ms: started.elapsed().as_millis() as u64,
            ..outcome
        })
    }

    /// Stops routing to a service. Its stores and history stay in the data folder.
    pub fn undeploy(&self, name: &str) -> Result<(), DeployError> {
        let _guard = self.claim(name)?;
        self.undeploy_claimed(name)
    }

    /// [`Host::undeploy`] of a service already claimed.
    fn undeploy_claimed(&self, name: &str) -> Result<(), DeployError> {
        let history = History::new(&self.data_dir);
        let mut h = history
            .load(name)
            .map_err(|e| DeployError::Internal(e.to_string()))?
            .ok_or_else(|| DeployError::NotFound(format!("no service `{name}`")))?;
        if self.routes().by_name(name).is_none() {
            return Err(DeployError::NotFound(format!("`{name}` is not deployed")));
        }
        h.active = None;
        history
            .save(name, &h)
            .map_err(|e| DeployError::Internal(e.to_string()))?;
        self.routes.rcu(|table| table.without(name));
        self.memory.remove(name);
        tracing::info!(service = name, "service undeployed");
        Ok(())
    }

    /// Compiles, checks, migrates, records and swaps in one version of `name`. The compile
    /// runs on tokio's blocking threads, so the admin endpoint (`/healthz` included) keeps
    /// answering meanwhile.
    async fn activate(
        &self,
        name: &str,
        bytes: &[u8],
        mut spec: ServiceSpec,
        current: Option<Arc<Service>>,
        history: &History,
        how: Activation<'_>,
    ) -> Result<DeployOutcome, DeployError> {
        // The whole host's grants must stay consistent: names, routes, calls. An apply
        // checks against the state it is bringing the host to.
        let mut all = match how {
            Activation::Apply(view) => view.clone(),
            _ => {
                let mut all = Manifest {
                    backends: self.backends(),
                    ..Manifest::default()
                };
                for s in self.routes().services() {
                    if &*s.name != name {
                        all.services.insert(s.name.to_string(), s.spec.clone());
                    }
                }
                all
            }
        };
        // Every service's concurrency must fit the pool this host was built with.
        all.host = HostSettings {
            instances: Some(self.pool),
            memory_mb: None,
        };
        all.services.insert(name.to_string(), spec.clone());
        all.validate()
            .map_err(|(key, message)| DeployError::Invalid(format!("{key}: {message}")))?;
        // Its saga participants, as they serve now, must take commands.
        for p in &spec.saga_participants {
            if let Some(participant) = self.routes().by_name(p)
                && participant.command_handler.is_none()
            {
                return Err(DeployError::Invalid(format!(
                    "service `{name}` lists `{p}` in `saga-participants`, but `{p}` (v{}) does not export `{}`",
                    participant.version,
                    crate::runtime::exports::COMMAND_HANDLER
                )));
            }
        }
        let commanded = commanded_by(name, all.services.iter());
        let load = {
            let (engine, linker, routes) = (
                self.engine.clone(),
                self.linker.clone(),
                self.routes.clone(),
            );
            let (name, spec, bytes) = (name.to_string(), spec.clone(), bytes.to_vec());
            let runtime = self
                .runtime_for(&name, &spec)
                .map_err(|e| DeployError::Internal(format!("{e:#}")))?;
            move || {
                crate::failpoint::delay("slow-compile");
                Service::load(
                    &engine,
                    &linker,
                    &name,
                    &spec,
                    &bytes,
                    StoreGrants::default(),
                    routes,
                    &commanded,
                    runtime,
                )
            }
        };
        let mut service = tokio::task::spawn_blocking(load)
            .await
            .map_err(|e| DeployError::Internal(format!("compiling `{name}`: {e}")))?
            .map_err(|e| DeployError::Invalid(format!("{e:#}")))?;
        service.grants = open_grants(
            &self.data_dir,
            name,
            &spec,
            current.as_ref().map(|c| &c.grants),
            &self.backends(),
        )
        .await
        .map_err(|e| match e.downcast::<OwnedElsewhere>() {
            // Another data folder's stores: a conflict, nothing of theirs changed.
            Ok(owned) => DeployError::Conflict(owned.to_string()),
            Err(e) => DeployError::Internal(format!("{e:#}")),
        })?;
        let report = migrate(&service)
            .await
            .map_err(|e| DeployError::Invalid(format!("{e:#}")))?;
        self.prepare_events(&mut service)
            .await
            .map_err(|e| DeployError::Internal(format!("{e:#}")))?;
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(DeployError::ShuttingDown);
        }
        let version = match how {
            Activation::Rollback(v) => {
                let mut h = history
                    .load(name)
                    .map_err(|e| DeployError::Internal(e.to_string()))?
                    .unwrap_or_default();
                h.active = Some(v);
                history
                    .save(name, &h)
                    .map_err(|e| DeployError::Internal(e.to_string()))?;
                v
            }
            Activation::Deploy | Activation::Apply(_) => {
                let origin = match how {
                    Activation::Apply(_) => "manifest",
                    _ => "deploy",
                };
                self.record(history, name, bytes, &spec, origin)
                    .map_err(|e| DeployError::Internal(e.to_string()))?
            }
        };
        spec.component = PathBuf::from(&service.digest);
        service.version = version;
        service.spec = spec;
        let service = Arc::new(service);
        self.routes.rcu(|table| table.with(service.clone()));
        self.start_outbox(&service);
        self.register_subscriptions(&service)
            .await
            .map_err(|e| DeployError::Internal(format!("{e:#}")))?;
        tracing::info!(service = name, version, digest = %service.digest, "service deployed");
        Ok(DeployOutcome {
            service: name.to_string(),
            version,
            digest: service.digest.clone(),
            migrations_applied: report.applied.len(),
            took_ms: 0,
            unchanged: false,
        })
    }

    /// The difference between what serves and what the host's manifest says now (read
    /// again from disk), service by service; only `only` when given.
    pub fn plan(&self, only: Option<&str>) -> Result<Plan, DeployError> {
        let path = self
            .manifest_path
            .lock()
            .expect("manifest path")
            .clone()
            .ok_or_else(|| {
                DeployError::Conflict("this host was not started from a manifest".into())
            })?;
        let manifest =
            Manifest::load(&path).map_err(|e| DeployError::BadManifest(e.to_string()))?;
        if manifest.backends != self.backends() {
            return Err(DeployError::Conflict(format!(
                "{}: [backends] differs from the servers this host started with: restart the host to change servers",
                path.display()
            )));
        }
        let routes = self.routes();
        if let Some(only) = only {
            if !crate::manifest::valid_name(only) {
                return Err(DeployError::BadRequest(format!(
                    "`{only}` is not a service name (lowercase letters, digits and `-`)"
                )));
            }
            if !manifest.services.contains_key(only) && routes.by_name(only).is_none() {
                return Err(DeployError::NotFound(format!(
                    "no service `{only}` in {} or in the host",
                    path.display()
                )));
            }
        }
        let history = History::new(&self.data_dir);
        let mut names: std::collections::BTreeSet<String> =
            manifest.services.keys().cloned().collect();
        names.extend(routes.services().map(|s| s.name.to_string()));
        let mut plan = Plan {
            manifest: path.clone(),
            services: Vec::new(),
            target: manifest.clone(),
            bytes: Default::default(),
        };
        for name in names.into_iter().filter(|n| only.is_none_or(|o| o == n)) {
            let running = routes.by_name(&name).cloned();
            let wanted = match manifest.services.get(&name) {
                Some(spec) => {
                    let bytes = std::fs::read(&spec.component).map_err(|e| {
                        DeployError::BadManifest(format!(
                            "{}: services.{name}.component: cannot read `{}`: {e}",
                            path.display(),
                            spec.component.display()
                        ))
                    })?;
                    Some((spec, bytes))
                }
                None => None,
            };
            let manifest_digest = wanted.as_ref().map(|(_, b)| crate::deploy::digest_of(b));
            let (change, reasons) = match (&wanted, &running) {
                (Some(_), None) => {
                    let undeployed = history
                        .load(&name)
                        .ok()
                        .flatten()
                        .is_some_and(|h| h.active.is_none());
                    (
                        Change::New,
                        vec![if undeployed {
                            "undeployed: the manifest lists it".to_string()
                        } else {
                            "not running".to_string()
                        }],
                    )
                }
                (Some((spec, _)), Some(svc)) => {
                    let mut reasons = Vec::new();
                    if manifest_digest.as_deref() != Some(&svc.digest) {
                        reasons.push(format!(
                            "component: {} -> {}",
                            short(&svc.digest),
                            short(manifest_digest.as_deref().unwrap_or(""))
                        ));
                    }
                    let keys = differing_keys(&svc.spec, spec);
                    if !keys.is_empty() {
                        reasons.push(format!("declarations: {}", keys.join(", ")));
                    }
                    if reasons.is_empty() {
                        (Change::Unchanged, reasons)
                    } else {
                        (Change::Changed, reasons)
                    }
                }
                (None, Some(_)) => (
                    Change::Removed,
                    vec!["not in the manifest (deployed by hand)".to_string()],
                ),
                (None, None) => continue,
            };
            let running_version = running.as_ref().map(|svc| {
                let origin = history
                    .load(&name)
                    .ok()
                    .flatten()
                    .and_then(|h| {
                        h.versions
                            .iter()
                            .find(|r| r.version == svc.version)
                            .map(|r| r.origin.clone())
                    })
                    .unwrap_or_default();
                RunningVersion {
                    version: svc.version,
                    digest: svc.digest.clone(),
                    origin,
                }
            });
            if let Some((_, bytes)) = wanted
                && matches!(change, Change::New | Change::Changed)
            {
                plan.bytes.insert(name.clone(), bytes);
            }
            plan.services.push(ServiceChange {
                service: name,
                change,
                reasons,
                running: running_version,
                manifest_digest,
                applied: None,
            });
        }
        Ok(plan)
    }

    /// Brings the host to what its manifest says now (only service `only` when given):
    /// removes the services the manifest does not list, then deploys the new and changed
    /// ones (each one's sources, participants and callees before it). Each service's step
    /// is a deploy as [`Host::deploy`] makes it, recorded with origin `manifest`; the first
    /// refusal stops the apply and says what was applied before it.
    pub async fn apply(&self, only: Option<&str>) -> Result<Plan, DeployError> {
        let mut plan = self.plan(only)?;
        let _claims = plan
            .services
            .iter()
            .filter(|c| c.change != Change::Unchanged)
            .map(|c| self.claim(&c.service))
            .collect::<Result<Vec<_>, _>>()?;
        // The state being reached, to check each step against.
        let mut view = Manifest {
            backends: self.backends(),
            ..Manifest::default()
        };
        for s in self.routes().services() {
            view.services.insert(s.name.to_string(), s.spec.clone());
        }
        for c in &plan.services {
            match c.change {
                Change::Removed => {
                    view.services.remove(&c.service);
                }
                Change::New | Change::Changed => {
                    view.services
                        .insert(c.service.clone(), plan.target.services[&c.service].clone());
                }
                Change::Unchanged => {}
            }
        }
        let history = History::new(&self.data_dir);
        let mut done: Vec<String> = Vec::new();
        let stopped = |done: &[String], name: &str, e: DeployError| -> DeployError {
            let before = if done.is_empty() {
                "nothing was applied before it".to_string()
            } else {
                format!("applied before it: {}", done.join(", "))
            };
            let message = format!("apply stopped at `{name}` ({before}): {e}");
            match e {
                DeployError::BadRequest(_) => DeployError::BadRequest(message),
                DeployError::Invalid(_) => DeployError::Invalid(message),
                DeployError::NotFound(_) | DeployError::Conflict(_) => {
                    DeployError::Conflict(message)
                }
                DeployError::ShuttingDown => DeployError::ShuttingDown,
                _ => DeployError::Internal(message),
            }
        };
        for i in 0..plan.services.len() {
            if plan.services[i].change == Change::Removed {
                let name = plan.services[i].service.clone();
                self.undeploy_claimed(&name)
                    .map_err(|e| stopped(&done, &name, e))?;
                done.push(format!("{name} removed"));
            }
        }
        let pending: Vec<String> = plan
            .services
            .iter()
            .filter(|c| matches!(c.change, Change::New | Change::Changed))
            .map(|c| c.service.clone())
            .collect();
        for name in dependency_order(&pending, &view) {
            let started = std::time::Instant::now();
            let spec = plan.target.services[&name].clone();
            let bytes = plan.bytes.remove(&name).unwrap_or_default();
            let current = self.routes().by_name(&name).cloned();
            let outcome = self
                .activate(
                    &name,
                    &bytes,
                    spec,
                    current,
                    &history,
                    Activation::Apply(&view),
                )
                .await
                .map_err(|e| stopped(&done, &name, e))?;
            done.push(format!("{name} v{}", outcome.version));
            if let Some(c) = plan.services.iter_mut().find(|c| c.service == name) {
                c.applied = Some(DeployOutcome {
                    took_ms: started.elapsed().as_millis() as u64,
                    ..outcome
                });
            }
        }
        // Subscriptions again, now that every source is there (a subscriber may have been
        // deployed before the service it subscribes to).
        let routes = self.routes();
        for service in routes.services() {
            self.register_subscriptions(service)
                .await
                .map_err(|e| DeployError::Internal(format!("{e:#}")))?;
        }
        Ok(plan)
    }

    /// One deploy, rollback or undeploy per service at a time.
    fn claim(&self, name: &str) -> Result<DeployGuard<'_>, DeployError> {
        if !crate::manifest::valid_name(name) {
            return Err(DeployError::BadRequest(format!(
                "`{}` is not a service name (lowercase letters, digits and `-`, at most 63)",
                name.get(..64).unwrap_or(name)
            )));
        }
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(DeployError::ShuttingDown);
        }
        let mut busy = self.deploying.lock().expect("deploy lock");
        if !busy.insert(name.to_string()) {
            return Err(DeployError::InProgress(format!(
                "a deploy, rollback or undeploy of `{name}` is already in progress: try again when it has finished"
            )));
        }
        Ok(DeployGuard {
            host: self,
            name: name.to_string(),
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

/// Makes `item` the one registered for service `name`; the one it replaces (a new version
/// of the service opened a different store) is marked retired, so its worker stops.
fn install<T>(
    registry: &std::sync::Mutex<std::collections::HashMap<String, Arc<T>>>,
    name: &str,
    item: &Arc<T>,
    retired: impl Fn(&T) -> &AtomicBool,
) {
    let replaced = registry
        .lock()
        .expect("registry lock")
        .insert(name.to_string(), item.clone());
    if let Some(old) = replaced.filter(|o| !Arc::ptr_eq(o, item)) {
        retired(&old).store(true, Ordering::Release);
    }
}

/// Binds `addr` with `SO_REUSEPORT`, so each worker thread can own a socket on it.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The bound sockets of a host about to serve.
pub struct Listeners {
    pub http: Vec<std::net::TcpListener>,
    pub admin: std::net::TcpListener,
}

/// An address the host cannot listen on: the flag that gave it, the address, the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {addr}: cannot listen: {source}")]
pub struct BindError {
    pub flag: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

impl Listeners {
    /// Binds `threads` sockets on `listen` (port 0 picks one) and one on `admin`; `silo run`
    /// calls it before anything else is opened, so a taken port changes nothing.
    ///
    /// The service address is first bound exclusively (without `SO_REUSEPORT`): the host's
    /// own workers share their port with `SO_REUSEPORT`, and so would another process's
    /// (another `silo`), which the kernel would then let this host join and split traffic
    /// with. The exclusive bind fails on any socket already there. It is released just before
    /// the workers' sockets are bound on the same port.
    pub fn bind(listen: SocketAddr, admin: SocketAddr, threads: usize) -> Result<Self, BindError> {
        let err = |flag, addr| move |source| BindError { flag, addr, source };
        let exclusive = std::net::TcpListener::bind(listen).map_err(err("--listen", listen))?;
        let admin_listener = std::net::TcpListener::bind(admin).map_err(err("--admin", admin))?;
        admin_listener
            .set_nonblocking(true)
            .map_err(err("--admin", admin))?;
        let actual = exclusive.local_addr().map_err(err("--listen", listen))?;
        drop(exclusive);
        let http = (0..threads.max(1))
            .map(|_| bind_reuseport(actual).map_err(err("--listen", actual)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            http,
            admin: admin_listener,
        })
    }
}

/// Serves until `shutdown` turns true, then drains: no new connections, in-flight requests
/// finish (up to [`SHUTDOWN_GRACE`]), idle keep-alive connections close.
pub fn serve_workers(
    host: Arc<Host>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> Vec<std::thread::JoinHandle<()>> {
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let host = host.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("silo-worker-{i}"))
                .spawn(move || {
                    // The I/O driver is polled every other task poll: a guest that
                    // computes yields every epoch tick, and the requests waiting on
                    // sockets must get their turn at each yield, not every 61st.
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .event_interval(2)
                        .build()
                        .expect("building a worker runtime");
                    rt.block_on(accept_loop(host, listener, shutdown));
                })
                .expect("spawning a worker thread")
        })
        .collect()
}

async fn accept_loop(
    host: Arc<Host>,
    listener: std::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("registering the listener");
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    // A client has this long to send its request line and headers; its body then has
    // `dispatch::OUTSIDE_BODY_TIMEOUT`. A connection that trickles bytes holds nothing.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let host = host.clone();
                let stream = JsonRefusals::new(stream);
                let requests = stream.requests();
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| {
                        let host = host.clone();
                        requests.fetch_add(1, Ordering::AcqRel);
                        async move {
                            let routes = host.routes();
                            let resp = match routes.route(req.uri().path()) {
                                Some(service) => dispatch(service, req).await,
                                None => json_error(
                                    hyper::StatusCode::NOT_FOUND,
                                    "no_route",
                                    &format!("no service serves `{}`", req.uri().path()),
                                ),
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    }),
                );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// SIGINT and SIGTERM, caught from the moment this is installed (so a signal that arrives
/// right after start-up still shuts down gracefully).
pub struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Must be called inside a tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse(text).unwrap()
    }

    #[test]
    fn apply_orders_sources_participants_and_callees_first_and_survives_cycles() {
        let m = manifest(
            "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n\
             subscribes = [{ source = \"z\", topic = \"T\" }]\n[services.a.stores.main]\n\
             [services.m]\ncomponent = \"m.wasm\"\nroute = \"/m\"\ncalls = [\"a\"]\n\
             [services.z]\ncomponent = \"z.wasm\"\nroute = \"/z\"\npublishes = [\"T\"]\n[services.z.stores.main]\n",
        );
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dependency_order(&names(&["a", "m", "z"]), &m),
            names(&["z", "a", "m"])
        );
        // Only the services being applied count: `a` alone has nothing to wait for.
        assert_eq!(
            dependency_order(&names(&["a", "m"]), &m),
            names(&["a", "m"])
        );
        // Two services that call each other: name order, and neither is lost.
        let cycle = manifest(
            "[services.x]\ncomponent = \"x.wasm\"\nroute = \"/x\"\ncalls = [\"y\"]\n\
             [services.y]\ncomponent = \"y.wasm\"\nroute = \"/y\"\ncalls = [\"x\"]\n",
        );
        assert_eq!(
            dependency_order(&names(&["y", "x"]), &cycle),
            names(&["x", "y"])
        );
    }

    #[test]
    fn declarations_compare_without_the_component_path() {
        let m = manifest(
            "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n\
             [services.b]\ncomponent = \"other/place.wasm\"\nroute = \"/a2\"\n[services.b.limits]\ndeadline-ms = 5\n",
        );
        let (a, b) = (&m.services["a"], &m.services["b"]);
        let mut a_elsewhere = a.clone();
        a_elsewhere.component = PathBuf::from("sha256:0123");
        assert!(same_grants(a, &a_elsewhere));
        assert_eq!(differing_keys(a, b), ["limits", "route"]);
        assert_eq!(
            commanded_by(
                "p",
                manifest(
                    "[services.o]\ncomponent = \"o.wasm\"\nroute = \"/o\"\nsaga-participants = [\"p\"]\n[services.o.stores.main]\n\
                     [services.p]\ncomponent = \"p.wasm\"\nroute = \"/p\"\n[services.p.stores.main]\n"
                )
                .services
                .iter()
            ),
            ["o"]
        );
    }
}
