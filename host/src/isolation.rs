//! The isolation catalogue: every attack the intruder component makes on a live host, what
//! should happen, and the victim check that runs beside each one.
//!
//! `silo demo isolation` and the integration tests both use [`run_attack`]: it measures a
//! quiet baseline of the victim (`GET /users/{id}` on the users service), then runs one
//! attack while a victim loop keeps asking, and passes only if the attack failed *and* every
//! victim answer was correct *and* the victim's p99 latency stayed within
//! [`victim_bound`] of the baseline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How an attack is carried out and judged.
#[derive(Debug, Clone, Copy)]
pub enum Judge {
    /// `GET /intruder/attack/NAME` answers `{"outcome":"blocked"|"succeeded","detail":…}`.
    Report,
    /// `GET PATH` must end in a 503 from the host (the instance was stopped) with error
    /// `code` and a message that contains `says` (what stopped it).
    HostStops {
        path: &'static str,
        code: &'static str,
        says: &'static str,
    },
    /// `N` concurrent `GET PATH` against a service limited to a few instances: all must be
    /// 503, most of them `busy`.
    Flood(&'static str, usize),
    /// Like `Report`, while the runner measures the intruder's store `store` on disk
    /// (database and write-ahead log) every few milliseconds: it must stay within `cap_mb`.
    ReportWithinCap { store: &'static str, cap_mb: u64 },
    /// `clients` concurrent loops of `GET path` for `millis`: each request works within its
    /// limits (answers 200, or 503 when the host stops it); what is judged is the victim.
    Load {
        path: &'static str,
        clients: usize,
        millis: u64,
    },
    /// Two loops of `GET path` (the intruder using a callee) for `millis` while outside
    /// clients keep asking the callee `callee`: at most 1% of the outside requests may be
    /// refused `busy` (unprotected, most of them are).
    CalleeStaysOpen {
        path: &'static str,
        callee: &'static str,
        millis: u64,
    },
    /// `clients` connections from outside send the headers and the start of a body to
    /// `POST path` and never finish it, for `millis`, while other clients keep asking
    /// `GET path`: none of those may be refused `busy`.
    SlowBodies {
        path: &'static str,
        clients: usize,
        millis: u64,
    },
    /// A subscriber's event lag (the `probe` service's copy of new users) quiet and while
    /// the intruder's handler spends 900 ms on each of `slow` new users named `slow…`: its
    /// p99 must stay within [`lag_bound`] of the quiet one.
    EventLag { slow: usize },
    /// The runner sends every host statement text the host has run (recorded through
    /// `SILO_RECORD_HOST_SQL`) to `POST /intruder/attack/host-statements`; the intruder sends
    /// each back as guest SQL, which must be `access-denied`.
    HostStatements,
    /// `GET PATH` floods the guest's stdout and stderr and answers 200 `{"written": bytes}`
    /// (at least 32 MiB); the host's log file ([`Target::host_log`]) may grow by at most
    /// the service's log budget for the time it took (burst + rate × seconds, see
    /// [`crate::runtime::stdio`]) plus [`LOG_SLACK`] for the host's own lines.
    HostLog(&'static str),
    /// `GET PATH` makes the host hold memory for the instance; the host's resident memory
    /// (`VmRSS` of [`Target::host_pid`]), polled while it runs, may grow by at most
    /// `max_mib`, and the answer must be a 503 with error `code` whose message contains
    /// `says` (the cap that stopped it).
    HostMemory {
        path: &'static str,
        max_mib: u64,
        code: &'static str,
        says: &'static str,
    },
}

/// What the host's log may grow by during a log flood beyond the flooding service's budget:
/// its own lines (the notice of what was dropped, other services').
pub const LOG_SLACK: u64 = 64 << 10;

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Attack {
    pub name: &'static str,
    pub expected: &'static str,
    pub judge: Judge,
}

/// The catalogue, in the order the demo runs it.
pub const CATALOGUE: &[Attack] = &[
    Attack {
        name: "open-other-store",
        expected: "access-denied for other services' store names",
        judge: Judge::Report,
    },
    Attack {
        name: "guess-store-names",
        expected: "access-denied for every guessed name",
        judge: Judge::Report,
    },
    Attack {
        name: "stale-handle",
        expected: "a finished transaction cannot be used",
        judge: Judge::Report,
    },
    Attack {
        name: "forged-handle",
        expected: "a forged resource handle traps the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/trap/forged-handle",
            code: "service_trapped",
            says: "handle index",
        },
    },
    Attack {
        name: "wrong-type-handle",
        expected: "a handle of another resource type traps the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/trap/wrong-type-handle",
            code: "service_trapped",
            says: "used with the wrong type",
        },
    },
    Attack {
        name: "stale-transaction",
        expected: "a transaction handle kept across commit traps the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/trap/stale-transaction",
            code: "service_trapped",
            says: "unknown handle index",
        },
    },
    Attack {
        name: "double-drop",
        expected: "dropping an already dropped handle traps the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/trap/double-drop",
            code: "service_trapped",
            says: "unknown handle index",
        },
    },
    Attack {
        name: "attach",
        expected: "ATTACH is denied",
        judge: Judge::Report,
    },
    Attack {
        name: "vacuum-into",
        expected: "VACUUM INTO is denied",
        judge: Judge::Report,
    },
    Attack {
        name: "load-extension",
        expected: "extension loading is denied",
        judge: Judge::Report,
    },
    Attack {
        name: "pragmas",
        expected: "file- and schema-changing PRAGMAs are denied",
        judge: Judge::Report,
    },
    Attack {
        name: "uri-filename",
        expected: "URI filenames are not interpreted",
        judge: Judge::Report,
    },
    Attack {
        name: "host-tables",
        expected: "the host's _silo_* tables are unreachable, also via views and triggers",
        judge: Judge::Report,
    },
    Attack {
        name: "plant-host-table",
        expected: "nothing renamed into the host's _silo_ namespace; no TEMP objects",
        judge: Judge::Report,
    },
    Attack {
        name: "schema-tamper",
        expected: "sqlite_schema cannot be written",
        judge: Judge::Report,
    },
    Attack {
        name: "call-undeclared",
        expected: "calls to undeclared services are denied",
        judge: Judge::Report,
    },
    Attack {
        name: "call-external",
        expected: "outbound HTTP to any host is denied",
        judge: Judge::Report,
    },
    Attack {
        name: "wasi-files",
        expected: "no file system: every open fails",
        judge: Judge::Report,
    },
    Attack {
        name: "wasi-sockets",
        expected: "no sockets: connect, bind and lookups fail",
        judge: Judge::Report,
    },
    Attack {
        name: "wasi-env",
        expected: "no environment, arguments or working directory",
        judge: Judge::Report,
    },
    Attack {
        name: "huge-result",
        expected: "limit-exceeded past the result size cap",
        judge: Judge::Report,
    },
    Attack {
        name: "huge-blob",
        expected: "blobs past the length limit are refused",
        judge: Judge::Report,
    },
    Attack {
        name: "fill-disk",
        expected: "limit-exceeded at the store's size cap",
        judge: Judge::Report,
    },
    Attack {
        name: "runaway-sql",
        expected: "a runaway recursive query is interrupted at the deadline",
        judge: Judge::Report,
    },
    Attack {
        name: "infinite-loop",
        expected: "the CPU deadline stops the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/exhaust/loop",
            code: "deadline_exceeded",
            says: "did not answer within 1000 ms",
        },
    },
    Attack {
        name: "memory-growth",
        expected: "the memory limit stops the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/exhaust/memory",
            code: "service_trapped",
            says: "reached its memory limit of 32 MiB",
        },
    },
    Attack {
        name: "deep-recursion",
        expected: "its stack runs off its own linear memory: trap (503)",
        judge: Judge::HostStops {
            path: "/intruder/exhaust/recursion",
            code: "service_trapped",
            says: "out of bounds memory access",
        },
    },
    Attack {
        name: "request-flood",
        expected: "503 busy beyond the intruder's concurrency limit",
        judge: Judge::Flood("/intruder/exhaust/loop", 64),
    },
    Attack {
        name: "publish-undeclared",
        expected: "access-denied for topics not in `publishes` (another service's too)",
        judge: Judge::Report,
    },
    Attack {
        name: "saga-undeclared",
        expected: "access-denied for saga steps on services not in `saga-participants`",
        judge: Judge::Report,
    },
    Attack {
        name: "kv-other-store",
        expected: "access-denied for key-value stores it did not declare",
        judge: Judge::Report,
    },
    Attack {
        name: "host-statements",
        expected: "every host statement's text, sent as guest SQL, is access-denied",
        judge: Judge::HostStatements,
    },
    Attack {
        name: "temp-objects",
        expected: "TEMP tables, views, triggers, indexes refused in every spelling",
        judge: Judge::Report,
    },
    Attack {
        name: "file-views",
        expected: "dbstat (page sizes of every table, the host's too) is access-denied",
        judge: Judge::Report,
    },
    Attack {
        name: "fill-wal",
        expected: "database + write-ahead log stay within max-size-mb (1 MiB)",
        judge: Judge::ReportWithinCap {
            store: "tiny",
            cap_mb: 1,
        },
    },
    Attack {
        name: "slow-statements",
        expected: "statements of the whole budget back to back slow only the intruder",
        judge: Judge::Load {
            path: "/intruder/exhaust/sql",
            clients: 8,
            millis: 3000,
        },
    },
    Attack {
        name: "slow-handler",
        expected: "a slow event handler delays no other subscriber",
        judge: Judge::EventLag { slow: 6 },
    },
    Attack {
        name: "slow-call-bodies",
        expected: "calls whose bodies never end hold none of the callee's instances",
        judge: Judge::CalleeStaysOpen {
            path: "/intruder/exhaust/slow-call-bodies?n=64",
            callee: "/reference/countries",
            millis: 3000,
        },
    },
    Attack {
        name: "call-fanout",
        expected: "a caller gets its share of the callee's instances, no more",
        judge: Judge::CalleeStaysOpen {
            path: "/intruder/exhaust/fanout?n=64",
            callee: "/reference/countries",
            millis: 3000,
        },
    },
    Attack {
        name: "slow-bodies",
        expected: "unfinished request bodies from outside hold no instance",
        judge: Judge::SlowBodies {
            path: "/reference/countries",
            clients: 300,
            millis: 3000,
        },
    },
    // Fair sharing: work that would cost the host more than the intruder's limits say.
    Attack {
        name: "costly-function",
        expected: "costly SQL (huge values, LIKE, instr, sorts) stops near statement-ms",
        judge: Judge::Report,
    },
    Attack {
        name: "log-flood",
        expected: "32 MiB to stdout/stderr: the host log grows by the service's log budget",
        judge: Judge::HostLog("/intruder/flood/log"),
    },
    Attack {
        name: "host-fields",
        expected: "wasi:http fields in a loop: trap at the resource cap, host memory bounded",
        judge: Judge::HostMemory {
            path: "/intruder/flood/fields",
            max_mib: 96,
            code: "service_trapped",
            says: "host resources",
        },
    },
];

