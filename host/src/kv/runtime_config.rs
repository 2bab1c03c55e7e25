//! Which backend serves which declared key-value store, and where its data lives.
//!
//! Start-up checks every grant at once: each declared store must resolve to a configured
//! backend; each one that does not is reported with its manifest key, beside the `sql`
//! stores' (`runtime::grants` gathers both into one error). Paths are chosen here, from names
//! the manifest already validated; a component never sees one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::KvStores;
use super::redis::{RedisConfig, RedisKv};
use super::sqlite::SqliteKv;
use super::store::KvStore;
use crate::manifest::{Backends, KvBackend, ServiceSpec};
use crate::sql::runtime_config::Refusal;

/// Where key-value store `store` of service `service` keeps its SQLite file.
pub fn kv_sqlite_path(data_dir: &Path, service: &str, store: &str) -> PathBuf {
    data_dir
        .join("kv")
        .join(service)
        .join(format!("{store}.db"))
}

/// Opens every key-value store `spec` declares for `service`, pushing each one that does not
/// open onto `failures`. A store that `reuse` (the stores of the version being replaced)
/// already has open is shared, not opened twice.
pub async fn open_stores(
    data_dir: &Path,
    service: &str,
    spec: &ServiceSpec,
    reuse: Option<&KvStores>,
    backends: &Backends,
    failures: &mut Vec<Refusal>,
) -> HashMap<String, Arc<dyn KvStore>> {
    let mut kv: HashMap<String, Arc<dyn KvStore>> = HashMap::new();
    for (name, store) in &spec.kv {
        if let Some(open) = reuse.and_then(|g| g.get(name))
            && open.backend() == store.backend.name()
        {
            kv.insert(name.clone(), open.clone());
            continue;
        }
        let opened: Result<Arc<dyn KvStore>, Refusal> = match store.backend {
            KvBackend::Sqlite => SqliteKv::open(
                &kv_sqlite_path(data_dir, service, name),
                store.max_size_mb << 20,
            )
            .map(|s| Arc::new(s) as Arc<dyn KvStore>)
            .map_err(Refusal::from),
            KvBackend::Redis => match &backends.redis {
                Some(redis) => RedisKv::open(
                    &RedisConfig {
                        admin_url: redis.url.clone(),
                        connect_timeout: std::time::Duration::from_millis(
                            redis.connect_timeout_ms.max(1),
                        ),
                        prefix: redis.prefix.clone(),
                    },
                    data_dir,
                    service,
                    name,
                )
                .await
                .map(|s| Arc::new(s.with_max_bytes(store.max_size_mb << 20)) as Arc<dyn KvStore>)
                .map_err(Refusal::from),
                None => Err(Refusal::Failed(
                    "no `[backends.redis]` is configured".into(),
                )),
            },
        };
        match opened {
            Ok(s) => {
                kv.insert(name.clone(), s);
            }
            Err(e) => failures.push(e.at(format!("services.{service}.kv.{name}"))),
        }
    }
    kv
}
