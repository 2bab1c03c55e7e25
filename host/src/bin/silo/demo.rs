//! `silo demo isolation`: starts a host with the demo services and the intruder, runs every
//! attack of the catalogue against it, and prints what each one observed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::fail;

pub(crate) fn isolation(components: &Path) -> ExitCode {
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
