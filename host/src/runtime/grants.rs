//! What one service was granted: its declared stores of every kind, opened together.
//!
//! Each capability opens its own stores (`sql::runtime_config`, `kv::runtime_config`); this
//! is their per-service composition, opened once per deploy by [`open_grants`], from which
//! each request's capability contexts take only their own part.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::kv::{KvStore, KvStores, runtime_config as kv_config};
use crate::manifest::{Backends, ServiceSpec};
use crate::sql::runtime_config::{self as sql_config, OwnedElsewhere, Refusal};
use crate::sql::{SqlStore, SqlStores};

/// What one service was granted: its declared stores by name (relational and key-value),
/// opened once per deploy by [`open_grants`]. Each request's capability
/// contexts take only their own part ([`StoreGrants::sql_stores`],
/// [`StoreGrants::kv_stores`]).
#[derive(Clone, Default)]
pub struct StoreGrants {
    service: Arc<str>,
    stores: SqlStores,
    kv: KvStores,
}

impl StoreGrants {
    pub fn new(service: &str, stores: HashMap<String, Arc<dyn SqlStore>>) -> Self {
        Self {
            service: service.into(),
            stores: Arc::new(stores),
            kv: Default::default(),
        }
    }

    /// These grants with the key-value stores `kv`.
    pub fn with_kv(mut self, kv: HashMap<String, Arc<dyn KvStore>>) -> Self {
        self.kv = Arc::new(kv);
        self
    }

    /// The key-value store `name`, if granted.
    pub fn kv(&self, name: &str) -> Option<&Arc<dyn KvStore>> {
        self.kv.get(name)
    }

    /// The names of the granted key-value stores.
    pub fn kv_names(&self) -> impl Iterator<Item = &str> {
        self.kv.keys().map(String::as_str)
    }

    /// The service these grants belong to.
    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn SqlStore>> {
        self.stores.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(String::as_str)
    }

    /// The relational stores, for a request's `sql::SqlCtx`.
    pub fn sql_stores(&self) -> SqlStores {
        self.stores.clone()
    }

    /// The key-value stores, for a request's `kv::KvCtx`.
    pub fn kv_stores(&self) -> KvStores {
        self.kv.clone()
    }
}

/// Opens every store `spec` declares for `service`. A store that `reuse` (the grants of the
/// version being replaced) already has open is shared, not opened twice, so old and new
/// versions of a service keep one writer per store between them.
pub async fn open_grants(
    data_dir: &Path,
    service: &str,
    spec: &ServiceSpec,
    reuse: Option<&StoreGrants>,
    backends: &Backends,
) -> wasmtime::Result<StoreGrants> {
    let mut failures: Vec<Refusal> = Vec::new();
    let stores = sql_config::open_stores(
        data_dir,
        service,
        spec,
        reuse.map(|g| &g.stores),
        backends,
        &mut failures,
    )
    .await;
    let kv = kv_config::open_stores(
        data_dir,
        service,
        spec,
        reuse.map(|g| &g.kv),
        backends,
        &mut failures,
    )
    .await;
    if failures.iter().any(|f| matches!(f, Refusal::Owned(_))) {
        return Err(wasmtime::Error::new(OwnedElsewhere(
            failures
                .into_iter()
                .filter_map(|f| match f {
                    Refusal::Owned(m) => Some(m),
                    Refusal::Failed(_) => None,
                })
                .collect(),
        )));
    }
    if !failures.is_empty() {
        let lines: Vec<String> = failures.into_iter().map(|f| f.to_string()).collect();
        wasmtime::bail!("stores that could not be opened:\n  {}", lines.join("\n  "));
    }
    Ok(StoreGrants::new(service, stores).with_kv(kv))
}