/// The intruder's store cap in [`manifest`].
pub const INTRUDER_STORE_MB: u64 = 8;

/// Attacks on stores that live on the machine's shared database servers: the intruder's
/// `pg` (PostgreSQL) and `my` (MariaDB) stores, 2 MiB each, and its `rkv` key-value store
/// on Redis, 1 MiB. They run when the catalogue's host has those servers ([`Servers`]).
pub const SERVER_CATALOGUE: &[Attack] = &[
    Attack {
        name: "pg-trap-cancel",
        expected: "a DO block that catches its cancel is ended; the writer is free at once",
        judge: Judge::Report,
    },
    Attack {
        name: "pg-host-sequences",
        expected: "nextval/setval/last_value on the host's sequences: access-denied",
        judge: Judge::Report,
    },
    Attack {
        name: "pg-explain",
        expected: "EXPLAIN ANALYZE (counts rows RLS hides) in every spelling: access-denied",
        judge: Judge::Report,
    },
    Attack {
        name: "pg-fill",
        expected: "limit-exceeded \"the store is full\" at max-size-mb (2 MiB)",
        judge: Judge::Report,
    },
    Attack {
        name: "mariadb-named-locks",
        expected: "GET_LOCK and friends (the host's provisioning lock): access-denied",
        judge: Judge::Report,
    },
    Attack {
        name: "mariadb-fill",
        expected: "limit-exceeded \"the store is full\" at max-size-mb (2 MiB)",
        judge: Judge::Report,
    },
    Attack {
        name: "redis-fill",
        expected: "limit-exceeded \"the store is full\" at max-size-mb (1 MiB)",
        judge: Judge::Report,
    },
];

