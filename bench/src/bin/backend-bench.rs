//! backend-bench: a point lookup and an insert through silo on each SQL backend (SQLite,
//! PostgreSQL and MariaDB), against the same statements run natively with the same driver, in
//! one run.
//!
//! For each backend a fresh `silo run` serves the demo's `users` component
//! (components/users) at `/users`, its `main` store on that backend (PostgreSQL: the
//! `[backends.postgres]` server, databases and roles named `PREFIX_users_main`; MariaDB: the
//! `[backends.mysql]` server, databases `PREFIX_users_main` and `PREFIX_users_main_host`,
//! users `'PREFIX_users_main'@'%'` and `'PREFIX_users_main_def'@'localhost'`). One host per
//! backend, one after the other: the component routes `/users` itself, so a second copy of
//! it cannot be mounted at another route of the same host.
//!
//! 1. **Insert**: `--clients` clients `POST /users {email, name}` for `--seconds` (after a
//!    `--warmup-ms` warm-up): the component's `INSERT INTO users (id, email, name, version)
//!    VALUES (?, ?, ?, ?)` in a transaction (nobody subscribes to `UserCreated`, so its
//!    `publish` writes nothing).
//! 2. **Lookup**: `--clients` clients `GET /users/{id}` of random ids inserted in step 1 for
//!    `--seconds`: `SELECT id, email, name, version FROM users WHERE id = ?`.
//! 3. **Native**, in the same run, right after each silo run: the same table, the same
//!    statements, the same concurrency, with the driver silo uses for that backend.
//!    SQLite: rusqlite on a file with the host's pragmas, `--clients` threads; inserts share
//!    one writer connection behind a mutex (as silo: one writer per store), lookups use a
//!    connection per thread. PostgreSQL: tokio-postgres on a separate database
//!    (`PREFIX_native`), one connection per client, statements prepared once per
//!    connection; the insert as one autocommit statement, and once more inside silo's
//!    transaction shape (`BEGIN; SELECT pg_advisory_xact_lock(…)`, `INSERT`, `COMMIT`) for
//!    reference. MariaDB: mysql_async the same way (database `PREFIX_native`, a connection per
//!    client, statements prepared once per connection, autocommit insert), and once more in
//!    silo's transaction shape (`BEGIN`, `SELECT … FOR UPDATE` of a writer row, `INSERT`,
//!    `COMMIT`).
//!
//! Before anything (and again at the end) every database, role and user named `PREFIX_*` is
//! dropped through the admin connections. Prints a Markdown section on stdout; progress goes
//! to stderr. Every host runs on 127.0.0.1 with ports the kernel picks, in a temporary
//! folder, and is stopped when the run ends, fails or is interrupted.

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use clap::Parser;
use hyper::{Method, StatusCode};
use mysql_async::prelude::Queryable;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::{Value as Json, json};
use silo_bench::{
    HostStart, HttpClient, SiloHost, WorkDir, cores, driver_main, http_client,
    machine_busy_seconds, open_sqlite, own_cpu_seconds, percentiles_ms, random_hex, send,
};
use tokio::task::JoinSet;
use tokio_postgres::{NoTls, Statement};

/// The users component's migration (components/users/src/lib.rs), the native tables too.
const SCHEMA: &str = "CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
)";
/// The component's statements, as it sends them (`?`) and as PostgreSQL gets them (`$n`).
const INSERT_SQLITE: &str = "INSERT INTO users (id, email, name, version) VALUES (?, ?, ?, ?)";
const INSERT_PG: &str = "INSERT INTO users (id, email, name, version) VALUES ($1, $2, $3, $4)";
const SELECT_SQLITE: &str = "SELECT id, email, name, version FROM users WHERE id = ?";
const SELECT_PG: &str = "SELECT id, email, name, version FROM users WHERE id = $1";
/// How silo's PostgreSQL store opens every transaction (host/src/sql/postgres.rs,
/// `BEGIN_WRITER`): the store's writer lock, held until the end.
const BEGIN_WRITER: &str = "BEGIN; SELECT pg_catalog.pg_advisory_xact_lock(7318010)";
/// The users component's MariaDB migrations (both steps), the native table too.
const SCHEMA_MY: &str = "CREATE TABLE users (
    id VARCHAR(64) PRIMARY KEY,
    email VARCHAR(320) NOT NULL UNIQUE,
    name TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    seq BIGINT NOT NULL AUTO_INCREMENT UNIQUE
)";
/// How silo's MariaDB store takes its writer lock in every write transaction
/// (host/src/sql/mysql.rs, `LOCK_WRITER`; silo runs it through its `silo_exec` procedure in
/// the host database, natively it is a plain prepared statement on a table of the same
/// database).
const WRITER_MY: &str = "CREATE TABLE _silo_writer (id TINYINT PRIMARY KEY) ENGINE=InnoDB";
const LOCK_WRITER_MY: &str = "SELECT id FROM _silo_writer WHERE id = 1 FOR UPDATE";
/// The name every user gets.
const NAME: &str = "Bench User";

#[derive(Debug, Parser)]
#[command(
    name = "backend-bench",
    about = "Point lookup and insert through silo on SQLite, PostgreSQL and MariaDB, against the same statements natively"
)]
struct Cli {
    /// The silo binary.
    #[arg(long, env = "BENCH_SILO", default_value = "target/release/silo")]
    silo: PathBuf,
    /// The demo's users component.
    #[arg(
        long,
        env = "BENCH_USERS_COMPONENT",
        default_value = "components/target/wasm32-wasip2/release/users.wasm"
    )]
    component: PathBuf,
    /// Backends to measure, comma- or space-separated: `sqlite`, `postgres`, `mysql`.
    #[arg(long, env = "BENCH_BACKENDS", default_value = "sqlite,postgres,mysql")]
    backends: String,
    /// The PostgreSQL admin connection (superuser, or CREATEDB and CREATEROLE).
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// The MariaDB admin connection (root, or a user that may create databases and users
    /// and grant on them).
    #[arg(
        long,
        env = "BENCH_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/"
    )]
    mysql_url: String,
    /// Prefix of the databases, roles and users this bench creates, and drops (every
    /// `PREFIX_*`) before and after the run.
    #[arg(long, env = "BENCH_BACKEND_PREFIX", default_value = "silobench")]
    prefix: String,
    /// `pool-size` of the PostgreSQL and MariaDB stores.
    #[arg(long, env = "BENCH_BACKEND_POOL", default_value_t = 16)]
    pool_size: usize,
    /// Concurrent clients (silo: HTTP clients; native: threads or connections).
    #[arg(long, env = "BENCH_BACKEND_CLIENTS", default_value_t = 16)]
    clients: usize,
    /// Length of each measured run, seconds.
    #[arg(long, env = "BENCH_BACKEND_SECONDS", default_value_t = 4)]
    seconds: u64,
    /// Warm-up before each measured run, milliseconds (not counted; its rows are looked up too).
    #[arg(long, env = "BENCH_BACKEND_WARMUP_MS", default_value_t = 500)]
    warmup_ms: u64,
    /// Longest wait for a host start, seconds.
    #[arg(long, env = "BENCH_BACKEND_TIMEOUT", default_value_t = 120)]
    timeout: u64,
    /// Folder for the hosts' logs (default: the temporary folder, removed at the end).
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    driver_main("backend-bench", run(&cli))
}

