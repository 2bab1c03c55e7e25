//! Start-up: what each service serves, compiling and checking it, opening its stores,
//! migrating them, and wiring its events and sagas.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::error::Context;

use super::board::{Phase, Progress};
use super::{Host, StartError, commanded_by};
use crate::deploy::{History, VersionRecord, now_secs};
use crate::events::Outbox;
use crate::events::outbox::ensure_inbox;
use crate::manifest::{HostSettings, Manifest, ManifestError, ServiceSpec};
use crate::runtime::grants::{StoreGrants, open_grants};
use crate::runtime::migrations::migrate;
use crate::runtime::service::Service;
use crate::sagas::SagaLog;
use crate::sql::runtime_config::OwnedElsewhere;

/// A service about to be opened: compiled and linked, not yet connected to its stores.
pub struct Planned {
    service: Service,
    spec: ServiceSpec,
    bytes: Vec<u8>,
    /// Its version in the history; `None` for a manifest component never recorded.
    version: Option<u32>,
}

/// What [`Host::choose`] decided each service serves: (name, spec, component bytes,
/// version in the history), in name order, with every spec by name.
pub struct Chosen {
    services: Vec<(String, ServiceSpec, Vec<u8>, Option<u32>)>,
    specs: std::collections::BTreeMap<String, ServiceSpec>,
}

impl Chosen {
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Each chosen service's spec, by name.
    pub fn specs(&self) -> &std::collections::BTreeMap<String, ServiceSpec> {
        &self.specs
    }
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
    /// Compiles and links every service of the manifest, then opens their stores and applies
    /// their migrations.
    pub async fn load_manifest(&self, path: &Path, manifest: &Manifest) -> Result<(), StartError> {
        let plans = self.compile(path, manifest)?;
        self.open(plans).await
    }

