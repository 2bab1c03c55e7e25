//! events-bench: what silo's events cost, end to end, against the same SQLite writes done
//! natively.
//!
//! 1. **Throughput**: the real host (`silo run`) serves the events-probe fixture twice, as
//!    `pub` (publishes `Ping`) and `sub` (subscribes to `pub/Ping`; its handler inserts each
//!    event into `received` and upserts a per-key counter in `applied`, in the delivery
//!    transaction). `--clients` clients publish `--events` events through
//!    `POST /pub/publish`, `--batch` per request (one transaction each), keys spread over
//!    `--keys`; the clock runs from the first publish until `GET /admin/events` shows them
//!    all delivered and nothing pending (polled every 20 ms). Then again with one event per
//!    request (`--single-events` events), the shape of a typical service write.
//! 2. **Delivery lag**: a fresh host; single events published at a fixed rate (each of
//!    `--rates`, for `--seconds`), paced every millisecond, then the host's own
//!    publish-to-handler-commit p50/p99 (over its last 4096 deliveries) once drained.
//! 3. **Native baseline**: the outbox, inbox and probe tables (same shapes, same pragmas)
//!    in two SQLite files with rusqlite on one thread: per event, publish (outbox row and
//!    delivery row), deliver (inbox row, `received`, `applied`) and acknowledge (delete
//!    both rows), one transaction per step and per event, and batched as silo batches.
//!
//! Prints a Markdown section on stdout; progress goes to stderr. Every host it starts runs
//! on 127.0.0.1 with ports the kernel picks, in a temporary folder, and is stopped when the
//! run ends, fails or is interrupted.

use std::fmt::Write as _;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use clap::Parser;
use hyper::{Method, StatusCode};
use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::json;
use silo_bench::{
    HostStart, HttpClient, SiloHost, WorkDir, cores, cpu_split, cpu_split_text, driver_main,
    get_json, http_client, now_ms, open_sqlite, percentiles_ms, random_hex, send,
};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// The subscription the probe's two services make.
const SUBSCRIPTION: &str = "sub:pub/Ping";
/// How often `/admin/events` is polled while waiting for a drain.
const POLL: Duration = Duration::from_millis(20);
/// The host's latency window (`LATENCY_WINDOW` in host/src/events/router.rs).
const LATENCY_WINDOW: u64 = 4096;
/// The subscriber's default delivery batch (`[services.X.events] batch`, 64).
const DELIVERY_BATCH: usize = 64;
/// Most publish requests in flight at once in the fixed-rate runs.
const MAX_IN_FLIGHT: usize = 256;

#[derive(Debug, Parser)]
#[command(
    name = "events-bench",
    about = "Events throughput and delivery lag through silo, against native rusqlite"
)]
struct Cli {
    /// The silo binary.
    #[arg(long, env = "BENCH_SILO", default_value = "target/release/silo")]
    silo: PathBuf,
    /// The events-probe fixture component.
    #[arg(
        long,
        env = "BENCH_EVENTS_PROBE",
        default_value = "components/target/wasm32-wasip2/release/events_probe.wasm"
    )]
    probe: PathBuf,
    /// Events of the batched throughput point.
    #[arg(long, env = "BENCH_EVENTS", default_value_t = 20_000)]
    events: u64,
    /// Events published per request (one transaction) at the batched throughput point.
    #[arg(long, env = "BENCH_EVENT_BATCH", default_value_t = 50)]
    batch: u64,
    /// Events of the one-event-per-request throughput point.
    #[arg(long, env = "BENCH_EVENTS_SINGLE", default_value_t = 5_000)]
    single_events: u64,
    /// Concurrent publishing clients at the throughput points.
    #[arg(long, env = "BENCH_EVENT_CLIENTS", default_value_t = 4)]
    clients: usize,
    /// Distinct event keys (requests take them in turn).
    #[arg(long, env = "BENCH_EVENT_KEYS", default_value_t = 64)]
    keys: u64,
    /// Fixed publish rates of the lag runs, events per second (comma- or space-separated).
    #[arg(long, env = "BENCH_EVENT_RATES", default_value = "500,2000")]
    rates: String,
    /// Length of each fixed-rate run, seconds.
    #[arg(long, env = "BENCH_EVENT_SECONDS", default_value_t = 10)]
    seconds: u64,
    /// Longest wait for a drain (after the last publish) or a host start, seconds.
    #[arg(long, env = "BENCH_EVENT_TIMEOUT", default_value_t = 120)]
    timeout: u64,
    /// Folder for the hosts' logs (default: the temporary folder, removed at the end).
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    driver_main("events-bench", run(&cli))
}