/// The shared servers the server attacks use: the machine's PostgreSQL, MariaDB and Redis
/// on loopback, with databases, roles and users named under `prefix`.
#[derive(Debug, Clone)]
pub struct Servers {
    pub prefix: String,
}

impl Servers {
    pub const POSTGRES: &str = "127.0.0.1:5432";
    pub const MARIADB: &str = "127.0.0.1:3306";
    pub const REDIS: &str = "127.0.0.1:6379";

    /// The servers that do not accept a connection, by name and address.
    pub fn missing() -> Vec<String> {
        [
            ("PostgreSQL", Self::POSTGRES),
            ("MariaDB", Self::MARIADB),
            ("Redis", Self::REDIS),
        ]
        .iter()
        .filter(|(_, addr)| {
            let addr = addr.parse().expect("a socket address");
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
        })
        .map(|(name, addr)| format!("{name} at {addr}"))
        .collect()
    }

    /// Servers for one run: objects named under a prefix of its own, so runs on one
    /// machine never meet (remove them with [`Servers::remove`]).
    pub fn for_one_run(what: &str) -> Self {
        Self {
            prefix: format!("silo{what}{:08x}", rand::random::<u32>()),
        }
    }

    /// Drops the intruder's PostgreSQL, MariaDB and Redis stores of this run from the servers.
    pub async fn remove(&self) -> Result<(), String> {
        let timeout = Duration::from_secs(5);
        crate::sql::postgres::deprovision(
            &crate::sql::postgres::PgConfig {
                admin_url: format!("postgres://postgres@{}/postgres", Self::POSTGRES),
                pool_size: 1,
                connect_timeout: timeout,
                prefix: self.prefix.clone(),
            },
            "intruder",
            "pg",
        )
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
        crate::sql::mysql::deprovision(
            &crate::sql::mysql::MyConfig {
                admin_url: format!("mysql://root@{}/", Self::MARIADB),
                pool_size: 1,
                connect_timeout: timeout,
                prefix: self.prefix.clone(),
            },
            "intruder",
            "my",
        )
        .await
        .map_err(|e| format!("MariaDB: {e}"))?;
        crate::kv::redis::deprovision(
            &crate::kv::redis::RedisConfig {
                admin_url: format!("redis://{}", Self::REDIS),
                connect_timeout: timeout,
                prefix: self.prefix.clone(),
            },
            "intruder",
            "rkv",
        )
        .await
        .map_err(|e| format!("Redis: {e}"))
    }

