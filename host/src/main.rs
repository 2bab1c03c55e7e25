//! The `silo` command: `silo run` serves a manifest; the other commands talk to a running
//! host's admin endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use silo::host::{Host, Listeners, ShutdownSignal, StartError, serve_workers};
use silo::manifest::Manifest;

#[derive(Parser)]
#[command(
    name = "silo",
    version,
    about = "A host runtime for the database-per-service pattern"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves every service of the manifest until SIGINT or SIGTERM.
    Run {
        /// The manifest.
        #[arg(long, default_value = "silo.toml")]
        manifest: PathBuf,
        /// Address of the service port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address of the admin endpoint.
        #[arg(long, default_value = "127.0.0.1:8081")]
        admin: SocketAddr,
        /// Folder of the host's data: stores, code cache, admin token.
        #[arg(long, default_value = ".silo")]
        data: PathBuf,
        /// Admin token, at least 16 characters (default: `SILO_ADMIN_TOKEN`, else
        /// `DATA/admin.token`, generated).
        #[arg(long)]
        admin_token: Option<String>,
        /// Compiled-code cache folder (default: `DATA/cache`).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Worker threads, each with its own runtime and socket (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Lists the services of a running host.
    Services(AdminArgs),
    /// Adds or replaces one service's component in a running host, no restart.
    Deploy {
        /// The service's name.
        service: String,
        /// The component to deploy.
        file: PathBuf,
        /// Route prefix (required for a new service).
        #[arg(long)]
        route: Option<String>,
        /// A store to grant (repeatable; added to those already granted).
        #[arg(long = "store")]
        stores: Vec<String>,
        /// Services it may call, comma-separated (replaces the list).
        #[arg(long)]
        calls: Option<String>,
        /// Topics it may publish, comma-separated (replaces the list).
        #[arg(long)]
        publishes: Option<String>,
        /// Its subscriptions as SOURCE/TOPIC, comma-separated (replaces the list).
        #[arg(long)]
        subscribes: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Brings a running host to what its manifest says now: prints the difference service
    /// by service (new, changed, removed, unchanged), and applies it with `--yes`.
    Apply {
        /// Only this service (default: every service of the manifest and of the host).
        service: Option<String>,
        /// Apply the difference (without it, only print it).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Demonstrations against a live host.
    Demo {
        #[command(subcommand)]
        demo: Demo,
    },
    /// Returns a service to its previous version.
    Rollback {
        service: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Removes one service (its data stays in the data folder).
    Undeploy {
        service: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Lists events that exhausted their retries; `replay ID` puts one back in line.
    DeadLetters {
        /// `replay`, or nothing to list.
        action: Option<String>,
        /// The dead letter to replay (its ID as listed).
        id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Lists every subscription with its backlog, lag and delivery figures.
    Events(AdminArgs),
    /// Lists sagas (newest first) with their steps; `--state failed` shows the ones that
    /// need an operator.
    Sagas {
        /// running, compensating, completed, compensated or failed.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum Demo {
    /// Starts a host with the demo services and the intruder, runs every attack of the
    /// catalogue, prints attack, expected, observed, PASS/FAIL; exits 1 if any attack got
    /// through or hurt the victim.
    Isolation {
        /// Folder of the built components.
        #[arg(long, default_value = "components/target/wasm32-wasip2/release")]
        components: PathBuf,
    },
}

#[derive(Args)]
struct AdminArgs {
    /// Address of the host's admin endpoint.
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin: String,
    /// Admin token (default: `SILO_ADMIN_TOKEN`, else `DATA/admin.token`).
    #[arg(long)]
    admin_token: Option<String>,
    /// The host's data folder, to find `admin.token` in.
    #[arg(long, default_value = ".silo")]
    data: PathBuf,
}

impl AdminArgs {
    /// The token to send: never an empty one, which no host accepts.
    fn token(&self) -> Result<String, String> {
        if let Some((t, from)) = given_admin_token(self.admin_token.clone()) {
            if t.trim().is_empty() {
                return Err(format!(
                    "{from} is empty: give the host's admin token (or leave {from} out to read DATA/admin.token)"
                ));
            }
            return Ok(t);
        }
        let path = self.data.join("admin.token");
        let t = std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("no admin token: pass --admin-token, set SILO_ADMIN_TOKEN, or point --data at the host's folder ({}: {e})", path.display()))?;
        if t.is_empty() {
            return Err(format!(
                "{} is empty: pass --admin-token or set SILO_ADMIN_TOKEN",
                path.display()
            ));
        }
        Ok(t)
    }
}

/// The admin token given on the command line or in the environment, with where it came
/// from (`--admin-token` wins over `SILO_ADMIN_TOKEN`). An empty value counts as given, so
/// it is refused rather than mistaken for "no token".
fn given_admin_token(flag: Option<String>) -> Option<(String, &'static str)> {
    match flag {
        Some(t) => Some((t, "--admin-token")),
        None => std::env::var("SILO_ADMIN_TOKEN")
            .ok()
            .map(|t| (t, "SILO_ADMIN_TOKEN")),
    }
}

/// The shortest admin token `silo run` accepts.
const MIN_ADMIN_TOKEN: usize = 16;

/// The admin token `silo run` serves with, if one was given: refused when it is shorter
/// than [`MIN_ADMIN_TOKEN`] (an empty token would otherwise mean "no authentication").
fn run_admin_token(flag: Option<String>) -> Result<Option<String>, String> {
    match given_admin_token(flag) {
        None => Ok(None),
        Some((t, from)) if t.chars().count() < MIN_ADMIN_TOKEN => Err(format!(
            "{from}: the admin token is {} characters long; give one of at least {MIN_ADMIN_TOKEN} (e.g. `openssl rand -hex 32`), or leave {from} out to use the generated DATA/admin.token",
            t.chars().count()
        )),
        Some((t, _)) => Ok(Some(t)),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SILO_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Deploy { service, .. }
    | Command::Rollback { service, .. }
    | Command::Undeploy { service, .. }
    | Command::Apply {
        service: Some(service),
        ..
    } = &cli.command
        && !silo::manifest::valid_name(service)
    {
        return fail(
            2,
            format!("`{service}` is not a service name (lowercase letters, digits and `-`)"),
        );
    }
    match cli.command {
        Command::Run {
            manifest,
            listen,
            admin,
            data,
            admin_token,
            cache,
            threads,
        } => run(
            &manifest,
            listen,
            admin,
            &data,
            cache.as_deref(),
            admin_token,
            threads,
        ),
        Command::Services(args) => services(&args),
        Command::Deploy {
            service,
            file,
            route,
            stores,
            calls,
            publishes,
            subscribes,
            admin,
        } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => return fail(2, format!("{}: {e}", file.display())),
            };
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(r) = &route {
                query.append_pair("route", r);
            }
            for s in &stores {
                query.append_pair("store", s);
            }
            for (k, v) in [
                ("calls", &calls),
                ("publishes", &publishes),
                ("subscribes", &subscribes),
            ] {
                if let Some(v) = v {
                    query.append_pair(k, v);
                }
            }
            let path = format!("/admin/services/{service}?{}", query.finish());
            admin_call(&admin, hyper::Method::POST, &path, bytes, |v| {
                if v["unchanged"] == true {
                    return format!(
                        "{} v{} already serves this component ({}) with these grants: unchanged, no new version",
                        v["service"].as_str().unwrap_or("?"),
                        v["version"],
                        v["digest"].as_str().unwrap_or("?"),
                    );
                }
                format!(
                    "deployed {} v{} ({}) in {} ms, {} migration(s) applied",
                    v["service"].as_str().unwrap_or("?"),
                    v["version"],
                    v["digest"].as_str().unwrap_or("?"),
                    v["tookMs"],
                    v["migrationsApplied"]
                )
            })
        }
        Command::Apply {
            service,
            yes,
            admin,
        } => {
            let path = match &service {
                Some(s) => format!("/admin/apply?service={s}"),
                None => "/admin/apply".to_string(),
            };
            let method = if yes {
                hyper::Method::POST
            } else {
                hyper::Method::GET
            };
            admin_call(&admin, method, &path, Vec::new(), |v| apply_table(v, yes))
        }
        Command::Demo {
            demo: Demo::Isolation { components },
        } => demo_isolation(&components),
        Command::Rollback { service, admin } => admin_call(
            &admin,
            hyper::Method::POST,
            &format!("/admin/services/{service}/rollback"),
            Vec::new(),
            |v| {
                format!(
                    "rolled back {} to v{} ({})",
                    v["service"].as_str().unwrap_or("?"),
                    v["version"],
                    v["digest"].as_str().unwrap_or("?")
                )
            },
        ),
        Command::Undeploy { service, admin } => admin_call(
            &admin,
            hyper::Method::DELETE,
            &format!("/admin/services/{service}"),
            Vec::new(),
            |v| format!("undeployed {}", v["service"].as_str().unwrap_or("?")),
        ),
        Command::DeadLetters { action, id, admin } => match (action.as_deref(), id) {
            (None, None) => admin_call(
                &admin,
                hyper::Method::GET,
                "/admin/dead-letters",
                Vec::new(),
                dead_letters_table,
            ),
            (Some("replay"), Some(id)) => admin_call(
                &admin,
                hyper::Method::POST,
                &format!(
                    "/admin/dead-letters/{}/replay",
                    silo::admin::path_segment(&id)
                ),
                Vec::new(),
                |v| format!("replayed {}", v["replayed"].as_str().unwrap_or("?")),
            ),
            (Some("replay"), None) => fail(2, "dead-letters replay: give the ID to replay"),
            (Some(other), _) => fail(
                2,
                format!("dead-letters: unknown action `{other}` (only `replay ID`)"),
            ),
            (None, Some(_)) => unreachable!("clap fills `action` before `id`"),
        },
        Command::Sagas { state, admin } => {
            let path = match &state {
                Some(s) => format!("/admin/sagas?state={}", silo::admin::path_segment(s)),
                None => "/admin/sagas".to_string(),
            };
            admin_call(&admin, hyper::Method::GET, &path, Vec::new(), sagas_table)
        }
        Command::Events(admin) => admin_call(
            &admin,
            hyper::Method::GET,
            "/admin/events",
            Vec::new(),
            events_table,
        ),
    }
}

/// `silo apply`: one line per service, what differs under it, and what was applied.
fn apply_table(v: &serde_json::Value, applied: bool) -> String {
    let mut out = format!(
        "{}\n{:<14} {:<10} {:<24} {:<22}",
        v["manifest"].as_str().unwrap_or("?"),
        "SERVICE",
        "CHANGE",
        "RUNNING",
        "MANIFEST"
    );
    let mut pending = 0;
    for s in v["services"].as_array().into_iter().flatten() {
        let change = s["change"].as_str().unwrap_or("?");
        if change != "unchanged" {
            pending += 1;
        }
        let running = match &s["running"] {
            serde_json::Value::Null => "-".to_string(),
            r => format!(
                "v{} {}",
                r["version"],
                r["digest"].as_str().unwrap_or("").get(..19).unwrap_or("")
            ),
        };
        let manifest = s["manifestDigest"]
            .as_str()
            .map(|d| d.get(..19).unwrap_or(d).to_string())
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "\n{:<14} {:<10} {:<24} {:<22}",
            s["service"].as_str().unwrap_or("?"),
            change,
            running,
            manifest
        ));
        for r in s["reasons"].as_array().into_iter().flatten() {
            out.push_str(&format!("\n    {}", r.as_str().unwrap_or("")));
        }
        if let Some(a) = s.get("applied") {
            out.push_str(&format!(
                "\n    applied: v{} in {} ms, {} migration(s)",
                a["version"], a["tookMs"], a["migrationsApplied"]
            ));
        }
        if change == "removed" && applied {
            out.push_str("\n    applied: undeployed (its data stays)");
        }
    }
    out.push_str(&match (pending, applied) {
        (0, _) => "\nthe host serves what the manifest says: nothing to apply".to_string(),
        (n, true) => format!("\napplied {n} change(s)"),
        (n, false) => format!("\n{n} change(s) not applied: run `silo apply --yes` to apply them"),
    });
    out
}

/// `silo dead-letters`: one line per dead letter.
fn dead_letters_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<20} {:<40} {:<38} {:<24} {:>8}  LAST ERROR",
        "ID", "SUBSCRIPTION", "EVENT", "KEY", "ATTEMPTS"
    );
    let list = v["deadLetters"].as_array().cloned().unwrap_or_default();
    for d in &list {
        let s = |k: &str| d[k].as_str().unwrap_or("?").to_string();
        out.push_str(&format!(
            "\n{:<20} {:<40} {:<38} {:<24} {:>8}  {}",
            s("id"),
            s("subscription"),
            s("eventId"),
            s("key"),
            d["attempts"],
            s("lastError").replace('\n', " ")
        ));
    }
    if list.is_empty() {
        out.push_str("\n(no dead letters)");
    }
    out
}