macro_rules! say {
    ($($arg:tt)*) => { eprintln!("backend-bench: {}", format_args!($($arg)*)) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    fn parse_list(s: &str) -> anyhow::Result<Vec<Backend>> {
        let mut out = Vec::new();
        for b in s.split([',', ' ']).filter(|b| !b.is_empty()) {
            let b = match b {
                "sqlite" => Backend::Sqlite,
                "postgres" => Backend::Postgres,
                "mysql" => Backend::Mysql,
                other => bail!("--backends: `{other}` is not `sqlite`, `postgres` or `mysql`"),
            };
            if !out.contains(&b) {
                out.push(b);
            }
        }
        ensure!(!out.is_empty(), "--backends: no backend given");
        Ok(out)
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
            Backend::Mysql => "MariaDB",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Lookup,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Lookup => "lookup",
        }
    }
}

/// What every step shares.
struct Setup {
    silo: PathBuf,
    component: PathBuf,
    work: PathBuf,
    log_dir: PathBuf,
    token: String,
    client: HttpClient,
    clients: usize,
    measured: Duration,
    warmup: Duration,
    timeout: Duration,
    /// A tag in every email of the run (emails are unique).
    tag: String,
    pg: Option<Pg>,
    my: Option<My>,
}

/// The PostgreSQL side: the admin connection's settings and this run's names.
struct Pg {
    admin: tokio_postgres::Config,
    url: String,
    prefix: String,
    pool_size: usize,
    version: String,
}

impl Pg {
    fn native_db(&self) -> String {
        format!("{}_native", self.prefix)
    }

    fn store_db(&self) -> String {
        format!("{}_users_main", self.prefix)
    }

    async fn connect(&self, db: &str) -> anyhow::Result<tokio_postgres::Client> {
        let mut config = self.admin.clone();
        config.dbname(db);
        let (client, conn) = config
            .connect(NoTls)
            .await
            .with_context(|| format!("connecting to PostgreSQL database `{db}`"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    async fn admin(&self) -> anyhow::Result<tokio_postgres::Client> {
        let db = self.admin.get_dbname().unwrap_or("postgres").to_string();
        self.connect(&db).await
    }

    /// Drops every database and role named `PREFIX_*` (one statement each: `DROP
    /// DATABASE` cannot run in a multi-statement batch).
    async fn drop_all(&self) -> anyhow::Result<Vec<String>> {
        let c = self.admin().await?;
        let pattern = format!("{}\\_%", self.prefix.replace('_', "\\_"));
        let mut dropped = Vec::new();
        for row in c
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                &[&pattern],
            )
            .await?
        {
            let name: String = row.get(0);
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&name)
            ))
            .await
            .with_context(|| format!("dropping database `{name}`"))?;
            dropped.push(format!("database {name}"));
        }
        for row in c
            .query(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
                &[&pattern],
            )
            .await?
        {
            let name: String = row.get(0);
            c.batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(&name)))
                .await
                .with_context(|| format!("dropping role `{name}`"))?;
            dropped.push(format!("role {name}"));
        }
        Ok(dropped)
    }
}

/// The MariaDB side: the admin connection's settings and this run's names.
struct My {
    admin: mysql_async::Opts,
    url: String,
    prefix: String,
    pool_size: usize,
    version: String,
}

impl My {
    fn native_db(&self) -> String {
        format!("{}_native", self.prefix)
    }

    fn store_db(&self) -> String {
        format!("{}_users_main", self.prefix)
    }

    async fn connect(&self, db: Option<&str>) -> anyhow::Result<mysql_async::Conn> {
        let opts = mysql_async::OptsBuilder::from_opts(self.admin.clone()).db_name(db);
        mysql_async::Conn::new(opts)
            .await
            .with_context(|| format!("connecting to MariaDB (database {db:?})"))
    }

    /// Drops every database and user named `PREFIX_*`.
    async fn drop_all(&self) -> anyhow::Result<Vec<String>> {
        let mut c = self.connect(None).await?;
        let pattern = format!("{}\\_%", self.prefix.replace('_', "\\_"));
        let mut dropped = Vec::new();
        let dbs: Vec<String> = c
            .exec(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE ?",
                (&pattern,),
            )
            .await?;
        for name in dbs {
            c.query_drop(format!("DROP DATABASE IF EXISTS {}", my_ident(&name)))
                .await
                .with_context(|| format!("dropping database `{name}`"))?;
            dropped.push(format!("database {name}"));
        }
        let users: Vec<(String, String)> = c
            .exec(
                "SELECT user, host FROM mysql.user WHERE user LIKE ?",
                (&pattern,),
            )
            .await?;
        for (user, host) in users {
            c.query_drop(format!(
                "DROP USER IF EXISTS {}@{}",
                my_str(&user),
                my_str(&host)
            ))
            .await
            .with_context(|| format!("dropping user `{user}`@`{host}`"))?;
            dropped.push(format!("user {user}@{host}"));
        }
        let _ = c.disconnect().await;
        Ok(dropped)
    }
}

