//! `Kv`: the `silo:service/kv` bucket, with JSON values and `Duration` TTLs.
//!
//! A key-value store is a second kind of store beside SQL (`[services.NAME.kv.STORE]` in
//! the manifest): keys are strings, values are bytes, and a key may expire.
//!
//! ```ignore
//! let kv = Kv::open("cache")?;
//! kv.set_json("user:usr_1", &user, Some(Duration::from_secs(60)))?;
//! let cached: Option<User> = kv.get_json("user:usr_1")?;
//! let keys = kv.list_keys("user:", 100)?;
//! ```
//!
//! Failures are the same WIT `error` as SQL's, so every call returns
//! `Result<_, SqlError>` and `?` in a handler turns it into an
//! [`ApiError`] with the same mapping (`access-denied` → 403,
//! `unavailable`/`limit-exceeded` → 503, …).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::silo::service::kv::Bucket;
use crate::{ApiError, SqlError};

/// A handle to one of the service's own key-value stores.
#[derive(Debug)]
pub struct Kv {
    inner: Bucket,
}

impl Kv {
    /// Opens the key-value store `name` as declared in the manifest
    /// (`[services.NAME.kv.STORE]`). A name the service was not granted is
    /// `access-denied`.
    pub fn open(name: &str) -> Result<Self, SqlError> {
        Bucket::open(name).map(|inner| Self { inner })
    }

    /// The value of `key`, or `None` if it is not set (or has expired).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SqlError> {
        self.inner.get(key)
    }

    /// The value of `key` parsed as JSON into `T`, or `None` if it is not set (or has
    /// expired). A value that does not parse as `T` is the service's own bad data: a
    /// 500 `internal` naming the key.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)?
            .map(|value| {
                serde_json::from_slice(&value).map_err(|err| {
                    ApiError::internal(format!("the value of key {key:?} is not valid JSON: {err}"))
                })
            })
            .transpose()
    }

    /// Sets `key` to `value`. With a `ttl` the key expires that long from now (rounded
    /// up to whole milliseconds), else it is kept until deleted.
    pub fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), SqlError> {
        self.inner.set(key, value, ttl.map(ttl_millis))
    }

    /// Sets `key` to `value` as JSON; otherwise as [`Kv::set`]. A value serde cannot
    /// serialize (a map with non-string keys) is `other`.
    pub fn set_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), SqlError> {
        let value = serde_json::to_vec(value).map_err(|err| {
            SqlError::Other(format!(
                "cannot serialize the value of key {key:?} as JSON: {err}"
            ))
        })?;
        self.set(key, &value, ttl)
    }

    /// Deletes `key`; `true` if it was set (and had not expired).
    pub fn delete(&self, key: &str) -> Result<bool, SqlError> {
        self.inner.delete(key)
    }

    /// The keys that start with `prefix`, in byte order, at most `limit` of them.
    pub fn list_keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>, SqlError> {
        self.inner.list_keys(prefix, limit)
    }

    /// The raw generated handle.
    pub fn raw(&self) -> &Bucket {
        &self.inner
    }
}

/// `ttl` in whole milliseconds, rounded up so that a TTL under a millisecond does not
/// become 0, and saturating at `u64::MAX`.
fn ttl_millis(ttl: Duration) -> u64 {
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), 0);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(1800)), 1_800_000);
        assert_eq!(ttl_millis(Duration::MAX), u64::MAX);
    }
}