/// `silo sagas`: one line per saga, one per step under it.
fn sagas_table(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for o in v["orchestrators"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}: {} (retries {})\n",
            o["service"].as_str().unwrap_or("?"),
            o["states"],
            o["retries"]
        ));
    }
    out.push_str(&format!(
        "{:<30} {:<10} {:<8} {:<26} {:<13}  REASON",
        "SAGA", "SERVICE", "KIND", "KEY", "STATE"
    ));
    for s in v["sagas"].as_array().into_iter().flatten() {
        let t = |k: &str| s[k].as_str().unwrap_or("").to_string();
        out.push_str(&format!(
            "\n{:<30} {:<10} {:<8} {:<26} {:<13}  {}",
            t("id"),
            t("service"),
            t("kind"),
            t("key"),
            t("state").to_uppercase(),
            t("reason")
        ));
        for st in s["steps"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "\n    {:<18} {:<10} {:<10} {:<22} attempts {}  {}",
                st["name"].as_str().unwrap_or(""),
                st["service"].as_str().unwrap_or(""),
                st["command"].as_str().unwrap_or(""),
                st["state"].as_str().unwrap_or(""),
                st["attempts"],
                st["detail"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

/// `silo events`: one line per subscription.
fn events_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<40} {:>8} {:>12} {:>8} {:>8} {:>10} {:>8} {:>6}",
        "SUBSCRIPTION",
        "PENDING",
        "OLDEST(ms)",
        "P50(ms)",
        "P99(ms)",
        "DELIVERED",
        "RETRIES",
        "DEAD"
    );
    for s in v["subscriptions"].as_array().into_iter().flatten() {
        let n = |k: &str| match &s[k] {
            serde_json::Value::Null => "-".to_string(),
            x => x.to_string(),
        };
        out.push_str(&format!(
            "\n{:<40} {:>8} {:>12} {:>8} {:>8} {:>10} {:>8} {:>6}",
            s["subscription"].as_str().unwrap_or("?"),
            n("pending"),
            n("oldestPendingAgeMs"),
            n("latencyP50Ms"),
            n("latencyP99Ms"),
            n("delivered"),
            n("retries"),
            n("deadLetters")
        ));
        if let Some(why) = s["stalled"].as_str() {
            out.push_str(&format!("\n    stalled: {why}"));
        }
    }
    out
}