/// A MariaDB identifier, quoted.
fn my_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A MariaDB string literal.
fn my_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// An identifier, quoted.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn run(cli: &Cli) -> anyhow::Result<String> {
    ensure!(cli.clients >= 1, "--clients must be at least 1");
    ensure!(cli.seconds >= 1, "--seconds must be at least 1");
    ensure!(cli.pool_size >= 1, "--pool-size must be at least 1");
    let prefix_ok = cli.prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && cli
            .prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ensure!(
        prefix_ok,
        "--prefix: a lowercase letter, then lowercase letters, digits and `_`"
    );
    ensure!(
        cli.prefix != "silo",
        "--prefix: not `silo` (the host's default): this bench drops every `PREFIX_*` database"
    );
    let backends = Backend::parse_list(&cli.backends)?;
    ensure!(
        cli.silo.is_file(),
        "{} is missing: run `make build` (or `cargo build --release -p silo`) first",
        cli.silo.display()
    );
    ensure!(
        cli.component.is_file(),
        "{} is missing: run `make components` first",
        cli.component.display()
    );
    let silo = std::fs::canonicalize(&cli.silo)?;
    let component = std::fs::canonicalize(&cli.component)?;

    let work = WorkDir::create("silo-backend-bench")?;
    let log_dir = match &cli.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            std::fs::canonicalize(d)?
        }
        None => work.0.clone(),
    };

    let pg = if backends.contains(&Backend::Postgres) {
        let admin: tokio_postgres::Config = cli
            .postgres_url
            .parse()
            .with_context(|| format!("--postgres-url `{}`", cli.postgres_url))?;
        let mut pg = Pg {
            admin,
            url: cli.postgres_url.clone(),
            prefix: cli.prefix.clone(),
            pool_size: cli.pool_size,
            version: String::new(),
        };
        let c = pg.admin().await.context(
            "no PostgreSQL at --postgres-url (BENCH_POSTGRES_URL); BENCH_BACKENDS=sqlite leaves it out",
        )?;
        pg.version = c
            .query_one("SHOW server_version", &[])
            .await?
            .get::<_, String>(0);
        Some(pg)
    } else {
        None
    };

    let my = if backends.contains(&Backend::Mysql) {
        let admin = mysql_async::Opts::from_url(&cli.mysql_url)
            .with_context(|| format!("--mysql-url `{}`", cli.mysql_url))?;
        let mut my = My {
            admin,
            url: cli.mysql_url.clone(),
            prefix: cli.prefix.clone(),
            pool_size: cli.pool_size,
            version: String::new(),
        };
        let mut c = my.connect(None).await.context(
            "no MariaDB at --mysql-url (BENCH_MYSQL_URL); BENCH_BACKENDS=sqlite,postgres leaves it out",
        )?;
        my.version = c
            .query_first::<String, _>("SELECT VERSION()")
            .await?
            .unwrap_or_default();
        let _ = c.disconnect().await;
        Some(my)
    } else {
        None
    };

    let setup = Setup {
        silo,
        component,
        work: work.0.clone(),
        log_dir,
        token: random_hex(32),
        client: http_client(),
        clients: cli.clients,
        measured: Duration::from_secs(cli.seconds),
        warmup: Duration::from_millis(cli.warmup_ms),
        timeout: Duration::from_secs(cli.timeout),
        tag: random_hex(4),
        pg,
        my,
    };

    if let Some(pg) = &setup.pg {
        let dropped = pg.drop_all().await?;
        if !dropped.is_empty() {
            say!("dropped leftovers: {}", dropped.join(", "));
        }
    }
    if let Some(my) = &setup.my {
        let dropped = my.drop_all().await?;
        if !dropped.is_empty() {
            say!("dropped MariaDB leftovers: {}", dropped.join(", "));
        }
    }
    let busy_before = busy_percent().await;
    if busy_before >= 10.0 {
        say!(
            "warning: the CPUs were {busy_before:.0}% busy before the runs: other work is running, figures will be low and noisy"
        );
    }

    let result = async {
        let mut results = Vec::new();
        for &backend in &backends {
            results.push(measure_backend(&setup, backend).await?);
        }
        anyhow::Ok(results)
    }
    .await;

    if let Some(pg) = &setup.pg {
        match pg.drop_all().await {
            Ok(_) => say!("dropped the {}_* databases and roles", pg.prefix),
            Err(e) => say!(
                "warning: could not drop the {}_* databases and roles: {e:#}",
                pg.prefix
            ),
        }
    }
    if let Some(my) = &setup.my {
        match my.drop_all().await {
            Ok(_) => say!("dropped the MariaDB {}_* databases and users", my.prefix),
            Err(e) => say!(
                "warning: could not drop the MariaDB {}_* databases and users: {e:#}",
                my.prefix
            ),
        }
    }
    let results = result?;
    Ok(report(cli, &setup, busy_before, &results))
}

/// The machine's busy share over one second, percent of all cores.
async fn busy_percent() -> f64 {
    let (a, t) = (machine_busy_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    100.0 * (machine_busy_seconds() - a) / t.elapsed().as_secs_f64() / cores() as f64
}

// ---------------------------------------------------------------- measuring

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    ops: u64,
    /// Operations answered with an error (not in `ops`), and the first such answer.
    failed: u64,
    first_failure: Option<String>,
    /// From the start until the last client finished.
    elapsed: Duration,
    /// p50 and p99, ms.
    ms: (f64, f64),
    cpu: Cpu,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// CPU seconds spent during a run.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// The silo host (none for native runs).
    host: Option<f64>,
    /// This process: the HTTP clients, or the native work itself.
    driver: f64,
    /// Everything else: PostgreSQL's processes, and anything else running.
    others: f64,
}

struct CpuMark {
    host: Option<f64>,
    own: f64,
    machine: f64,
}

impl CpuMark {
    fn now(host: Option<&SiloHost>) -> CpuMark {
        CpuMark {
            host: host.map(SiloHost::cpu_seconds),
            own: own_cpu_seconds(),
            machine: machine_busy_seconds(),
        }
    }

    fn used(&self, host: Option<&SiloHost>) -> Cpu {
        let now = CpuMark::now(host);
        let h = match (now.host, self.host) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let d = now.own - self.own;
        Cpu {
            host: h,
            driver: d,
            others: (now.machine - self.machine - h.unwrap_or(0.0) - d).max(0.0),
        }
    }
}

/// What one client's operation returns (an `Err` stops the run).
type OpResult = anyhow::Result<Outcome>;

/// One operation's outcome.
enum Outcome {
    /// Done; the id it inserted, if any.
    Done(Option<String>),
    /// Answered with an error (a non-2xx status): counted, and the run goes on.
    Failed(String),
}

/// What the clients of one run did.
#[derive(Default)]
struct Driven {
    /// Operations done (failed ones not counted).
    ops: u64,
    failed: u64,
    first_failure: Option<String>,
    /// From the start until the last client finished.
    elapsed: Duration,
    /// Of every operation, failed ones too.
    latencies: Vec<Duration>,
    ids: Vec<String>,
}

