//! The manifest (`silo.toml`): which services exist, what each one is granted, and its limits.
//!
//! Parsing is strict: unknown keys, bad names, duplicate or overlapping routes and missing
//! component files are errors, and every error names the file and the key at fault. A service
//! gets nothing it does not declare here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// `[host]`: the resources every service shares, and how they are split.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostSettings {
    /// Instances that may exist at once, all services together (the instance pool). Unset:
    /// sized to what the services declare, at least [`MIN_INSTANCES`].
    pub instances: Option<u32>,
    /// The budget of all guest linear memory, in MiB, split between services in proportion
    /// to their `concurrency × memory-mb`. Unset: half the machine's memory.
    pub memory_mb: Option<u64>,
}

/// Max-min fair shares of `total` for `demands`, in their order: a demand below an equal
/// part gets all it asks, and what it leaves is split equally between the others, the same
/// way. The host's memory budget is split so (`runtime::budget`).
pub fn fair_shares(total: u64, demands: &[u64]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| demands[i]);
    let mut shares = vec![0; demands.len()];
    let (mut left, mut n) = (total, demands.len() as u64);
    for i in order {
        let share = demands[i].min(left / n.max(1));
        shares[i] = share;
        left -= share;
        n -= 1;
    }
    shares
}

/// The smallest instance pool a host builds.
pub const MIN_INSTANCES: u32 = 2000;
/// The largest instance pool a host builds (each slot reserves address space: two linear
/// memories of up to 4 GiB and their guards, 8 TiB per thousand instances).
pub const MAX_INSTANCES: u32 = 8000;
/// Instances a default pool keeps free beyond what the manifest's services need, for
/// services deployed later: four services of the default `concurrency`.
pub const SPARE_INSTANCES: u64 = 1024;
/// Warm instances a service may keep per thread of its executor (`instance-reuse` > 1).
pub const WARM_PER_THREAD: u32 = 8;

impl HostSettings {
    /// Threads of each service's executor: the machine's cores, at most 4 (more threads per
    /// service only multiply the threads the kernel shares the cores between).
    pub fn service_threads() -> u32 {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
            .clamp(1, 4)
    }

    /// The instance slots the services of `services` need together: each its `concurrency`,
    /// plus its warm instances when it reuses them (`threads` threads per service).
    pub fn slots_needed<'a>(services: impl Iterator<Item = &'a ServiceSpec>, threads: u32) -> u64 {
        services
            .map(|s| {
                let warm = if s.limits.instance_reuse > 1 {
                    WARM_PER_THREAD * threads
                } else {
                    0
                };
                s.limits.concurrency as u64 + warm as u64
            })
            .sum()
    }

    /// The pool to build for `services`: the declared `instances`, or what they need with
    /// [`SPARE_INSTANCES`] to spare for deploys. Refused (key, message) when the declared pool cannot hold
    /// every service's concurrency at once.
    pub fn pool_for<'a>(
        &self,
        services: impl Iterator<Item = &'a ServiceSpec>,
        threads: u32,
    ) -> Result<u32, (String, String)> {
        let needed = Self::slots_needed(services, threads);
        match self.instances {
            Some(n) if !(1..=MAX_INSTANCES).contains(&n) => Err((
                "host.instances".into(),
                format!("{n} is out of range 1..={MAX_INSTANCES}"),
            )),
            Some(n) if needed > n as u64 => Err((
                "host.instances".into(),
                format!(
                    "the services' `concurrency` (with their warm instances) adds up to {needed} instances, more than the pool of {n}: raise `instances` or lower a service's `concurrency`"
                ),
            )),
            Some(n) => Ok(n),
            None if needed > MAX_INSTANCES as u64 => Err((
                "host.instances".into(),
                format!(
                    "the services' `concurrency` (with their warm instances) adds up to {needed} instances, more than a host can hold ({MAX_INSTANCES}): lower a service's `concurrency`"
                ),
            )),
            None => Ok(
                (needed + SPARE_INSTANCES).clamp(MIN_INSTANCES as u64, MAX_INSTANCES as u64) as u32,
            ),
        }
    }
}

/// `[backends]`: the host's own connections to shared servers.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Backends {
    /// `[backends.redis]`: the server `kv` stores with `backend = "redis"` live on.
    pub redis: Option<RedisBackend>,
    /// `[backends.postgres]`: the server stores with `backend = "postgres"` live on.
    pub postgres: Option<SqlServer>,
    /// `[backends.mysql]`: the MariaDB server stores with `backend = "mysql"` live on.
    pub mysql: Option<SqlServer>,
}

