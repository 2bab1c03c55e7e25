//! `silo new NAME --lang rust|python|js`: scaffolds a service that builds and runs as is —
//! its crate or package (from templates embedded in the binary, `templates/`), its build
//! wiring, a migration, `GET`/`POST` on its route, a test of its own, and the manifest entry
//! it needs (printed, or appended to a manifest).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::fail;

/// The languages `silo new` scaffolds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
}

/// One template file: its path in the new folder, and its text.
type Template = (&'static str, &'static str);

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("templates/rust/lib.rs.tmpl")),
];

const PYTHON: &[Template] = &[
    ("app.py", include_str!("templates/python/app.py.tmpl")),
    ("items.py", include_str!("templates/python/items.py.tmpl")),
    (
        "tests/test_items.py",
        include_str!("templates/python/test_items.py.tmpl"),
    ),
];

const JS: &[Template] = &[
    ("app.js", include_str!("templates/js/app.js.tmpl")),
    ("items.js", include_str!("templates/js/items.js.tmpl")),
    (
        "test/items.test.js",
        include_str!("templates/js/items.test.js.tmpl"),
    ),
    (
        "package.json",
        include_str!("templates/js/package.json.tmpl"),
    ),
];

/// What `silo new` was asked for.
pub(crate) struct NewArgs<'a> {
    pub(crate) name: &'a str,
    pub(crate) lang: Lang,
    pub(crate) dir: &'a Path,
    pub(crate) route: Option<&'a str>,
    pub(crate) append_manifest: Option<&'a Path>,
}

pub(crate) fn new(args: NewArgs<'_>) -> ExitCode {
    let NewArgs {
        name,
        lang,
        dir,
        route,
        append_manifest,
    } = args;
    if !silo::manifest::valid_name(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return fail(
            2,
            format!(
                "`{name}` is not a service name (lowercase letters, digits and `-`, starting with a letter)"
            ),
        );
    }
    let route = route.map(str::to_string).unwrap_or(format!("/{name}"));
    if !route.starts_with('/') || route.len() < 2 || route.contains(['{', '}', '?', '#', '"']) {
        return fail(
            2,
            format!("--route `{route}`: give a path prefix such as `/{name}`"),
        );
    }
    let folder = dir.join(name);
    if folder.exists() {
        return fail(
            2,
            format!(
                "{} already exists: pick another name, or remove it",
                folder.display()
            ),
        );
    }
    if let Some(m) = append_manifest
        && let Err(e) = check_manifest(m, name)
    {
        return fail(2, e);
    }
    let result = match lang {
        Lang::Rust => scaffold_rust(name, &route, dir, &folder),
        Lang::Python => scaffold_package(name, &route, dir, &folder, PYTHON, "sdk-py"),
        Lang::Js => scaffold_package(name, &route, dir, &folder, JS, "sdk-js"),
    };
    let artifact = match result {
        Ok(a) => a,
        Err(e) => return fail(1, e),
    };
    let entry = manifest_entry(name, &route, &artifact, &folder, append_manifest);
    match append_manifest {
        Some(m) => {
            if let Err(e) = append(m, &entry) {
                return fail(1, e);
            }
            println!(
                "created {} and added [services.{name}] to {}",
                folder.display(),
                m.display()
            );
        }
        None => {
            println!("created {}; add to your manifest:\n", folder.display());
            print!("{entry}");
        }
    }
    let components = dir.display();
    println!("\nnext steps:");
    match lang {
        Lang::Rust => {
            println!(
                "  (cd {components} && cargo test --release -p {name})                        # its unit test"
            );
            println!(
                "  (cd {components} && cargo build --release --target wasm32-wasip2 -p {name}) # build"
            );
        }
        Lang::Python => {
            println!(
                "  (cd {components} && python3 -m unittest discover -s {name}/tests)   # its unit test"
            );
            println!(
                "  (cd {components} && target/py/bin/componentize-py -d ../wit -w service componentize -p {name} -p sdk-py app -o {}) # build (make build installs componentize-py)",
                artifact.strip_prefix(dir).unwrap_or(&artifact).display()
            );
        }
        Lang::Js => {
            println!(
                "  (cd {components}/{name} && npm install && node --test test/)    # its unit test"
            );
            println!(
                "  (cd {components} && {name}/node_modules/.bin/componentize-js {name}/app.js --wit ../wit --world-name service --disable fetch-event -o {}) # build",
                artifact.strip_prefix(dir).unwrap_or(&artifact).display()
            );
        }
    }
    println!(
        "  silo dev                                   # serve the manifest; rebuild and redeploy on save"
    );
    println!(
        "  silo deploy {name} {} --route {route} --store main   # or into a running host",
        artifact.display()
    );
    println!(
        "  curl -s -XPOST localhost:8080{route} -d '{{\"text\":\"hello\"}}'; curl -s localhost:8080{route}"
    );
    ExitCode::SUCCESS
}

/// Fills a template: `{{name}}` and `{{route}}`.
fn fill(template: &str, name: &str, route: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{route}}", route)
}