impl Driven {
    /// Adds what one client did.
    fn add(&mut self, client: ClientOut) {
        self.latencies.extend(client.latencies);
        self.ids.extend(client.ids);
        self.ops += client.done;
        self.failed += client.failed;
        if self.first_failure.is_none() {
            self.first_failure = client.first_failure;
        }
    }
}

/// What one client did.
#[derive(Default)]
struct ClientOut {
    done: u64,
    failed: u64,
    first_failure: Option<String>,
    latencies: Vec<Duration>,
    ids: Vec<String>,
}

impl ClientOut {
    fn note(&mut self, outcome: Outcome, took: Duration) {
        self.latencies.push(took);
        match outcome {
            Outcome::Done(id) => {
                self.done += 1;
                self.ids.extend(id);
            }
            Outcome::Failed(why) => {
                self.failed += 1;
                self.first_failure.get_or_insert(why);
            }
        }
    }
}

/// Runs `clients` tasks on this runtime, each calling `op(client, i)` one after the other
/// until `length` has passed; every id returned is collected.
async fn drive<F, Fut>(clients: usize, length: Duration, op: F) -> anyhow::Result<Driven>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = OpResult> + Send + 'static,
{
    let started = Instant::now();
    let end = started + length;
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.spawn(async move {
            let mut out = ClientOut::default();
            let mut i = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                let outcome = op(c, i).await?;
                out.note(outcome, t.elapsed());
                i += 1;
            }
            anyhow::Ok(out)
        });
    }
    let mut driven = Driven::default();
    while let Some(joined) = tasks.join_next().await {
        driven.add(joined.context("a client task panicked")??);
    }
    driven.elapsed = started.elapsed();
    Ok(driven)
}

/// [`drive`] on `clients` threads, each with its own state from `make` (built before the
/// clock starts).
fn drive_threads<S, M, F>(
    clients: usize,
    length: Duration,
    make: M,
    op: F,
) -> anyhow::Result<Driven>
where
    M: Fn(usize) -> anyhow::Result<S>,
    S: Send,
    F: Fn(&mut S, usize, u64) -> OpResult + Sync,
{
    let states = (0..clients)
        .map(&make)
        .collect::<anyhow::Result<Vec<S>>>()?;
    let barrier = Barrier::new(clients + 1);
    let start = Mutex::new(None::<Instant>);
    let outs = std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .into_iter()
            .enumerate()
            .map(|(c, mut state)| {
                let (barrier, start, op) = (&barrier, &start, &op);
                scope.spawn(move || {
                    barrier.wait();
                    let started = start
                        .lock()
                        .expect("start")
                        .expect("set before the barrier");
                    let end = started + length;
                    let mut out = ClientOut::default();
                    let mut i = 0u64;
                    while Instant::now() < end {
                        let t = Instant::now();
                        let outcome = op(&mut state, c, i)?;
                        out.note(outcome, t.elapsed());
                        i += 1;
                    }
                    anyhow::Ok(out)
                })
            })
            .collect();
        *start.lock().expect("start") = Some(Instant::now());
        barrier.wait();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a client thread panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let started = start
        .into_inner()
        .expect("start")
        .expect("set before the barrier");
    let mut driven = Driven {
        elapsed: started.elapsed(),
        ..Driven::default()
    };
    for out in outs {
        driven.add(out);
    }
    Ok(driven)
}

/// A pseudo-random index below `len` for call `i` of client `c` (splitmix64).
fn pick(seed: u64, c: usize, i: u64, len: usize) -> usize {
    let mut z = seed ^ ((c as u64) << 40) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % len.max(1) as u64) as usize
}

fn seed() -> u64 {
    u64::from_str_radix(&random_hex(8), 16).unwrap_or(1)
}

/// A fresh user id, as the SDK makes them (`usr_` and 8 random bytes in hex).
fn new_id() -> String {
    format!("usr_{}", random_hex(8))
}

/// The email of call `i` of client `c` in run `run` (unique across the whole run).
fn email(tag: &str, run: &str, c: usize, i: u64) -> String {
    format!("{run}-{c}-{i}-{tag}@bench.test")
}

/// A measured run, and every id inserted by it and its warm-up.
struct Measured {
    run: Run,
    ids: Vec<String>,
}

/// A non-2xx answer, as a counted failure.
fn failure(what: &str, status: StatusCode, body: &[u8]) -> Outcome {
    Outcome::Failed(format!(
        "{what}: {status} {}",
        String::from_utf8_lossy(body)
            .chars()
            .take(300)
            .collect::<String>()
    ))
}

/// The run of `driven` (its warm-up's ids kept too); fails if nothing succeeded, or more
/// than one in 100 operations failed.
fn finish(label: &str, warm: Driven, mut driven: Driven, cpu: Cpu) -> anyhow::Result<Measured> {
    let run = Run {
        ops: driven.ops,
        failed: driven.failed + warm.failed,
        first_failure: driven.first_failure.take().or(warm.first_failure),
        elapsed: driven.elapsed,
        ms: percentiles_ms(&mut driven.latencies),
        cpu,
    };
    say!(
        "{label}: {} in {:.2} s, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms{}",
        run.ops,
        run.elapsed.as_secs_f64(),
        run.per_second(),
        run.ms.0,
        run.ms.1,
        if run.failed > 0 {
            format!(
                "; {} failed (warm-up included), first: {}",
                run.failed,
                run.first_failure.as_deref().unwrap_or("")
            )
        } else {
            String::new()
        }
    );
    ensure!(
        run.ops > 0 && run.failed * 100 <= run.ops,
        "{label}: {} of {} operations failed; the first: {}",
        run.failed,
        run.ops + run.failed,
        run.first_failure.as_deref().unwrap_or("")
    );
    let mut ids = warm.ids;
    ids.extend(driven.ids);
    Ok(Measured { run, ids })
}

// ---------------------------------------------------------------- one backend

/// Everything measured on one backend.
struct BackendResult {
    backend: Backend,
    silo_insert: Run,
    native_insert: Run,
    /// PostgreSQL and MariaDB: the native insert inside silo's transaction shape.
    native_insert_tx: Option<Run>,
    silo_lookup: Run,
    native_lookup: Run,
    /// Rows in the tables at lookup time (silo, native).
    rows: (u64, u64),
}

