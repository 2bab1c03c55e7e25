//! Plan and apply: the difference between the running host and its manifest, and bringing
//! the host to what the manifest says.

use std::path::PathBuf;

use super::Host;
use super::compare::differing_keys;
use super::deploys::{Activation, DeployError, DeployOutcome};
use crate::deploy::History;
use crate::manifest::Manifest;

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

impl Host {
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
}

#[cfg(test)]
mod tests {
    use super::super::commanded_by;
    use super::super::compare::same_grants;
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
