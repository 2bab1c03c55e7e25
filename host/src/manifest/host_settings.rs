//! `[host]` (what every service shares: the instance pool, the memory budget, and how they
//! are split) and `[backends]` (the shared servers stores may live on).

use serde::{Deserialize, Serialize};

use super::ServiceSpec;

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