async fn measure_backend(setup: &Setup, backend: Backend) -> anyhow::Result<BackendResult> {
    let name = backend.name();
    let host = start_host(setup, backend).await?;
    let store = store_path(setup, backend);

    // Inserts.
    let silo_insert = silo_run(setup, &host, Op::Insert, Arc::new(Vec::new())).await?;
    let mut native = Native::open(setup, backend).await?;
    let native_insert = native.run(setup, Op::Insert, false).await?;
    let native_insert_tx = match backend {
        Backend::Postgres | Backend::Mysql => Some(native.run(setup, Op::Insert, true).await?),
        Backend::Sqlite => None,
    };

    // Lookups of what was inserted.
    let silo_ids = Arc::new(silo_insert.ids.clone());
    let silo_rows = count_silo_rows(setup, backend, &store).await?;
    // A failed request (past its deadline) may still have committed its row.
    let created = silo_ids.len() as u64;
    ensure!(
        (created..=created + silo_insert.run.failed).contains(&silo_rows),
        "{name}: silo's store holds {silo_rows} users, {created} were created"
    );
    let native_rows = native.ids.len() as u64;
    let silo_lookup = silo_run(setup, &host, Op::Lookup, silo_ids).await?;
    let native_lookup = native.run(setup, Op::Lookup, false).await?;
    let counted = native.count().await?;
    ensure!(
        counted == native_rows,
        "{name}: the native table holds {counted} users, {native_rows} were inserted"
    );
    native.close().await;
    drop(host);
    Ok(BackendResult {
        backend,
        silo_insert: silo_insert.run,
        native_insert: native_insert.run,
        native_insert_tx: native_insert_tx.map(|m| m.run),
        silo_lookup: silo_lookup.run,
        native_lookup: native_lookup.run,
        rows: (silo_rows, native_rows),
    })
}

