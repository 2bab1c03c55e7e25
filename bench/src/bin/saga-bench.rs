//! saga-bench: what silo's sagas cost, end to end, against the same SQLite writes done
//! natively.
//!
//! The demo's services (users, products, orders, payments, reference, as in `silo.toml`)
//! run in the real host (`silo run`, one fresh host per point). Orders are placed with
//! `POST /orders {userId, productId, quantity: 1}` (202, `PENDING`); each starts the order
//! saga: products `reserve` (undone by `release`), then payments `charge` (undone by
//! `refund`), then the orders service's `saga-handler` settles the order (`APPROVED` or
//! `REJECTED`).
//!
//! 1. **Throughput**, one host per scenario: `--users` users (each with a payments account)
//!    and `--products` products (price 10.00) are seeded, then `--clients` clients place
//!    `--sagas` orders as fast as they are answered, user and product taken in turn. The
//!    clock runs from the first POST until `/admin/sagas` counts every saga ended
//!    (completed + compensated + failed) and none the orchestrator has not handled yet
//!    (its `open` count). Scenarios: `approved` (stock and money for every
//!    order), `stock` (each product has stock for half of its orders: the rest are refused
//!    at `reserve`, the first step, so nothing is undone), `funds` (each account has money
//!    for half of its user's orders: the rest are refused at `charge`, and `release` gives
//!    the stock back). The outcome is checked through the API: every order settled as
//!    expected, stock and balances down by exactly the approved orders.
//! 2. **Fixed rate**: a fresh host (`approved` seeding); orders placed at each of `--rates`
//!    per second for `--seconds`, paced every millisecond; then the host's own saga latency
//!    (orchestrator's commit to end handled, over its last 4096 sagas) once all ended.
//! 3. **Native baseline**: the same rows in three SQLite files (orders, products, payments;
//!    WAL, `synchronous=NORMAL`) with rusqlite in one loop: per saga, insert the order and
//!    the saga rows; reserve (inbox check, stock, reservation, command recorded); record the
//!    step; charge (inbox check, balance, charge, command recorded); record the step; settle
//!    the order and end the saga; with the refusals and the `release` of the scenarios.
//!
//! Prints a Markdown section on stdout; progress goes to stderr. Every host it starts runs
//! on 127.0.0.1 with ports the kernel picks, in a temporary folder, and is stopped when the
//! run ends, fails or is interrupted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use clap::Parser;
use hyper::{Method, StatusCode};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::{Value as Json, json};
use silo_bench::{
    HostStart, HttpClient, SiloHost, WorkDir, cores, cpu_split, cpu_split_text, driver_main,
    get_json, http_client, machine_busy_seconds, now_ms, open_sqlite, own_cpu_seconds,
    percentile_index, percentiles_ms, random_hex, send,
};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// How often `/admin/sagas` is polled while waiting for the sagas to end.
const POLL: Duration = Duration::from_millis(50);
/// The host's saga latency window (host/src/sagas/engine.rs, `Shared::ended`).
const LATENCY_WINDOW: u64 = 4096;
/// Every product's price, cents (one unit per order, so every order costs this).
const PRICE: i64 = 1000;
/// Orders placed one at a time (warm-up user and product) before a clock starts.
const WARMUP_ORDERS: u64 = 16;
/// Most order requests in flight at once in the fixed-rate runs.
const MAX_IN_FLIGHT: usize = 256;
/// Seeding requests in flight at once.
const SEED_PARALLEL: usize = 8;
/// The demo's services, as in `silo.toml`.
const COMPONENTS: [&str; 5] = ["users", "products", "orders", "payments", "reference"];

#[derive(Debug, Parser)]
#[command(
    name = "saga-bench",
    about = "Order sagas through silo (throughput and latency), against native rusqlite"
)]
struct Cli {
    /// The silo binary.
    #[arg(long, env = "BENCH_SILO", default_value = "target/release/silo")]
    silo: PathBuf,
    /// Folder of the demo's components (users.wasm, products.wasm, orders.wasm, …).
    #[arg(
        long,
        env = "BENCH_COMPONENTS",
        default_value = "components/target/wasm32-wasip2/release"
    )]
    components: PathBuf,
    /// Sagas (orders) of each throughput point, and of each native run.
    #[arg(long, env = "BENCH_SAGAS", default_value_t = 3000)]
    sagas: u64,
    /// Concurrent clients placing orders at the throughput points.
    #[arg(long, env = "BENCH_SAGA_CLIENTS", default_value_t = 16)]
    clients: usize,
    /// Users seeded, each with a payments account; orders take them in turn.
    #[arg(long, env = "BENCH_SAGA_USERS", default_value_t = 100)]
    users: u64,
    /// Products seeded; orders take them in turn.
    #[arg(long, env = "BENCH_SAGA_PRODUCTS", default_value_t = 4)]
    products: u64,
    /// Throughput scenarios: `approved`, `stock` (half refused at reserve), `funds` (half
    /// refused at charge, stock released), comma- or space-separated.
    #[arg(
        long,
        env = "BENCH_SAGA_SCENARIOS",
        default_value = "approved,stock,funds"
    )]
    scenarios: String,
    /// Fixed order rates of the latency runs, orders per second (comma- or space-separated;
    /// `none` for none).
    #[arg(long, env = "BENCH_SAGA_RATE", default_value = "100")]
    rates: String,
    /// Length of each fixed-rate run, seconds.
    #[arg(long, env = "BENCH_SAGA_SECONDS", default_value_t = 10)]
    seconds: u64,
    /// Longest wait for the sagas to end (after the last order) or a host start, seconds.
    #[arg(long, env = "BENCH_SAGA_TIMEOUT", default_value_t = 180)]
    timeout: u64,
    /// Folder for the hosts' logs (default: the temporary folder, removed at the end).
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    driver_main("saga-bench", run(&cli))
}

macro_rules! say {
    ($($arg:tt)*) => { eprintln!("saga-bench: {}", format_args!($($arg)*)) };
}

/// What every point shares.
struct Setup {
    silo: PathBuf,
    components: PathBuf,
    work: PathBuf,
    log_dir: PathBuf,
    token: String,
    client: HttpClient,
    users: u64,
    products: u64,
    clients: usize,
    timeout: Duration,
}

async fn run(cli: &Cli) -> anyhow::Result<String> {
    ensure!(cli.sagas >= 2, "--sagas must be at least 2");
    ensure!(cli.clients >= 1, "--clients must be at least 1");
    ensure!(cli.users >= 1, "--users must be at least 1");
    ensure!(cli.products >= 1, "--products must be at least 1");
    ensure!(cli.seconds >= 1, "--seconds must be at least 1");
    let scenarios = Scenario::parse_list(&cli.scenarios)?;
    let rates = parse_rates(&cli.rates)?;
    ensure!(
        cli.silo.is_file(),
        "{} is missing: run `make build` (or `cargo build --release -p silo`) first",
        cli.silo.display()
    );
    for c in COMPONENTS {
        let f = cli.components.join(format!("{c}.wasm"));
        ensure!(
            f.is_file(),
            "{} is missing: run `make components` first",
            f.display()
        );
    }
    let silo = std::fs::canonicalize(&cli.silo)?;
    let components = std::fs::canonicalize(&cli.components)?;

    let work = WorkDir::create("silo-saga-bench")?;
    let log_dir = match &cli.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            std::fs::canonicalize(d)?
        }
        None => work.0.clone(),
    };
    let setup = Setup {
        silo,
        components,
        work: work.0.clone(),
        log_dir,
        token: random_hex(32),
        client: http_client(),
        users: cli.users,
        products: cli.products,
        clients: cli.clients,
        timeout: Duration::from_secs(cli.timeout),
    };

    // Native first: no host running.
    let mut natives = Vec::new();
    for &scenario in &scenarios {
        say!("native-{}: {} sagas", scenario.name(), cli.sagas);
        natives.push(native(&setup, scenario, cli.sagas).await?);
    }
    let mut points = Vec::new();
    for &scenario in &scenarios {
        points.push(throughput(&setup, scenario, cli.sagas).await?);
    }
    let mut fixed = Vec::new();
    for rate in rates {
        fixed.push(fixed_rate(&setup, rate, cli.seconds).await?);
    }
    Ok(report(cli, &points, &natives, &fixed))
}