/// Writes the template files into `folder` (created; it must not exist).
fn write_templates(
    folder: &Path,
    files: &[Template],
    name: &str,
    route: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(folder.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("{}: {e}", folder.display()))?;
    std::fs::create_dir(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    for (path, text) in files {
        let file = folder.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&file, fill(text, name, route))
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

/// The crate in `folder`, added to the `members` of `components/Cargo.toml`; returns the
/// path of the component it builds.
fn scaffold_rust(name: &str, route: &str, dir: &Path, folder: &Path) -> Result<PathBuf, String> {
    let workspace = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&workspace).map_err(|e| {
        format!(
            "{}: {e} (a Rust service goes in the components workspace: give --dir)",
            workspace.display()
        )
    })?;
    let updated = add_member(&text, name).ok_or_else(|| {
        format!(
            "{}: found no `members = [...]` in [workspace]",
            workspace.display()
        )
    })?;
    write_templates(folder, RUST, name, route)?;
    std::fs::write(&workspace, updated).map_err(|e| format!("{}: {e}", workspace.display()))?;
    Ok(dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_"))))
}

/// A Python or JavaScript package in `folder`, beside the language's SDK (`dir/SDK`, which
/// its imports name); returns the path of the component its build writes.
fn scaffold_package(
    name: &str,
    route: &str,
    dir: &Path,
    folder: &Path,
    files: &[Template],
    sdk: &str,
) -> Result<PathBuf, String> {
    if !dir.join(sdk).is_dir() {
        return Err(format!(
            "{}: no {sdk} beside it: give --dir the components folder",
            dir.display()
        ));
    }
    write_templates(folder, files, name, route)?;
    Ok(dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_"))))
}

/// `text` (a Cargo.toml) with `name` added to `[workspace] members`; `None` when it has no
/// such list. The rest of the file is kept byte for byte.
fn add_member(text: &str, name: &str) -> Option<String> {
    let ws = text.find("[workspace]")?;
    let start = ws + text[ws..].find("members")?;
    let open = start + text[start..].find('[')?;
    let close = open + text[open..].find(']')?;
    let inside = text[open + 1..close].trim_end();
    let entry = format!("\"{name}\"");
    let mut out = String::with_capacity(text.len() + entry.len() + 2);
    out.push_str(&text[..open + 1]);
    if inside.trim().is_empty() {
        out.push_str(&entry);
    } else if inside.ends_with(',') {
        out.push_str(inside);
        out.push(' ');
        out.push_str(&entry);
    } else {
        out.push_str(inside);
        out.push_str(", ");
        out.push_str(&entry);
    }
    out.push_str(&text[close..]);
    Some(out)
}

/// A path as the manifest at `manifest` (or in the current folder) names it: relative to
/// the manifest's folder when it is under it.
fn as_in_manifest(path: &Path, manifest: Option<&Path>) -> String {
    let base = manifest
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (path_abs, base_abs) = (abs(path), abs(base));
    let shown = match path_abs.strip_prefix(&base_abs) {
        Ok(rel) => rel.to_path_buf(),
        Err(_) => path_abs,
    };
    shown.display().to_string()
}

/// The manifest entry of the new service.
fn manifest_entry(
    name: &str,
    route: &str,
    artifact: &Path,
    folder: &Path,
    manifest: Option<&Path>,
) -> String {
    format!(
        "\n[services.{name}]                  # made by `silo new`\n\
         component = \"{}\"\n\
         source = \"{}\"   # what `silo dev` watches and rebuilds\n\
         route = \"{route}\"\n\
         [services.{name}.stores.main]        # its own SQLite file\n",
        as_in_manifest(artifact, manifest),
        as_in_manifest(folder, manifest),
    )
}

/// Refuses a manifest that cannot be read or already lists `name`.
fn check_manifest(manifest: &Path, name: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("--append-manifest {}: {e}", manifest.display()))?;
    let value: toml::Table = text
        .parse()
        .map_err(|e| format!("--append-manifest {}: {e}", manifest.display()))?;
    if value.get("services").and_then(|s| s.get(name)).is_some() {
        return Err(format!(
            "{}: services.{name}: already listed",
            manifest.display()
        ));
    }
    Ok(())
}

fn append(manifest: &Path, entry: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(manifest)
        .map_err(|e| format!("{}: {e}", manifest.display()))?;
    f.write_all(entry.as_bytes())
        .map_err(|e| format!("{}: {e}", manifest.display()))
}

#[cfg(test)]
mod tests {
    use super::add_member;

    #[test]
    fn a_member_is_added_to_the_list_and_nothing_else_changes() {
        let text = "[workspace]\nresolver = \"3\"\nmembers = [\"sdk\", \"users\"]\n\n[x]\ny = 1\n";
        assert_eq!(
            add_member(text, "notes").unwrap(),
            "[workspace]\nresolver = \"3\"\nmembers = [\"sdk\", \"users\", \"notes\"]\n\n[x]\ny = 1\n"
        );
        assert_eq!(
            add_member("[workspace]\nmembers = [\n  \"sdk\",\n]\n", "a").unwrap(),
            "[workspace]\nmembers = [\n  \"sdk\", \"a\"]\n"
        );
        assert_eq!(add_member("[package]\nname = \"x\"\n", "a"), None);
    }
}