    /// The manifest lines that put the intruder's server stores on them.
    fn manifest(&self) -> String {
        let prefix = &self.prefix;
        format!(
            r#"
[services.intruder.stores.pg]
backend = "postgres"
max-size-mb = 2
[services.intruder.stores.my]
backend = "mysql"
max-size-mb = 2
[services.intruder.kv.rkv]
backend = "redis"
max-size-mb = 1

[backends.postgres]
url = "postgres://postgres@{pg}/postgres"
prefix = "{prefix}"
pool-size = 4
[backends.mysql]
url = "mysql://root@{my}/"
prefix = "{prefix}"
pool-size = 4
[backends.redis]
url = "redis://{redis}"
prefix = "{prefix}"
"#,
            pg = Self::POSTGRES,
            my = Self::MARIADB,
            redis = Self::REDIS,
        )
    }
}

/// The manifest the catalogue runs against: the demo services and the intruder, with the
/// limits the attacks test. `{dir}` is the folder of built components.
pub fn manifest(components: &std::path::Path, servers: Option<&Servers>) -> String {
    let c = |name: &str| {
        components
            .join(format!("{name}.wasm"))
            .display()
            .to_string()
    };
    format!(
        r#"[services.users]
component = "{users}"
route = "/users"
publishes = ["UserCreated", "UserUpdated"]
[services.users.stores.main]

[services.products]
component = "{products}"
route = "/products"
publishes = ["ProductCreated", "ProductUpdated"]
[services.products.stores.main]

[services.reference]
component = "{reference}"
route = "/reference"
[services.reference.stores.main]
[services.reference.limits]
concurrency = 16

[services.probe]
component = "{probe}"
route = "/probe"
subscribes = [{{ source = "users", topic = "UserCreated" }}]
[services.probe.stores.main]

[services.intruder]
component = "{intruder}"
route = "/intruder"
calls = ["reference"]
publishes = ["Intruded"]
subscribes = [{{ source = "users", topic = "UserCreated" }}]
saga-participants = ["reference"]
[services.intruder.stores.main]
max-size-mb = {cap}
[services.intruder.stores.tiny]
max-size-mb = 1
[services.intruder.limits]
deadline-ms = 1000
memory-mb = 32
concurrency = 4
result-kb = 1024
statement-ms = 50
"#,
        users = c("users"),
        products = c("products"),
        reference = c("reference"),
        probe = c("events_probe"),
        intruder = c("intruder"),
        cap = INTRUDER_STORE_MB,
    ) + &servers.map(Servers::manifest).unwrap_or_default()
}

/// What one attack did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attack: &'static str,
    pub expected: &'static str,
    pub observed: String,
    /// The attack failed.
    pub blocked: bool,
    /// Every victim answer was correct.
    pub victim_correct: bool,
    pub victim_p99: Duration,
    pub bound: Duration,
}

