//! Deploys, rollbacks and undeploys of one service while the others keep serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::compare::same_grants;
use super::{Host, commanded_by};
use crate::deploy::History;
use crate::manifest::{HostSettings, Manifest, ServiceSpec};
use crate::runtime::grants::{StoreGrants, open_grants};
use crate::runtime::migrations::migrate_in;
use crate::runtime::service::Service;
use crate::sql::runtime_config::OwnedElsewhere;
use crate::telemetry::{Span, TraceContext};

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

pub(super) struct DeployGuard<'h> {
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
pub(super) enum Activation<'a> {
    /// A deploy: a new version, origin `deploy`.
    Deploy,
    /// A rollback to this existing version.
    Rollback(u32),
    /// A step of an apply: a new version, origin `manifest`, checked against the state the
    /// apply brings the host to.
    Apply(&'a Manifest),
}

impl Host {
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
                    source: None,
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
    pub(super) fn undeploy_claimed(&self, name: &str) -> Result<(), DeployError> {
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
    pub(super) async fn activate(
        &self,
        name: &str,
        bytes: &[u8],
        spec: ServiceSpec,
        current: Option<Arc<Service>>,
        history: &History,
        how: Activation<'_>,
    ) -> Result<DeployOutcome, DeployError> {
        let kind = match how {
            Activation::Deploy => "deploy",
            Activation::Apply(_) => "apply",
            Activation::Rollback(_) => "rollback",
        };
        let mut span = Span::start(format!("{kind} {name}"), name, None);
        span.attr("silo.deploy.kind", kind);
        let outcome = self
            .activate_traced(name, bytes, spec, current, history, how, span.context())
            .await;
        match &outcome {
            Ok(o) => {
                span.attr("silo.version", i64::from(o.version));
                span.attr("silo.digest", o.digest.as_str());
                span.attr("silo.migrations_applied", o.migrations_applied as i64);
            }
            Err(e) => span.error(e.to_string()),
        }
        span.end();
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn activate_traced(
        &self,
        name: &str,
        bytes: &[u8],
        mut spec: ServiceSpec,
        current: Option<Arc<Service>>,
        history: &History,
        how: Activation<'_>,
        trace: TraceContext,
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
        let report = migrate_in(&service, Some(trace))
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

    /// One deploy, rollback or undeploy per service at a time.
    pub(super) fn claim(&self, name: &str) -> Result<DeployGuard<'_>, DeployError> {
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
}