macro_rules! say {
    ($($arg:tt)*) => { eprintln!("events-bench: {}", format_args!($($arg)*)) };
}

async fn run(cli: &Cli) -> anyhow::Result<String> {
    ensure!(cli.events >= 1, "--events must be at least 1");
    ensure!(cli.single_events >= 1, "--single-events must be at least 1");
    ensure!(
        (1..=10_000).contains(&cli.batch),
        "--batch must be 1 to 10000 (the probe's limit)"
    );
    ensure!(cli.clients >= 1, "--clients must be at least 1");
    ensure!(cli.keys >= 1, "--keys must be at least 1");
    ensure!(cli.seconds >= 1, "--seconds must be at least 1");
    let rates = parse_rates(&cli.rates)?;
    ensure!(
        cli.silo.is_file(),
        "{} is missing: run `make build` (or `cargo build --release -p silo`) first",
        cli.silo.display()
    );
    ensure!(
        cli.probe.is_file(),
        "{} is missing: run `make components` first",
        cli.probe.display()
    );
    let silo = std::fs::canonicalize(&cli.silo)?;
    let probe = std::fs::canonicalize(&cli.probe)?;

    let work = WorkDir::create("silo-events-bench")?;
    let log_dir = match &cli.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            std::fs::canonicalize(d)?
        }
        None => work.0.clone(),
    };
    let setup = Setup {
        silo,
        probe,
        work: work.0.clone(),
        log_dir,
        token: random_hex(32),
        client: http_client(),
        keys: cli.keys,
        timeout: Duration::from_secs(cli.timeout),
    };

    // Native first: no host running.
    say!("native: {} events, batched as silo", cli.events);
    let native_batched = native(
        &setup.work,
        "native-batched",
        cli.events,
        Some(cli.batch),
        cli.keys,
    )
    .await?;
    say!("native: {} events, one per publish", cli.single_events);
    let native_single = native(
        &setup.work,
        "native-single",
        cli.single_events,
        Some(1),
        cli.keys,
    )
    .await?;
    say!(
        "native: {} events, one transaction per step and event",
        cli.single_events
    );
    let native_plain = native(
        &setup.work,
        "native-plain",
        cli.single_events,
        None,
        cli.keys,
    )
    .await?;

    let batched = throughput(&setup, "tput-batched", cli.events, cli.batch, cli.clients).await?;
    let single = throughput(&setup, "tput-single", cli.single_events, 1, cli.clients).await?;
    let mut lags = Vec::new();
    for rate in rates {
        lags.push(lag(&setup, rate, cli.seconds).await?);
    }

    Ok(report(
        cli,
        &[(&batched, native_batched), (&single, native_single)],
        native_plain,
        &lags,
    ))
}

fn parse_rates(s: &str) -> anyhow::Result<Vec<u64>> {
    let rates: Vec<u64> = s
        .split([',', ' '])
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<u64>().ok().filter(|r| *r > 0).ok_or_else(|| {
                anyhow!("--rates: `{r}` is not a positive number of events per second")
            })
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(!rates.is_empty(), "--rates: no rate given");
    Ok(rates)
}

/// What every scenario shares.
struct Setup {
    silo: PathBuf,
    probe: PathBuf,
    work: PathBuf,
    log_dir: PathBuf,
    token: String,
    client: HttpClient,
    keys: u64,
    timeout: Duration,
}

// ---------------------------------------------------------------- the host

/// A running `silo run` serving the probe twice (stopped when dropped).
struct Host(SiloHost);