    /// Decides what each service serves, then compiles and links them all (in parallel):
    /// [`Host::choose`] and [`Host::compile_each`], every result kept. The first failure in
    /// name order is the one reported, as when they were compiled in turn.
    pub fn compile(&self, path: &Path, manifest: &Manifest) -> Result<Vec<Planned>, StartError> {
        let chosen = self.choose(path, manifest)?;
        let results = Mutex::new(Vec::with_capacity(chosen.len()));
        self.compile_each(path, chosen, |i, _, planned| {
            results.lock().expect("compile results").push((i, planned));
        });
        let mut results = results.into_inner().expect("compile results");
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, planned)| planned).collect()
    }

    /// Decides what each service serves (its active deployed version if the data folder has
    /// one, else the manifest's component) and checks the services together: what needs no
    /// compiling, and writes nothing. An unreadable component fails here, naming the
    /// service's `component` key.
    pub fn choose(&self, path: &Path, manifest: &Manifest) -> Result<Chosen, StartError> {
        *self.manifest_path.lock().expect("manifest path") = Some(path.to_path_buf());
        let history = History::new(&self.data_dir);
        let io = |e: std::io::Error| {
            StartError::Other(wasmtime::format_err!("{}: {e}", self.data_dir.display()))
        };
        let mut names: std::collections::BTreeSet<String> =
            manifest.services.keys().cloned().collect();
        names.extend(history.services().map_err(io)?);
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
        *self.backends.lock().expect("backends") = manifest.backends.clone();
        let all = Manifest {
            services: specs.clone(),
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
        Ok(Chosen {
            services: chosen,
            specs,
        })
    }

    /// Compiles and links the chosen services in parallel (cores bound the workers), the
    /// smallest components first, each timed, with progress on a terminal; `done(index, name, result)` is called as each
    /// finishes, on the worker that compiled it. Returns once every one is done.
    pub fn compile_each(
        &self,
        path: &Path,
        chosen: Chosen,
        done: impl Fn(usize, &str, Result<Planned, StartError>) + Sync,
    ) {
        let Chosen { services, specs } = chosen;
        let total = services.len();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(total.max(1));
        let progress = Progress::new(total);
        // Smallest first: the small services are serving before a big Python or JavaScript
        // component (tens of seconds cold) is done, instead of queueing behind it.
        let mut queue: Vec<_> = services.into_iter().enumerate().collect();
        queue.sort_by_key(|(_, (_, _, bytes, _))| bytes.len());
        let queue = Mutex::new(queue.into_iter().collect::<VecDeque<_>>());
        std::thread::scope(|scope| {
            if progress.tty {
                // The elapsed time keeps moving while a big component compiles.
                scope.spawn(|| {
                    while !progress.tick() {
                        std::thread::sleep(Duration::from_millis(250));
                    }
                });
            }
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let next = queue.lock().expect("compile queue").pop_front();
                        let Some((i, (name, spec, bytes, version))) = next else {
                            break;
                        };
                        progress.begin(&name);
                        let started = Instant::now();
                        let planned = self.plan_one(path, &specs, &name, spec, bytes, version);
                        progress.end(&name, started.elapsed(), planned.is_ok());
                        done(i, &name, planned);
                    }
                });
            }
        });
        progress.finish();
    }

    /// Compiles and links one service of [`Host::compile`], and checks its memory limit.
    fn plan_one(
        &self,
        path: &Path,
        specs: &std::collections::BTreeMap<String, ServiceSpec>,
        name: &str,
        spec: ServiceSpec,
        bytes: Vec<u8>,
        version: Option<u32>,
    ) -> Result<Planned, StartError> {
        let service = Service::load(
            &self.engine,
            &self.linker,
            name,
            &spec,
            &bytes,
            StoreGrants::default(),
            self.routes.clone(),
            &commanded_by(name, specs.iter()),
            self.runtime_for(name, &spec)
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
        Ok(Planned {
            service,
            spec,
            bytes,
            version,
        })
    }

    /// The check of one compiled service that needs an instance and writes nothing: its
    /// migrations are read and must target only the stores its spec declares; a failure
    /// names the service's `stores`.
    pub async fn check_one(&self, path: &Path, plan: &Planned) -> Result<(), StartError> {
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
        Ok(())
    }

    /// Opens the planned services' stores, applies their migrations, records first versions,
    /// and starts routing to them ([`Host::open_one`] of each); then the host is ready.
    pub async fn open(&self, plans: Vec<Planned>) -> Result<(), StartError> {
        for plan in plans {
            self.open_one(plan).await?;
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Opens one planned service: its stores, its migrations, its event tables, its first
    /// version in the history; then routes to it and wires its events: its outbox relays,
    /// its subscriptions register with the outboxes open so far, and the services routed
    /// before it register theirs with its outbox. Services may so be opened one by one, in
    /// any order, each serving as soon as it is open.
    pub async fn open_one(&self, plan: Planned) -> Result<(), StartError> {
        let history = History::new(&self.data_dir);
        let Planned {
            mut service,
            spec,
            bytes,
            version,
        } = plan;
        self.set_phase(&service.name, Phase::Opening);
        service.grants = open_grants(&self.data_dir, &service.name, &spec, None, &self.backends())
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
        let service = Arc::new(service);
        let routes = self.routes().with(service.clone());
        self.routes.store(Arc::new(routes));
        self.start_outbox(&service);
        // Its own subscriptions with every outbox open so far; then the services already
        // routed with its outbox (a subscriber registers with its source's outbox).
        self.register_subscriptions(&service).await?;
        if let Some(outbox) = &service.outbox {
            // The subscribers still starting register from what they declare, so an event
            // published before they open waits for them instead of passing them by.
            for (name, spec) in self.not_open_yet() {
                let topics = topics_from(&spec, &service.name);
                if name != *service.name && !topics.is_empty() {
                    outbox
                        .sync_subscriber(&name, &topics)
                        .await
                        .with_context(|| {
                            format!(
                                "registering `{name}`'s subscriptions with `{}`",
                                service.name
                            )
                        })?;
                }
            }
            let routes = self.routes();
            for other in routes.services().filter(|s| s.name != service.name) {
                self.register_subscriptions(other).await?;
            }
        }
        self.set_phase(&service.name, Phase::Ready);
        Ok(())
    }

    /// Creates the event tables a service needs in its event store (outbox if it
    /// publishes, inbox if it subscribes) and gives it its outbox: the one already open
    /// for it when the store is the same (a new version of a running service), else a new one.
    pub(super) async fn prepare_events(&self, service: &mut Service) -> wasmtime::Result<()> {
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
    pub(super) fn start_outbox(&self, service: &Service) {
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
    pub(super) async fn register_subscriptions(&self, service: &Service) -> wasmtime::Result<()> {
        let outboxes: Vec<Arc<Outbox>> = self
            .outboxes
            .lock()
            .expect("outboxes")
            .values()
            .cloned()
            .collect();
        for outbox in outboxes {
            let topics = topics_from(&service.spec, &outbox.source);
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
    pub(super) fn record(
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
}

/// The topics `spec` subscribes to from `source`.
fn topics_from(spec: &ServiceSpec, source: &str) -> Vec<String> {
    spec.subscribes
        .iter()
        .filter(|s| *s.source == *source)
        .map(|s| s.topic.clone())
        .collect()
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
