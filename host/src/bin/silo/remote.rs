//! How the commands other than `run` reach a running host: its admin address and token,
//! and one admin request with its answer printed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::fail;

#[derive(Args)]
pub(crate) struct AdminArgs {
    /// Address of the host's admin endpoint.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub(crate) admin: String,
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
pub(crate) fn given_admin_token(flag: Option<String>) -> Option<(String, &'static str)> {
    match flag {
        Some(t) => Some((t, "--admin-token")),
        None => std::env::var("SILO_ADMIN_TOKEN")
            .ok()
            .map(|t| (t, "SILO_ADMIN_TOKEN")),
    }
}

/// Sends one admin request and prints `describe(answer)`, or the error and exit status 1.
pub(crate) fn admin_call(
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
