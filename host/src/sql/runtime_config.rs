//! Which backend serves which declared store, and where its data lives.
//!
//! Start-up checks every grant at once: each declared store must resolve to a configured
//! backend, and one error lists every store that does not. Paths are chosen here, from
//! names the manifest already validated; a component never sees one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::sqlite::{SqliteConfig, SqliteStore};
use super::{SqlStore, SqlStores};
use crate::manifest::{Backend, Backends, ServiceSpec};

/// Why a store did not open (of either kind: `kv::runtime_config` reports the same).
pub enum Refusal {
    /// Its objects on a server belong to another data folder (nothing was changed).
    Owned(String),
    /// Anything else (a server down, a bad file).
    Failed(String),
}

impl From<super::SqlError> for Refusal {
    fn from(e: super::SqlError) -> Self {
        match e {
            super::SqlError::OwnedElsewhere(m) => Refusal::Owned(m),
            e => Refusal::Failed(e.to_string()),
        }
    }
}

impl Refusal {
    /// The same, prefixed with the manifest key of the store.
    pub fn at(self, key: String) -> Self {
        match self {
            Refusal::Owned(m) => Refusal::Owned(format!("{key}: {m}")),
            Refusal::Failed(m) => Refusal::Failed(format!("{key}: {m}")),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Owned(m) | Refusal::Failed(m) => f.write_str(m),
        }
    }
}

/// A start or deploy refused because stores' objects on a shared server belong to another
/// data folder: one line per store, `KEY: message` (see `server::Owner`). `silo run` exits
/// with status 2 on it, naming the manifest.
#[derive(Debug)]
pub struct OwnedElsewhere(pub Vec<String>);

impl std::fmt::Display for OwnedElsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for OwnedElsewhere {}

/// Where store `store` of service `service` keeps its SQLite file under the data folder.
pub fn sqlite_path(data_dir: &Path, service: &str, store: &str) -> PathBuf {
    data_dir
        .join("stores")
        .join(service)
        .join(format!("{store}.db"))
}

/// Opens every relational store `spec` declares for `service`, pushing each one that does
/// not open onto `failures`. A store that `reuse` (the stores of the version being replaced)
/// already has open is shared, not opened twice, so old and new versions of a service keep
/// one writer per store between them.
pub async fn open_stores(
    data_dir: &Path,
    service: &str,
    spec: &ServiceSpec,
    reuse: Option<&SqlStores>,
    backends: &Backends,
    failures: &mut Vec<Refusal>,
) -> HashMap<String, Arc<dyn SqlStore>> {
    let mut stores: HashMap<String, Arc<dyn SqlStore>> = HashMap::new();
    for (name, store) in &spec.stores {
        if let Some(open) = reuse.and_then(|g| g.get(name))
            && open.backend() == store.backend.name()
        {
            stores.insert(name.clone(), open.clone());
            continue;
        }
        match store.backend {
            Backend::Postgres => {
                let opened = match &backends.postgres {
                    Some(pg) => {
                        let config = super::postgres::PgConfig {
                            admin_url: pg.url.clone(),
                            pool_size: pg.pool_size.max(1),
                            connect_timeout: std::time::Duration::from_millis(
                                pg.connect_timeout_ms.max(1),
                            ),
                            prefix: pg.prefix.clone(),
                        };
                        super::postgres::PgStore::open(&config, data_dir, service, name)
                            .await
                            .map(|s| s.with_max_bytes(store.max_size_mb << 20))
                            .map_err(Refusal::from)
                    }
                    None => Err(Refusal::Failed(
                        "no `[backends.postgres]` is configured".into(),
                    )),
                };
                match opened {
                    Ok(s) => {
                        stores.insert(name.clone(), Arc::new(s));
                    }
                    Err(e) => failures.push(e.at(format!("services.{service}.stores.{name}"))),
                }
            }
            Backend::Mysql => {
                let opened = match &backends.mysql {
                    Some(my) => {
                        let config = super::mysql::MyConfig {
                            admin_url: my.url.clone(),
                            pool_size: my.pool_size.max(1),
                            connect_timeout: std::time::Duration::from_millis(
                                my.connect_timeout_ms.max(1),
                            ),
                            prefix: my.prefix.clone(),
                        };
                        super::mysql::MyStore::open(&config, data_dir, service, name)
                            .await
                            .map(|s| s.with_max_bytes(store.max_size_mb << 20))
                            .map_err(Refusal::from)
                    }
                    None => Err(Refusal::Failed(
                        "no `[backends.mysql]` is configured".into(),
                    )),
                };
                match opened {
                    Ok(s) => {
                        stores.insert(name.clone(), Arc::new(s));
                    }
                    Err(e) => failures.push(e.at(format!("services.{service}.stores.{name}"))),
                }
            }
            Backend::Sqlite => {
                let config = SqliteConfig {
                    max_bytes: store.max_size_mb << 20,
                };
                match SqliteStore::open(&sqlite_path(data_dir, service, name), config) {
                    Ok(s) => {
                        stores.insert(name.clone(), Arc::new(s));
                    }
                    Err(e) => failures
                        .push(Refusal::from(e).at(format!("services.{service}.stores.{name}"))),
                }
            }
        }
    }
    stores
}
