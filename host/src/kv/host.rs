//! The generated `Host` traits of `silo:service/kv`, and nothing else.
//!
//! A bad handle is a trap from `ResourceTable`; a key or value past the limits is
//! `limit-exceeded` before the backend is asked; the rest is the backend's [`SqlError`],
//! mapped to the WIT variant by this capability's `convert_error`.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Resource;

use super::{Bucket, KvCtxView, KvStore, MAX_LIST, check};
use crate::bindings::WitError;
use crate::bindings::silo::service::{kv, types};
use crate::sql::SqlError;

impl KvCtxView<'_> {
    fn bucket(&self, b: &Resource<Bucket>) -> Result<(Arc<dyn KvStore>, Instant), SqlError> {
        let bucket = self.table.get(b).map_err(wasmtime::Error::from)?;
        Ok((bucket.store.clone(), self.request.deadline))
    }
}

impl types::Host for KvCtxView<'_> {
    fn convert_error(&mut self, err: SqlError) -> wasmtime::Result<WitError> {
        err.to_wit()
    }
}

impl kv::Host for KvCtxView<'_> {}

impl kv::HostBucket for KvCtxView<'_> {
    async fn open(&mut self, name: String) -> Result<Resource<Bucket>, SqlError> {
        let bucket = self.ctx.open(&self.request.service, &name)?;
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
