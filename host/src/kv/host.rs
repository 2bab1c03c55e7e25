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
use crate::telemetry::CapabilityCall;

impl KvCtxView<'_> {
    fn bucket(&self, b: &Resource<Bucket>) -> Result<(Arc<dyn KvStore>, Instant), SqlError> {
        let bucket = self.table.get(b).map_err(wasmtime::Error::from)?;
        Ok((bucket.store.clone(), self.request.deadline))
    }

    /// Times one guest call on bucket `b` as a child span of the request's, with the
    /// store's backend and declared name.
    fn traced(&self, op: &'static str, b: &Resource<Bucket>) -> CapabilityCall {
        let mut call = CapabilityCall::start(&self.request.service, "kv", op, self.request.trace);
        if let Ok(bucket) = self.table.get(b) {
            let span = call.span();
            span.attr(
                "db.system",
                crate::telemetry::db_system(bucket.store.backend()),
            );
            if let Some((name, _)) = self
                .ctx
                .buckets
                .iter()
                .find(|(_, s)| Arc::ptr_eq(s, &bucket.store))
            {
                span.attr("db.name", name.as_str());
            }
        }
        call
    }
}

/// Ends a traced call with its result: an error fails the span.
fn ended<T>(mut call: CapabilityCall, result: Result<T, SqlError>) -> Result<T, SqlError> {
    if let Err(e) = &result {
        call.fail(e.to_string());
    }
    result
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
        let call = self.traced("get", &b);
        let ready = check(&key, None).and_then(|()| self.bucket(&b));
        let (store, deadline) = match ready {
            Ok(r) => r,
            Err(e) => return ended(call, Err(e)),
        };
        ended(call, store.get(deadline, &key).await)
    }

    async fn set(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), SqlError> {
        let call = self.traced("set", &b);
        let ready = check(&key, Some(&value))
            .and_then(|()| {
                if ttl_ms == Some(0) {
                    return Err(SqlError::BadQuery("a time-to-live is at least 1 ms".into()));
                }
                Ok(())
            })
            .and_then(|()| self.bucket(&b));
        let (store, deadline) = match ready {
            Ok(r) => r,
            Err(e) => return ended(call, Err(e)),
        };
        ended(call, store.set(deadline, &key, &value, ttl_ms).await)
    }

    async fn delete(&mut self, b: Resource<Bucket>, key: String) -> Result<bool, SqlError> {
        let call = self.traced("delete", &b);
        let ready = check(&key, None).and_then(|()| self.bucket(&b));
        let (store, deadline) = match ready {
            Ok(r) => r,
            Err(e) => return ended(call, Err(e)),
        };
        ended(call, store.delete(deadline, &key).await)
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        prefix: String,
        limit: u32,
    ) -> Result<Vec<String>, SqlError> {
        let call = self.traced("list_keys", &b);
        let ready = check(&prefix, None).and_then(|()| self.bucket(&b));
        let (store, deadline) = match ready {
            Ok(r) => r,
            Err(e) => return ended(call, Err(e)),
        };
        ended(
            call,
            store
                .list_keys(deadline, &prefix, limit.min(MAX_LIST))
                .await,
        )
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}
