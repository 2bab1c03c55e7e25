//! The `kv` capability: a service's private key-value stores, behind one backend trait.
//!
//! Shaped like `sql`: the store objects come from the service's [`StoreGrants`] (built at
//! load and deploy by `sql::runtime_config::open_grants`), a guest reaches one only through a
//! [`Bucket`] resource opened by a name in its own grants, and a backend is one file
//! implementing [`KvStore`]: `sqlite.rs` (the embedded default) and `redis.rs` (a shared Redis
//! server, each store its own ACL user).
//!
//! Keys are opaque to the backend's namespace: a backend stores key `k` of store `s` of
//! service `v` at a place only that store can reach (its own SQLite file; the Redis key
//! `silo:v:s:k:…`, which the store's ACL user alone may touch), so no key a guest chooses
//! can name another service's data.

pub mod redis;
pub mod sqlite;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use wasmtime::component::Resource;

use crate::bindings::silo::service::kv;
use crate::sql::{SqlCtxView, SqlError, StoreGrants};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list-keys` returns.
pub const MAX_LIST: u32 = 10_000;

/// One key-value store of one service, as a backend serves it.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The backend's name as the manifest spells it (`sqlite`, `redis`).
    fn backend(&self) -> &'static str;
    async fn get(&self, deadline: Instant, key: &str) -> Result<Option<Vec<u8>>, SqlError>;
    /// `ttl_ms`: expire that long from now; `None`: keep until deleted.
    async fn set(
        &self,
        deadline: Instant,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), SqlError>;
    /// True if the key was set.
    async fn delete(&self, deadline: Instant, key: &str) -> Result<bool, SqlError>;
    /// Keys starting with `prefix`, in byte order, at most `limit`.
    async fn list_keys(
        &self,
        deadline: Instant,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, SqlError>;
}

/// The host object behind a guest's `bucket` handle.
pub struct Bucket {
    store: Arc<dyn KvStore>,
}

/// Rejects a key or value past the limits.
fn check(key: &str, value: Option<&[u8]>) -> Result<(), SqlError> {
    if key.len() > MAX_KEY_BYTES || value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(SqlError::LimitExceeded(format!(
            "a key is at most {MAX_KEY_BYTES} bytes and a value at most {MAX_VALUE_BYTES}"
        )));
    }
    Ok(())
}

/// Opens store `name` from `grants` only.
fn open(grants: &StoreGrants, name: &str) -> Result<Bucket, SqlError> {
    match grants.kv(name) {
        Some(store) => Ok(Bucket {
            store: store.clone(),
        }),
        None => Err(SqlError::AccessDenied(format!(
            "key-value store `{name}` is not granted to service `{}`",
            grants.service()
        ))),
    }
}

impl SqlCtxView<'_> {
    fn bucket(&self, b: &Resource<Bucket>) -> Result<(Arc<dyn KvStore>, Instant), SqlError> {
        let bucket = self.table.get(b).map_err(wasmtime::Error::from)?;
        Ok((bucket.store.clone(), self.ctx.limits().deadline))
    }
}

impl kv::Host for SqlCtxView<'_> {}

impl kv::HostBucket for SqlCtxView<'_> {
    async fn open(&mut self, name: String) -> Result<Resource<Bucket>, SqlError> {
        let bucket = open(self.ctx.grants(), &name)?;
        Ok(self.table.push(bucket).map_err(wasmtime::Error::from)?)
    }

    async fn get(&mut self, b: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, SqlError> {
        check(&key, None)?;
        let (store, deadline) = self.bucket(&b)?;
        store.get(deadline, &key).await
    }

    async fn set(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), SqlError> {
        check(&key, Some(&value))?;
        if ttl_ms == Some(0) {
            return Err(SqlError::BadQuery("a time-to-live is at least 1 ms".into()));
        }
        let (store, deadline) = self.bucket(&b)?;
        store.set(deadline, &key, &value, ttl_ms).await
    }

    async fn delete(&mut self, b: Resource<Bucket>, key: String) -> Result<bool, SqlError> {
        check(&key, None)?;
        let (store, deadline) = self.bucket(&b)?;
        store.delete(deadline, &key).await
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        prefix: String,
        limit: u32,
    ) -> Result<Vec<String>, SqlError> {
        check(&prefix, None)?;
        let (store, deadline) = self.bucket(&b)?;
        store
            .list_keys(deadline, &prefix, limit.min(MAX_LIST))
            .await
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}