/// `[backends.postgres]` and `[backends.mysql]`: a database server the host provisions
/// stores on.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlServer {
    /// An administrative connection (`postgres://user[:password]@host:port/db`, of a
    /// superuser or a role with CREATEDB and CREATEROLE; `mysql://user[:password]@host:port/`,
    /// of an account that may create databases and users and grant): the host uses it only
    /// to create each store's databases, login, host tables (and, on MariaDB, procedures);
    /// the store connects as its own login.
    pub url: String,
    /// Most connections each store keeps open.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Longest wait for a new connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// First part of every database and login name (`PREFIX_SERVICE_STORE`), so several
    /// hosts (production, staging, tests) can share one server without meeting.
    #[serde(default = "default_server_prefix")]
    pub prefix: String,
}

fn default_server_prefix() -> String {
    "silo".into()
}

fn default_pool_size() -> usize {
    16
}

fn default_connect_timeout_ms() -> u64 {
    2000
}

/// `[backends.redis]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedisBackend {
    /// An administrative connection (`redis://[user:password@]host:port`): the host uses it
    /// only to create each store's ACL user; the store itself connects as that user.
    pub url: String,
    /// Longest wait for a connection and its first answer, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// First part of every ACL user and key name (`PREFIX-SERVICE-STORE`,
    /// `PREFIX:SERVICE:STORE:*`), as for the SQL servers.
    #[serde(default = "default_server_prefix")]
    pub prefix: String,
}

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

/// The host-wide ceiling every per-service memory limit must stay under (the pooling
/// allocator reserves this much address space per slot).
pub const MAX_MEMORY_MB: u64 = 1024;

/// A service or store name: lowercase letters, digits and `-`, starting with a letter or
/// digit, at most 63 characters. Names become folder and file names, so nothing else passes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// True if requests for `a` and `b` could both match (one is a segment prefix of the other).
pub fn routes_overlap(a: &str, b: &str) -> bool {
    let prefix_of = |p: &str, q: &str| {
        p == "/" || q == p || (q.starts_with(p) && q.as_bytes().get(p.len()) == Some(&b'/'))
    };
    prefix_of(a, b) || prefix_of(b, a)
}

fn valid_route(route: &str) -> Result<(), String> {
    if route.len() > MAX_ROUTE_LEN {
        return Err(format!(
            "is {} characters long; a route is at most {MAX_ROUTE_LEN}",
            route.chars().count()
        ));
    }
    if !route.starts_with('/') {
        return Err(format!("`{route}` must start with `/`"));
    }
    if route.len() > 1 && route.ends_with('/') {
        return Err(format!("`{route}` must not end with `/`"));
    }
    if route.split('/').any(|s| s == ".." || s == ".") || route.contains("//") {
        return Err(format!("`{route}` has an empty, `.` or `..` segment"));
    }
    if !route
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
    {
        return Err(format!(
            "`{route}` may hold only letters, digits and `/-_.~`"
        ));
    }
    Ok(())
}

/// `value` of `key` within `lo..=hi`, or an error that gives the range.
fn check_range(key: &str, value: u64, lo: u64, hi: u64) -> Result<(), (String, String)> {
    if value < lo || value > hi {
        return Err((
            key.to_string(),
            format!("{value} is out of range: give a number from {lo} to {hi}"),
        ));
    }
    Ok(())
}

/// The settings of `[backends.KIND]` other than its URL and prefix.
fn check_server(kind: &str, server: &SqlServer) -> Result<(), (String, String)> {
    check_range(
        &format!("backends.{kind}.pool-size"),
        server.pool_size as u64,
        1,
        1000,
    )?;
    check_range(
        &format!("backends.{kind}.connect-timeout-ms"),
        server.connect_timeout_ms,
        1,
        600_000,
    )
}

/// The largest manifest file `silo run` reads.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The largest component file a manifest may name (as for a deploy).
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// The largest `max-size-mb` of a store: 1 TiB.
pub const MAX_STORE_MB: u64 = 1 << 20;

/// The longest route prefix.
pub const MAX_ROUTE_LEN: usize = 256;

