//! bench-client: the small HTTP chores of `scripts/bench.sh` — seeding products through
//! silo's public API, and checking that silo and the native baseline answer lookups alike.

use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use hyper::{Method, StatusCode};
use serde_json::Value;
use silo_bench::{HttpClient, http_client, send};

#[derive(Debug, Parser)]
#[command(name = "bench-client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates products `Product 1..=COUNT` (price N, stock 100) and writes their ids, one a line.
    Seed {
        /// Base URL of the products service, e.g. `http://127.0.0.1:18080`.
        #[arg(long)]
        base: String,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// File to write the ids to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Looks every id up on both servers and fails unless status and JSON body agree
    /// (and an unknown id is a 404 on both).
    Compare {
        /// Base URL of the first server.
        #[arg(long)]
        a: String,
        /// Base URL of the second server.
        #[arg(long)]
        b: String,
        /// The ids, one a line.
        #[arg(long)]
        ids: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let client = http_client();
    match Cli::parse().command {
        Command::Seed { base, count, out } => seed(&client, &base, count, &out).await,
        Command::Compare { a, b, ids } => compare(&client, &a, &b, &ids).await,
    }
}

async fn seed(client: &HttpClient, base: &str, count: usize, out: &PathBuf) -> anyhow::Result<()> {
    let url = format!("{base}/products");
    let mut ids = String::new();
    for n in 1..=count {
        let body = serde_json::json!({ "name": format!("Product {n}"), "price": n, "stock": 100 });
        let (status, body) = send(client, Method::POST, &url, Some(body.to_string())).await?;
        ensure!(
            status == StatusCode::CREATED,
            "POST {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let created: Value = serde_json::from_slice(&body).context("the 201 body is not JSON")?;
        let id = match &created["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => bail!("the 201 body has no id: {other}"),
        };
        ids.push_str(&id);
        ids.push('\n');
    }
    std::fs::write(out, ids).with_context(|| format!("writing {}", out.display()))?;
    println!("seeded {count} products");
    Ok(())
}

async fn compare(client: &HttpClient, a: &str, b: &str, ids: &PathBuf) -> anyhow::Result<()> {
    let ids = std::fs::read_to_string(ids).with_context(|| format!("reading {}", ids.display()))?;
    let mut paths: Vec<String> = ids
        .lines()
        .filter(|l| !l.is_empty())
        .map(|id| format!("/products/{id}"))
        .collect();
    ensure!(!paths.is_empty(), "no ids to compare");
    paths.push("/products/no-such-product".to_string());
    for path in &paths {
        let (status_a, body_a) = send(client, Method::GET, &format!("{a}{path}"), None).await?;
        let (status_b, body_b) = send(client, Method::GET, &format!("{b}{path}"), None).await?;
        ensure!(
            status_a == status_b,
            "GET {path}: {a} answered {status_a}, {b} answered {status_b}"
        );
        let json_a: Value = serde_json::from_slice(&body_a)
            .with_context(|| format!("GET {path} on {a}: not JSON"))?;
        let json_b: Value = serde_json::from_slice(&body_b)
            .with_context(|| format!("GET {path} on {b}: not JSON"))?;
        // Error messages may be worded differently; everything else must be equal.
        if status_a.is_success() {
            ensure!(
                json_a == json_b,
                "GET {path}: {a} answered {json_a}, {b} answered {json_b}"
            );
        } else {
            ensure!(
                json_a["error"]["code"] == json_b["error"]["code"],
                "GET {path}: {a} answered {json_a}, {b} answered {json_b}"
            );
        }
    }
    println!(
        "compare: {} lookups answered alike by {a} and {b}",
        paths.len()
    );
    Ok(())
}
