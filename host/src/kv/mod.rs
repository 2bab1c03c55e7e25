//! The `kv` capability: a service's private key-value stores, behind one backend trait.
//!
//! Shaped like `sql`: a context ([`KvCtx`], the service's key-value stores, opened at load
//! and deploy by `runtime_config::open_stores`), a borrowed view ([`KvCtxView`]) and a
//! one-method view trait ([`KvView`]); `host.rs` holds only the generated `Host` impls. A
//! guest reaches a store only through a [`Bucket`] resource opened by a name in its own
//! grants, and a backend is one file implementing [`KvStore`]: `sqlite.rs` (the embedded
//! default) and `redis.rs` (a shared Redis server, each store its own ACL user).
//!
//! Keys are opaque to the backend's namespace: a backend stores key `k` of store `s` of
//! service `v` at a place only that store can reach (its own SQLite file; the Redis key
//! `silo:v:s:k:…`, which the store's ACL user alone may touch), so no key a guest chooses
//! can name another service's data.

pub mod host;
pub mod redis;
pub mod runtime_config;
pub mod sqlite;
pub(crate) mod store;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use self::store::{Bucket, KvStore, KvStores};
use crate::request::RequestCtx;
use crate::sql::error::SqlError;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list-keys` returns.
pub const MAX_LIST: u32 = 10_000;

/// Rejects a key or value past the limits.
fn check(key: &str, value: Option<&[u8]>) -> Result<(), SqlError> {
    if key.len() > MAX_KEY_BYTES || value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(SqlError::LimitExceeded(format!(
            "a key is at most {MAX_KEY_BYTES} bytes and a value at most {MAX_VALUE_BYTES}"
        )));
    }
    Ok(())
}

/// Per-request state of the capability: the service's key-value stores.
pub struct KvCtx {
    buckets: KvStores,
}

impl KvCtx {
    pub fn new(buckets: KvStores) -> Self {
        Self { buckets }
    }

    /// Opens store `name` of `service` (this context's) from its grants only.
    fn open(&self, service: &str, name: &str) -> Result<Bucket, SqlError> {
        match self.buckets.get(name) {
            Some(store) => Ok(Bucket {
                store: store.clone(),
            }),
            None => {
                crate::telemetry::metrics::count_refusal(service, "store");
                Err(SqlError::AccessDenied(format!(
                    "key-value store `{name}` is not granted to service `{service}`"
                )))
            }
        }
    }
}

/// A borrowed view of the capability's state, the request's context and the instance's
/// resource table.
pub struct KvCtxView<'a> {
    pub ctx: &'a mut KvCtx,
    pub request: &'a RequestCtx,
    pub table: &'a mut ResourceTable,
}

/// Implemented by the store data of an instance that may hold `kv` handles.
pub trait KvView: Send {
    fn kv(&mut self) -> KvCtxView<'_>;
}

/// Marker for `add_to_linker`: the `Host` impls are on [`KvCtxView`].
pub struct Kv;

impl HasData for Kv {
    type Data<'a> = KvCtxView<'a>;
}

/// Adds `silo:service/kv` to a linker.
pub fn add_to_linker<T: KvView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::bindings::silo::service::kv::add_to_linker::<T, Kv>(linker, T::kv)
}