fn parse_rates(s: &str) -> anyhow::Result<Vec<u64>> {
    if s.trim() == "none" {
        return Ok(Vec::new());
    }
    s.split([',', ' '])
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<u64>().ok().filter(|r| *r > 0).ok_or_else(|| {
                anyhow!("--rates: `{r}` is not a positive number of orders per second")
            })
        })
        .collect()
}

// ---------------------------------------------------------------- scenarios

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Stock and money for every order.
    Approved,
    /// Each product has stock for half of its orders.
    ScarceStock,
    /// Each account has money for half of its user's orders.
    ScarceFunds,
}

impl Scenario {
    fn parse_list(s: &str) -> anyhow::Result<Vec<Scenario>> {
        let mut out = Vec::new();
        for name in s.split([',', ' ']).filter(|n| !n.is_empty()) {
            let scenario = match name {
                "approved" => Scenario::Approved,
                "stock" => Scenario::ScarceStock,
                "funds" => Scenario::ScarceFunds,
                other => bail!("--scenarios: `{other}` is not one of approved, stock, funds"),
            };
            if !out.contains(&scenario) {
                out.push(scenario);
            }
        }
        Ok(out)
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Approved => "approved",
            Scenario::ScarceStock => "stock",
            Scenario::ScarceFunds => "funds",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::Approved => "stock and money for every order: all approved",
            Scenario::ScarceStock => {
                "stock for half: the rest refused at `reserve` (step 1, nothing to undo)"
            }
            Scenario::ScarceFunds => {
                "money for half: the rest refused at `charge` (step 2), `release` undoes step 1"
            }
        }
    }
}

/// The seeding of one point: order `i` is placed by user `i % users` for product
/// `i % products`, one unit at [`PRICE`].
#[derive(Debug, Clone)]
struct Plan {
    orders: u64,
    /// Per product: its stock.
    stock: Vec<i64>,
    /// Per user: the account's balance, cents.
    balance: Vec<i64>,
    /// Orders that will be approved (the rest are rejected).
    approved: u64,
}

impl Plan {
    fn new(scenario: Scenario, orders: u64, users: u64, products: u64) -> Plan {
        let share = |n: u64, k: u64| orders / n + u64::from(k < orders % n);
        let wanted_p: Vec<u64> = (0..products).map(|p| share(products, p)).collect();
        let wanted_u: Vec<u64> = (0..users).map(|u| share(users, u)).collect();
        let (stock, balance): (Vec<u64>, Vec<u64>) = match scenario {
            Scenario::Approved => (wanted_p.clone(), wanted_u.clone()),
            Scenario::ScarceStock => (wanted_p.iter().map(|n| n / 2).collect(), wanted_u.clone()),
            Scenario::ScarceFunds => (wanted_p.clone(), wanted_u.iter().map(|n| n / 2).collect()),
        };
        let approved = match scenario {
            Scenario::Approved => orders,
            Scenario::ScarceStock => stock.iter().sum(),
            Scenario::ScarceFunds => balance.iter().sum(),
        };
        Plan {
            orders,
            stock: stock.into_iter().map(|n| n as i64).collect(),
            balance: balance.into_iter().map(|n| n as i64 * PRICE).collect(),
            approved,
        }
    }

    fn rejected(&self) -> u64 {
        self.orders - self.approved
    }
}

// ---------------------------------------------------------------- the host

/// A running `silo run` serving the demo (stopped when dropped).
struct Host {
    inner: SiloHost,
    /// The orders service's store, where its saga log is.
    orders_db: PathBuf,
}

impl Deref for Host {
    type Target = SiloHost;
    fn deref(&self) -> &SiloHost {
        &self.inner
    }
}

impl DerefMut for Host {
    fn deref_mut(&mut self) -> &mut SiloHost {
        &mut self.inner
    }
}

/// The orders orchestrator's figures, as `/admin/sagas` shows them.
#[derive(Debug, Clone, Default)]
struct SagaStats {
    states: BTreeMap<String, u64>,
    /// Sagas with work left, their end not yet handled by the orchestrator.
    open: u64,
    retries: u64,
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
    /// Per participant: redelivered commands answered from its inbox.
    duplicates: BTreeMap<String, u64>,
    /// The newest failed saga, if there is one.
    failed_example: Option<Json>,
}

impl SagaStats {
    fn state(&self, s: &str) -> u64 {
        self.states.get(s).copied().unwrap_or(0)
    }

    /// Completed, compensated or failed.
    fn ended(&self) -> u64 {
        self.state("completed") + self.state("compensated") + self.state("failed")
    }

    fn duplicates(&self) -> u64 {
        self.duplicates.values().sum()
    }
}

/// Every subscription's figures, as `/admin/events` shows them, summed.
#[derive(Debug, Clone, Default)]
struct EventTotals {
    pending: u64,
    delivered: u64,
    retries: u64,
    dead: u64,
    /// Per subscription: delivered.
    by_subscription: BTreeMap<String, u64>,
}

