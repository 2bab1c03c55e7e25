//! The `kv` backend trait and the host object behind a guest's `bucket` handle.
//!
//! Apart from `mod.rs` because the generated bindings name [`Bucket`]: this file imports
//! nothing of the bindings, so the bindings and the capability do not import each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::sql::error::SqlError;

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
    pub(super) store: Arc<dyn KvStore>,
}

/// A service's key-value stores by declared name, shared by its requests.
pub type KvStores = Arc<HashMap<String, Arc<dyn KvStore>>>;