/// Starts a host serving users at `/users` with its store on `backend`.
async fn start_host(setup: &Setup, backend: Backend) -> anyhow::Result<SiloHost> {
    let name = format!("{}-host", backend.name());
    let dir = setup.work.join(&name);
    std::fs::create_dir_all(&dir)?;
    let manifest = dir.join("silo.toml");
    let component = Json::String(setup.component.display().to_string());
    let mut toml = String::new();
    if let (Backend::Postgres, Some(pg)) = (backend, &setup.pg) {
        let _ = writeln!(
            toml,
            "[backends.postgres]\nurl = {}\nprefix = {}\npool-size = {}\n",
            Json::String(pg.url.clone()),
            Json::String(pg.prefix.clone()),
            pg.pool_size
        );
    }
    if let (Backend::Mysql, Some(my)) = (backend, &setup.my) {
        let _ = writeln!(
            toml,
            "[backends.mysql]\nurl = {}\nprefix = {}\npool-size = {}\n",
            Json::String(my.url.clone()),
            Json::String(my.prefix.clone()),
            my.pool_size
        );
    }
    let _ = writeln!(
        toml,
        "[services.users]\ncomponent = {component}\nroute = \"/users\"\npublishes = [\"UserCreated\", \"UserUpdated\"]\n[services.users.stores.main]\nbackend = \"{}\"",
        backend.name()
    );
    std::fs::write(&manifest, toml)?;
    let host = SiloHost::start(&HostStart {
        prog: "backend-bench",
        name: &name,
        silo: &setup.silo,
        manifest: &manifest,
        data: &dir.join("data"),
        cache: &setup.work.join("cache"),
        log: &setup.log_dir.join(format!("backends-{name}.log")),
        token: &setup.token,
        timeout: setup.timeout,
    })
    .await?;
    // The service answers (404 for an id that is not there) before any clock starts.
    let url = format!("{}/users/usr_none", host.base);
    let (status, body) = send(&setup.client, Method::GET, &url, None).await?;
    ensure!(
        status == StatusCode::NOT_FOUND,
        "{}",
        host.died(&format!(
            "answered GET {url} with {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    );
    say!("{name}: serving on {} (admin {})", host.base, host.admin);
    Ok(host)
}

fn store_path(setup: &Setup, backend: Backend) -> PathBuf {
    setup
        .work
        .join(format!("{}-host", backend.name()))
        .join("data/stores/users/main.db")
}

/// The users in silo's store, read behind its back (SQLite: the file, read-only;
/// PostgreSQL: the store's database through the admin connection, which also shows the
/// store really is there).
async fn count_silo_rows(setup: &Setup, backend: Backend, store: &Path) -> anyhow::Result<u64> {
    match backend {
        Backend::Sqlite => {
            let conn = Connection::open_with_flags(store, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("opening {}", store.display()))?;
            let n: i64 = conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
            Ok(n as u64)
        }
        Backend::Postgres => {
            let pg = setup.pg.as_ref().ok_or_else(|| anyhow!("no PostgreSQL"))?;
            let c = pg.connect(&pg.store_db()).await?;
            let n: i64 = c
                .query_one("SELECT count(*) FROM public.users", &[])
                .await?
                .get(0);
            Ok(n as u64)
        }
        Backend::Mysql => {
            let my = setup.my.as_ref().ok_or_else(|| anyhow!("no MariaDB"))?;
            let mut c = my.connect(None).await?;
            let n: Option<i64> = c
                .query_first(format!(
                    "SELECT count(*) FROM {}.users",
                    my_ident(&my.store_db())
                ))
                .await?;
            let _ = c.disconnect().await;
            Ok(n.unwrap_or(0) as u64)
        }
    }
}

/// Warm-up, then the measured run, through the host.
async fn silo_run(
    setup: &Setup,
    host: &SiloHost,
    op: Op,
    ids: Arc<Vec<String>>,
) -> anyhow::Result<Measured> {
    let label = format!("silo {} {}", host.name.trim_end_matches("-host"), op.name());
    let base: Arc<str> = format!("{}/users", host.base).into();
    let tag: Arc<str> = setup.tag.clone().into();
    let client = setup.client.clone();
    let seed = seed();
    let one = move |phase: &'static str| {
        let (base, tag, client, ids) = (base.clone(), tag.clone(), client.clone(), ids.clone());
        move |c: usize, i: u64| {
            let (base, tag, client, ids) = (base.clone(), tag.clone(), client.clone(), ids.clone());
            async move {
                match op {
                    Op::Insert => {
                        let body = json!({ "email": email(&tag, phase, c, i), "name": NAME });
                        let (status, answer) =
                            send(&client, Method::POST, &base, Some(body.to_string())).await?;
                        if status != StatusCode::CREATED {
                            return Ok(failure("POST /users", status, &answer));
                        }
                        let v: Json = serde_json::from_slice(&answer)?;
                        let id = v["id"]
                            .as_str()
                            .ok_or_else(|| anyhow!("POST {base}: no id in {v}"))?;
                        Ok(Outcome::Done(Some(id.to_string())))
                    }
                    Op::Lookup => {
                        let id = &ids[pick(seed, c, i, ids.len())];
                        let url = format!("{base}/{id}");
                        let (status, answer) = send(&client, Method::GET, &url, None).await?;
                        if status != StatusCode::OK {
                            ensure!(
                                status != StatusCode::NOT_FOUND,
                                "GET {url} answered {status}: {}",
                                String::from_utf8_lossy(&answer)
                            );
                            return Ok(failure("GET /users/{id}", status, &answer));
                        }
                        Ok(Outcome::Done(None))
                    }
                }
            }
        }
    };
    let (phase_w, phase_m) = match host.name.as_str() {
        "sqlite-host" => ("sw", "sm"),
        "mysql-host" => ("mw", "mm"),
        _ => ("pw", "pm"),
    };
    let warm = drive(setup.clients, setup.warmup, one(phase_w))
        .await
        .with_context(|| host.died(&format!("{label}: warm-up failed")))?;
    let mark = CpuMark::now(Some(host));
    let driven = drive(setup.clients, setup.measured, one(phase_m))
        .await
        .with_context(|| host.died(&format!("{label}: failed")))?;
    let cpu = mark.used(Some(host));
    finish(&label, warm, driven, cpu)
}

// ---------------------------------------------------------------- native

/// The native side of one backend: its table, and the ids inserted so far.
struct Native {
    backend: Backend,
    /// SQLite: the file.
    path: PathBuf,
    /// PostgreSQL: one connection per client, with its two statements prepared.
    pg: Vec<Arc<PgConn>>,
    /// MariaDB: one connection per client, with its three statements prepared.
    my: Vec<Arc<tokio::sync::Mutex<MyConn>>>,
    ids: Vec<String>,
}

struct MyConn {
    conn: mysql_async::Conn,
    insert: mysql_async::Statement,
    select: mysql_async::Statement,
    lock: mysql_async::Statement,
}

struct PgConn {
    client: tokio_postgres::Client,
    insert: Statement,
    select: Statement,
}

impl Native {
    async fn open(setup: &Setup, backend: Backend) -> anyhow::Result<Native> {
        let mut native = Native {
            backend,
            path: setup.work.join("native-sqlite.db"),
            pg: Vec::new(),
            my: Vec::new(),
            ids: Vec::new(),
        };
        match backend {
            Backend::Sqlite => {
                open_sqlite(&native.path, SCHEMA)?;
            }
            Backend::Postgres => {
                let pg = setup.pg.as_ref().ok_or_else(|| anyhow!("no PostgreSQL"))?;
                let db = pg.native_db();
                let admin = pg.admin().await?;
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(&db)
                    ))
                    .await?;
                admin
                    .batch_execute(&format!("CREATE DATABASE {}", ident(&db)))
                    .await
                    .with_context(|| format!("creating database `{db}`"))?;
                let first = pg.connect(&db).await?;
                first.batch_execute(SCHEMA).await?;
                drop(first);
                for _ in 0..setup.clients {
                    let client = pg.connect(&db).await?;
                    let insert = client.prepare(INSERT_PG).await?;
                    let select = client.prepare(SELECT_PG).await?;
                    native.pg.push(Arc::new(PgConn {
                        client,
                        insert,
                        select,
                    }));
                }
            }
            Backend::Mysql => {
                let my = setup.my.as_ref().ok_or_else(|| anyhow!("no MariaDB"))?;
                let db = my.native_db();
                let mut admin = my.connect(None).await?;
                admin
                    .query_drop(format!("DROP DATABASE IF EXISTS {}", my_ident(&db)))
                    .await?;
                // As silo creates a store's database.
                admin
                    .query_drop(format!(
                        "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin",
                        my_ident(&db)
                    ))
                    .await
                    .with_context(|| format!("creating database `{db}`"))?;
                let _ = admin.disconnect().await;
                let mut first = my.connect(Some(&db)).await?;
                first.query_drop(SCHEMA_MY).await?;
                first.query_drop(WRITER_MY).await?;
                first
                    .query_drop("INSERT INTO _silo_writer (id) VALUES (1)")
                    .await?;
                let _ = first.disconnect().await;
                for _ in 0..setup.clients {
                    let mut conn = my.connect(Some(&db)).await?;
                    let insert = conn.prep(INSERT_SQLITE).await?;
                    let select = conn.prep(SELECT_SQLITE).await?;
                    let lock = conn.prep(LOCK_WRITER_MY).await?;
                    native.my.push(Arc::new(tokio::sync::Mutex::new(MyConn {
                        conn,
                        insert,
                        select,
                        lock,
                    })));
                }
            }
        }
        Ok(native)
    }

    /// Closes the MariaDB connections.
    async fn close(&mut self) {
        for c in self.my.drain(..) {
            if let Ok(c) = Arc::try_unwrap(c) {
                let _ = c.into_inner().conn.disconnect().await;
            }
        }
    }

    /// Warm-up, then the measured run; inserted ids are kept for the lookups.
    async fn run(&mut self, setup: &Setup, op: Op, in_tx: bool) -> anyhow::Result<Measured> {
        let label = format!(
            "native {} {}{}",
            self.backend.name(),
            op.name(),
            if in_tx { " (silo's transaction)" } else { "" }
        );
        let phase = |measured: bool| match (in_tx, measured) {
            (false, false) => "nw",
            (false, true) => "nm",
            (true, false) => "tw",
            (true, true) => "tm",
        };
        let ids = Arc::new(self.ids.clone());
        let warm = self
            .drive(setup, op, in_tx, setup.warmup, phase(false), ids.clone())
            .await
            .with_context(|| format!("{label}: warm-up failed"))?;
        let mark = CpuMark::now(None);
        let driven = self
            .drive(setup, op, in_tx, setup.measured, phase(true), ids)
            .await
            .with_context(|| format!("{label}: failed"))?;
        let cpu = mark.used(None);
        let measured = finish(&label, warm, driven, cpu)?;
        self.ids.extend(measured.ids.iter().cloned());
        Ok(measured)
    }

    async fn drive(
        &self,
        setup: &Setup,
        op: Op,
        in_tx: bool,
        length: Duration,
        phase: &'static str,
        ids: Arc<Vec<String>>,
    ) -> anyhow::Result<Driven> {
        let clients = setup.clients;
        let tag = setup.tag.clone();
        let seed = seed();
        match self.backend {
            Backend::Sqlite => {
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || {
                    sqlite_drive(&path, clients, length, op, &tag, phase, &ids, seed)
                })
                .await
                .context("the native SQLite run panicked")?
            }
            Backend::Postgres => {
                let conns = Arc::new(self.pg.clone());
                let tag: Arc<str> = tag.into();
                drive(clients, length, move |c, i| {
                    let (conns, tag, ids) = (conns.clone(), tag.clone(), ids.clone());
                    async move {
                        let conn = &conns[c];
                        match op {
                            Op::Insert => {
                                let id = new_id();
                                let email = email(&tag, phase, c, i);
                                let version = 1i32;
                                if in_tx {
                                    conn.client.batch_execute(BEGIN_WRITER).await?;
                                }
                                let n = conn
                                    .client
                                    .execute(&conn.insert, &[&id, &email, &NAME, &version])
                                    .await?;
                                if in_tx {
                                    conn.client.batch_execute("COMMIT").await?;
                                }
                                ensure!(n == 1, "the insert touched {n} rows");
                                Ok(Outcome::Done(Some(id)))
                            }
                            Op::Lookup => {
                                let id = &ids[pick(seed, c, i, ids.len())];
                                let row = conn
                                    .client
                                    .query_opt(&conn.select, &[id])
                                    .await?
                                    .ok_or_else(|| anyhow!("no user {id}"))?;
                                let user = (
                                    row.try_get::<_, String>(0)?,
                                    row.try_get::<_, String>(1)?,
                                    row.try_get::<_, String>(2)?,
                                    row.try_get::<_, i32>(3)?,
                                );
                                ensure!(&user.0 == id, "asked for {id}, got {}", user.0);
                                Ok(Outcome::Done(None))
                            }
                        }
                    }
                })
                .await
            }
            Backend::Mysql => {
                let conns = Arc::new(self.my.clone());
                let tag: Arc<str> = tag.into();
                drive(clients, length, move |c, i| {
                    let (conns, tag, ids) = (conns.clone(), tag.clone(), ids.clone());
                    async move {
                        let mut guard = conns[c].lock().await;
                        let MyConn {
                            conn,
                            insert,
                            select,
                            lock,
                        } = &mut *guard;
                        match op {
                            Op::Insert => {
                                let id = new_id();
                                let email = email(&tag, phase, c, i);
                                if in_tx {
                                    conn.query_drop("BEGIN").await?;
                                    let _: Option<i64> = conn.exec_first(&*lock, ()).await?;
                                }
                                conn.exec_drop(&*insert, (&id, &email, NAME, 1i64)).await?;
                                let n = conn.affected_rows();
                                if in_tx {
                                    conn.query_drop("COMMIT").await?;
                                }
                                ensure!(n == 1, "the insert touched {n} rows");
                                Ok(Outcome::Done(Some(id)))
                            }
                            Op::Lookup => {
                                let id = &ids[pick(seed, c, i, ids.len())];
                                let user: (String, String, String, i64) = conn
                                    .exec_first(&*select, (id,))
                                    .await?
                                    .ok_or_else(|| anyhow!("no user {id}"))?;
                                ensure!(&user.0 == id, "asked for {id}, got {}", user.0);
                                Ok(Outcome::Done(None))
                            }
                        }
                    }
                })
                .await
            }
        }
    }

    async fn count(&self) -> anyhow::Result<u64> {
        match self.backend {
            Backend::Sqlite => {
                let conn = Connection::open(&self.path)?;
                let n: i64 = conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
                Ok(n as u64)
            }
            Backend::Postgres => {
                let conn = self.pg.first().ok_or_else(|| anyhow!("no connection"))?;
                let n: i64 = conn
                    .client
                    .query_one("SELECT count(*) FROM users", &[])
                    .await?
                    .get(0);
                Ok(n as u64)
            }
            Backend::Mysql => {
                let conn = self.my.first().ok_or_else(|| anyhow!("no connection"))?;
                let n: Option<i64> = conn
                    .lock()
                    .await
                    .conn
                    .query_first("SELECT count(*) FROM users")
                    .await?;
                Ok(n.unwrap_or(0) as u64)
            }
        }
    }
}