impl Outcome {
    pub fn pass(&self) -> bool {
        self.blocked && self.victim_correct && self.victim_p99 <= self.bound
    }
}

/// How slow the victim may get during an attack: five times its quiet p99, plus 150 ms for
/// the scheduling of two busy cores (a spinning guest yields every epoch tick). A victim
/// starved by an attack waits for the attack's whole deadline (1 s here) and fails it.
pub fn victim_bound(baseline_p99: Duration) -> Duration {
    baseline_p99 * 5 + Duration::from_millis(150)
}

/// A client for one host.
#[derive(Clone)]
pub struct Target {
    pub http: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The host's data folder, where the intruder's store files are measured.
    pub data: Option<PathBuf>,
    /// The file the host records its SQL statement texts into (`SILO_RECORD_HOST_SQL`).
    pub host_sql: Option<PathBuf>,
    /// The file the host writes its log to (its stderr).
    pub host_log: Option<PathBuf>,
    /// The host's process id, for its resident memory.
    pub host_pid: Option<u32>,
}

impl Target {
    pub fn new(http: &str) -> Self {
        Self {
            http: http.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            data: None,
            host_sql: None,
            host_log: None,
            host_pid: None,
        }
    }

    /// This target, with the host's log file and process id known to the runner.
    pub fn with_host(mut self, log: &Path, pid: u32) -> Self {
        self.host_log = Some(log.to_path_buf());
        self.host_pid = Some(pid);
        self
    }

    /// A target whose data folder and statement record the runner can read.
    pub fn local(http: &str, data: &Path, host_sql: &Path) -> Self {
        Self {
            data: Some(data.to_path_buf()),
            host_sql: Some(host_sql.to_path_buf()),
            ..Self::new(http)
        }
    }

    /// `(status, body)`; a transport failure is status 0.
    pub async fn send(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.http));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .expect("a valid request");
        match tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                    .unwrap_or_default();
                (status, body)
            }
            Ok(Err(e)) => (0, e.to_string()),
            Err(_) => (0, "timed out".into()),
        }
    }
}

/// The victim: a user of the users service, read back again and again.
pub struct Victim {
    id: String,
    email: String,
    pub baseline_p99: Duration,
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

impl Victim {
    /// Creates the victim's row and measures a quiet baseline.
    pub async fn prepare(target: &Target) -> Result<Self, String> {
        let email = format!("victim-{}@example.com", rand::random::<u32>());
        let body = format!(r#"{{"email":"{email}","name":"Victim"}}"#);
        let (status, text) = target.send("POST", "/users", Some(&body)).await;
        if status != 201 {
            return Err(format!("creating the victim: {status} {text}"));
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let id = v["id"].as_str().ok_or("no id")?.to_string();
        let mut victim = Self {
            id,
            email,
            baseline_p99: Duration::ZERO,
        };
        let mut samples = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            if !victim.ask(target).await {
                return Err("the victim answered wrongly before any attack".into());
            }
            samples.push(t.elapsed());
        }
        victim.baseline_p99 = p99(samples);
        Ok(victim)
    }

    /// One victim request; true if the answer is exactly right.
    async fn ask(&self, target: &Target) -> bool {
        let (status, text) = target
            .send("GET", &format!("/users/{}", self.id), None)
            .await;
        status == 200
            && serde_json::from_str::<serde_json::Value>(&text)
                .map(|v| v["email"] == self.email.as_str())
                .unwrap_or(false)
    }
}

/// Runs one attack with the victim loop beside it.
pub async fn run_attack(target: &Target, victim: &Victim, attack: &Attack) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (target, stop) = (target.clone(), stop.clone());
        let id = victim.id.clone();
        let email = victim.email.clone();
        tokio::spawn(async move {
            let v = Victim {
                id,
                email,
                baseline_p99: Duration::ZERO,
            };
            let (mut samples, mut correct) = (Vec::new(), true);
            while !stop.load(Ordering::Relaxed) || samples.len() < 20 {
                let t = Instant::now();
                correct &= v.ask(&target).await;
                samples.push(t.elapsed());
            }
            (samples, correct)
        })
    };
    let (blocked, observed) = judge(target, attack).await;
    stop.store(true, Ordering::Relaxed);
    let (samples, victim_correct) = watcher.await.unwrap_or_default();
    Outcome {
        attack: attack.name,
        expected: attack.expected,
        observed,
        blocked,
        victim_correct,
        victim_p99: p99(samples),
        bound: victim_bound(victim.baseline_p99),
    }
}