impl Deref for Host {
    type Target = SiloHost;
    fn deref(&self) -> &SiloHost {
        &self.0
    }
}

impl DerefMut for Host {
    fn deref_mut(&mut self) -> &mut SiloHost {
        &mut self.0
    }
}

impl Host {
    /// Starts a host on a fresh data folder `WORK/NAME` and waits until it serves and the
    /// subscription is registered.
    async fn start(setup: &Setup, name: &str) -> anyhow::Result<Host> {
        let dir = setup.work.join(name);
        std::fs::create_dir_all(&dir)?;
        let manifest = dir.join("silo.toml");
        let probe = setup.probe.display();
        std::fs::write(
            &manifest,
            format!(
                r#"[services.pub]
component = "{probe}"
route = "/pub"
publishes = ["Ping"]
[services.pub.stores.main]

[services.sub]
component = "{probe}"
route = "/sub"
subscribes = [{{ source = "pub", topic = "Ping" }}]
[services.sub.stores.main]
"#
            ),
        )?;
        let deadline = Instant::now() + setup.timeout;
        let mut host = Host(
            SiloHost::start(&HostStart {
                prog: "events-bench",
                name,
                silo: &setup.silo,
                manifest: &manifest,
                data: &dir.join("data"),
                // One code cache for every host of the run: only the first compiles.
                cache: &setup.work.join("cache"),
                log: &setup.log_dir.join(format!("events-{name}.log")),
                token: &setup.token,
                timeout: setup.timeout,
            })
            .await?,
        );
        loop {
            host.check_alive()?;
            match host.stats(setup).await {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(host.died("never listed the subscription")));
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

    /// The subscription's figures from `/admin/events`.
    async fn stats(&self, setup: &Setup) -> anyhow::Result<SubStats> {
        let url = format!("{}/admin/events", self.admin);
        let v = get_json(&setup.client, &url, Some(&setup.token)).await?;
        let sub = v["subscriptions"]
            .as_array()
            .and_then(|subs| subs.iter().find(|s| s["subscription"] == SUBSCRIPTION))
            .ok_or_else(|| anyhow!("GET {url}: no subscription `{SUBSCRIPTION}` in {v}"))?;
        let n = |k: &str| sub[k].as_u64().unwrap_or(0);
        Ok(SubStats {
            pending: n("pending"),
            delivered: n("delivered"),
            p50_ms: sub["latencyP50Ms"].as_u64(),
            p99_ms: sub["latencyP99Ms"].as_u64(),
            retries: n("retries"),
            duplicates: n("duplicates"),
            dead_letters: n("deadLetters"),
            stalled: sub["stalled"].as_str().map(String::from),
        })
    }

    /// Polls until `delivered` reaches `target` with nothing pending; returns when the
    /// drained state was seen, and the figures then. Fails on a stall, a dead letter, an
    /// exited host, or at `deadline`.
    async fn drained(
        &mut self,
        setup: &Setup,
        target: u64,
        deadline: Instant,
        label: &str,
    ) -> anyhow::Result<(Instant, SubStats)> {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut said = Instant::now();
        loop {
            tick.tick().await;
            let s = self.poll(setup).await?;
            if s.delivered >= target && s.pending == 0 {
                return Ok((Instant::now(), s));
            }
            if Instant::now() >= deadline {
                bail!(
                    "{label}: not drained in time: {} of {target} delivered, {} pending{}",
                    s.delivered,
                    s.pending,
                    s.stalled
                        .map(|w| format!(" (stalled: {w})"))
                        .unwrap_or_default()
                );
            }
            if said.elapsed() >= Duration::from_secs(2) {
                say!(
                    "{label}: {} of {target} delivered, {} pending",
                    s.delivered,
                    s.pending
                );
                said = Instant::now();
            }
        }
    }

    /// One poll, with the checks every poll makes.
    async fn poll(&mut self, setup: &Setup) -> anyhow::Result<SubStats> {
        self.check_alive()?;
        let s = self.stats(setup).await?;
        ensure!(
            s.dead_letters == 0,
            "{}",
            self.died(&format!(
                "moved {} events to the dead letters",
                s.dead_letters
            ))
        );
        if let Some(why) = &s.stalled {
            bail!("{}", self.died(&format!("stalled the subscription: {why}")));
        }
        Ok(s)
    }

    /// How many events the subscriber's handler recorded (`GET /sub/count`).
    async fn received(&self, setup: &Setup) -> anyhow::Result<u64> {
        let url = format!("{}/sub/count", self.base);
        let v = get_json(&setup.client, &url, None).await?;
        v["received"]
            .as_u64()
            .ok_or_else(|| anyhow!("GET {url}: no count in {v}"))
    }
}

/// One subscription's figures, as `/admin/events` shows them.
#[derive(Debug, Clone)]
struct SubStats {
    pending: u64,
    delivered: u64,
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
    retries: u64,
    duplicates: u64,
    dead_letters: u64,
    stalled: Option<String>,
}

// ---------------------------------------------------------------- publishing

fn key(i: u64, keys: u64) -> String {
    format!("k{}", i % keys)
}

/// `POST /pub/publish` of `count` events with key `key`; fails unless 201.
async fn publish(client: &HttpClient, url: &str, key: &str, count: u64) -> anyhow::Result<()> {
    let body = json!({ "topic": "Ping", "key": key, "data": "bench", "count": count });
    let (status, answer) = send(client, Method::POST, url, Some(body.to_string())).await?;
    ensure!(
        status == StatusCode::CREATED,
        "POST {url} answered {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

// ---------------------------------------------------------------- throughput

struct Throughput {
    events: u64,
    batch: u64,
    /// First publish to drained.
    elapsed: Duration,
    /// First publish to the last publish's answer.
    publish_elapsed: Duration,
    /// Request latency of the publishes, p50 and p99, ms.
    request_ms: (f64, f64),
    host_cpu: f64,
    /// The host's CPU by thread group.
    cpu_split: Vec<(String, f64)>,
    stats: SubStats,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

async fn throughput(
    setup: &Setup,
    name: &str,
    events: u64,
    batch: u64,
    clients: usize,
) -> anyhow::Result<Throughput> {
    let mut host = Host::start(setup, name).await?;
    let url = format!("{}/pub/publish", host.base);

    // Warm-up: one request of the measured shape, delivered, before the clock starts.
    publish(&setup.client, &url, "warmup", batch).await?;
    let deadline = Instant::now() + setup.timeout;
    let (_, warm) = host.drained(setup, batch, deadline, name).await?;
    let base = warm.delivered;

    let requests = events.div_ceil(batch);
    say!("{name}: publishing {events} events, {batch} per request, from {clients} clients");
    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = host.cpu_seconds();
    let threads_before = host.thread_cpu();
    let started = Instant::now();
    let mut publishers = JoinSet::new();
    for _ in 0..clients {
        let (client, url, next, keys) =
            (setup.client.clone(), url.clone(), next.clone(), setup.keys);
        publishers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return anyhow::Ok((latencies, Instant::now()));
                }
                let count = batch.min(events - i * batch);
                let t = Instant::now();
                publish(&client, &url, &key(i, keys), count).await?;
                latencies.push(t.elapsed());
            }
        });
    }

    // Poll while publishing; the drain counts from the first publish.
    let mut latencies = Vec::new();
    let mut last_answer = started;
    let target = base + events;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut said = Instant::now();
    let mut deadline = Instant::now() + setup.timeout;
    let (done, stats) = loop {
        tokio::select! {
            Some(joined) = publishers.join_next() => {
                let (l, at) = joined.context("a publishing client panicked")??;
                latencies.extend(l);
                last_answer = last_answer.max(at);
                if publishers.is_empty() {
                    deadline = Instant::now() + setup.timeout;
                }
            }
            _ = tick.tick() => {
                let s = host.poll(setup).await?;
                if publishers.is_empty() && s.delivered >= target && s.pending == 0 {
                    break (Instant::now(), s);
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{name}: not drained within {:?}: {} of {events} delivered, {} pending",
                        setup.timeout,
                        s.delivered.saturating_sub(base),
                        s.pending
                    );
                }
                if said.elapsed() >= Duration::from_secs(2) {
                    say!(
                        "{name}: {} of {events} delivered, {} pending",
                        s.delivered.saturating_sub(base),
                        s.pending
                    );
                    said = Instant::now();
                }
            }
        }
    };
    let host_cpu = host.cpu_seconds() - cpu_before;
    let cpu_split = cpu_split(&threads_before, &host.thread_cpu());
    let received = host.received(setup).await?;
    ensure!(
        received == target,
        "{name}: the subscriber recorded {received} events, expected {target}"
    );
    let result = Throughput {
        cpu_split,
        events,
        batch,
        elapsed: done - started,
        publish_elapsed: last_answer - started,
        request_ms: percentiles_ms(&mut latencies),
        host_cpu,
        stats,
    };
    say!(
        "{name}: {:.0} events/s ({events} in {:.2} s; publishing took {:.2} s), host CPU {:.2} s ({})",
        result.per_second(),
        result.elapsed.as_secs_f64(),
        result.publish_elapsed.as_secs_f64(),
        host_cpu,
        cpu_split_text(&result.cpu_split)
    );
    Ok(result)
}