/// The SQLite side on `clients` threads: inserts through one writer connection behind a
/// mutex, lookups on a connection per thread.
#[allow(clippy::too_many_arguments)]
fn sqlite_drive(
    path: &Path,
    clients: usize,
    length: Duration,
    op: Op,
    tag: &str,
    phase: &'static str,
    ids: &[String],
    seed: u64,
) -> anyhow::Result<Driven> {
    match op {
        Op::Insert => {
            let writer = Arc::new(Mutex::new(open_sqlite(path, "")?));
            drive_threads(
                clients,
                length,
                |_| Ok(writer.clone()),
                |w, c, i| {
                    let id = new_id();
                    let email = email(tag, phase, c, i);
                    let conn = w.lock().map_err(|_| anyhow!("the writer is poisoned"))?;
                    let n = conn
                        .prepare_cached(INSERT_SQLITE)?
                        .execute(params![id, email, NAME, 1i64])?;
                    ensure!(n == 1, "the insert touched {n} rows");
                    Ok(Outcome::Done(Some(id)))
                },
            )
        }
        Op::Lookup => drive_threads(
            clients,
            length,
            |_| open_sqlite(path, ""),
            |conn, c, i| {
                let id = &ids[pick(seed, c, i, ids.len())];
                let user = conn
                    .prepare_cached(SELECT_SQLITE)?
                    .query_row(params![id], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .optional()?
                    .ok_or_else(|| anyhow!("no user {id}"))?;
                ensure!(&user.0 == id, "asked for {id}, got {}", user.0);
                Ok(Outcome::Done(None))
            },
        ),
    }
}

// ---------------------------------------------------------------- the report

fn lat(r: &Run) -> String {
    format!("{:.2} / {:.2} ms", r.ms.0, r.ms.1)
}

/// `host 123 + driver 45 + others 6 µs` of CPU per operation.
fn cpu_per_op(r: &Run) -> String {
    let per = |s: f64| s * 1e6 / r.ops.max(1) as f64;
    let mut parts = Vec::new();
    if let Some(h) = r.cpu.host {
        parts.push(format!("host {:.0}", per(h)));
    }
    parts.push(format!("driver {:.0}", per(r.cpu.driver)));
    parts.push(format!("others {:.0}", per(r.cpu.others)));
    format!("{} µs", parts.join(" + "))
}

fn report(cli: &Cli, setup: &Setup, busy_before: f64, results: &[BackendResult]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(
        w,
        "## SQL backends: point lookup and insert, silo against the same statements natively"
    );
    let _ = writeln!(w);
    let pg_note = setup.pg.as_ref().map_or(String::new(), |pg| {
        format!(
            " PostgreSQL {} on 127.0.0.1 (the store: database and role `{}`, `pool-size = {}`; native: database `{}` as the admin role).",
            pg.version,
            pg.store_db(),
            pg.pool_size,
            pg.native_db()
        )
    });
    let my_note = setup.my.as_ref().map_or(String::new(), |my| {
        format!(
            " MariaDB {} on 127.0.0.1 (the store: databases `{db}` and `{db}_host`, user `{db}`, `pool-size = {}`; native: database `{}` as the admin user, the table with the store's MariaDB migrations).",
            my.version,
            my.pool_size,
            my.native_db(),
            db = my.store_db(),
        )
    });
    let _ = writeln!(
        w,
        "The demo's `users` component served by `silo run` on loopback, one host per backend (its `main` store on SQLite — WAL, `synchronous=NORMAL` — on PostgreSQL or on MariaDB).{pg_note}{my_note} \
         Insert: {c} clients `POST /users {{email, name}}` for {s} s (`INSERT INTO users (id, email, name, version) VALUES (?, ?, ?, ?)` in a transaction; nobody subscribes, so no event is written). \
         Lookup: {c} clients `GET /users/{{id}}` of random ids inserted before, for {s} s (`SELECT id, email, name, version FROM users WHERE id = ?`). \
         Native, right after each silo run: the same table and statements with the same driver and {c} clients — rusqlite on {c} threads (inserts through one writer connection behind a mutex, as silo's one writer per store; lookups on a connection per thread; cached statements; the host's pragmas), tokio-postgres and mysql_async with a connection per client (statements prepared once per connection; the insert as one autocommit statement). \
         Each run after a {wu} ms warm-up; p50 / p99 over every operation of the run.",
        c = cli.clients,
        s = cli.seconds,
        wu = cli.warmup_ms
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| backend | operation | silo ops/s | native ops/s | silo/native | silo p50 / p99 | native p50 / p99 |"
    );
    let _ = writeln!(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for r in results {
        for (op, silo, native) in [
            (Op::Insert, &r.silo_insert, &r.native_insert),
            (Op::Lookup, &r.silo_lookup, &r.native_lookup),
        ] {
            let _ = writeln!(
                w,
                "| {} | {} | {:.0} | {:.0} | **{:.2}** | {} | {} |",
                r.backend.title(),
                op.name(),
                silo.per_second(),
                native.per_second(),
                silo.per_second() / native.per_second().max(1e-9),
                lat(silo),
                lat(native)
            );
        }
        if let Some(tx) = &r.native_insert_tx {
            let shape = match r.backend {
                Backend::Mysql => {
                    "`BEGIN`, `SELECT … FOR UPDATE` of the writer row, `INSERT`, `COMMIT`"
                }
                _ => "`BEGIN; SELECT pg_advisory_xact_lock(…)`, `INSERT`, `COMMIT`",
            };
            let _ = writeln!(
                w,
                "| {} | insert, native in silo's transaction ({shape}) | – | {:.0} | {:.2} | – | {} |",
                r.backend.title(),
                tx.per_second(),
                r.silo_insert.per_second() / tx.per_second().max(1e-9),
                lat(tx)
            );
        }
    }
    let _ = writeln!(w);
    for r in results {
        let _ = writeln!(
            w,
            "- {}: CPU per operation — insert: silo {}, native {}; lookup: silo {}, native {}. Rows at lookup time: silo {}, native {}.",
            r.backend.title(),
            cpu_per_op(&r.silo_insert),
            cpu_per_op(&r.native_insert),
            cpu_per_op(&r.silo_lookup),
            cpu_per_op(&r.native_lookup),
            r.rows.0,
            r.rows.1
        );
        if let Some(tx) = &r.native_insert_tx {
            let _ = writeln!(
                w,
                "- {}: the native insert in silo's transaction shape: CPU per operation {}.",
                r.backend.title(),
                cpu_per_op(tx)
            );
        }
    }
    for r in results {
        for (what, run) in [
            ("silo insert", &r.silo_insert),
            ("silo lookup", &r.silo_lookup),
        ] {
            if run.failed > 0 {
                let _ = writeln!(
                    w,
                    "- **{} {what}: {} requests failed** (warm-up included; not counted in ops/s, counted in the latencies), the first: `{}`.",
                    r.backend.title(),
                    run.failed,
                    run.first_failure.as_deref().unwrap_or("")
                );
            }
        }
    }
    let _ = writeln!(
        w,
        "- CPU: \"host\" is `silo run`, \"driver\" this process (the HTTP clients; natively, the rusqlite work itself or the tokio-postgres and mysql_async clients), \"others\" everything else on the machine (PostgreSQL's backends, MariaDB's server, and anything else running). {} cores; the machine was {busy_before:.0}% busy in the second before the runs{}.",
        cores(),
        if busy_before >= 10.0 {
            " — **not idle: these figures are not representative**"
        } else {
            ""
        }
    );
    let _ = writeln!(
        w,
        "- The silo path per operation: an HTTP/1.1 request on a keep-alive loopback connection, a fresh instance of the component, its routing and JSON (request body, response), the host's SQL interface (statement checks, values across the component boundary), a pooled connection (SQLite: the store's writer or a reader; PostgreSQL and MariaDB: `pool-size` connections as the store's own role or user), and for every write a transaction holding the store's writer lock (PostgreSQL: `BEGIN` with an advisory lock, `INSERT`, `COMMIT`: three round trips against one; MariaDB: `SET SESSION innodb_lock_wait_timeout`, `BEGIN`, the writer row's `SELECT … FOR UPDATE` through the host's `silo_exec` procedure, `INSERT`, `COMMIT`: at least five round trips against one). The native side runs only the statement."
    );
    let _ = writeln!(w);
    md
}