/// Reads a report answer: `(blocked, observed)`.
fn read_report(status: u16, text: &str) -> (bool, String) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let detail = v["detail"].as_str().unwrap_or(text).to_string();
    match (status, v["outcome"].as_str()) {
        (200, Some("blocked")) => (true, format!("blocked: {detail}")),
        (200, Some(other)) => (false, format!("{other}: {detail}")),
        // The host stopped the instance before it could report: also a failed attack.
        (503, _) => (
            true,
            format!("instance stopped by the host: {}", short(text)),
        ),
        (s, _) => (false, format!("unexpected answer {s}: {}", short(text))),
    }
}

/// The texts of `SILO_RECORD_HOST_SQL`, one JSON string a line.
pub fn recorded_host_statements(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<String>(l).map_err(|e| format!("{l}: {e}")))
        .collect()
}

/// The resident memory of process `pid` (`VmRSS` of `/proc/PID/status`), in bytes.
pub fn resident_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib << 10)
        .ok_or_else(|| format!("{path} has no VmRSS line"))
}

/// Bytes of a SQLite store on disk: the database and its write-ahead log.
pub fn store_bytes(data: &Path, service: &str, store: &str) -> u64 {
    let db = data
        .join("stores")
        .join(service)
        .join(format!("{store}.db"));
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    len(&db) + len(Path::new(&wal))
}

async fn judge(target: &Target, attack: &Attack) -> (bool, String) {
    match attack.judge {
        Judge::Report => {
            let (status, text) = target
                .send("GET", &format!("/intruder/attack/{}", attack.name), None)
                .await;
            read_report(status, &text)
        }
        Judge::ReportWithinCap { store, cap_mb } => {
            let Some(data) = target.data.clone() else {
                return (false, "the runner cannot see the host's data folder".into());
            };
            let (stop, worst) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicU64::new(0)),
            );
            let poller = {
                let (stop, worst) = (stop.clone(), worst.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        worst.fetch_max(store_bytes(&data, "intruder", store), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            };
            let (status, text) = target
                .send("GET", &format!("/intruder/attack/{}", attack.name), None)
                .await;
            stop.store(true, Ordering::Relaxed);
            let _ = poller.await;
            let (blocked, observed) = read_report(status, &text);
            let worst = worst.load(Ordering::Relaxed);
            let cap = cap_mb << 20;
            (
                blocked && worst <= cap,
                format!(
                    "store on disk at most {:.2} MiB of {cap_mb} MiB; {observed}",
                    worst as f64 / f64::from(1 << 20)
                ),
            )
        }
        Judge::HostStatements => {
            let Some(path) = &target.host_sql else {
                return (false, "the runner cannot read the host's statements".into());
            };
            let texts = match recorded_host_statements(path) {
                Ok(t) => t,
                Err(e) => return (false, e),
            };
            let body = serde_json::to_string(&texts).unwrap_or_default();
            let (status, text) = target
                .send("POST", "/intruder/attack/host-statements", Some(&body))
                .await;
            read_report(status, &text)
        }
        Judge::HostLog(path) => judge_host_log(target, path).await,
        Judge::HostMemory {
            path,
            max_mib,
            code,
            says,
        } => judge_host_memory(target, path, max_mib, code, says).await,
        Judge::HostStops { path, code, says } => {
            let t = Instant::now();
            let (status, text) = target.send("GET", path, None).await;
            let error = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
            let got = error["error"]["code"].as_str().unwrap_or_default();
            let message = error["error"]["message"].as_str().unwrap_or_default();
            (
                status == 503 && got == code && message.contains(says),
                format!(
                    "{status} {got} after {} ms: {}",
                    t.elapsed().as_millis(),
                    short(message)
                ),
            )
        }
        Judge::Load {
            path,
            clients,
            millis,
        } => {
            let until = Instant::now() + Duration::from_millis(millis);
            let answers = hammer(target, path, clients, until).await;
            let wrong = answers
                .iter()
                .filter(|(s, _)| *s != 200 && *s != 503)
                .count();
            (
                wrong == 0 && !answers.is_empty(),
                format!("{} requests: {:?}", answers.len(), tally(&answers)),
            )
        }
        Judge::CalleeStaysOpen {
            path,
            callee,
            millis,
        } => {
            let until = Instant::now() + Duration::from_millis(millis);
            let attack = {
                let target = target.clone();
                tokio::spawn(async move { hammer(&target, path, 2, until).await })
            };
            let outside = hammer(target, callee, 2, until).await;
            let attack = attack.await.unwrap_or_default();
            let busy = outside.iter().filter(|(s, _)| *s == 503).count();
            let seen: Vec<String> = attack.iter().map(|(_, t)| short(t)).take(1).collect();
            // The quarter kept for others is a guarantee of 4 instances of 16: a client that
            // sends its next request while its last instance is still finishing can, for a
            // moment, want a fifth. Starved looks different: most requests refused.
            (
                busy * 100 <= outside.len() && !outside.is_empty(),
                format!(
                    "outside requests to the callee: {:?}; the intruder's: {:?} (e.g. {seen:?})",
                    tally(&outside),
                    tally(&attack)
                ),
            )
        }
        Judge::SlowBodies {
            path,
            clients,
            millis,
        } => {
            let until = Instant::now() + Duration::from_millis(millis);
            let holder = {
                let http = target.http.clone();
                tokio::spawn(async move { slow_bodies(&http, path, clients, until).await })
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            let answers = hammer(target, path, 2, until).await;
            let opened = holder.await.unwrap_or(0);
            let busy = answers.iter().filter(|(s, _)| *s == 503).count();
            (
                busy == 0 && opened == clients && !answers.is_empty(),
                format!(
                    "{opened} unfinished bodies held; other clients' requests: {:?}",
                    tally(&answers)
                ),
            )
        }
        Judge::EventLag { slow } => match event_lag(target, slow).await {
            Ok(r) => r,
            Err(e) => (false, e),
        },
        Judge::Flood(path, n) => {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let target = target.clone();
                tasks.push(tokio::spawn(
                    async move { target.send("GET", path, None).await },
                ));
            }
            let (mut busy, mut other503, mut wrong) = (0, 0, 0);
            for t in tasks {
                match t.await {
                    Ok((503, text)) if text.contains("\"busy\"") => busy += 1,
                    Ok((503, _)) => other503 += 1,
                    _ => wrong += 1,
                }
            }
            (
                wrong == 0 && busy > 0,
                format!("{busy} refused busy, {other503} stopped at the deadline, {wrong} other"),
            )
        }
    }
}

