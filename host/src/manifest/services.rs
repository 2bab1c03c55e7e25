//! `[services.NAME]`: what one service declares (component, route, stores, calls, events,
//! sagas, limits), with the defaults of every setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[services.NAME.kv.STORE]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KvSpec {
    #[serde(default)]
    pub backend: KvBackend,
    /// Size cap of the store (key names and values), in MiB.
    #[serde(default = "default_store_mb")]
    pub max_size_mb: u64,
}

impl Default for KvSpec {
    fn default() -> Self {
        Self {
            backend: KvBackend::default(),
            max_size_mb: default_store_mb(),
        }
    }
}

/// Which engine serves a key-value store.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KvBackend {
    /// An embedded SQLite file in the data folder (the default).
    #[default]
    Sqlite,
    /// The `[backends.redis]` server, as an ACL user of the store's own.
    Redis,
}

impl KvBackend {
    pub fn name(self) -> &'static str {
        match self {
            KvBackend::Sqlite => "sqlite",
            KvBackend::Redis => "redis",
        }
    }
}

/// `[services.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceSpec {
    /// Path of the component, relative to the manifest's folder.
    pub component: PathBuf,
    /// Path prefix routed to this service (`/users` serves `/users` and `/users/…`).
    pub route: String,
    /// The folder of the service's sources (its crate or package), relative to the
    /// manifest's folder: what `silo dev` watches and rebuilds. Only a hint for tools:
    /// never recorded in the history nor compared between versions.
    #[serde(default, skip_serializing)]
    pub source: Option<PathBuf>,
    /// The service's private stores, by name.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreSpec>,
    /// The service's private key-value stores, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kv: BTreeMap<String, KvSpec>,
    /// Services this one may call through `wasi:http/outgoing-handler`.
    #[serde(default)]
    pub calls: Vec<String>,
    /// Topics this service may publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publishes: Vec<String>,
    /// Events this service receives through its `event-handler` export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribes: Vec<Subscription>,
    /// Where its outbox and inbox live, and how its subscriptions retry.
    #[serde(default)]
    pub events: EventSettings,
    /// Services this one may send saga commands to (as the orchestrator of sagas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saga_participants: Vec<String>,
    /// How the sagas it starts retry and time out.
    #[serde(default)]
    pub sagas: SagaSettings,
    /// The saga commands (and compensations) it handles, as a participant. Declared: the
    /// host refuses any other name, when a saga is started and again at delivery, without
    /// running the handler. Absent: every name reaches the handler, which decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<String>>,
    #[serde(default)]
    pub limits: Limits,
}

/// One entry of `subscribes`: a topic of one source service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Subscription {
    /// The publishing service.
    pub source: String,
    pub topic: String,
}

/// `[services.NAME.events]`: every setting has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EventSettings {
    /// The store holding the service's outbox (what it publishes) and inbox (what it has
    /// handled). Default: `main`, or the only store the service declares.
    pub store: Option<String>,
    /// Deliveries of one event to one of this service's subscriptions before it becomes a
    /// dead letter.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubled per attempt, with jitter.
    pub backoff_ms: u64,
    /// Longest delay between retries, in milliseconds.
    pub max_backoff_ms: u64,
    /// Most events handled in one transaction of the subscriber's store.
    pub batch: u32,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            store: None,
            max_attempts: 8,
            backoff_ms: 100,
            max_backoff_ms: 30_000,
            batch: 64,
        }
    }
}

/// `[services.NAME.sagas]`: every setting has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SagaSettings {
    /// Longest one command of a step may take, in milliseconds; past it the attempt counts
    /// as a transient failure.
    pub step_timeout_ms: u64,
    /// Attempts of a step's command that failed transiently (trap, timeout, error) before
    /// the step counts as refused and the saga compensates.
    pub max_attempts: u32,
    /// Attempts of one compensation before the saga is marked FAILED for an operator.
    pub compensation_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubled per attempt, with jitter.
    pub backoff_ms: u64,
    /// Longest delay between retries, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            step_timeout_ms: 10_000,
            max_attempts: 8,
            compensation_attempts: 20,
            backoff_ms: 100,
            max_backoff_ms: 30_000,
        }
    }
}

impl ServiceSpec {
    /// Whether this service, as a saga participant, takes the command (or compensation)
    /// `name`: any name when it declares no `commands`, else only the ones it lists.
    pub fn accepts_command(&self, name: &str) -> bool {
        self.commands
            .as_ref()
            .is_none_or(|c| c.iter().any(|n| n == name))
    }

    /// The store holding this service's outbox and inbox, if it has one.
    pub fn event_store(&self) -> Option<&str> {
        match &self.events.store {
            Some(s) => Some(s),
            None if self.stores.contains_key("main") => Some("main"),
            None if self.stores.len() == 1 => self.stores.keys().next().map(String::as_str),
            None => None,
        }
    }
}

/// A topic name: letters, digits and `._-`, at most 128 characters.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 128
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `[services.NAME.stores.STORE]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreSpec {
    #[serde(default)]
    pub backend: Backend,
    /// Size cap of the store, in MiB.
    #[serde(default = "default_store_mb")]
    pub max_size_mb: u64,
}

impl Default for StoreSpec {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            max_size_mb: default_store_mb(),
        }
    }
}

fn default_store_mb() -> u64 {
    1024
}

/// Which engine serves a store.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An embedded SQLite file in the data folder (the default).
    #[default]
    Sqlite,
    /// Its own database and login role on the `[backends.postgres]` server.
    Postgres,
    /// Its own databases and login user on the `[backends.mysql]` (MariaDB) server.
    Mysql,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }
}

/// `[services.NAME.limits]`: every limit has a default and may be overridden per service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// Deadline of one request, in milliseconds: CPU spent in the component (epoch
    /// interruption) and time waiting on the host both count.
    pub deadline_ms: u64,
    /// Linear memory of one instance, in MiB.
    pub memory_mb: u64,
    /// Largest request body, in KiB.
    pub body_kb: u64,
    /// Instances of this service running at once; more requests get 503.
    pub concurrency: u32,
    /// Largest result one query may return, in KiB.
    pub result_kb: u64,
    /// Longest one SQL statement may run, in milliseconds (an embedded store runs on a
    /// thread of the service's own executor, so this also bounds how long one statement can
    /// hold up the service's other requests there; other services have their own threads).
    pub statement_ms: u64,
    /// Requests one instance serves before it is discarded (1: a fresh instance for every
    /// request, the safe default; more trades isolation between requests for speed).
    pub instance_reuse: u32,
    /// Longest a call to another service may take, in milliseconds (never past the
    /// caller's own deadline).
    pub call_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: 10_000,
            memory_mb: 64,
            body_kb: 1024,
            concurrency: 256,
            result_kb: 16 * 1024,
            statement_ms: 50,
            instance_reuse: 1,
            call_timeout_ms: 5_000,
        }
    }
}