// ---------------------------------------------------------------- fixed-rate lag

struct Lag {
    rate: u64,
    events: u64,
    achieved: f64,
    /// Last publish answered to drained.
    drain: Duration,
    /// First publish to drained.
    span: Duration,
    request_ms: (f64, f64),
    host_cpu: f64,
    /// The host's CPU by thread group.
    cpu_split: Vec<(String, f64)>,
    stats: SubStats,
}

async fn lag(setup: &Setup, rate: u64, seconds: u64) -> anyhow::Result<Lag> {
    let name = format!("lag-{rate}");
    let mut host = Host::start(setup, &name).await?;
    let url = format!("{}/pub/publish", host.base);

    publish(&setup.client, &url, "warmup", 1).await?;
    let deadline = Instant::now() + setup.timeout;
    let (_, warm) = host.drained(setup, 1, deadline, &name).await?;

    let events = rate * seconds;
    say!("{name}: publishing {events} single events at {rate}/s for {seconds} s");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut requests = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let cpu_before = host.cpu_seconds();
    let threads_before = host.thread_cpu();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut latencies = Vec::with_capacity(events as usize);
    let mut last_answer = started;
    while sent < events {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(events);
        while sent < due {
            let permit = slots.clone().acquire_owned().await?;
            let (client, url, k) = (setup.client.clone(), url.clone(), key(sent, setup.keys));
            requests.spawn(async move {
                let t = Instant::now();
                let r = publish(&client, &url, &k, 1).await;
                drop(permit);
                r.map(|()| (t.elapsed(), Instant::now()))
            });
            sent += 1;
        }
        // Collect the finished ones as we go (a failure stops the run at once).
        while let Some(joined) = requests.try_join_next() {
            let (l, at) = joined.context("a publish task panicked")??;
            latencies.push(l);
            last_answer = last_answer.max(at);
        }
        if started.elapsed() > Duration::from_secs(seconds) + setup.timeout {
            bail!("{name}: publishing did not finish in time ({sent} of {events} sent)");
        }
    }
    let sent_in = started.elapsed();
    while let Some(joined) = requests.join_next().await {
        let (l, at) = joined.context("a publish task panicked")??;
        latencies.push(l);
        last_answer = last_answer.max(at);
    }
    let deadline = Instant::now() + setup.timeout;
    let target = warm.delivered + events;
    let (done, stats) = host.drained(setup, target, deadline, &name).await?;
    let host_cpu = host.cpu_seconds() - cpu_before;
    let cpu_split = cpu_split(&threads_before, &host.thread_cpu());
    let received = host.received(setup).await?;
    ensure!(
        received == target,
        "{name}: the subscriber recorded {received} events, expected {target}"
    );
    let result = Lag {
        cpu_split,
        rate,
        events,
        achieved: events as f64 / sent_in.as_secs_f64(),
        drain: done.saturating_duration_since(last_answer),
        span: done - started,
        request_ms: percentiles_ms(&mut latencies),
        host_cpu,
        stats,
    };
    say!(
        "{name}: published at {:.0}/s; delivery p50 {} ms, p99 {} ms (host's figures); drained {} ms after the last publish",
        result.achieved,
        opt(result.stats.p50_ms),
        opt(result.stats.p99_ms),
        result.drain.as_millis()
    );
    Ok(result)
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

// ---------------------------------------------------------------- native baseline

/// The host's outbox tables (host/src/events/outbox.rs, `OUTBOX_SCHEMA`).
const OUTBOX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS main._silo_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS main._silo_subscriptions (
    subscription TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    topic TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS main._silo_deliveries (
    subscription TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (subscription, seq)
);
CREATE INDEX IF NOT EXISTS main._silo_deliveries_seq ON _silo_deliveries (seq);
CREATE TABLE IF NOT EXISTS main._silo_dead_letters (
    id TEXT PRIMARY KEY,
    subscription TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    dead_ms INTEGER NOT NULL
);
";

/// The host's inbox (`INBOX_SCHEMA`) and the probe's migration
/// (components/fixtures/events-probe/src/lib.rs).
const SUBSCRIBER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS main._silo_inbox (
    subscription TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (subscription, event_id)
);
CREATE TABLE received (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    source TEXT,
    topic TEXT,
    key TEXT,
    sequence INTEGER,
    data TEXT
);
CREATE TABLE applied (key TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE fixes (key TEXT PRIMARY KEY);
";

const INSERT_OUTBOX: &str = "INSERT INTO main._silo_outbox (id, topic, key, time_ms, content_type, data) VALUES (?, ?, ?, ?, ?, ?)";
const INSERT_DELIVERY: &str = "INSERT INTO main._silo_deliveries (subscription, seq) VALUES (?, ?)";
const INSERT_INBOX: &str = "INSERT INTO main._silo_inbox (subscription, event_id, received_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING";
const INSERT_RECEIVED: &str =
    "INSERT INTO received (event_id, source, topic, key, sequence, data) VALUES (?, ?, ?, ?, ?, ?)";
const UPSERT_APPLIED: &str =
    "INSERT INTO applied (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1";
const DELETE_DELIVERY: &str =
    "DELETE FROM main._silo_deliveries WHERE subscription = ? AND seq = ?";
const DELETE_OUTBOX: &str = "DELETE FROM main._silo_outbox WHERE seq = ?1 AND NOT EXISTS (SELECT 1 FROM main._silo_deliveries WHERE seq = ?1)";

/// An event the native publisher wrote, as the native subscriber gets it.
struct NativeEvent {
    seq: i64,
    id: String,
    key: String,
    data: String,
}

/// Events per second of the native outbox → inbox → acknowledge loop over `events`
/// events: `publish_batch` events per publishing transaction and up to 64 per delivery and
/// acknowledgement transaction, or (`None`) every step of every event its own transaction.
async fn native(
    work: &Path,
    name: &str,
    events: u64,
    publish_batch: Option<u64>,
    keys: u64,
) -> anyhow::Result<f64> {
    let dir = work.join(name);
    let result =
        tokio::task::spawn_blocking(move || native_loop(&dir, events, publish_batch, keys))
            .await
            .context("the native loop panicked")??;
    say!("{name}: {result:.0} events/s");
    Ok(result)
}

fn native_loop(
    dir: &Path,
    events: u64,
    publish_batch: Option<u64>,
    keys: u64,
) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let mut publisher = open_sqlite(&dir.join("pub.db"), OUTBOX_SCHEMA)?;
    let mut subscriber = open_sqlite(&dir.join("sub.db"), SUBSCRIBER_SCHEMA)?;
    publisher.execute(
        "INSERT INTO main._silo_subscriptions (subscription, subscriber, topic, created_ms) VALUES (?, ?, ?, ?)",
        params![SUBSCRIPTION, "sub", "Ping", now_ms()],
    )?;
    let (publish_batch, deliver_batch) = match publish_batch {
        Some(b) => (b.max(1), DELIVERY_BATCH),
        None => (1, 1),
    };
    let started = Instant::now();
    let mut pending: Vec<NativeEvent> = Vec::new();
    let mut published = 0u64;
    let mut request = 0u64;
    while published < events {
        let count = publish_batch.min(events - published);
        native_publish(&mut publisher, &key(request, keys), count, &mut pending)?;
        published += count;
        request += 1;
        // Deliver full batches as they fill (everything once publishing is over).
        while pending.len() >= deliver_batch || (published == events && !pending.is_empty()) {
            let take = deliver_batch.min(pending.len());
            let batch: Vec<NativeEvent> = pending.drain(..take).collect();
            native_deliver(&mut subscriber, &batch)?;
            native_acknowledge(&mut publisher, &batch)?;
        }
    }
    let elapsed = started.elapsed();
    let received: u64 = subscriber.query_row("SELECT count(*) FROM received", [], |r| r.get(0))?;
    let left: u64 =
        publisher.query_row("SELECT count(*) FROM main._silo_outbox", [], |r| r.get(0))?;
    ensure!(
        received == events && left == 0,
        "native: {received} of {events} received, {left} left in the outbox"
    );
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// (a) One publishing transaction of `count` events with key `key`.
fn native_publish(
    conn: &mut Connection,
    key: &str,
    count: u64,
    out: &mut Vec<NativeEvent>,
) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for i in 1..=count {
        let id = format!("evt_{}", random_hex(16));
        let data = if count == 1 {
            "bench".to_string()
        } else {
            format!("bench-{i}")
        };
        tx.prepare_cached(INSERT_OUTBOX)?.execute(params![
            id,
            "Ping",
            key,
            now_ms(),
            "text/plain",
            data.as_bytes()
        ])?;
        let seq = tx.last_insert_rowid();
        tx.prepare_cached(INSERT_DELIVERY)?
            .execute(params![SUBSCRIPTION, seq])?;
        out.push(NativeEvent {
            seq,
            id,
            key: key.to_string(),
            data,
        });
    }
    tx.commit()?;
    Ok(())
}

/// (b) One delivery transaction on the subscriber: inbox record, then the probe's handler.
fn native_deliver(conn: &mut Connection, batch: &[NativeEvent]) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for e in batch {
        let recorded =
            tx.prepare_cached(INSERT_INBOX)?
                .execute(params![SUBSCRIPTION, e.id, now_ms()])?;
        if recorded == 0 {
            continue;
        }
        tx.prepare_cached(INSERT_RECEIVED)?
            .execute(params![e.id, "pub", "Ping", e.key, e.seq, e.data])?;
        tx.prepare_cached(UPSERT_APPLIED)?.execute(params![e.key])?;
    }
    tx.commit()?;
    Ok(())
}

/// (c) One acknowledging transaction on the publisher.
fn native_acknowledge(conn: &mut Connection, batch: &[NativeEvent]) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for e in batch {
        tx.prepare_cached(DELETE_DELIVERY)?
            .execute(params![SUBSCRIPTION, e.seq])?;
        tx.prepare_cached(DELETE_OUTBOX)?.execute(params![e.seq])?;
    }
    tx.commit()?;
    Ok(())
}