/// Stores another data folder owns: exit status 2, one line per store naming the manifest
/// and the store's key.
fn owned_elsewhere(manifest: &Path, lines: &[String]) -> ExitCode {
    for line in lines {
        eprintln!("silo: {}: {line}", manifest.display());
    }
    ExitCode::from(2)
}

fn fail(status: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("silo: {message}");
    ExitCode::from(status)
}

fn run(
    manifest_path: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    data: &Path,
    cache: Option<&Path>,
    admin_token: Option<String>,
    threads: Option<usize>,
) -> ExitCode {
    // Validate before touching anything: a bad token or manifest changes nothing on disk.
    let admin_token = match run_admin_token(admin_token) {
        Ok(t) => t,
        Err(e) => return fail(2, e),
    };
    let manifest = match Manifest::load(manifest_path) {
        Ok(m) => m,
        Err(e) => return fail(2, e),
    };
    // The ports next, before any store is opened or the data folder written: a port in use
    // (another host's included) is refused with nothing changed.
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let listeners = match Listeners::bind(listen, admin, threads) {
        Ok(l) => l,
        Err(e) => return fail(2, e),
    };
    // Absolute from here on: the code cache refuses relative folders, and the paths end up
    // in logs and the admin API.
    let data = &match std::path::absolute(data) {
        Ok(d) => d,
        Err(e) => return fail(2, format!("{}: {e}", data.display())),
    };
    let cache = match cache.map(std::path::absolute).transpose() {
        Ok(c) => c,
        Err(e) => return fail(2, format!("--cache: {e}")),
    };
    let cache = cache.as_deref();
    // The compiled-code cache is used only once it exists, so a start that fails leaves a
    // new data folder unwritten; a successful start creates it for the next one.
    let cache_dir = cache
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data.join("cache"));
    let host = match Host::for_manifest(
        data,
        cache_dir.is_dir().then_some(cache_dir.as_path()),
        manifest_path,
        &manifest,
    ) {
        Ok(h) => Arc::new(h),
        Err(StartError::Manifest(e)) => return fail(2, e),
        Err(StartError::OwnedElsewhere(lines)) => return owned_elsewhere(manifest_path, &lines),
        Err(StartError::Other(e)) => return fail(1, format!("{e:#}")),
    };
    let compiled = match host.compile(manifest_path, &manifest) {
        Ok(c) => c,
        Err(StartError::Manifest(e)) => return fail(2, e),
        Err(StartError::OwnedElsewhere(lines)) => return owned_elsewhere(manifest_path, &lines),
        Err(StartError::Other(e)) => return fail(1, format!("{e:#}")),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the main runtime");
    match rt.block_on(host.check(manifest_path, &compiled)) {
        Ok(()) => {}
        Err(StartError::Manifest(e)) => return fail(2, e),
        Err(StartError::OwnedElsewhere(lines)) => return owned_elsewhere(manifest_path, &lines),
        Err(StartError::Other(e)) => return fail(1, format!("{e:#}")),
    }
    if let Err(e) = std::fs::create_dir_all(data) {
        return fail(1, format!("{}: {e}", data.display()));
    }
    let lock = match std::fs::File::create(data.join("silo.lock")) {
        Ok(f) => f,
        Err(e) => return fail(1, format!("{}: {e}", data.display())),
    };
    if lock.try_lock().is_err() {
        return fail(
            1,
            format!("another silo is serving the data folder {}", data.display()),
        );
    }
    let token = match admin_token {
        Some(t) => t,
        None => match silo::admin::load_or_create_token(data) {
            Ok(t) => t,
            Err(e) => return fail(1, format!("admin token: {e}")),
        },
    };
    if let Err(e) = rt.block_on(host.open(compiled)) {
        return match e {
            StartError::Manifest(e) => fail(2, e),
            StartError::OwnedElsewhere(lines) => owned_elsewhere(manifest_path, &lines),
            StartError::Other(e) => fail(1, format!("{e:#}")),
        };
    }
    let _ = std::fs::create_dir_all(&cache_dir);
    let signals = match rt.block_on(async { ShutdownSignal::install() }) {
        Ok(s) => s,
        Err(e) => return fail(1, format!("installing signal handlers: {e}")),
    };
    let http_addr = listeners.http[0].local_addr().expect("bound address");
    let admin_addr = listeners.admin.local_addr().expect("bound address");
    println!("silo: serving http://{http_addr} (admin http://{admin_addr})");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = serve_workers(host.clone(), listeners.http, stopped.clone());
    rt.block_on(async {
        let admin = tokio::spawn(silo::admin::serve_admin(
            host.clone(),
            listeners.admin,
            token,
            stopped,
        ));
        signals.wait().await;
        tracing::info!("shutting down: finishing in-flight requests");
        host.begin_shutdown();
        let _ = stop.send(true);
        let _ = admin.await;
    });
    for w in workers {
        let _ = w.join();
    }
    tracing::info!("stopped");
    drop(lock);
    ExitCode::SUCCESS
}