impl Host {
    /// Starts a host serving the demo on a fresh data folder `WORK/NAME` and waits until
    /// `/admin/sagas` lists the orders orchestrator.
    async fn start(setup: &Setup, name: &str) -> anyhow::Result<Host> {
        let dir = setup.work.join(name);
        std::fs::create_dir_all(&dir)?;
        let manifest = dir.join("silo.toml");
        let c = |n: &str| {
            setup
                .components
                .join(format!("{n}.wasm"))
                .display()
                .to_string()
        };
        // The service entries of the repository's silo.toml, with absolute paths.
        std::fs::write(
            &manifest,
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

[services.orders]
component = "{orders}"
route = "/orders"
calls = ["users", "products", "reference"]
publishes = ["OrderApproved", "OrderRejected"]
saga-participants = ["products", "payments"]
subscribes = [
  {{ source = "users", topic = "UserCreated" }},
  {{ source = "users", topic = "UserUpdated" }},
  {{ source = "products", topic = "ProductCreated" }},
  {{ source = "products", topic = "ProductUpdated" }},
]
[services.orders.stores.main]
[services.orders.limits]
deadline-ms = 5000

[services.payments]
component = "{payments}"
route = "/payments"
[services.payments.stores.main]

[services.reference]
component = "{reference}"
route = "/reference"
[services.reference.stores.main]
"#,
                users = c("users"),
                products = c("products"),
                orders = c("orders"),
                payments = c("payments"),
                reference = c("reference"),
            ),
        )?;
        let data = dir.join("data");
        let deadline = Instant::now() + setup.timeout;
        let mut host = Host {
            inner: SiloHost::start(&HostStart {
                prog: "saga-bench",
                name,
                silo: &setup.silo,
                manifest: &manifest,
                data: &data,
                // One code cache for every host of the run: only the first compiles.
                cache: &setup.work.join("cache"),
                log: &setup.log_dir.join(format!("sagas-{name}.log")),
                token: &setup.token,
                timeout: setup.timeout,
            })
            .await?,
            orders_db: data.join("stores").join("orders").join("main.db"),
        };
        loop {
            host.check_alive()?;
            let ready = match host.sagas(setup).await {
                Ok(s) if s.is_some() => Ok(()),
                Ok(_) => Err(anyhow!("/admin/sagas lists no `orders` orchestrator")),
                Err(e) => Err(e),
            };
            match ready {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(host.died("never listed the orders orchestrator")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        say!(
            "{name}: host serving on {} (admin {})",
            host.base,
            host.admin
        );
        Ok(host)
    }

    /// The orders orchestrator's figures from `/admin/sagas?state=failed&limit=1` (the one
    /// saga it lists, if any, is the newest failed one); `None` if it is not listed.
    async fn sagas(&self, setup: &Setup) -> anyhow::Result<Option<SagaStats>> {
        let url = format!("{}/admin/sagas?state=failed&limit=1", self.admin);
        let v = get_json(&setup.client, &url, Some(&setup.token)).await?;
        let Some(o) = v["orchestrators"]
            .as_array()
            .and_then(|all| all.iter().find(|o| o["service"] == "orders"))
        else {
            return Ok(None);
        };
        let counts = |v: &Json| -> BTreeMap<String, u64> {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Some(SagaStats {
            states: counts(&o["states"]),
            open: o["open"].as_u64().unwrap_or(u64::MAX),
            retries: o["retries"].as_u64().unwrap_or(0),
            p50_ms: o["latencyP50Ms"].as_u64(),
            p99_ms: o["latencyP99Ms"].as_u64(),
            duplicates: counts(&v["commandDuplicates"]),
            failed_example: v["sagas"].as_array().and_then(|s| s.first()).cloned(),
        }))
    }

    /// [`Host::sagas`], failing if the orchestrator is not listed.
    async fn saga_stats(&self, setup: &Setup) -> anyhow::Result<SagaStats> {
        self.sagas(setup)
            .await?
            .ok_or_else(|| anyhow!("/admin/sagas no longer lists the orders orchestrator"))
    }

    /// Every subscription's figures from `/admin/events`, summed.
    async fn events(&self, setup: &Setup) -> anyhow::Result<EventTotals> {
        let url = format!("{}/admin/events", self.admin);
        let v = get_json(&setup.client, &url, Some(&setup.token)).await?;
        let mut t = EventTotals::default();
        for s in v["subscriptions"].as_array().into_iter().flatten() {
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            t.pending += n("pending");
            t.delivered += n("delivered");
            t.retries += n("retries");
            t.dead += n("deadLetters");
            t.by_subscription.insert(
                s["subscription"].as_str().unwrap_or("?").to_string(),
                n("delivered"),
            );
        }
        Ok(t)
    }

    /// Waits until no event is pending anywhere; fails on a dead letter or at the timeout.
    async fn events_drained(&mut self, setup: &Setup, label: &str) -> anyhow::Result<EventTotals> {
        let deadline = Instant::now() + setup.timeout;
        let mut said = Instant::now();
        loop {
            self.check_alive()?;
            let t = self.events(setup).await?;
            ensure!(
                t.dead == 0,
                "{}",
                self.died(&format!("moved {} events to the dead letters", t.dead))
            );
            if t.pending == 0 {
                return Ok(t);
            }
            ensure!(
                Instant::now() < deadline,
                "{label}: events not delivered within {:?}: {} pending",
                setup.timeout,
                t.pending
            );
            if said.elapsed() >= Duration::from_secs(2) {
                say!("{label}: {} events pending", t.pending);
                said = Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A read-only connection to the orders service's store (its saga log).
    fn saga_log(&self) -> anyhow::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.orders_db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", self.orders_db.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Start to handled end (`updated_ms - created_ms`, what the host's latency measures)
    /// of every handled saga started at or after `since_ms`, sorted.
    fn log_latencies(&self, since_ms: i64) -> anyhow::Result<Vec<i64>> {
        let conn = self.saga_log()?;
        let mut stmt = conn.prepare(
            "SELECT updated_ms - created_ms FROM _silo_sagas WHERE handled = 1 AND created_ms >= ?",
        )?;
        let mut v = stmt
            .query_map([since_ms], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        v.sort_unstable();
        Ok(v)
    }
}

/// CPU counters at one instant: the host's (and by thread), this driver's, the machine's.
struct CpuMark {
    host: f64,
    threads: BTreeMap<String, f64>,
    own: f64,
    machine: f64,
}

/// CPU seconds used between a [`CpuMark`] and now.
#[derive(Debug, Clone, Default)]
struct CpuUse {
    host: f64,
    /// The host's, by thread group.
    split: Vec<(String, f64)>,
    /// This driver (clients, polling, checks).
    driver: f64,
    /// Every other process of the machine.
    others: f64,
}

impl CpuMark {
    fn now(host: &Host) -> CpuMark {
        CpuMark {
            host: host.cpu_seconds(),
            threads: host.thread_cpu(),
            own: own_cpu_seconds(),
            machine: machine_busy_seconds(),
        }
    }

    fn used(&self, host: &Host) -> CpuUse {
        let now = CpuMark::now(host);
        let (h, d) = (now.host - self.host, now.own - self.own);
        CpuUse {
            host: h,
            split: cpu_split(&self.threads, &now.threads),
            driver: d,
            others: (now.machine - self.machine - h - d).max(0.0),
        }
    }
}

impl CpuUse {
    /// Share of all cores over `span`, percent.
    fn percent(seconds: f64, span: Duration) -> f64 {
        100.0 * seconds / span.as_secs_f64().max(1e-9) / cores() as f64
    }

    /// Warns when other processes took a noticeable share of the machine.
    fn warn_if_busy(&self, label: &str, span: Duration) {
        let p = CpuUse::percent(self.others, span);
        if p >= 5.0 {
            say!(
                "{label}: warning: other processes used {:.2} s of CPU ({p:.0}% of the machine) during the run: figures are low and noisy",
                self.others
            );
        }
    }

    fn text(&self, span: Duration) -> String {
        format!(
            "host CPU {:.2} s ({:.0}% of {} cores; by thread: {}), the driver {:.2} s, other processes {:.2} s ({:.0}%)",
            self.host,
            CpuUse::percent(self.host, span),
            cores(),
            cpu_split_text(&self.split),
            self.driver,
            self.others,
            CpuUse::percent(self.others, span)
        )
    }
}

// ---------------------------------------------------------------- seeding and orders

/// The seeded ids.
struct World {
    users: Vec<String>,
    products: Vec<String>,
    warm_user: String,
    warm_product: String,
    plan: Plan,
}

impl World {
    /// The body of order `i`.
    fn order(&self, i: u64) -> String {
        json!({
            "userId": self.users[(i % self.users.len() as u64) as usize],
            "productId": self.products[(i % self.products.len() as u64) as usize],
            "quantity": 1,
        })
        .to_string()
    }
}

/// `POST url` with a JSON body; the answer as JSON, failing unless `expect`.
async fn post(
    client: &HttpClient,
    url: &str,
    body: String,
    expect: StatusCode,
) -> anyhow::Result<Json> {
    let (status, answer) = send(client, Method::POST, url, Some(body)).await?;
    ensure!(
        status == expect,
        "POST {url} answered {status} (expected {expect}): {}",
        String::from_utf8_lossy(&answer)
    );
    serde_json::from_slice(&answer).with_context(|| format!("POST {url}: not JSON"))
}

/// The `id` of a created thing.
fn id_of(v: &Json, what: &str) -> anyhow::Result<String> {
    v["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| anyhow!("the new {what} has no id: {v}"))
}

/// Runs `f(0..count)` with at most `parallel` at once; the results in order.
async fn in_parallel<T, F, Fut>(parallel: usize, count: usize, f: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (next, f) = (next.clone(), f.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= count {
                    return anyhow::Ok(out);
                }
                out.push((i, f(i).await?));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a task panicked")??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Seeds users, accounts and products for `plan` (and the warm-up user and product), then
/// waits until their events reached orders.
async fn seed(host: &mut Host, setup: &Setup, plan: Plan, label: &str) -> anyhow::Result<World> {
    let (client, base) = (setup.client.clone(), host.base.clone());
    let user = move |email: String, name: String, balance: i64| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let u = post(
                &client,
                &format!("{base}/users"),
                json!({ "email": email, "name": name }).to_string(),
                StatusCode::CREATED,
            )
            .await?;
            let id = id_of(&u, "user")?;
            post(
                &client,
                &format!("{base}/payments/accounts"),
                json!({ "userId": id, "balance": balance }).to_string(),
                StatusCode::CREATED,
            )
            .await?;
            anyhow::Ok(id)
        }
    };
    let (client, base) = (setup.client.clone(), host.base.clone());
    let product = move |name: String, stock: i64| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let p = post(
                &client,
                &format!("{base}/products"),
                json!({ "name": name, "price": PRICE, "stock": stock }).to_string(),
                StatusCode::CREATED,
            )
            .await?;
            id_of(&p, "product")
        }
    };
    say!(
        "{label}: seeding {} users with accounts and {} products",
        setup.users,
        setup.products
    );
    let tag = random_hex(4);
    let balances = plan.balance.clone();
    let users = in_parallel(SEED_PARALLEL, balances.len(), {
        let (user, tag) = (user.clone(), tag.clone());
        move |i| {
            user(
                format!("bench-{tag}-{i}@example.com"),
                format!("Bench User {i}"),
                balances[i],
            )
        }
    })
    .await?;
    let stock = plan.stock.clone();
    let products = in_parallel(SEED_PARALLEL, stock.len(), {
        let product = product.clone();
        move |i| product(format!("Bench Product {i}"), stock[i])
    })
    .await?;
    let warm_user = user(
        format!("bench-{tag}-warmup@example.com"),
        "Warm-up".into(),
        WARMUP_ORDERS as i64 * PRICE,
    )
    .await?;
    let warm_product = product("Warm-up".into(), WARMUP_ORDERS as i64).await?;
    host.events_drained(setup, label).await?;
    Ok(World {
        users,
        products,
        warm_user,
        warm_product,
        plan,
    })
}

/// `POST /orders` of `body`; fails unless 202 with a `PENDING` order.
async fn place(client: &HttpClient, url: &str, body: String) -> anyhow::Result<()> {
    let order = post(client, url, body, StatusCode::ACCEPTED).await?;
    ensure!(
        order["status"] == "PENDING",
        "POST {url}: the new order is not PENDING: {order}"
    );
    Ok(())
}

/// Places the warm-up orders one at a time and waits until their sagas are handled;
/// returns the orchestrator's figures then.
async fn warm_up(
    host: &mut Host,
    setup: &Setup,
    world: &World,
    label: &str,
) -> anyhow::Result<SagaStats> {
    let url = format!("{}/orders", host.base);
    let body = json!({ "userId": world.warm_user, "productId": world.warm_product, "quantity": 1 })
        .to_string();
    for _ in 0..WARMUP_ORDERS {
        place(&setup.client, &url, body.clone()).await?;
    }
    let base = SagaStats::default();
    let (_, _, stats, _) = until_done(
        host,
        setup,
        &base,
        WARMUP_ORDERS,
        &mut JoinSet::new(),
        Instant::now(),
        label,
    )
    .await?;
    ensure!(
        stats.state("completed") == WARMUP_ORDERS,
        "{label}: the warm-up orders did not all complete: {:?}",
        stats.states
    );
    host.events_drained(setup, label).await?;
    Ok(stats)
}

/// What one client (or one request) hands back: request latencies and its last answer.
type ClientOut = (Vec<Duration>, Instant);

/// Polls `/admin/sagas` until `clients` are all done, `target` more sagas than in `base`
/// ended, and the log holds no unhandled saga. Returns when the sagas were first seen
/// ended and when all were seen handled, the figures then, and the clients' output.
async fn until_done(
    host: &mut Host,
    setup: &Setup,
    base: &SagaStats,
    target: u64,
    clients: &mut JoinSet<anyhow::Result<ClientOut>>,
    started: Instant,
    label: &str,
) -> anyhow::Result<(Instant, Instant, SagaStats, ClientOut)> {
    let mut latencies = Vec::new();
    let mut last_answer = started;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut said = Instant::now();
    let mut deadline = Instant::now() + setup.timeout;
    let mut ended_at = None;
    loop {
        tokio::select! {
            Some(joined) = clients.join_next() => {
                let (l, at) = joined.context("a client panicked")??;
                latencies.extend(l);
                last_answer = last_answer.max(at);
                if clients.is_empty() {
                    deadline = Instant::now() + setup.timeout;
                }
            }
            _ = tick.tick() => {
                host.check_alive()?;
                let s = host.saga_stats(setup).await?;
                if s.state("failed") > base.state("failed") {
                    bail!(
                        "{}",
                        host.died(&format!(
                            "FAILED {} sagas (compensation gave up); the newest: {}",
                            s.state("failed") - base.state("failed"),
                            s.failed_example.as_ref().map_or("–".into(), Json::to_string)
                        ))
                    );
                }
                let ended = s.ended().saturating_sub(base.ended());
                if clients.is_empty() && ended >= target {
                    let now = Instant::now();
                    let first = *ended_at.get_or_insert(now);
                    if s.open == 0 {
                        return Ok((first, now, s, (latencies, last_answer)));
                    }
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{label}: sagas not done within {:?}: {ended} of {target} ended ({:?}), {} unhandled",
                        setup.timeout,
                        s.states,
                        s.open
                    );
                }
                if said.elapsed() >= Duration::from_secs(2) {
                    say!(
                        "{label}: {ended} of {target} sagas ended, {} running, {} compensating",
                        s.state("running"),
                        s.state("compensating")
                    );
                    said = Instant::now();
                }
            }
        }
    }
}

/// Checks through the API that the orders settled as `world.plan` says, and that stock
/// and balances went down by exactly the approved orders.
async fn verify(host: &Host, setup: &Setup, world: &World, label: &str) -> anyhow::Result<()> {
    let (client, base) = (setup.client.clone(), host.base.clone());
    let users = world.users.clone();
    let per_user = in_parallel(SEED_PARALLEL, users.len(), move |i| {
        let (client, base, user) = (client.clone(), base.clone(), users[i].clone());
        async move {
            let orders = get_json(&client, &format!("{base}/orders?userId={user}"), None).await?;
            let account =
                get_json(&client, &format!("{base}/payments/accounts/{user}"), None).await?;
            let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
            for o in orders.as_array().into_iter().flatten() {
                *statuses
                    .entry(o["status"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
            anyhow::Ok((statuses, account["balance"].as_i64().unwrap_or(-1)))
        }
    })
    .await?;
    let (client, base) = (setup.client.clone(), host.base.clone());
    let products = world.products.clone();
    let stock = in_parallel(SEED_PARALLEL, products.len(), move |i| {
        let (client, base, product) = (client.clone(), base.clone(), products[i].clone());
        async move {
            let p = get_json(&client, &format!("{base}/products/{product}"), None).await?;
            anyhow::Ok(p["stock"].as_i64().unwrap_or(-1))
        }
    })
    .await?;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for (s, _) in &per_user {
        for (k, n) in s {
            *statuses.entry(k.clone()).or_default() += n;
        }
    }
    let plan = &world.plan;
    let count = |k: &str| statuses.get(k).copied().unwrap_or(0);
    ensure!(
        count("APPROVED") == plan.approved
            && count("REJECTED") == plan.rejected()
            && statuses.len() <= 2,
        "{label}: orders settled as {statuses:?}, expected {} APPROVED and {} REJECTED",
        plan.approved,
        plan.rejected()
    );
    let spent: i64 = plan
        .balance
        .iter()
        .zip(&per_user)
        .map(|(b, (_, now))| b - now)
        .sum();
    let taken: i64 = plan.stock.iter().zip(&stock).map(|(s, now)| s - now).sum();
    ensure!(
        spent == plan.approved as i64 * PRICE && taken == plan.approved as i64,
        "{label}: balances went down by {spent} cents and stock by {taken}; {} approved orders at {PRICE} cents should take {} and {}",
        plan.approved,
        plan.approved as i64 * PRICE,
        plan.approved
    );
    say!(
        "{label}: checked: {} APPROVED, {} REJECTED; stock and balances match",
        plan.approved,
        plan.rejected()
    );
    Ok(())
}

// ---------------------------------------------------------------- throughput

struct Throughput {
    scenario: Scenario,
    plan: Plan,
    /// First POST to every saga ended and handled.
    elapsed: Duration,
    /// First POST to every saga ended (as `/admin/sagas` counts).
    ended_elapsed: Duration,
    /// First POST to the last POST's answer.
    post_elapsed: Duration,
    /// POST /orders latency, p50 and p99, ms.
    request_ms: (f64, f64),
    cpu: CpuUse,
    /// The figures at the end, less the warm-up's retries and duplicates.
    stats: SagaStats,
    retries: u64,
    duplicates: u64,
    /// From the saga log: latencies of the measured sagas, ms (sorted).
    log_ms: Vec<i64>,
    /// Events delivered during the run, by subscription, and still pending at its end.
    events: BTreeMap<String, u64>,
    events_pending: u64,
    /// From the end until no event was pending, and the host CPU meanwhile.
    events_drain: Duration,
    events_drain_cpu: f64,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.plan.orders as f64 / self.elapsed.as_secs_f64()
    }
}

async fn throughput(setup: &Setup, scenario: Scenario, sagas: u64) -> anyhow::Result<Throughput> {
    let name = format!("tput-{}", scenario.name());
    let mut host = Host::start(setup, &name).await?;
    let plan = Plan::new(scenario, sagas, setup.users, setup.products);
    let world = Arc::new(seed(&mut host, setup, plan.clone(), &name).await?);
    let warm = warm_up(&mut host, setup, &world, &name).await?;
    let events_before = host.events(setup).await?;

    say!(
        "{name}: placing {sagas} orders from {} clients ({})",
        setup.clients,
        scenario.describe()
    );
    let url = format!("{}/orders", host.base);
    let next = Arc::new(AtomicU64::new(0));
    let mark = CpuMark::now(&host);
    let since_ms = now_ms();
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..setup.clients {
        let (client, url, next, world) = (
            setup.client.clone(),
            url.clone(),
            next.clone(),
            world.clone(),
        );
        clients.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= sagas {
                    return anyhow::Ok((latencies, Instant::now()));
                }
                let t = Instant::now();
                place(&client, &url, world.order(i)).await?;
                latencies.push(t.elapsed());
            }
        });
    }
    let (ended, done, stats, (mut latencies, last_answer)) =
        until_done(&mut host, setup, &warm, sagas, &mut clients, started, &name).await?;
    let cpu = mark.used(&host);
    cpu.warn_if_busy(&name, done - started);
    let log_ms = host.log_latencies(since_ms)?;
    ensure!(
        log_ms.len() as u64 == sagas,
        "{name}: the saga log holds {} handled sagas started during the run, expected {sagas}",
        log_ms.len()
    );
    let events_end = host.events(setup).await?;
    let cpu_end = host.cpu_seconds();
    let drained = host.events_drained(setup, &name).await?;
    let events_drain = done.elapsed();
    let events_drain_cpu = host.cpu_seconds() - cpu_end;
    let events = drained
        .by_subscription
        .iter()
        .map(|(k, n)| {
            (
                k.clone(),
                n - events_before.by_subscription.get(k).copied().unwrap_or(0),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    verify(&host, setup, &world, &name).await?;
    ensure!(
        stats.state("completed") - warm.state("completed") == plan.approved
            && stats.state("compensated") - warm.state("compensated") == plan.rejected(),
        "{name}: sagas ended as {:?} (after {WARMUP_ORDERS} warm-up sagas), expected {} completed and {} compensated",
        stats.states,
        plan.approved,
        plan.rejected()
    );
    let result = Throughput {
        scenario,
        retries: stats.retries - warm.retries,
        duplicates: stats.duplicates() - warm.duplicates(),
        plan,
        elapsed: done - started,
        ended_elapsed: ended - started,
        post_elapsed: last_answer - started,
        request_ms: percentiles_ms(&mut latencies),
        cpu,
        stats,
        log_ms,
        events,
        events_pending: events_end.pending,
        events_drain,
        events_drain_cpu,
    };
    say!(
        "{name}: {:.0} sagas/s ({sagas} in {:.2} s; placing took {:.2} s), saga p50 {} ms, p99 {} ms (host's figures), host CPU {:.2} s ({})",
        result.per_second(),
        result.elapsed.as_secs_f64(),
        result.post_elapsed.as_secs_f64(),
        opt(result.stats.p50_ms),
        opt(result.stats.p99_ms),
        result.cpu.host,
        cpu_split_text(&result.cpu.split)
    );
    Ok(result)
}

// ---------------------------------------------------------------- fixed rate

struct FixedRate {
    rate: u64,
    orders: u64,
    achieved: f64,
    /// Last POST answered to every saga ended and handled.
    drain: Duration,
    /// First POST to every saga handled.
    span: Duration,
    request_ms: (f64, f64),
    cpu: CpuUse,
    stats: SagaStats,
    retries: u64,
    log_ms: Vec<i64>,
}

async fn fixed_rate(setup: &Setup, rate: u64, seconds: u64) -> anyhow::Result<FixedRate> {
    let name = format!("rate-{rate}");
    let orders = rate * seconds;
    let mut host = Host::start(setup, &name).await?;
    let plan = Plan::new(Scenario::Approved, orders, setup.users, setup.products);
    let world = Arc::new(seed(&mut host, setup, plan, &name).await?);
    let warm = warm_up(&mut host, setup, &world, &name).await?;

    say!("{name}: placing {orders} orders at {rate}/s for {seconds} s");
    let url = format!("{}/orders", host.base);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut requests: JoinSet<anyhow::Result<ClientOut>> = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mark = CpuMark::now(&host);
    let since_ms = now_ms();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut latencies = Vec::with_capacity(orders as usize);
    let mut last_answer = started;
    while sent < orders {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(orders);
        while sent < due {
            let permit = slots.clone().acquire_owned().await?;
            let (client, url, body) = (setup.client.clone(), url.clone(), world.order(sent));
            requests.spawn(async move {
                let t = Instant::now();
                let r = place(&client, &url, body).await;
                drop(permit);
                r.map(|()| (vec![t.elapsed()], Instant::now()))
            });
            sent += 1;
        }
        // Collect the finished ones as we go (a failure stops the run at once).
        while let Some(joined) = requests.try_join_next() {
            let (l, at) = joined.context("an order task panicked")??;
            latencies.extend(l);
            last_answer = last_answer.max(at);
        }
        if started.elapsed() > Duration::from_secs(seconds) + setup.timeout {
            bail!("{name}: placing did not finish in time ({sent} of {orders} sent)");
        }
    }
    let sent_in = started.elapsed();
    let (_, done, stats, (l, at)) = until_done(
        &mut host,
        setup,
        &warm,
        orders,
        &mut requests,
        started,
        &name,
    )
    .await?;
    latencies.extend(l);
    last_answer = last_answer.max(at);
    let cpu = mark.used(&host);
    cpu.warn_if_busy(&name, done - started);
    let log_ms = host.log_latencies(since_ms)?;
    ensure!(
        log_ms.len() as u64 == orders,
        "{name}: the saga log holds {} handled sagas started during the run, expected {orders}",
        log_ms.len()
    );
    host.events_drained(setup, &name).await?;
    verify(&host, setup, &world, &name).await?;
    let result = FixedRate {
        rate,
        orders,
        achieved: orders as f64 / sent_in.as_secs_f64(),
        drain: done.saturating_duration_since(last_answer),
        span: done - started,
        request_ms: percentiles_ms(&mut latencies),
        cpu,
        retries: stats.retries - warm.retries,
        stats,
        log_ms,
    };
    say!(
        "{name}: placed at {:.0}/s; saga p50 {} ms, p99 {} ms (host's figures); POST p50 {:.2} ms, p99 {:.2} ms",
        result.achieved,
        opt(result.stats.p50_ms),
        opt(result.stats.p99_ms),
        result.request_ms.0,
        result.request_ms.1
    );
    Ok(result)
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

/// p50 / p99 / max of sorted `v`, ms.
fn log_text(v: &[i64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let at = |q: f64| v[percentile_index(v.len(), q)];
    format!(
        "{} / {} / {} ms",
        at(0.50),
        at(0.99),
        v.last().copied().unwrap_or(0)
    )
}

// ---------------------------------------------------------------- native baseline

/// The orders table after the orders service's migrations (components/orders/src/lib.rs)
/// and the host's saga log (host/src/sagas/log.rs, `SCHEMA`).
const ORDERS_SCHEMA: &str = "
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    amount INTEGER,
    user_name TEXT,
    user_email TEXT,
    product_name TEXT,
    status TEXT NOT NULL,
    currency TEXT NOT NULL DEFAULT 'USD',
    user_version INTEGER NOT NULL DEFAULT 0,
    product_version INTEGER NOT NULL DEFAULT 0,
    saga_id TEXT,
    status_reason TEXT
);
CREATE INDEX orders_user_id ON orders (user_id);
CREATE INDEX orders_product_id ON orders (product_id);
CREATE TABLE _silo_sagas (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    handled INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX _silo_sagas_open ON _silo_sagas (handled, state);
CREATE TABLE _silo_saga_steps (
    saga_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    service TEXT NOT NULL,
    command TEXT NOT NULL,
    payload BLOB NOT NULL,
    compensation TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    comp_attempts INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    detail TEXT,
    PRIMARY KEY (saga_id, idx)
);
";

/// A participant's command inbox (host/src/sagas/command.rs, `SCHEMA`).
const COMMANDS_SCHEMA: &str = "
CREATE TABLE _silo_commands (
    command_id TEXT PRIMARY KEY,
    saga_id TEXT NOT NULL,
    source TEXT NOT NULL,
    ok INTEGER NOT NULL,
    data BLOB,
    reason TEXT,
    received_ms INTEGER NOT NULL
);
";

/// components/products/src/lib.rs's migrations.
const PRODUCTS_SCHEMA: &str = "
CREATE TABLE products (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price INTEGER NOT NULL CHECK (price >= 0),
    stock INTEGER NOT NULL CHECK (stock >= 0),
    version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE reservations (
    order_id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    state TEXT NOT NULL CHECK (state IN ('reserved', 'released'))
);
";

/// components/payments/src/lib.rs's migration (without the test switches).
const PAYMENTS_SCHEMA: &str = "
CREATE TABLE accounts (
    user_id TEXT PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE charges (
    order_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    state TEXT NOT NULL CHECK (state IN ('charged', 'refunded')),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX charges_user_id ON charges (user_id);
";

const INSERT_ORDER: &str = "INSERT INTO orders (id, user_id, product_id, quantity, amount, currency, user_name, user_email, product_name, status, status_reason, saga_id, user_version, product_version) VALUES (?, ?, ?, ?, ?, 'USD', ?, ?, ?, 'PENDING', NULL, ?, 1, 1)";
const INSERT_SAGA: &str = "INSERT INTO _silo_sagas (id, kind, key, state, created_ms, updated_ms) VALUES (?, 'order', ?, 'running', ?, ?)";
const INSERT_STEP: &str = "INSERT INTO _silo_saga_steps (saga_id, idx, name, service, command, payload, compensation, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')";
const UPDATE_STEP: &str = "UPDATE _silo_saga_steps SET state = coalesce(?, state), attempts = coalesce(?, attempts), comp_attempts = coalesce(?, comp_attempts), result = coalesce(?, result), detail = coalesce(?, detail) WHERE saga_id = ? AND idx = ?";
const UPDATE_SAGA: &str =
    "UPDATE _silo_sagas SET state = ?, reason = coalesce(?, reason), updated_ms = ? WHERE id = ?";
const SETTLE_ORDER: &str = "UPDATE orders SET status = ?, status_reason = ? WHERE id = ? AND saga_id = ? AND status = 'PENDING'";
const MARK_HANDLED: &str = "UPDATE _silo_sagas SET handled = 1, updated_ms = ? WHERE id = ?";
const SEEN_COMMAND: &str = "SELECT ok, data, reason FROM _silo_commands WHERE command_id = ?";
const RECORD_COMMAND: &str = "INSERT INTO _silo_commands (command_id, saga_id, source, ok, data, reason, received_ms) VALUES (?, ?, 'orders', ?, ?, ?, ?)";
const HELD: &str = "SELECT product_id, quantity, state FROM reservations WHERE order_id = ?";
const TAKE_STOCK: &str =
    "UPDATE products SET stock = stock - ?, version = version + 1 WHERE id = ? AND stock >= ?";
const STOCK_OF: &str = "SELECT stock FROM products WHERE id = ?";
const RESERVE: &str =
    "INSERT INTO reservations (order_id, product_id, quantity, state) VALUES (?, ?, ?, 'reserved')";
const RELEASE: &str = "UPDATE reservations SET state = 'released' WHERE order_id = ?";
const RESTOCK: &str = "UPDATE products SET stock = stock + ?, version = version + 1 WHERE id = ?";
const FIND_CHARGE: &str = "SELECT order_id, user_id, amount, state FROM charges WHERE order_id = ?";
const DEBIT: &str = "UPDATE accounts SET balance = balance - ?, updated_at = CURRENT_TIMESTAMP WHERE user_id = ? AND balance >= ?";
const ACCOUNT_OF: &str = "SELECT 1 FROM accounts WHERE user_id = ?";
const CHARGE: &str =
    "INSERT INTO charges (order_id, user_id, amount, state) VALUES (?, ?, ?, 'charged')";

struct Native {
    scenario: Scenario,
    sagas: u64,
    per_second: f64,
    transactions: u64,
}

/// Sagas per second of the native loop over the scenario's plan.
async fn native(setup: &Setup, scenario: Scenario, sagas: u64) -> anyhow::Result<Native> {
    let dir = setup.work.join(format!("native-{}", scenario.name()));
    let plan = Plan::new(scenario, sagas, setup.users, setup.products);
    let (per_second, transactions) = tokio::task::spawn_blocking(move || native_loop(&dir, &plan))
        .await
        .context("the native loop panicked")??;
    say!("native-{}: {per_second:.0} sagas/s", scenario.name());
    Ok(Native {
        scenario,
        sagas,
        per_second,
        transactions,
    })
}

/// The three stores of the native loop.
struct NativeStores {
    orders: Connection,
    products: Connection,
    payments: Connection,
    /// Transactions committed.
    transactions: u64,
}

/// What a participant's command answered.
enum Answer {
    Success(String),
    Refused(String),
}

fn native_loop(dir: &Path, plan: &Plan) -> anyhow::Result<(f64, u64)> {
    std::fs::create_dir_all(dir)?;
    let mut db = NativeStores {
        orders: open_sqlite(&dir.join("orders.db"), ORDERS_SCHEMA)?,
        products: open_sqlite(
            &dir.join("products.db"),
            &format!("{PRODUCTS_SCHEMA}{COMMANDS_SCHEMA}"),
        )?,
        payments: open_sqlite(
            &dir.join("payments.db"),
            &format!("{PAYMENTS_SCHEMA}{COMMANDS_SCHEMA}"),
        )?,
        transactions: 0,
    };
    let users: Vec<String> = (0..plan.balance.len())
        .map(|i| format!("usr_{i:016x}"))
        .collect();
    let products: Vec<String> = (0..plan.stock.len())
        .map(|i| format!("prd_{i:016x}"))
        .collect();
    for (u, b) in users.iter().zip(&plan.balance) {
        db.payments.execute(
            "INSERT INTO accounts (user_id, balance) VALUES (?, ?)",
            params![u, b],
        )?;
    }
    for (p, s) in products.iter().zip(&plan.stock) {
        db.products.execute(
            "INSERT INTO products (id, name, price, stock) VALUES (?, ?, ?, ?)",
            params![p, format!("Native Product {p}"), PRICE, s],
        )?;
    }
    let started = Instant::now();
    let mut approved = 0u64;
    for i in 0..plan.orders {
        let user = &users[(i % users.len() as u64) as usize];
        let product = &products[(i % products.len() as u64) as usize];
        if native_saga(&mut db, user, product)? {
            approved += 1;
        }
    }
    let elapsed = started.elapsed();
    let (pending, handled): (i64, i64) = db.orders.query_row(
        "SELECT (SELECT count(*) FROM orders WHERE status = 'PENDING'), (SELECT count(*) FROM _silo_sagas WHERE handled = 1)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ensure!(
        approved == plan.approved && pending == 0 && handled as u64 == plan.orders,
        "native: {approved} of {} approved (expected {}), {pending} pending, {handled} handled",
        plan.orders,
        plan.approved
    );
    Ok((plan.orders as f64 / elapsed.as_secs_f64(), db.transactions))
}

/// One order saga, every step its own transaction as silo records them; true if approved.
fn native_saga(db: &mut NativeStores, user: &str, product: &str) -> anyhow::Result<bool> {
    let order_id = format!("ord_{}", random_hex(8));
    let saga_id = format!("saga_{}", random_hex(12));
    let reserve = format!(r#"{{"orderId":"{order_id}","productId":"{product}","quantity":1}}"#);
    let charge = format!(r#"{{"orderId":"{order_id}","userId":"{user}","amount":{PRICE}}}"#);

    // 1. The order and its saga, one transaction of the orders store.
    let now = now_ms();
    let tx = db
        .orders
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(INSERT_ORDER)?.execute(params![
        order_id,
        user,
        product,
        1,
        PRICE,
        "Native User",
        "native@example.com",
        "Native Product",
        saga_id
    ])?;
    tx.prepare_cached(INSERT_SAGA)?
        .execute(params![saga_id, order_id, now, now])?;
    let steps = [
        ("reserve-stock", "products", "reserve", &reserve, "release"),
        ("charge-payment", "payments", "charge", &charge, "refund"),
    ];
    for (idx, (name, service, command, payload, undo)) in steps.iter().enumerate() {
        tx.prepare_cached(INSERT_STEP)?.execute(params![
            saga_id,
            idx as i64,
            name,
            service,
            command,
            payload.as_bytes(),
            undo
        ])?;
    }
    tx.commit()?;
    db.transactions += 1;

    // 2. reserve, on products; 3. recorded.
    let reserved = native_reserve(db, &saga_id, &order_id, product)?;
    let reason = match &reserved {
        Answer::Success(data) => {
            native_record(db, &saga_id, 0, "succeeded", Some(data.as_str()), None)?;
            // 4. charge, on payments; 5. recorded.
            match native_charge(db, &saga_id, &order_id, user)? {
                Answer::Success(data) => {
                    native_record(db, &saga_id, 1, "succeeded", Some(data.as_str()), None)?;
                    None
                }
                Answer::Refused(why) => {
                    let reason = format!("step `charge-payment` refused: {why}");
                    native_record(db, &saga_id, 1, "refused", None, Some(&reason))?;
                    // 6. release, on products; 7. recorded.
                    native_release(db, &saga_id, &order_id)?;
                    native_record_compensated(db, &saga_id, 0)?;
                    Some(reason)
                }
            }
        }
        Answer::Refused(why) => {
            let reason = format!("step `reserve-stock` refused: {why}");
            native_record(db, &saga_id, 0, "refused", None, Some(&reason))?;
            Some(reason)
        }
    };

    // Last: the saga's end, the order settled and the end handled, one transaction.
    let (state, status) = match &reason {
        None => ("completed", "APPROVED"),
        Some(_) => ("compensated", "REJECTED"),
    };
    let now = now_ms();
    let tx = db
        .orders
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(UPDATE_SAGA)?
        .execute(params![state, reason, now, saga_id])?;
    tx.prepare_cached(SETTLE_ORDER)?
        .execute(params![status, reason, order_id, saga_id])?;
    tx.prepare_cached(MARK_HANDLED)?
        .execute(params![now, saga_id])?;
    tx.commit()?;
    db.transactions += 1;
    Ok(reason.is_none())
}

/// A step's result recorded in the orders store (and the saga moved to `compensating`
/// when it was refused).
fn native_record(
    db: &mut NativeStores,
    saga_id: &str,
    idx: i64,
    state: &str,
    data: Option<&str>,
    refused: Option<&str>,
) -> anyhow::Result<()> {
    let tx = db
        .orders
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(UPDATE_STEP)?.execute(params![
        state,
        1,
        None::<i64>,
        data.map(str::as_bytes),
        data.or(refused),
        saga_id,
        idx
    ])?;
    match refused {
        Some(reason) => tx.prepare_cached(UPDATE_SAGA)?.execute(params![
            "compensating",
            reason,
            now_ms(),
            saga_id
        ])?,
        None => tx
            .prepare_cached("UPDATE _silo_sagas SET updated_ms = ? WHERE id = ?")?
            .execute(params![now_ms(), saga_id])?,
    };
    tx.commit()?;
    db.transactions += 1;
    Ok(())
}

fn native_record_compensated(db: &mut NativeStores, saga_id: &str, idx: i64) -> anyhow::Result<()> {
    let tx = db
        .orders
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(UPDATE_STEP)?.execute(params![
        "compensated",
        None::<i64>,
        1,
        None::<Vec<u8>>,
        None::<String>,
        saga_id,
        idx
    ])?;
    tx.prepare_cached("UPDATE _silo_sagas SET updated_ms = ? WHERE id = ?")?
        .execute(params![now_ms(), saga_id])?;
    tx.commit()?;
    db.transactions += 1;
    Ok(())
}

/// The inbox check of command `id` in `tx`: its recorded answer, if it was seen.
fn seen(tx: &rusqlite::Transaction<'_>, id: &str) -> anyhow::Result<Option<Answer>> {
    Ok(tx
        .prepare_cached(SEEN_COMMAND)?
        .query_row([id], |r| {
            Ok(match r.get::<_, i64>(0)? {
                1 => Answer::Success(r.get::<_, Option<String>>(1)?.unwrap_or_default()),
                _ => Answer::Refused(r.get::<_, Option<String>>(2)?.unwrap_or_default()),
            })
        })
        .optional()?)
}

/// Records `answer` to command `id` in `tx`.
fn record_answer(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    saga_id: &str,
    answer: &Answer,
) -> anyhow::Result<()> {
    let (ok, data, reason) = match answer {
        Answer::Success(d) => (1, Some(d.as_bytes()), None),
        Answer::Refused(why) => (0, None, Some(why.as_str())),
    };
    tx.prepare_cached(RECORD_COMMAND)?
        .execute(params![id, saga_id, ok, data, reason, now_ms()])?;
    Ok(())
}

/// products' `reserve` in one transaction of the products store.
fn native_reserve(
    db: &mut NativeStores,
    saga_id: &str,
    order_id: &str,
    product: &str,
) -> anyhow::Result<Answer> {
    let id = format!("{saga_id}/0/do");
    let tx = db
        .products
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(answer) = seen(&tx, &id)? {
        return Ok(answer);
    }
    let held: Option<String> = tx
        .prepare_cached(HELD)?
        .query_row([order_id], |r| r.get(2))
        .optional()?;
    ensure!(held.is_none(), "native: order {order_id} reserved twice");
    let taken = tx
        .prepare_cached(TAKE_STOCK)?
        .execute(params![1, product, 1])?;
    let answer = if taken == 0 {
        let stock: i64 = tx
            .prepare_cached(STOCK_OF)?
            .query_row([product], |r| r.get(0))?;
        Answer::Refused(format!(
            "out of stock: product {product} has {stock}, 1 requested"
        ))
    } else {
        tx.prepare_cached(RESERVE)?
            .execute(params![order_id, product, 1])?;
        Answer::Success(r#"{"reserved":1}"#.to_string())
    };
    record_answer(&tx, &id, saga_id, &answer)?;
    tx.commit()?;
    db.transactions += 1;
    Ok(answer)
}

/// products' `release` in one transaction of the products store.
fn native_release(db: &mut NativeStores, saga_id: &str, order_id: &str) -> anyhow::Result<()> {
    let id = format!("{saga_id}/0/undo");
    let tx = db
        .products
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    if seen(&tx, &id)?.is_some() {
        return Ok(());
    }
    let held: Option<(String, i64, String)> = tx
        .prepare_cached(HELD)?
        .query_row([order_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let released = match held {
        Some((product, quantity, state)) if state == "reserved" => {
            tx.prepare_cached(RELEASE)?.execute([order_id])?;
            tx.prepare_cached(RESTOCK)?
                .execute(params![quantity, product])?;
            quantity
        }
        _ => 0,
    };
    record_answer(
        &tx,
        &id,
        saga_id,
        &Answer::Success(format!(r#"{{"released":{released}}}"#)),
    )?;
    tx.commit()?;
    db.transactions += 1;
    Ok(())
}

/// payments' `charge` in one transaction of the payments store.
fn native_charge(
    db: &mut NativeStores,
    saga_id: &str,
    order_id: &str,
    user: &str,
) -> anyhow::Result<Answer> {
    let id = format!("{saga_id}/1/do");
    let tx = db
        .payments
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(answer) = seen(&tx, &id)? {
        return Ok(answer);
    }
    let found: Option<String> = tx
        .prepare_cached(FIND_CHARGE)?
        .query_row([order_id], |r| r.get(3))
        .optional()?;
    ensure!(found.is_none(), "native: order {order_id} charged twice");
    let debited = tx
        .prepare_cached(DEBIT)?
        .execute(params![PRICE, user, PRICE])?;
    let answer = if debited == 0 {
        let account: Option<i64> = tx
            .prepare_cached(ACCOUNT_OF)?
            .query_row([user], |r| r.get(0))
            .optional()?;
        Answer::Refused(match account {
            None => format!("no payment account for user {user}"),
            Some(_) => "payment declined: insufficient funds".to_string(),
        })
    } else {
        tx.prepare_cached(CHARGE)?
            .execute(params![order_id, user, PRICE])?;
        Answer::Success(format!(r#"{{"chargeId":"{order_id}","amount":{PRICE}}}"#))
    };
    record_answer(&tx, &id, saga_id, &answer)?;
    tx.commit()?;
    db.transactions += 1;
    Ok(answer)
}

// ---------------------------------------------------------------- the report

fn report(cli: &Cli, points: &[Throughput], natives: &[Native], fixed: &[FixedRate]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "### Sagas");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "The demo's order saga: `POST /orders` (orders calls users, products and reference, stores the order `PENDING` and starts the saga in the same transaction, answers 202), then the host runs products `reserve` → payments `charge` (compensations `release`, `refund`) and orders' saga handler settles the order `APPROVED` or `REJECTED`. \
         The five services of `silo.toml` in one `silo run` on loopback (SQLite WAL, `synchronous=NORMAL`), a fresh host per point; {} users each with a payments account and {} products at 10.00, orders taking them in turn, one unit each; {WARMUP_ORDERS} warm-up orders placed and ended before each clock starts (not counted). \
         Throughput: {} clients place the orders as fast as they are answered; the clock runs from the first POST until `/admin/sagas` counts every saga ended (completed + compensated + failed; polled every {} ms) and none is left unhandled (`open` there). \
         Every outcome is checked through the API afterwards: each order `APPROVED` or `REJECTED` as the seeding dictates, stock and balances down by exactly the approved orders.",
        cli.users,
        cli.products,
        cli.clients,
        POLL.as_millis()
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| scenario | sagas | approved / rejected | silo sagas/s | native sagas/s | silo/native | saga p50 / p99 (host) | POST /orders p50 / p99 | host CPU per saga |"
    );
    let _ = writeln!(
        w,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for t in points {
        let native = natives.iter().find(|n| n.scenario == t.scenario);
        let _ = writeln!(
            w,
            "| {}: {} | {} | {} / {} | {:.0} | {} | {} | {} / {} ms | {:.2} / {:.2} ms | {:.2} ms |",
            t.scenario.name(),
            t.scenario.describe(),
            t.plan.orders,
            t.plan.approved,
            t.plan.rejected(),
            t.per_second(),
            native.map_or("–".into(), |n| format!("{:.0}", n.per_second)),
            native.map_or("–".into(), |n| format!(
                "{:.2}",
                t.per_second() / n.per_second
            )),
            opt(t.stats.p50_ms),
            opt(t.stats.p99_ms),
            t.request_ms.0,
            t.request_ms.1,
            t.cpu.host * 1e3 / t.plan.orders as f64,
        );
    }
    let _ = writeln!(w);
    for t in points {
        let events = t
            .events
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            w,
            "- {}: placing took {:.2} s of the {:.2} s (all ended at {:.2} s); {}; retries {}, duplicate commands {}. From the saga log, all {} measured sagas: p50 / p99 / max {}. Events of the run: {} ({} of them still pending when the sagas were done, all delivered {:.2} s later, host CPU {:.2} s meanwhile, not counted above).",
            t.scenario.name(),
            t.post_elapsed.as_secs_f64(),
            t.elapsed.as_secs_f64(),
            t.ended_elapsed.as_secs_f64(),
            t.cpu.text(t.elapsed),
            t.retries,
            t.duplicates,
            t.plan.orders,
            log_text(&t.log_ms),
            if events.is_empty() {
                "none".into()
            } else {
                events
            },
            t.events_pending,
            t.events_drain.as_secs_f64(),
            t.events_drain_cpu,
        );
    }
    let transactions = natives
        .iter()
        .map(|n| {
            format!(
                "{} {:.1}",
                n.scenario.name(),
                n.transactions as f64 / n.sagas as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        w,
        "- Saga latency (host): the orchestrator's commit of the saga to its end handled, from `/admin/sagas` `latencyP50Ms`/`latencyP99Ms` over the host's last {LATENCY_WINDOW} sagas (the {WARMUP_ORDERS} warm-up ones included when fewer were measured); with every order placed at once it is mostly time queued behind the others. The saga-log figures are the same measure (`updated_ms - created_ms` of handled sagas) over exactly the measured sagas. Host CPU includes answering the driver's polls of `/admin/sagas` (each counts the sagas by state)."
    );
    let _ = writeln!(
        w,
        "- Native: the same tables, statements and pragmas (three SQLite files: orders with the saga log, products and payments each with the command inbox) with rusqlite in one loop on one thread: per saga, insert the order, the saga and its two steps; reserve (inbox check, reservation check, stock update, reservation row, reply recorded); record the step; charge (the same on payments); record the step; then end the saga, settle the order and mark it handled in one transaction (silo: two). A refusal is recorded with the saga's move to compensating, and `funds` runs `release` and records it. Transactions per saga: {transactions}. \
         It does not do what silo does besides: no HTTP, no calls to users, products and reference (silo's `POST /orders` makes three), no wasm instances (silo: seven per approved saga: the order, its three callees, reserve, charge, the saga handler; plus one of orders per batch of delivered events), no copies of user and product in orders, no `ProductUpdated` events (products publishes one per `reserve` and `release`, and orders handles each: its copy of the product, and the names in its orders when the name changed), no saga-log reads between steps, no concurrency."
    );
    let _ = writeln!(w);
    if fixed.is_empty() {
        return md;
    }
    let _ = writeln!(
        w,
        "Latency at a fixed rate: a fresh host per rate (`approved` seeding); orders placed at a fixed rate for {} s, paced every millisecond; once every saga ended and was handled, the host's own saga latency from `/admin/sagas` (over its last {LATENCY_WINDOW} sagas, whole ms, the {WARMUP_ORDERS} warm-up sagas included). \"Done after\": from the last POST's answer until every saga was seen ended and handled (polled every {} ms).",
        cli.seconds,
        POLL.as_millis()
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| order rate | achieved | sagas | saga p50 / p99 (host) | saga p50 / p99 / max (log) | POST /orders p50 / p99 | done after | retries | host CPU |"
    );
    let _ = writeln!(
        w,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for f in fixed {
        let _ = writeln!(
            w,
            "| {}/s | {:.0}/s | {} | {} / {} ms | {} | {:.2} / {:.2} ms | {} ms | {} | {:.0}% |",
            f.rate,
            f.achieved,
            f.orders,
            opt(f.stats.p50_ms),
            opt(f.stats.p99_ms),
            log_text(&f.log_ms),
            f.request_ms.0,
            f.request_ms.1,
            f.drain.as_millis(),
            f.retries,
            CpuUse::percent(f.cpu.host, f.span)
        );
    }
    let _ = writeln!(w);
    for f in fixed {
        let _ = writeln!(
            w,
            "- {}/s: {:.2} ms of host CPU per saga; {}.",
            f.rate,
            f.cpu.host * 1e3 / f.orders as f64,
            f.cpu.text(f.span)
        );
    }
    let _ = writeln!(w);
    md
}
