//! The manifest (`silo.toml`): which services exist, what each one is granted, and its limits.
//!
//! Parsing is strict: unknown keys, bad names, duplicate or overlapping routes and missing
//! component files are errors, and every error names the file and the key at fault. A service
//! gets nothing it does not declare here.
//!
//! The files: `services` (what a service declares: stores, events, sagas, limits),
//! `host_settings` (`[host]` and `[backends]`), `load` (reading the file and the three-pass
//! parse), `checks` (what the whole manifest must satisfy). Configuration imports no backend:
//! the names a store gets on a server are checked through [`crate::names`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod checks;
mod host_settings;
mod load;
mod services;
#[cfg(test)]
mod tests;

pub use checks::{routes_overlap, valid_name};
pub use host_settings::{
    Backends, HostSettings, MAX_INSTANCES, MIN_INSTANCES, RedisBackend, SPARE_INSTANCES, SqlServer,
    WARM_PER_THREAD, fair_shares,
};
pub use services::{
    Backend, EventSettings, KvBackend, KvSpec, Limits, SagaSettings, ServiceSpec, StoreSpec,
    Subscription, valid_topic,
};

/// A manifest error: the file, the key (a dotted path) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    /// One line, whatever the manifest held: control characters in keys and messages are
    /// escaped and very long ones shortened.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = one_line(&self.file.display().to_string(), 512);
        let message = one_line(&self.message, 1024);
        if self.key.is_empty() {
            write!(f, "{file}: {message}")
        } else {
            write!(f, "{file}: {}: {message}", one_line(&self.key, 256))
        }
    }
}

/// `text` on one line: control characters escaped (`\n`, `\u{1b}`), and cut to `max`
/// characters with `…` when longer.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl std::error::Error for ManifestError {}

/// The whole manifest, as written.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSpec>,
    /// Shared database servers the host provisions services' stores on.
    #[serde(default)]
    pub backends: Backends,
    /// `[host]`: what the host shares between all its services.
    #[serde(default)]
    pub host: HostSettings,
}

/// The host-wide ceiling every per-service memory limit must stay under (the pooling
/// allocator reserves this much address space per slot).
pub const MAX_MEMORY_MB: u64 = 1024;

/// The largest manifest file `silo run` reads.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The largest component file a manifest may name (as for a deploy).
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// The largest `max-size-mb` of a store: 1 TiB.
pub const MAX_STORE_MB: u64 = 1 << 20;

/// The longest route prefix.
pub const MAX_ROUTE_LEN: usize = 256;