/// Answers by status (and error code), as `{"200": n, "503 busy": n}`.
fn tally(answers: &[(u16, String)]) -> std::collections::BTreeMap<String, usize> {
    let mut t = std::collections::BTreeMap::new();
    for (status, text) in answers {
        let code = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        let key = match code {
            Some(c) => format!("{status} {c}"),
            None => status.to_string(),
        };
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

/// `clients` loops of `GET path` until `until`; every answer.
async fn hammer(target: &Target, path: &str, clients: usize, until: Instant) -> Vec<(u16, String)> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (target, path) = (target.clone(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while Instant::now() < until {
                let answer = target.send("GET", &path, None).await;
                if answer.0 == 503 && answer.1.contains("\"busy\"") {
                    // Refused at once: ask again soon, not in a tight loop.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                got.push(answer);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

/// How much a subscriber's lag may grow during an attack: five times its quiet p99, plus
/// 300 ms for the scheduling of two busy cores.
pub fn lag_bound(quiet_p99: Duration) -> Duration {
    quiet_p99 * 5 + Duration::from_millis(300)
}

/// Creates a user named `name` and, unless `wait` is false, waits until the `probe`
/// service has handled its `UserCreated`; the time from the user's creation to then.
async fn user_lag(target: &Target, name: &str, wait: bool) -> Result<Duration, String> {
    let email = format!("{name}-{}@example.com", rand::random::<u32>());
    let body = format!(r#"{{"email":"{email}","name":"{name}"}}"#);
    let (status, text) = target.send("POST", "/users", Some(&body)).await;
    if status != 201 {
        return Err(format!("creating user {name}: {status} {}", short(&text)));
    }
    let created = Instant::now();
    if !wait {
        return Ok(Duration::ZERO);
    }
    let id = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .ok_or("no id")?;
    while created.elapsed() < Duration::from_secs(30) {
        let (_, text) = target.send("GET", "/probe/received", None).await;
        if text.contains(&id) {
            return Ok(created.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(format!("user {name}'s event never reached the probe"))
}

async fn event_lag(target: &Target, slow: usize) -> Result<(bool, String), String> {
    let mut quiet = Vec::new();
    for i in 0..8 {
        quiet.push(user_lag(target, &format!("quiet-{i}"), true).await?);
    }
    let quiet = p99(quiet);
    for i in 0..slow {
        user_lag(target, &format!("slow-{i}"), false).await?;
    }
    let mut loud = Vec::new();
    for i in 0..10 {
        loud.push(user_lag(target, &format!("loud-{i}"), true).await?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loud = p99(loud);
    let bound = lag_bound(quiet);
    Ok((
        loud <= bound,
        format!(
            "probe's event lag p99 {:.1} ms quiet, {:.1} ms under attack (bound {:.1} ms)",
            quiet.as_secs_f64() * 1e3,
            loud.as_secs_f64() * 1e3,
            bound.as_secs_f64() * 1e3
        ),
    ))
}

/// Opens `clients` connections that send headers and part of a body to `POST path` and
/// stop; holds them until `until`.
async fn slow_bodies(http: &str, path: &str, clients: usize, until: Instant) -> usize {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..clients {
        let Ok(mut s) = tokio::net::TcpStream::connect(http).await else {
            continue;
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {http}\r\ncontent-type: application/json\r\ncontent-length: 1024\r\n\r\n{{\"partial\":"
        );
        if s.write_all(head.as_bytes()).await.is_ok() {
            held.push(s);
        }
    }
    let opened = held.len();
    tokio::time::sleep_until(until.into()).await;
    drop(held);
    opened
}

/// [`Judge::HostLog`].
async fn judge_host_log(target: &Target, path: &str) -> (bool, String) {
    use crate::runtime::stdio::{LOG_BURST_BYTES, LOG_BYTES_PER_SEC, NOTICE_EVERY};
    let Some(log) = target.host_log.clone() else {
        return (false, "the runner cannot read the host's log".into());
    };
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = len(&log);
    let start = Instant::now();
    let (status, text) = target.send("GET", path, None).await;
    // The guest's last line and the notice of what was dropped land after the answer.
    tokio::time::sleep(NOTICE_EVERY + Duration::from_millis(500)).await;
    let secs = start.elapsed().as_secs_f64();
    let grew = len(&log).saturating_sub(before);
    let bound = LOG_BURST_BYTES + (LOG_BYTES_PER_SEC as f64 * secs) as u64 + LOG_SLACK;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let written = v["written"].as_u64().unwrap_or(0);
    if status != 200 || written < 32 << 20 {
        return (
            false,
            format!(
                "the flood did not run: {status} {} (host log +{} KiB)",
                short(&text),
                grew >> 10
            ),
        );
    }
    (
        grew <= bound,
        format!(
            "{} MiB written in {:.0} ms; host log +{} KiB of at most {} KiB",
            written >> 20,
            v["ms"].as_f64().unwrap_or(0.0),
            grew >> 10,
            bound >> 10
        ),
    )
}

/// [`Judge::HostMemory`].
async fn judge_host_memory(
    target: &Target,
    path: &str,
    max_mib: u64,
    code: &str,
    says: &str,
) -> (bool, String) {
    let Some(pid) = target.host_pid else {
        return (false, "the runner does not know the host's process".into());
    };
    let before = match resident_bytes(pid) {
        Ok(b) => b,
        Err(e) => return (false, e),
    };
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(before)),
    );
    let poller = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(b) = resident_bytes(pid) {
                    peak.fetch_max(b, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let t = Instant::now();
    let (status, text) = target.send("GET", path, None).await;
    stop.store(true, Ordering::Relaxed);
    let _ = poller.await;
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    let error = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    let got = error["error"]["code"].as_str().unwrap_or_default();
    let message = error["error"]["message"].as_str().unwrap_or(&text);
    (
        status == 503 && got == code && message.contains(says) && grew <= max_mib << 20,
        format!(
            "{status} {got} after {} ms: {}; host memory +{:.1} MiB of at most {max_mib} MiB",
            t.elapsed().as_millis(),
            short(message),
            grew as f64 / f64::from(1 << 20)
        ),
    )
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

/// The catalogue's table, as the demo prints it.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<18} {:<58} {:<6} {}\n",
        "ATTACK", "EXPECTED", "RESULT", "OBSERVED (victim p99 / bound)"
    ));
    for o in outcomes {
        out.push_str(&format!(
            "{:<18} {:<58} {:<6} {} (victim {}: {:.1} ms / {:.1} ms)\n",
            o.attack,
            o.expected,
            if o.pass() { "PASS" } else { "FAIL" },
            o.observed,
            if o.victim_correct { "correct" } else { "WRONG" },
            o.victim_p99.as_secs_f64() * 1e3,
            o.bound.as_secs_f64() * 1e3,
        ));
    }
    let failed = outcomes.iter().filter(|o| !o.pass()).count();
    out.push_str(&format!(
        "\n{} passed, {} failed\n",
        outcomes.len() - failed,
        failed
    ));
    out
}
