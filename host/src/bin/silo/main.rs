//! The `silo` command: `silo run` serves a manifest; the other commands talk to a running
//! host's admin endpoint. This file parses the arguments and hands each command to its own
//! file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use remote::AdminArgs;

mod apply;
mod dead_letters;
mod demo;
mod deploy;
mod dev;
mod events;
mod new;
mod remote;
mod rollback;
mod run;
mod sagas;
mod services;
mod traces;
mod undeploy;

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
        /// Compiled-code cache folder (default: `SILO_CODE_CACHE`, else `DATA/cache`).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Worker threads, each with its own runtime and socket (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Log lines as `text` or `json` (one object per line), on stderr; `SILO_LOG`
        /// filters them (default `info`).
        #[arg(long, env = "SILO_LOG_FORMAT", default_value = "text")]
        log_format: silo::telemetry::logs::LogFormat,
    },
    /// Scaffolds a service that builds and runs as is: its crate or package, a migration,
    /// `GET`/`POST` on its route, a test, and its manifest entry.
    New {
        /// The service's name.
        name: String,
        #[arg(long, value_enum)]
        lang: new::Lang,
        /// The folder the service goes in (for Rust, the components workspace).
        #[arg(long, default_value = "components")]
        dir: PathBuf,
        /// Its route prefix (default: `/NAME`).
        #[arg(long)]
        route: Option<String>,
        /// Append its entry to this manifest (default: print it).
        #[arg(long)]
        append_manifest: Option<PathBuf>,
    },
    /// Serves the manifest like `run`, watches each service's sources, and on a change
    /// rebuilds and hot-deploys only that service.
    Dev {
        #[arg(long, default_value = "silo.toml")]
        manifest: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8081")]
        admin: SocketAddr,
        #[arg(long, default_value = ".silo")]
        data: PathBuf,
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
    /// Prints a recent trace as an indented tree of its spans (without ID: lists the
    /// recent traces).
    Traces {
        /// The trace id (32 hex digits).
        id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    silo::telemetry::logs::init(match &cli.command {
        Command::Run { log_format, .. } => *log_format,
        _ => silo::telemetry::logs::LogFormat::Text,
    });
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
            log_format: _,
        } => run::run(
            &manifest,
            listen,
            admin,
            &data,
            cache.as_deref(),
            admin_token,
            threads,
        ),
        Command::New {
            name,
            lang,
            dir,
            route,
            append_manifest,
        } => new::new(new::NewArgs {
            name: &name,
            lang,
            dir: &dir,
            route: route.as_deref(),
            append_manifest: append_manifest.as_deref(),
        }),
        Command::Dev {
            manifest,
            listen,
            admin,
            data,
        } => dev::dev(&manifest, listen, admin, &data),
        Command::Services(args) => services::services(&args),
        Command::Deploy {
            service,
            file,
            route,
            stores,
            calls,
            publishes,
            subscribes,
            admin,
        } => deploy::deploy(
            &service,
            &file,
            deploy::Grants {
                route,
                stores,
                calls,
                publishes,
                subscribes,
            },
            &admin,
        ),
        Command::Apply {
            service,
            yes,
            admin,
        } => apply::apply(service.as_deref(), yes, &admin),
        Command::Demo {
            demo: Demo::Isolation { components },
        } => demo::isolation(&components),
        Command::Rollback { service, admin } => rollback::rollback(&service, &admin),
        Command::Undeploy { service, admin } => undeploy::undeploy(&service, &admin),
        Command::DeadLetters { action, id, admin } => {
            dead_letters::dead_letters(action.as_deref(), id, &admin)
        }
        Command::Sagas { state, admin } => sagas::sagas(state.as_deref(), &admin),
        Command::Events(admin) => events::events(&admin),
        Command::Traces { id, admin } => traces::traces(id.as_deref(), &admin),
    }
}

pub(crate) fn fail(status: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("silo: {message}");
    ExitCode::from(status)
}
