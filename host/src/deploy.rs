//! Deployment history: every version of every service, kept in the data folder.
//!
//! `DATA/components/<sha256>.wasm` holds each component once, by content digest;
//! `DATA/deployments/<service>.json` holds the service's versions (digest, spec, when, how)
//! and which one is active (none once undeployed). Both are written atomically (a temporary
//! file, then a rename), so a crash mid-deploy leaves the previous history intact. A
//! restarted host serves each service's active version from here, not the manifest's
//! original file.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::manifest::ServiceSpec;

/// One version of one service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    /// 1, 2, 3… per service.
    pub version: u32,
    /// `sha256:<hex>` of the component's bytes.
    pub digest: String,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
    /// `manifest` (loaded at start-up) or `deploy`.
    pub origin: String,
    /// The grants and limits the version was deployed with.
    pub spec: ServiceSpec,
}

/// All versions of one service and which one serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHistory {
    pub versions: Vec<VersionRecord>,
    /// The `version` serving now; `None` once undeployed.
    pub active: Option<u32>,
}

impl ServiceHistory {
    pub fn active_record(&self) -> Option<&VersionRecord> {
        let v = self.active?;
        self.versions.iter().find(|r| r.version == v)
    }

    pub fn next_version(&self) -> u32 {
        self.versions.iter().map(|r| r.version).max().unwrap_or(0) + 1
    }

    /// The version before the active one (what a rollback returns to).
    pub fn previous(&self) -> Option<&VersionRecord> {
        let active = self.active?;
        self.versions
            .iter()
            .filter(|r| r.version < active)
            .max_by_key(|r| r.version)
    }
}

/// The history store of one data folder.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl History {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.to_path_buf(),
        }
    }

    fn history_path(&self, service: &str) -> PathBuf {
        self.dir.join("deployments").join(format!("{service}.json"))
    }

    fn component_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("components").join(format!("{hex}.wasm"))
    }

    /// The history of `service`, if it was ever recorded.
    pub fn load(&self, service: &str) -> std::io::Result<Option<ServiceHistory>> {
        match std::fs::read(self.history_path(service)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every service with a recorded history.
    pub fn services(&self) -> std::io::Result<Vec<String>> {
        let dir = self.dir.join("deployments");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for e in entries {
            let name = e?.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && crate::manifest::valid_name(n)
            {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn save(&self, service: &str, history: &ServiceHistory) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(history).map_err(std::io::Error::other)?;
        write_atomic(&self.history_path(service), &bytes)
    }

    /// Stores a component by digest (once) and returns the digest.
    pub fn store_component(&self, bytes: &[u8]) -> std::io::Result<String> {
        let digest = digest_of(bytes);
        let path = self.component_path(&digest);
        if !path.is_file() {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// The bytes of a stored component, checked against its digest.
    pub fn read_component(&self, digest: &str) -> std::io::Result<Vec<u8>> {
        let bytes = std::fs::read(self.component_path(digest))?;
        if digest_of(&bytes) != digest {
            return Err(std::io::Error::other(format!(
                "stored component {digest} does not match its digest"
            )));
        }
        Ok(bytes)
    }
}

/// What a start-up does differently from the manifest for service `name`, as one line for
/// the log, or `None` when the manifest's component is what serves. `manifest_digest` is
/// the digest of the manifest's component file (`None`: not in the manifest);
/// `manifest_is_new` says the start-up deploys that file as a new version.
pub fn drift(
    name: &str,
    manifest_digest: Option<&str>,
    recorded: Option<&ServiceHistory>,
    manifest_is_new: bool,
) -> Option<String> {
    let h = recorded?;
    let active = h.active_record();
    match manifest_digest {
        Some(digest) if manifest_is_new => {
            let was = active
                .map(|a| format!("v{} ({}, {})", a.version, a.origin, a.digest))
                .unwrap_or_else(|| "nothing (undeployed)".into());
            Some(format!(
                "service `{name}`: the manifest's component file changed since it was last loaded ({digest}): serving it as v{}, in place of {was}",
                h.next_version()
            ))
        }
        Some(digest) => match active {
            None => Some(format!(
                "service `{name}` was undeployed and stays down although the manifest lists it: `silo apply --yes` deploys it"
            )),
            Some(a) if a.digest != digest => Some(format!(
                "service `{name}`: serving v{} ({}, {}), not the manifest's component ({digest}): `silo apply` shows the difference",
                a.version, a.origin, a.digest
            )),
            Some(_) => None,
        },
        None => active.map(|a| {
            format!(
                "service `{name}` is not in the manifest: serving v{} ({}, {}); `silo apply --yes` removes it (its data stays)",
                a.version, a.origin, a.digest
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        crate::manifest::Manifest::parse("[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n")
            .unwrap()
            .services
            .remove("a")
            .unwrap()
    }

    #[test]
    fn history_round_trips_and_components_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path());
        assert_eq!(h.load("a").unwrap(), None);
        let d1 = h.store_component(b"one").unwrap();
        let d2 = h.store_component(b"two").unwrap();
        let mut hist = ServiceHistory::default();
        for (v, d) in [(1, &d1), (2, &d2)] {
            hist.versions.push(VersionRecord {
                version: v,
                digest: d.clone(),
                deployed_at: now_secs(),
                origin: "deploy".into(),
                spec: spec(),
            });
        }
        hist.active = Some(2);
        h.save("a", &hist).unwrap();
        let back = h.load("a").unwrap().unwrap();
        assert_eq!(back, hist);
        assert_eq!(back.previous().unwrap().version, 1);
        assert_eq!(back.next_version(), 3);
        assert_eq!(h.services().unwrap(), ["a"]);
        assert_eq!(h.read_component(&d1).unwrap(), b"one");
        // A tampered file is refused.
        std::fs::write(h.component_path(&d2), b"evil").unwrap();
        assert!(h.read_component(&d2).is_err());
    }

    #[test]
    fn drift_names_every_difference_from_the_manifest() {
        let record = |version, digest: &str, origin: &str| VersionRecord {
            version,
            digest: digest.into(),
            deployed_at: 0,
            origin: origin.into(),
            spec: spec(),
        };
        let mut h = ServiceHistory {
            versions: vec![
                record(1, "sha256:a", "manifest"),
                record(2, "sha256:b", "deploy"),
            ],
            active: Some(2),
        };
        assert_eq!(
            drift("a", Some("sha256:a"), None, true),
            None,
            "first start"
        );
        assert_eq!(
            drift("a", Some("sha256:c"), Some(&h), true).unwrap(),
            "service `a`: the manifest's component file changed since it was last loaded (sha256:c): serving it as v3, in place of v2 (deploy, sha256:b)"
        );
        assert_eq!(
            drift("a", Some("sha256:a"), Some(&h), false).unwrap(),
            "service `a`: serving v2 (deploy, sha256:b), not the manifest's component (sha256:a): `silo apply` shows the difference"
        );
        assert_eq!(
            drift("a", None, Some(&h), false).unwrap(),
            "service `a` is not in the manifest: serving v2 (deploy, sha256:b); `silo apply --yes` removes it (its data stays)"
        );
        assert_eq!(drift("a", Some("sha256:b"), Some(&h), false), None);
        h.active = None;
        assert!(
            drift("a", Some("sha256:a"), Some(&h), false)
                .unwrap()
                .contains("was undeployed and stays down")
        );
        assert_eq!(
            drift("a", None, Some(&h), false),
            None,
            "undeployed, not listed"
        );
    }
}
