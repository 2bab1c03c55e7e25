//! `silo dev`: serves a manifest like `silo run` and watches each service's sources (its
//! `source` folder, or the crate its component path is built from); on a change it rebuilds
//! only that service and hot-deploys it through the host's deploy path (migrations
//! included), printing the build error — the old version keeps serving — or the deploy.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use silo::host::{DeployRequest, Host};
use silo::manifest::Manifest;

use crate::fail;

/// How often the sources are looked at. A change is built once the folder has stayed the
/// same for one more look (the debounce: an editor's save of several files is one build).
const POLL: Duration = Duration::from_millis(200);

/// How a service is built.
#[derive(Debug, Clone)]
enum Build {
    /// `cargo build --release --target wasm32-wasip2 -p PACKAGE` in the workspace.
    Cargo { workspace: PathBuf, package: String },
    /// componentize-py (installed by `make build` in `components/target/py`): module `app`
    /// of the folder, with `components/sdk-py` on the path.
    Python { folder: PathBuf, out: PathBuf },
    /// componentize-js from the folder's own `node_modules` (`npm install` first if absent).
    Js { folder: PathBuf, out: PathBuf },
}

/// Runs `cmd`; `Err` carries what it printed.
fn output(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The components folder (the package's parent) and the WIT beside it.
fn components_of(folder: &Path) -> (PathBuf, PathBuf) {
    let components = folder.parent().unwrap_or(Path::new(".")).to_path_buf();
    let wit = components.parent().unwrap_or(Path::new(".")).join("wit");
    (components, wit)
}

impl Build {
    /// Runs the build; `Err` carries what the tool printed.
    fn run(&self) -> Result<(), String> {
        match self {
            Build::Cargo { workspace, package } => {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let out = Command::new(cargo)
                    .args(["build", "--release", "--target", "wasm32-wasip2", "-p"])
                    .arg(package)
                    .current_dir(workspace)
                    .output()
                    .map_err(|e| format!("cargo: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            }
            Build::Python { folder, out } => {
                let (components, wit) = components_of(folder);
                let tool = components.join("target/py/bin/componentize-py");
                if !tool.is_file() {
                    return Err(format!(
                        "{} is not installed: run `make build` (it installs the pinned componentize-py)\n",
                        tool.display()
                    ));
                }
                let mut cmd = Command::new(tool);
                cmd.arg("-d")
                    .arg(wit)
                    .args(["-w", "service", "componentize", "-p"])
                    .arg(folder)
                    .arg("-p")
                    .arg(components.join("sdk-py"))
                    .arg("app")
                    .arg("-o")
                    .arg(out);
                output(cmd, "componentize-py")
            }
            Build::Js { folder, out } => {
                let tool = folder.join("node_modules/.bin/componentize-js");
                if !tool.is_file() {
                    let mut npm = Command::new("npm");
                    npm.args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                        .current_dir(folder);
                    output(npm, "npm install")?;
                }
                // From the components folder, the app named relative to it: componentize-js
                // reads the modules the app imports (`../sdk-js/…`) only below that folder.
                let (components, wit) = components_of(folder);
                let app = Path::new(folder.file_name().unwrap_or_default()).join("app.js");
                let mut cmd = Command::new(tool);
                cmd.current_dir(components)
                    .arg(app)
                    .arg("--wit")
                    .arg(wit)
                    .args(["--world-name", "service", "--disable", "fetch-event", "-o"])
                    .arg(out);
                output(cmd, "componentize-js")
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Build::Cargo { workspace, package } => format!(
                "cargo build --release --target wasm32-wasip2 -p {package} (in {})",
                workspace.display()
            ),
            Build::Python { folder, .. } => {
                format!("componentize-py of {}/app.py", folder.display())
            }
            Build::Js { folder, .. } => {
                format!("componentize-js of {}/app.js", folder.display())
            }
        }
    }
}

/// One watched service.
#[derive(Debug, Clone)]
struct Watched {
    name: String,
    folder: PathBuf,
    component: PathBuf,
    build: Build,
}

/// The folder a component is built from when the manifest gives no `source`:
/// `WS/target/…/NAME.wasm` comes from `WS/NAME` (with `_` read as `-`, as cargo names it).
fn derived_source(component: &Path) -> Option<PathBuf> {
    let target = component
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "target"))?;
    let ws = target.parent()?;
    let stem = component.file_stem()?.to_str()?;
    [stem.replace('_', "-"), stem.to_string()]
        .into_iter()
        .map(|s| ws.join(s))
        .find(|f| f.is_dir())
}

/// How the sources in `folder` are built, if silo knows; `out` is the component the
/// manifest names (where a Python or JavaScript build writes).
fn build_for(folder: &Path, out: &Path) -> Result<Build, String> {
    let (folder, out) = (folder.to_path_buf(), out.to_path_buf());
    if folder.join("app.py").is_file() {
        return Ok(Build::Python { folder, out });
    }
    if folder.join("app.js").is_file() && folder.join("package.json").is_file() {
        return Ok(Build::Js { folder, out });
    }
    let folder = folder.as_path();
    let cargo_toml = folder.join("Cargo.toml");
    if cargo_toml.is_file() {
        let text = std::fs::read_to_string(&cargo_toml)
            .map_err(|e| format!("{}: {e}", cargo_toml.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("{}: {e}", cargo_toml.display()))?;
        let package = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| format!("{}: no [package] name", cargo_toml.display()))?
            .to_string();
        // The workspace is the nearest folder above whose Cargo.toml has [workspace].
        let workspace = folder
            .ancestors()
            .skip(1)
            .find(|a| {
                std::fs::read_to_string(a.join("Cargo.toml"))
                    .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
            })
            .unwrap_or(folder)
            .to_path_buf();
        return Ok(Build::Cargo { workspace, package });
    }
    Err(format!(
        "{}: no Cargo.toml, app.py or app.js with package.json: silo dev does not know how to build it",
        folder.display()
    ))
}

/// A digest of every file under `folder` (path, size, modification time), skipping build
/// output and dependencies (`target`, `node_modules`, `__pycache__`, dot folders).
fn fingerprint(folder: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    let mut todo = vec![folder.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.')
                || matches!(&*name, "target" | "node_modules" | "__pycache__" | "dist")
            {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                files.push((e.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    files.sort();
    files.hash(&mut h);
    h.finish()
}

pub(crate) fn dev(
    manifest_path: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    data: &Path,
) -> ExitCode {
    let text = match std::fs::read_to_string(manifest_path) {
        Ok(t) => t,
        Err(e) => return fail(2, format!("{}: {e}", manifest_path.display())),
    };
    let manifest = match Manifest::parse(&text) {
        Ok(m) => m,
        Err((key, message)) => {
            return fail(2, format!("{}: {key}: {message}", manifest_path.display()));
        }
    };
    let base = manifest_path.parent().unwrap_or(Path::new("."));
    let mut watched = Vec::new();
    for (name, spec) in &manifest.services {
        let component = base.join(&spec.component);
        let folder = match &spec.source {
            Some(s) if !base.join(s).is_dir() => {
                return fail(
                    2,
                    format!(
                        "{}: services.{name}.source: `{}` is not a folder",
                        manifest_path.display(),
                        base.join(s).display()
                    ),
                );
            }
            Some(s) => base.join(s),
            None => match derived_source(&component) {
                Some(f) => f,
                None => {
                    eprintln!(
                        "silo dev: {name}: served, not watched (no sources found for {}: give it `source = \"FOLDER\"`)",
                        spec.component.display()
                    );
                    continue;
                }
            },
        };
        let folder = std::path::absolute(&folder).unwrap_or(folder);
        let component = std::path::absolute(&component).unwrap_or(component);
        match build_for(&folder, &component) {
            Ok(build) => watched.push(Watched {
                name: name.clone(),
                folder,
                component,
                build,
            }),
            Err(e) => eprintln!("silo dev: {name}: served, not watched ({e})"),
        }
    }
    // Build everything first, so the components the manifest names exist and are current.
    for w in &watched {
        eprintln!("silo dev: building {}: {}", w.name, w.build.describe());
        if let Err(out) = w.build.run() {
            eprint!("{out}");
            if !w.component.is_file() {
                return fail(1, format!("the build of {} failed", w.name));
            }
            eprintln!(
                "silo dev: the build of {} failed: serving its last build",
                w.name
            );
        }
    }
    let companion: crate::run::Companion = Box::new(move |host| Box::pin(watch(host, watched)));
    crate::run::serve(
        manifest_path,
        listen,
        admin,
        data,
        None,
        None,
        None,
        Some(companion),
    )
}

/// The watch loop: on a settled change of a service's sources, rebuild and deploy it.
async fn watch(host: Arc<Host>, watched: Vec<Watched>) {
    let scan = |w: &[Watched]| {
        let folders: Vec<PathBuf> = w.iter().map(|w| w.folder.clone()).collect();
        tokio::task::spawn_blocking(move || folders.iter().map(|f| fingerprint(f)).collect())
    };
    let Ok(mut built): Result<Vec<u64>, _> = scan(&watched).await else {
        return;
    };
    let mut last = built.clone();
    let names: Vec<&str> = watched.iter().map(|w| w.name.as_str()).collect();
    println!("silo dev: watching {}", names.join(", "));
    loop {
        tokio::time::sleep(POLL).await;
        let Ok(now): Result<Vec<u64>, _> = scan(&watched).await else {
            return;
        };
        for (i, w) in watched.iter().enumerate() {
            let settled = now[i] == last[i];
            last[i] = now[i];
            if settled && now[i] != built[i] {
                built[i] = now[i];
                rebuild(&host, w).await;
            }
        }
    }
}

/// Builds one service and deploys the result; a failed build or a refused deploy leaves
/// the serving version as it is.
async fn rebuild(host: &Host, w: &Watched) {
    let serving = || {
        host.routes()
            .by_name(&w.name)
            .map(|s| format!("v{} keeps serving", s.version))
            .unwrap_or_else(|| "nothing was deployed".into())
    };
    println!("silo dev: {} changed: building", w.name);
    let started = Instant::now();
    let build = w.build.clone();
    let built = tokio::task::spawn_blocking(move || build.run())
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let build_ms = started.elapsed().as_millis();
    if let Err(out) = built {
        eprint!("{out}");
        println!("silo dev: the build of {} failed; {}", w.name, serving());
        return;
    }
    let bytes = match std::fs::read(&w.component) {
        Ok(b) => b,
        Err(e) => {
            println!("silo dev: {}: {e}; {}", w.component.display(), serving());
            return;
        }
    };
    match host.deploy(&w.name, &bytes, DeployRequest::default()).await {
        Ok(o) if o.unchanged => println!(
            "silo dev: {} v{} already serves this build: nothing to deploy",
            w.name, o.version
        ),
        Ok(o) => println!(
            "deployed {} v{} in {} ms (built in {build_ms} ms, {} migration(s) applied)",
            w.name, o.version, o.took_ms, o.migrations_applied
        ),
        Err(e) => println!(
            "silo dev: the deploy of {} was refused: {e}; {}",
            w.name,
            serving()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_path_leads_to_its_crate() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("my-svc/src")).unwrap();
        let c = ws.path().join("target/wasm32-wasip2/release/my_svc.wasm");
        assert_eq!(derived_source(&c), Some(ws.path().join("my-svc")));
        let other = ws.path().join("target/wasm32-wasip2/release/absent.wasm");
        assert_eq!(derived_source(&other), None);
        assert_eq!(derived_source(Path::new("/x/y.wasm")), None);
    }

    #[test]
    fn the_fingerprint_changes_with_a_source_and_not_with_build_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "a").unwrap();
        let before = fingerprint(dir.path());
        std::fs::write(dir.path().join("target/out"), "x").unwrap();
        assert_eq!(fingerprint(dir.path()), before);
        std::fs::write(dir.path().join("src/lib.rs"), "ab").unwrap();
        assert_ne!(fingerprint(dir.path()), before);
    }
}