/// What TOML calls the type of `value`, for "expected a table, found an array".
fn toml_type(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// The positions of the manifest that hold tables (`*`: any key). serde would otherwise
/// fill a table's fields from an array by position (`limits = [1, 1]`); these are refused
/// first, naming the key.
const TABLES: &[&[&str]] = &[
    &["services"],
    &["services", "*"],
    &["services", "*", "stores"],
    &["services", "*", "stores", "*"],
    &["services", "*", "kv"],
    &["services", "*", "kv", "*"],
    &["services", "*", "events"],
    &["services", "*", "sagas"],
    &["services", "*", "limits"],
    &["backends"],
    &["backends", "*"],
];

/// Checks that every position of [`TABLES`] under `table` (at `path`) holds a table, and
/// that each `subscribes` entry is one.
fn check_tables(table: &toml::Table, path: &[&str]) -> Result<(), (String, String)> {
    let dotted = |path: &[&str]| path.join(".");
    for (key, value) in table {
        let mut here = path.to_vec();
        here.push(key);
        let pattern_matches = |p: &&[&str]| {
            p.len() == here.len() && p.iter().zip(&here).all(|(p, k)| *p == "*" || p == k)
        };
        let wants_table = TABLES.iter().any(pattern_matches);
        match value {
            toml::Value::Table(inner) => check_tables(inner, &here)?,
            other if wants_table => {
                let example = if here.len() == 1 {
                    format!("[{}.NAME]", dotted(&here))
                } else {
                    format!("[{}]", dotted(&here))
                };
                return Err((
                    dotted(&here),
                    format!(
                        "expected a table (`{example}` or `{{ … }}`), found {}",
                        toml_type(other)
                    ),
                ));
            }
            toml::Value::Array(items)
                if here.len() == 3 && here[0] == "services" && key == "subscribes" =>
            {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_table() {
                        return Err((
                            format!("{}[{i}]", dotted(&here)),
                            format!(
                                "expected a table (`{{ source = \"SERVICE\", topic = \"TOPIC\" }}`), found {}",
                                toml_type(item)
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A serde error at `path` as `(key, message)`: an unknown field becomes the key itself.
fn serde_error(path: String, message: String) -> (String, String) {
    let path = if path == "." { String::new() } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        // The path already ends with the unknown key.
        let key = if path.is_empty() {
            field.to_string()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path
        } else {
            format!("{path}.{field}")
        };
        let known = rest
            .split_once("expected one of ")
            .or_else(|| rest.split_once("expected "))
            .map(|(_, k)| format!(" (known keys: {k})"))
            .unwrap_or_default();
        return (key, format!("unknown key `{field}`{known}"));
    }
    if message.starts_with("missing field `") {
        let field = message
            .trim_start_matches("missing field `")
            .trim_end_matches('`');
        let key = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return (key, "is required".into());
    }
    // serde says `u64`/`u32`/`usize`; the manifest's reader wants to know what to write.
    let message = message
        .replace(
            "unit variant, expected string only",
            "not a string, expected a string",
        )
        .replace("expected a sequence", "expected an array")
        .replace("expected u64", "expected a whole number, 0 or more")
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected usize", "expected a whole number, 0 or more");
    (path, message)
}

/// The line (1-based) of byte `offset` of `bytes`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Manifest {
    /// Reads and validates the manifest at `path`, and checks that each component it names
    /// is a regular file of at most [`MAX_COMPONENT_BYTES`] (its content is checked when it
    /// is compiled, and never shown in an error).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let err = |key: &str, message: String| ManifestError {
            file: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let meta = std::fs::metadata(path)
            .map_err(|e| err("", format!("cannot read the manifest: {e}")))?;
        if meta.is_dir() {
            return Err(err(
                "",
                "is a folder: give the manifest file (--manifest PATH/silo.toml)".into(),
            ));
        }
        if !meta.is_file() {
            return Err(err(
                "",
                "is not a regular file: give the manifest file (--manifest PATH/silo.toml)".into(),
            ));
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(err(
                "",
                format!(
                    "is {} bytes long; a manifest is at most {MAX_MANIFEST_BYTES}",
                    meta.len()
                ),
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|e| err("", format!("cannot read the manifest: {e}")))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            err(
                &format!("line {}", line_of(&bytes, e.valid_up_to())),
                "is not UTF-8 text: a manifest is TOML, written in UTF-8".into(),
            )
        })?;
        let mut manifest = Self::parse(text).map_err(|(key, message)| err(&key, message))?;
        if manifest.services.is_empty() {
            return Err(err(
                "services",
                "the manifest declares no service: add one as `[services.NAME]` with its `component` and `route`"
                    .into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for (name, svc) in &mut manifest.services {
            let key = format!("services.{name}.component");
            let resolved = base.join(&svc.component);
            let shown = resolved.display();
            let meta = std::fs::metadata(&resolved).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    err(&key, format!("component file `{shown}` not found"))
                }
                _ => err(&key, format!("component file `{shown}`: {e}")),
            })?;
            if meta.is_dir() {
                return Err(err(
                    &key,
                    format!("`{shown}` is a folder: name the component's .wasm file"),
                ));
            }
            if !meta.is_file() {
                return Err(err(
                    &key,
                    format!("`{shown}` is not a regular file: name the component's .wasm file"),
                ));
            }
            if meta.len() > MAX_COMPONENT_BYTES {
                return Err(err(
                    &key,
                    format!(
                        "`{shown}` is {} bytes long; a component is at most {} MiB",
                        meta.len(),
                        MAX_COMPONENT_BYTES >> 20
                    ),
                ));
            }
            svc.component = resolved;
        }
        Ok(manifest)
    }

    /// Parses and validates manifest text; errors are `(key, message)`. Component paths are
    /// left as written (not checked on disk).
    ///
    /// Three passes: TOML syntax (errors name the line), the shape (a table where a table
    /// belongs), then the fields with their types (errors name the key, as a dotted path),
    /// and last [`Manifest::validate`].
    pub fn parse(text: &str) -> Result<Self, (String, String)> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end().replace('\n', " ");
            let line = e
                .span()
                .map(|s| line_of(text.as_bytes(), s.start))
                .unwrap_or(1);
            (format!("line {line}"), msg)
        })?;
        check_tables(&table, &[])?;
        let manifest: Manifest = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                serde_error(path, e.into_inner().message().to_string())
            })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks one service's topics, subscriptions and event settings.
    fn validate_events(&self, name: &str, svc: &ServiceSpec) -> Result<(), (String, String)> {
        let key = format!("services.{name}");
        for (i, topic) in svc.publishes.iter().enumerate() {
            if !valid_topic(topic) {
                return Err((
                    format!("{key}.publishes[{i}]"),
                    format!(
                        "`{topic}` is not a topic name (letters, digits and `._-`, at most 128)"
                    ),
                ));
            }
            if svc.publishes[..i].contains(topic) {
                return Err((
                    format!("{key}.publishes[{i}]"),
                    format!("`{topic}` is listed twice"),
                ));
            }
        }
        for (i, sub) in svc.subscribes.iter().enumerate() {
            let skey = format!("{key}.subscribes[{i}]");
            let Some(source) = self.services.get(&sub.source) else {
                return Err((
                    skey,
                    format!("no service `{}` in this manifest", sub.source),
                ));
            };
            if !source.publishes.contains(&sub.topic) {
                return Err((
                    skey,
                    format!("service `{}` does not publish `{}`", sub.source, sub.topic),
                ));
            }
            if svc.subscribes[..i].contains(sub) {
                return Err((skey, "listed twice".into()));
            }
        }
        for (i, command) in svc.commands.iter().flatten().enumerate() {
            let ckey = format!("{key}.commands[{i}]");
            if !valid_topic(command) {
                return Err((
                    ckey,
                    format!(
                        "`{command}` is not a command name (letters, digits and `._-`, at most 128)"
                    ),
                ));
            }
            if svc.commands.iter().flatten().take(i).any(|c| c == command) {
                return Err((ckey, format!("`{command}` is listed twice")));
            }
        }
        if svc.commands.is_some() && svc.event_store().is_none() {
            return Err((
                format!("{key}.commands"),
                "a saga participant needs a store to keep the commands it handled in (declare `main`)"
                    .into(),
            ));
        }
        for (i, p) in svc.saga_participants.iter().enumerate() {
            let pkey = format!("{key}.saga-participants[{i}]");
            if p == name {
                return Err((
                    pkey,
                    "a service cannot be a participant of its own sagas".into(),
                ));
            }
            if svc.saga_participants[..i].contains(p) {
                return Err((pkey, format!("`{p}` is listed twice")));
            }
            match self.services.get(p) {
                None => return Err((pkey, format!("no service `{p}` in this manifest"))),
                Some(participant) if participant.event_store().is_none() => {
                    return Err((
                        pkey,
                        format!(
                            "service `{p}` has no store to keep the commands it handled in (declare `main`)"
                        ),
                    ));
                }
                Some(participant) if participant.commands.as_ref().is_some_and(Vec::is_empty) => {
                    return Err((
                        pkey,
                        format!(
                            "service `{p}` declares `commands = []`: it takes no saga commands"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let g = &svc.sagas;
        let checks: [(&str, u64, u64, u64); 5] = [
            ("step-timeout-ms", g.step_timeout_ms, 1, 3_600_000),
            ("max-attempts", g.max_attempts.into(), 1, 1_000),
            (
                "compensation-attempts",
                g.compensation_attempts.into(),
                1,
                10_000,
            ),
            ("backoff-ms", g.backoff_ms, 1, 3_600_000),
            ("max-backoff-ms", g.max_backoff_ms, g.backoff_ms, 86_400_000),
        ];
        for (k, v, lo, hi) in checks {
            check_range(&format!("{key}.sagas.{k}"), v, lo, hi)?;
        }
        let uses_events = !svc.publishes.is_empty()
            || !svc.subscribes.is_empty()
            || !svc.saga_participants.is_empty();
        let ekey = format!("{key}.events");
        match (&svc.events.store, svc.event_store()) {
            (Some(s), _) if !svc.stores.contains_key(s) => {
                return Err((
                    format!("{ekey}.store"),
                    format!("`{s}` is not one of the service's stores"),
                ));
            }
            (None, None) if uses_events => {
                return Err((
                    format!("{ekey}.store"),
                    "a service that publishes, subscribes or starts sagas needs a store for its outbox, inbox and saga log: declare `main`, or name one here".into(),
                ));
            }
            _ => {}
        }
        let e = &svc.events;
        let checks: [(&str, u64, u64, u64); 4] = [
            ("max-attempts", e.max_attempts.into(), 1, 1_000),
            ("backoff-ms", e.backoff_ms, 1, 3_600_000),
            ("max-backoff-ms", e.max_backoff_ms, e.backoff_ms, 86_400_000),
            ("batch", e.batch.into(), 1, 1_000),
        ];
        for (k, v, lo, hi) in checks {
            check_range(&format!("{ekey}.{k}"), v, lo, hi)?;
        }
        Ok(())
    }

    /// Checks names, routes, calls and limits; errors are `(key, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(mb) = self.host.memory_mb
            && !(16..=1 << 24).contains(&mb)
        {
            return Err((
                "host.memory-mb".into(),
                format!("{mb} is out of range 16..={}", 1u64 << 24),
            ));
        }
        self.host
            .pool_for(self.services.values(), HostSettings::service_threads())?;
        if let Some(mb) = self.host.memory_mb {
            // Every service must be able to run at least one instance at its full memory.
            let demands: Vec<u64> = self
                .services
                .values()
                .map(|s| s.limits.concurrency as u64 * s.limits.memory_mb)
                .collect();
            let shares = fair_shares(mb, &demands);
            for ((name, spec), share) in self.services.iter().zip(shares) {
                if share < spec.limits.memory_mb {
                    return Err((
                        "host.memory-mb".into(),
                        format!(
                            "{mb} MiB split between {} services leaves `{name}` {share} MiB, less than one instance of its `memory-mb = {}`: raise `memory-mb` or lower a service's `memory-mb` or `concurrency`",
                            self.services.len(),
                            spec.limits.memory_mb
                        ),
                    ));
                }
            }
        }
        if let Some(pg) = &self.backends.postgres {
            if let Err(e) = pg.url.parse::<tokio_postgres::Config>() {
                return Err(("backends.postgres.url".into(), e.to_string()));
            }
            if let Err(e) = crate::sql::postgres::PgNames::new(&pg.prefix, "x", "y") {
                return Err(("backends.postgres.prefix".into(), e.to_string()));
            }
            check_server("postgres", pg)?;
        }
        if let Some(my) = &self.backends.mysql {
            if let Err(e) = mysql_async::Opts::from_url(&my.url) {
                return Err(("backends.mysql.url".into(), e.to_string()));
            }
            if let Err(e) = crate::sql::mysql::MyNames::new(&my.prefix, "x", "y") {
                return Err(("backends.mysql.prefix".into(), e.to_string()));
            }
            check_server("mysql", my)?;
        }
        if let Some(redis) = &self.backends.redis
            && let Err(e) = crate::kv::redis::check_url(&redis.url)
        {
            return Err(("backends.redis.url".into(), e));
        }
        if let Some(redis) = &self.backends.redis
            && let Err(e) = crate::sql::server::check_prefix(&redis.prefix)
        {
            return Err(("backends.redis.prefix".into(), e.to_string()));
        }
        let mut routes: Vec<(&str, &str)> = Vec::new();
        for (name, svc) in &self.services {
            let key = format!("services.{name}");
            if !valid_name(name) {
                return Err((
                    key,
                    "a service name is lowercase letters, digits and `-`, at most 63 characters (no path separators or `..`)"
                        .into(),
                ));
            }
            valid_route(&svc.route).map_err(|m| (format!("{key}.route"), m))?;
            if let Some((other, _)) = routes.iter().find(|(_, r)| routes_overlap(r, &svc.route)) {
                return Err((
                    format!("{key}.route"),
                    format!("`{}` overlaps the route of service `{other}`", svc.route),
                ));
            }
            routes.push((name, &svc.route));
            for (store, spec) in &svc.stores {
                let skey = format!("{key}.stores.{store}");
                if !valid_name(store) {
                    return Err((
                        skey,
                        "a store name is lowercase letters, digits and `-`, at most 63 characters (no path separators or `..`)"
                            .into(),
                    ));
                }
                check_range(
                    &format!("{skey}.max-size-mb"),
                    spec.max_size_mb,
                    1,
                    MAX_STORE_MB,
                )?;
                if spec.backend == Backend::Postgres {
                    if self.backends.postgres.is_none() {
                        return Err((
                            format!("{skey}.backend"),
                            "`postgres` needs a server: add `[backends.postgres]` with its `url`"
                                .into(),
                        ));
                    }
                    let prefix = self
                        .backends
                        .postgres
                        .as_ref()
                        .map_or("silo", |p| p.prefix.as_str());
                    if let Err(e) = crate::sql::postgres::PgNames::new(prefix, name, store) {
                        return Err((skey, e.to_string()));
                    }
                }
                if spec.backend == Backend::Mysql {
                    let Some(my) = &self.backends.mysql else {
                        return Err((
                            format!("{skey}.backend"),
                            "`mysql` needs a server: add `[backends.mysql]` with its `url`".into(),
                        ));
                    };
                    if let Err(e) = crate::sql::mysql::MyNames::new(&my.prefix, name, store) {
                        return Err((skey, e.to_string()));
                    }
                }
            }
            for (store, spec) in &svc.kv {
                let kkey = format!("{key}.kv.{store}");
                if !valid_name(store) {
                    return Err((
                        kkey,
                        "a store name is lowercase letters, digits and `-`, at most 63 characters (no path separators or `..`)"
                            .into(),
                    ));
                }
                check_range(
                    &format!("{kkey}.max-size-mb"),
                    spec.max_size_mb,
                    1,
                    MAX_STORE_MB,
                )?;
                if spec.backend == KvBackend::Redis && self.backends.redis.is_none() {
                    return Err((
                        format!("{kkey}.backend"),
                        "`redis` needs a server: add `[backends.redis]` with its `url`".into(),
                    ));
                }
            }
            for (i, callee) in svc.calls.iter().enumerate() {
                let ckey = format!("{key}.calls[{i}]");
                if callee == name {
                    return Err((ckey, "a service cannot call itself".into()));
                }
                if !self.services.contains_key(callee) {
                    return Err((ckey, format!("no service `{callee}` in this manifest")));
                }
                if svc.calls[..i].contains(callee) {
                    return Err((ckey, format!("`{callee}` is listed twice")));
                }
            }
            self.validate_events(name, svc)?;
            let l = &svc.limits;
            let lkey = format!("{key}.limits");
            let checks: [(&str, u64, u64, u64); 8] = [
                ("deadline-ms", l.deadline_ms, 1, 3_600_000),
                ("memory-mb", l.memory_mb, 1, MAX_MEMORY_MB),
                ("body-kb", l.body_kb, 0, 1 << 20),
                ("concurrency", l.concurrency as u64, 1, 100_000),
                ("result-kb", l.result_kb, 1, 1 << 20),
                ("statement-ms", l.statement_ms, 1, 3_600_000),
                ("instance-reuse", l.instance_reuse as u64, 1, 1_000_000),
                ("call-timeout-ms", l.call_timeout_ms, 1, 3_600_000),
            ];
            for (k, v, lo, hi) in checks {
                check_range(&format!("{lkey}.{k}"), v, lo, hi)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> (String, String) {
        Manifest::parse(text).unwrap_err()
    }

    #[test]
    fn fair_shares_give_small_demands_all_they_ask() {
        assert_eq!(fair_shares(1000, &[5000, 200, 9000]), vec![400, 200, 400]);
        assert_eq!(fair_shares(1000, &[100, 100]), vec![100, 100]);
        assert_eq!(fair_shares(10, &[]), Vec::<u64>::new());
    }

    #[test]
    fn a_memory_budget_too_small_for_one_instance_of_a_service_is_refused() {
        let (key, message) = parse_err(
            "[host]\nmemory-mb = 100\n\
             [services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n\
             [services.b]\ncomponent = \"b.wasm\"\nroute = \"/b\"\n",
        );
        assert_eq!(key, "host.memory-mb");
        assert!(
            message.contains("100 MiB split between 2 services leaves `a` 50 MiB, less than one instance of its `memory-mb = 64`"),
            "{message}"
        );
    }

    #[test]
    fn minimal_service_gets_defaults() {
        let m = Manifest::parse(
            "[services.users]\ncomponent = \"u.wasm\"\nroute = \"/users\"\n[services.users.stores.main]\n",
        )
        .unwrap();
        let s = &m.services["users"];
        assert_eq!(s.route, "/users");
        assert_eq!(s.stores["main"].backend, Backend::Sqlite);
        assert_eq!(s.limits, Limits::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let (key, msg) =
            parse_err("[services.users]\ncomponent = \"u.wasm\"\nroute = \"/u\"\ncolour = 1\n");
        assert_eq!(key, "services.users.colour");
        assert!(
            msg.starts_with("unknown key `colour` (known keys: "),
            "{msg}"
        );
        let (key, msg) = parse_err(
            "[services.users]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n[services.users.limits]\ncpu = 1\n",
        );
        assert_eq!(key, "services.users.limits.cpu");
        assert!(msg.contains("`cpu`"), "{msg}");
        let (key, _) = parse_err("colour = 1\n");
        assert_eq!(key, "colour");
    }

    #[test]
    fn a_table_is_never_filled_from_an_array() {
        let svc = "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n";
        let (key, msg) = parse_err(&format!("{svc}limits = [1, 1]\n"));
        assert_eq!(key, "services.u.limits");
        assert_eq!(
            msg,
            "expected a table (`[services.u.limits]` or `{ … }`), found an array"
        );
        let (key, _) = parse_err("[services]\nu = [\"u.wasm\", \"/u\"]\n");
        assert_eq!(key, "services.u");
        let (key, _) = parse_err(&format!("{svc}[services.u.stores]\nmain = \"sqlite\"\n"));
        assert_eq!(key, "services.u.stores.main");
        let (key, msg) = parse_err(&format!("{svc}subscribes = [\"a/B\"]\n"));
        assert_eq!(key, "services.u.subscribes[0]");
        assert!(msg.ends_with("found a string"), "{msg}");
    }

    #[test]
    fn wrong_types_name_the_key_and_the_type_wanted() {
        let svc = "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n[services.u.limits]\n";
        let (key, msg) = parse_err(&format!("{svc}memory-mb = \"64\"\n"));
        assert_eq!(key, "services.u.limits.memory-mb");
        assert!(msg.contains("expected a whole number, 0 or more"), "{msg}");
        let (key, msg) = parse_err(&format!("{svc}memory-mb = -1\n"));
        assert_eq!(key, "services.u.limits.memory-mb");
        assert!(msg.contains("-1"), "{msg}");
        let (key, msg) = parse_err(&format!("{svc}concurrency = 4294967296\n"));
        assert_eq!(key, "services.u.limits.concurrency");
        assert!(msg.contains("4294967295"), "{msg}");
        let (key, _) = parse_err("[services.u]\nroute = \"/u\"\n");
        assert_eq!(key, "services.u.component");
        // TOML syntax: the line.
        let (key, _) = parse_err(&format!("{svc}memory-mb = 99999999999999999999\n"));
        assert_eq!(key, "line 5");
    }

    #[test]
    fn numbers_are_range_checked_before_any_conversion() {
        let svc = "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n";
        // 17592186044417 MiB is 2^64 + 1 MiB in bytes: it must not wrap to 1 MiB.
        let (key, msg) = parse_err(&format!(
            "{svc}[services.u.stores.main]\nmax-size-mb = 17592186044417\n"
        ));
        assert_eq!(key, "services.u.stores.main.max-size-mb");
        assert_eq!(
            msg,
            "17592186044417 is out of range: give a number from 1 to 1048576"
        );
        let (key, _) = parse_err(&format!("{svc}[services.u.kv.c]\nmax-size-mb = 0\n"));
        assert_eq!(key, "services.u.kv.c.max-size-mb");
        let (key, _) = parse_err(&format!(
            "[backends.postgres]\nurl = \"postgres://p@127.0.0.1/p\"\nconnect-timeout-ms = 0\n{svc}"
        ));
        assert_eq!(key, "backends.postgres.connect-timeout-ms");
        let (key, _) = parse_err(&format!("[backends.redis]\nurl = \"nope\"\n{svc}"));
        assert_eq!(key, "backends.redis.url");
    }

    #[test]
    fn lists_name_each_entry_once() {
        let base = "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n[services.a.stores.main]\n[services.b]\ncomponent = \"b.wasm\"\nroute = \"/b\"\n[services.b.stores.main]\n";
        let (key, msg) =
            parse_err(&base.replace("route = \"/a\"", "route = \"/a\"\ncalls = [\"b\", \"b\"]"));
        assert_eq!(key, "services.a.calls[1]");
        assert_eq!(msg, "`b` is listed twice");
        let (key, _) = parse_err(&base.replace(
            "route = \"/a\"",
            "route = \"/a\"\nsaga-participants = [\"b\", \"b\"]",
        ));
        assert_eq!(key, "services.a.saga-participants[1]");
    }

    #[test]
    fn errors_are_one_line_whatever_the_manifest_holds() {
        let e = ManifestError {
            file: PathBuf::from("silo.toml"),
            key: "services.a\nb".into(),
            message: "x".repeat(5000),
        };
        let shown = e.to_string();
        assert_eq!(shown.lines().count(), 1);
        assert!(
            shown.starts_with("silo.toml: services.a\\nb: xxx"),
            "{shown}"
        );
        assert!(
            shown.ends_with('…') && shown.len() < 1200,
            "{}",
            shown.len()
        );
    }

    #[test]
    fn bad_names_are_rejected() {
        for name in [
            "\"../x\"",
            "\"a/b\"",
            "\"Users\"",
            "\"a.b\"",
            "\"\"",
            "\"-x\"",
        ] {
            let text = format!("[services.{name}]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n");
            let (key, _) = parse_err(&text);
            assert!(key.starts_with("services."), "{name}: {key}");
        }
        let (key, _) = parse_err(
            "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n[services.u.stores.\"..\"]\n",
        );
        assert_eq!(key, "services.u.stores...");
    }

    #[test]
    fn overlapping_and_duplicate_routes_are_rejected() {
        let two = |a: &str, b: &str| {
            format!(
                "[services.a]\ncomponent = \"a.wasm\"\nroute = \"{a}\"\n[services.b]\ncomponent = \"b.wasm\"\nroute = \"{b}\"\n"
            )
        };
        assert_eq!(parse_err(&two("/x", "/x")).0, "services.b.route");
        assert_eq!(parse_err(&two("/x", "/x/y")).0, "services.b.route");
        assert_eq!(parse_err(&two("/", "/x")).0, "services.b.route");
        assert!(Manifest::parse(&two("/x", "/xy")).is_ok());
        assert_eq!(parse_err(&two("x", "/y")).0, "services.a.route");
        assert_eq!(parse_err(&two("/x/../y", "/z")).0, "services.a.route");
    }

    #[test]
    fn calls_name_other_services_of_the_manifest() {
        let base = "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n[services.b]\ncomponent = \"b.wasm\"\nroute = \"/b\"\n";
        assert!(
            Manifest::parse(&base.replace("route = \"/a\"", "route = \"/a\"\ncalls = [\"b\"]"))
                .is_ok()
        );
        let (key, _) =
            parse_err(&base.replace("route = \"/a\"", "route = \"/a\"\ncalls = [\"c\"]"));
        assert_eq!(key, "services.a.calls[0]");
        let (key, _) =
            parse_err(&base.replace("route = \"/a\"", "route = \"/a\"\ncalls = [\"b\", \"a\"]"));
        assert_eq!(key, "services.a.calls[1]");
    }

    #[test]
    fn subscriptions_name_a_published_topic() {
        let base = "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\npublishes = [\"Made\"]\n[services.a.stores.main]\n[services.b]\ncomponent = \"b.wasm\"\nroute = \"/b\"\n[services.b.stores.main]\n";
        let with = |sub: &str| {
            base.replace(
                "route = \"/b\"\n",
                &format!("route = \"/b\"\nsubscribes = [{sub}]\n"),
            )
        };
        assert!(Manifest::parse(&with("{ source = \"a\", topic = \"Made\" }")).is_ok());
        let (key, msg) = parse_err(&with("{ source = \"a\", topic = \"Other\" }"));
        assert_eq!(key, "services.b.subscribes[0]");
        assert!(msg.contains("does not publish"), "{msg}");
        let (key, _) = parse_err(&with("{ source = \"c\", topic = \"Made\" }"));
        assert_eq!(key, "services.b.subscribes[0]");
        let (key, _) = parse_err(&base.replace("[\"Made\"]", "[\"bad topic\"]"));
        assert_eq!(key, "services.a.publishes[0]");
        let no_store =
            "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\npublishes = [\"Made\"]\n";
        assert_eq!(parse_err(no_store).0, "services.a.events.store");
    }

    #[test]
    fn commands_are_names_and_a_participant_takes_some() {
        let base = "[services.o]\ncomponent = \"o.wasm\"\nroute = \"/o\"\nsaga-participants = [\"p\"]\n[services.o.stores.main]\n[services.p]\ncomponent = \"p.wasm\"\nroute = \"/p\"\nCOMMANDS\n[services.p.stores.main]\n";
        let with = |c: &str| base.replace("COMMANDS", c);
        let m = Manifest::parse(&with("commands = [\"reserve\", \"release\"]")).unwrap();
        let p = &m.services["p"];
        assert!(p.accepts_command("reserve") && p.accepts_command("release"));
        assert!(!p.accepts_command("charge") && !p.accepts_command(""));
        let m = Manifest::parse(&with("")).unwrap();
        assert!(
            m.services["p"].accepts_command("anything"),
            "undeclared: the handler decides"
        );
        let (key, msg) = parse_err(&with("commands = [\"a\", \"a\"]"));
        assert_eq!(key, "services.p.commands[1]");
        assert!(msg.contains("twice"), "{msg}");
        let (key, _) = parse_err(&with("commands = [\"a b\"]"));
        assert_eq!(key, "services.p.commands[0]");
        let (key, msg) = parse_err(&with("commands = []"));
        assert_eq!(key, "services.o.saga-participants[0]");
        assert!(msg.contains("takes no saga commands"), "{msg}");
        let no_store = "[services.p]\ncomponent = \"p.wasm\"\nroute = \"/p\"\ncommands = [\"a\"]\n";
        assert_eq!(parse_err(no_store).0, "services.p.commands");
    }

    #[test]
    fn limits_are_range_checked() {
        let (key, _) = parse_err(
            "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n[services.u.limits]\nmemory-mb = 0\n",
        );
        assert_eq!(key, "services.u.limits.memory-mb");
    }

    #[test]
    fn missing_component_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silo.toml");
        std::fs::write(
            &path,
            "[services.u]\ncomponent = \"nope.wasm\"\nroute = \"/u\"\n",
        )
        .unwrap();
        let e = Manifest::load(&path).unwrap_err();
        assert_eq!(e.key, "services.u.component");
        assert!(e.to_string().contains("nope.wasm"));
    }
}