// ---------------------------------------------------------------- the report

fn report(cli: &Cli, points: &[(&Throughput, f64)], native_plain: f64, lags: &[Lag]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(
        w,
        "## Events: outbox → router → inbox, silo against native rusqlite"
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "The events-probe fixture as `pub` (publishes `Ping`) and `sub` (its handler inserts each event into `received` and upserts a per-key count in `applied`, in the delivery transaction), served by `silo run` on loopback (SQLite WAL, `synchronous=NORMAL`). \
         Throughput: {} clients publish through `POST /pub/publish` (one transaction per request) with keys spread over {} keys, timed from the first publish until `/admin/events` shows every event delivered and none pending (polled every {} ms; a warm-up request is delivered first and not counted). \
         Native: the same tables and statements with rusqlite on one thread, two files, same pragmas; per event the publishing transaction (outbox and delivery row), the subscriber's transaction (inbox row, `received`, `applied`) and the acknowledging one (both rows deleted).",
        cli.clients,
        cli.keys,
        POLL.as_millis()
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| scenario | events | silo events/s | native events/s | silo/native |"
    );
    let _ = writeln!(w, "| --- | ---: | ---: | ---: | ---: |");
    for (t, native) in points {
        let _ = writeln!(
            w,
            "| {} per request/transaction, delivered ≤{DELIVERY_BATCH} per transaction | {} | {:.0} | {native:.0} | {:.2} |",
            t.batch,
            t.events,
            t.per_second(),
            t.per_second() / native
        );
    }
    let _ = writeln!(
        w,
        "| native only: every step of every event its own transaction | {} | – | {native_plain:.0} | – |",
        cli.single_events
    );
    let _ = writeln!(w);
    for (t, _) in points {
        let _ = writeln!(
            w,
            "- {} per request: publishing took {:.2} s of the {:.2} s (publish requests p50 {:.2} ms, p99 {:.2} ms); host CPU {:.2} s ({:.0} µs per event, {:.0}% of {} cores; by thread: {}); retries {}, duplicates {}.",
            t.batch,
            t.publish_elapsed.as_secs_f64(),
            t.elapsed.as_secs_f64(),
            t.request_ms.0,
            t.request_ms.1,
            t.host_cpu,
            t.host_cpu * 1e6 / t.events as f64,
            100.0 * t.host_cpu / t.elapsed.as_secs_f64() / cores() as f64,
            cores(),
            cpu_split_text(&t.cpu_split),
            t.stats.retries,
            t.stats.duplicates
        );
    }
    let _ = writeln!(
        w,
        "- Native runs everything on one thread with the events in memory (no router reads, no savepoints, no authorizer); silo publishes and delivers concurrently, on the same {} cores as the load driver.",
        cores()
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Delivery lag: a fresh host per rate; single events (one request and transaction each, keys in turn over {} keys) published at a fixed rate for {} s, paced every millisecond; once drained, the host's own publish-to-handler-commit percentiles from `/admin/events` (over its last {LATENCY_WINDOW} deliveries, in whole ms). \"Drained after\": from the last publish's answer until `/admin/events` showed nothing pending (polled every {} ms).",
        cli.keys,
        cli.seconds,
        POLL.as_millis()
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| publish rate | achieved | events | p50 ms | p99 ms | delivered | retries | drained after | publish request p50 / p99 | host CPU |"
    );
    let _ = writeln!(
        w,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for l in lags {
        let _ = writeln!(
            w,
            "| {}/s | {:.0}/s | {} | {} | {} | {} | {} | {} ms | {:.2} / {:.2} ms | {:.0}% |",
            l.rate,
            l.achieved,
            l.events,
            opt(l.stats.p50_ms),
            opt(l.stats.p99_ms),
            l.stats.delivered,
            l.stats.retries,
            l.drain.as_millis(),
            l.request_ms.0,
            l.request_ms.1,
            100.0 * l.host_cpu / l.span.as_secs_f64() / cores() as f64
        );
    }
    let _ = writeln!(w);
    let windowed: Vec<String> = lags
        .iter()
        .filter(|l| l.stats.delivered > LATENCY_WINDOW)
        .map(|l| format!("{}/s", l.rate))
        .collect();
    for l in lags {
        let _ = writeln!(
            w,
            "- {}/s: host CPU by thread: {}.",
            l.rate,
            cpu_split_text(&l.cpu_split)
        );
    }
    let _ = writeln!(
        w,
        "- \"delivered\" includes one warm-up event delivered before the run.{}",
        if windowed.is_empty() {
            String::new()
        } else {
            format!(
                " At {} more than {LATENCY_WINDOW} events were delivered: p50/p99 are over the last {LATENCY_WINDOW}.",
                windowed.join(", ")
            )
        }
    );
    let _ = writeln!(w);
    md
}