/// Sends one admin request and prints `describe(answer)`, or the error and exit status 1.
fn admin_call(
    args: &AdminArgs,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
    describe: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    let token = match args.token() {
        Ok(t) => t,
        Err(e) => return fail(2, e),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the runtime");
    let call = silo::admin::admin_request(&args.admin, &token, method, path, body.into());
    let (status, text) = match rt.block_on(call) {
        Ok(r) => r,
        Err(e) => return fail(1, format!("{e:#}")),
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if status != 200 {
        let msg = v["error"]["message"].as_str().unwrap_or(&text);
        return fail(1, format!("refused ({status}): {msg}"));
    }
    println!("{}", describe(&v));
    ExitCode::SUCCESS
}

fn demo_isolation(components: &Path) -> ExitCode {
    use std::io::BufRead;
    let dir = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => return fail(1, e),
    };
    let manifest = dir.join("silo.toml");
    let components = &match std::fs::canonicalize(components) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                2,
                format!("{}: {e}: run `make components`", components.display()),
            );
        }
    };
    for name in ["users", "products", "reference", "intruder"] {
        let file = components.join(format!("{name}.wasm"));
        if !file.is_file() {
            return fail(
                2,
                format!("{} not found: run `make components`", file.display()),
            );
        }
    }
    // The attacks on stores on the shared servers run when the machine has them; the demo
    // says so when it does not. Its objects there are named for this run and dropped after.
    let missing = silo::isolation::Servers::missing();
    let servers = missing
        .is_empty()
        .then(|| silo::isolation::Servers::for_one_run("demo"));
    if servers.is_none() {
        println!(
            "silo: the attacks on shared database servers are not run: {} not reachable",
            missing.join(", ")
        );
    }
    let attacks: Vec<&silo::isolation::Attack> = silo::isolation::CATALOGUE
        .iter()
        .chain(if servers.is_some() {
            silo::isolation::SERVER_CATALOGUE
        } else {
            &[]
        })
        .collect();
    let text = silo::isolation::manifest(components, servers.as_ref());
    if let Err(e) = std::fs::write(&manifest, text) {
        return fail(1, e);
    }
    let exe = std::env::current_exe().expect("the silo binary");
    // The host's log goes to a file the log-flood attack measures; guests' lines are in it.
    let log = dir.join("host.log");
    let stderr = match std::fs::File::create(&log) {
        Ok(f) => f,
        Err(e) => return fail(1, format!("{}: {e}", log.display())),
    };
    let mut child = match std::process::Command::new(exe)
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--manifest")
        .arg(&manifest)
        .arg("--data")
        .arg(dir.join("data"))
        .env("SILO_LOG", "warn,silo::guest=info")
        .env("SILO_RECORD_HOST_SQL", dir.join("host-sql.jsonl"))
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(1, format!("starting the host: {e}")),
    };
    let line = child
        .stdout
        .take()
        .and_then(|out| std::io::BufReader::new(out).lines().next())
        .and_then(Result::ok)
        .unwrap_or_default();
    let Some(http) = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(String::from)
    else {
        let _ = child.kill();
        return fail(1, format!("the host did not start: {line}"));
    };
    println!("silo: attacking a live host at http://{http} (demo services + intruder)\n");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the runtime");
    let pid = child.id();
    let outcomes = rt.block_on(async {
        let target =
            silo::isolation::Target::local(&http, &dir.join("data"), &dir.join("host-sql.jsonl"))
                .with_host(&log, pid);
        let victim = silo::isolation::Victim::prepare(&target).await?;
        let mut outcomes = Vec::new();
        for attack in attacks {
            outcomes.push(silo::isolation::run_attack(&target, &victim, attack).await);
        }
        Ok::<_, String>(outcomes)
    });
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(servers) = &servers
        && let Err(e) = rt.block_on(servers.remove())
    {
        eprintln!("silo: removing the demo's stores from the servers: {e}");
    }
    match outcomes {
        Ok(outcomes) => {
            print!("{}", silo::isolation::render(&outcomes));
            if outcomes.iter().all(|o| o.pass()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(1, e),
    }
}

/// A fresh private folder under the system's temporary folder.
fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("silo-demo-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn services(args: &AdminArgs) -> ExitCode {
    admin_call(
        args,
        hyper::Method::GET,
        "/admin/services",
        Vec::new(),
        |v| {
            let mut out = format!(
                "{:<14} {:<8} {:<20} {:<14} {:<24} {:<8}",
                "SERVICE", "VERSION", "DIGEST", "ROUTE", "STORES", "STATE"
            );
            for s in v["services"].as_array().into_iter().flatten() {
                let stores: Vec<String> = s["stores"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|st| {
                        format!(
                            "{}:{}",
                            st["name"].as_str().unwrap_or("?"),
                            st["backend"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                let digest = s["digest"].as_str().unwrap_or("");
                out.push_str(&format!(
                    "\n{:<14} {:<8} {:<20} {:<14} {:<24} {:<8}",
                    s["name"].as_str().unwrap_or("?"),
                    s["version"].to_string(),
                    digest.get(..19).unwrap_or(digest),
                    s["route"].as_str().unwrap_or("?"),
                    stores.join(","),
                    s["state"].as_str().unwrap_or("?"),
                ));
            }
            out
        },
    )
}
