//! House checks: rules of the source tree that no compiler checks — every file says what it
//! is for, ARCHITECTURE.md's code map names only paths that exist, no host source file is
//! over 800 lines, and the imports between host/src's top-level modules point one way (the
//! floors of ARCHITECTURE.md's invariants). Fast: no wasm, no servers, only reading files.
//!
//! Every failure prints each offending `file:line`, so the message is the to-do list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository's root (the host crate is `host/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the repository")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, skipping build output (`target/`).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    todo.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `path` relative to the repository's root, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A file written by a generator says so on its first lines; those need no `//!` of ours.
fn generated(text: &str) -> bool {
    text.lines()
        .take(5)
        .any(|l| l.contains("@generated") || l.contains("automatically generated"))
}

#[test]
fn every_source_file_starts_with_a_doc_line() {
    let root = root();
    let mut files = Vec::new();
    for dir in ["host/src", "host/tests", "host/benches", "components"] {
        files.extend(rust_files(&root.join(dir)));
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = read(f);
            !generated(&text) && !text.starts_with("//!")
        })
        .map(|f| format!("{}:1", shown(f)))
        .collect();
    assert!(
        missing.is_empty(),
        "files that do not start with a `//!` line saying what they are for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_host_source_file_is_over_800_lines() {
    let long: Vec<String> = rust_files(&root().join("host/src"))
        .iter()
        .filter_map(|f| {
            let n = read(f).lines().count();
            (n > 800).then(|| format!("{}:{n}: {n} lines", shown(f)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "host source files over 800 lines:\n{}",
        long.join("\n")
    );
}

/// The paths ARCHITECTURE.md's code map names exist.
///
/// The rule: in the section `## Code map`, a backticked word is a path when it ends in `.rs`
/// or `/` and holds none of `{ } * : <space>` and does not start with `/` (that is a URL path
/// such as `/admin/`). A path with a `/` in it is relative to the repository's root
/// (`host/src/sql/`) or, inside a bullet, to the bullet's folder (`sqlite/` under
/// `host/src/sql/`). A bare file name (`sqlite.rs`) is relative to the folder its top-level
/// bullet names (the bullet's first path ending in `/`, e.g. `host/src/sql/`), found there or
/// in a folder below it; outside such a bullet it must be found somewhere under `host/src`.
#[test]
fn the_code_map_names_only_paths_that_exist() {
    let root = root();
    let doc = read(&root.join("ARCHITECTURE.md"));
    let mut in_map = false;
    let mut folder: Option<PathBuf> = None;
    let mut checked = 0;
    let mut missing = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        if line.starts_with("## ") {
            in_map = line.trim() == "## Code map";
            continue;
        }
        if !in_map {
            continue;
        }
        let words: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        if line.starts_with("- ") {
            folder = words
                .iter()
                .find(|w| w.contains('/') && w.ends_with('/') && !w.starts_with('/'))
                .map(|w| root.join(w));
        }
        for w in words {
            let is_path = (w.ends_with(".rs") || w.ends_with('/'))
                && !w.starts_with('/')
                && !w.contains(['{', '}', '*', ':', ' ']);
            if !is_path {
                continue;
            }
            checked += 1;
            let found = if w.contains('/') {
                root.join(w).exists() || folder.as_ref().is_some_and(|f| f.join(w).exists())
            } else {
                let base = folder.clone().unwrap_or_else(|| root.join("host/src"));
                base.join(w).exists()
                    || rust_files(&base)
                        .iter()
                        .any(|f| f.file_name().is_some_and(|n| n == w))
                    || (w.ends_with('/') && base.join(w.trim_end_matches('/')).is_dir())
            };
            if !found {
                missing.push(format!("ARCHITECTURE.md:{}: `{w}`", i + 1));
            }
        }
    }
    assert!(checked > 10, "the code map names only {checked} paths");
    assert!(
        missing.is_empty(),
        "the code map names paths that do not exist:\n{}",
        missing.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Imports between host/src's top-level modules
// ---------------------------------------------------------------------------------------

/// Floors 1–4: what may not import the floors above (start-up, admin, the catalogue, the
/// binary).
const LOWER_FLOORS: &[&str] = &[
    "bindings",
    "wit_types",
    "failpoint",
    "secrets",
    "telemetry",
    "names",
    "manifest",
    "sql",
    "kv",
    "events",
    "sagas",
    "calls",
    "delivery",
    "runtime",
];

/// Floors 5–6 and the catalogue (the binary's modules are added by [`Imports::scan`]).
const UPPER_FLOORS: &[&str] = &["host", "admin", "deploy", "isolation"];

/// The capabilities (floor 3); their backends live inside them.
const CAPABILITIES: &[&str] = &["sql", "kv", "events", "sagas", "calls", "delivery"];

/// The generated WIT bindings (floor 1). The one exception to the top-level check: generated
/// code names the host types it is told to map (`bindings` the capabilities' resource types
/// and their shared error, `wit_types` that error), while the capabilities implement its
/// traits, so at module level they import each other. At file level they do not (the files
/// it names import only `wit_types`), and [`no_cycle_between_files`] checks that.
const GENERATED: &[&str] = &["bindings", "wit_types"];

/// One `crate::a::…` path in a file of module `from`, naming top-level module `to`.
struct Import {
    from: String,
    to: String,
    at: String,
}

struct Imports {
    all: Vec<Import>,
    /// The binary's own modules (`main` and the `mod`s main.rs declares).
    binary: BTreeSet<String>,
}

impl Imports {
    /// Every `crate::` path in host/src, in `use` lines and in code, outside comments.
    fn scan() -> Self {
        let src = root().join("host/src");
        // The binary (`src/bin/silo/`) is a crate of its own that reaches the library only
        // through `silo::`: the library cannot import it, and its `crate::` paths are its own.
        let binary = BTreeSet::new();
        let mut all = Vec::new();
        for file in rust_files(&src) {
            let rel = file.strip_prefix(&src).unwrap();
            if rel.starts_with("bin") {
                continue;
            }
            let first = rel.components().next().unwrap().as_os_str();
            let from = Path::new(first)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if from == "lib" {
                continue;
            }
            let text = read(&file);
            // Comments out (doc links name modules without importing them); line breaks kept.
            let code: String = text
                .lines()
                .map(|l| match l.find("//") {
                    Some(i) => &l[..i],
                    None => l,
                })
                .collect::<Vec<_>>()
                .join("\n");
            for (offset, to) in crate_paths(&code) {
                if to == from {
                    continue;
                }
                let line = code[..offset].matches('\n').count() + 1;
                all.push(Import {
                    from: from.clone(),
                    to,
                    at: format!("{}:{line}", shown(&file)),
                });
            }
        }
        Self { all, binary }
    }

    /// The imports from any of `from` into any of `to`, as `file:line: a -> b`.
    fn between(&self, from: &[&str], to: &[&str]) -> Vec<String> {
        self.all
            .iter()
            .filter(|i| from.contains(&i.from.as_str()) && to.contains(&i.to.as_str()))
            .map(|i| format!("{}: {} -> {}", i.at, i.from, i.to))
            .collect()
    }
}

/// The top-level module each `crate::` path in `code` names, with the offset where it is
/// named: `crate::a::b` names `a`; `crate::{a::b, c}` names `a` and `c`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // `silo_crate::` or `my_crate::` are not `crate::`.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        let start = at + "crate::".len();
        if let Some(group) = rest.strip_prefix('{') {
            // Names at depth 0 of the group: after `{` and after each `,`.
            let (mut depth, mut expect) = (0usize, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expect = true,
                    c if c.is_whitespace() => {}
                    _ if expect => {
                        expect = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() && name != "self" {
                            out.push((start + 1 + i, name));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.push((start, name));
            }
        }
    }
    out
}

#[test]
fn the_import_scanner_reads_paths_and_groups() {
    let found: Vec<String> = crate_paths(
        "use crate::sql::{SqlCtx, x};\nuse crate::{kv::Kv,\n  runtime::{a, b}, self};\nlet x = crate::host::go(); my_crate::no;",
    )
    .into_iter()
    .map(|(_, m)| m)
    .collect();
    assert_eq!(found, ["sql", "kv", "runtime", "host"]);
}

#[test]
fn no_cycle_between_top_level_modules() {
    let mut imports = Imports::scan();
    // Generated bindings naming a capability's types: see [`GENERATED`].
    imports.all.retain(|i| {
        !(GENERATED.contains(&i.from.as_str()) && CAPABILITIES.contains(&i.to.as_str()))
    });
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in &imports.all {
        edges.entry(&i.from).or_default().insert(&i.to);
    }
    // Modules that reach themselves through another: every module on a cycle.
    let reaches = |from: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = edges.get(from).into_iter().flatten().copied().collect();
        while let Some(m) = todo.pop() {
            if seen.insert(m) {
                todo.extend(edges.get(m).into_iter().flatten().copied());
            }
        }
        seen
    };
    let reach: BTreeMap<&str, BTreeSet<&str>> = edges.keys().map(|m| (*m, reaches(m))).collect();
    let on_cycle: BTreeSet<&str> = reach
        .iter()
        .filter(|(m, r)| r.contains(*m))
        .map(|(m, _)| *m)
        .collect();
    // The imports that close a cycle: from a to b where b reaches back to a.
    let closing: Vec<String> = imports
        .all
        .iter()
        .filter(|i| {
            reach
                .get(i.to.as_str())
                .is_some_and(|r| r.contains(i.from.as_str()))
        })
        .map(|i| format!("{}: {} -> {}", i.at, i.from, i.to))
        .collect();
    // First the module edges on cycles (how many imports each), then every import.
    let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for i in imports.all.iter().filter(|i| {
        reach
            .get(i.to.as_str())
            .is_some_and(|r| r.contains(i.from.as_str()))
    }) {
        *pairs.entry((&i.from, &i.to)).or_default() += 1;
    }
    let pairs: Vec<String> = pairs
        .iter()
        .map(|((a, b), n)| format!("{a} -> {b} ({n})"))
        .collect();
    assert!(
        on_cycle.is_empty(),
        "top-level modules on an import cycle: {on_cycle:?}\nedges on those cycles: {}\nthe imports:\n{}",
        pairs.join(", "),
        closing.join("\n")
    );
}

#[test]
fn lower_floors_do_not_import_start_up_admin_the_catalogue_or_the_binary() {
    let imports = Imports::scan();
    let mut upper: Vec<&str> = UPPER_FLOORS.to_vec();
    upper.extend(imports.binary.iter().map(String::as_str));
    let up = imports.between(LOWER_FLOORS, &upper);
    assert!(
        up.is_empty(),
        "floors 1-4 importing start-up, admin, the catalogue or the binary:\n{}",
        up.join("\n")
    );
}

#[test]
fn manifest_imports_no_capability_backend_or_runtime() {
    let imports = Imports::scan();
    let mut below: Vec<&str> = CAPABILITIES.to_vec();
    below.push("runtime");
    let found = imports.between(&["manifest"], &below);
    assert!(
        found.is_empty(),
        "the manifest (configuration types) importing a capability, a backend or the runtime:\n{}",
        found.join("\n")
    );
}

#[test]
fn capabilities_do_not_import_the_runtime() {
    let found = Imports::scan().between(CAPABILITIES, &["runtime"]);
    assert!(
        found.is_empty(),
        "capabilities importing the runtime (define a trait the runtime implements instead):\n{}",
        found.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Imports between host/src's files
// ---------------------------------------------------------------------------------------

/// The module path of `rel` (a file under host/src): `sql/store.rs` is `[sql, store]`,
/// `sql/mod.rs` is `[sql]`, `lib.rs` is `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut m: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if m.last().is_some_and(|l| l == "mod" || l == "lib") {
        m.pop();
    }
    m
}

/// The deepest file under `src` a module path names: `a/b/c.rs`, `a/b/c/mod.rs`, then
/// `a/b.rs`, `a/b/mod.rs`, …, then `lib.rs`. A path into an inline module or to an item
/// resolves to the file that holds it.
fn file_of(src: &Path, path: &[String]) -> PathBuf {
    for k in (1..=path.len()).rev() {
        let base = src.join(path[..k].join("/"));
        for f in [base.with_extension("rs"), base.join("mod.rs")] {
            if f.is_file() {
                return f;
            }
        }
    }
    src.join("lib.rs")
}

/// The paths of the use-tree at the start of `text`: `a::b::{c, d::{e, self}, *}` is
/// `[a, b, c]`, `[a, b, d, e]`, `[a, b, d]`, `[a, b]`. Stops at anything that is not part
/// of a path (`(`, `<`, `;`, ` as `…).
fn use_tree(text: &str) -> Vec<Vec<String>> {
    fn tree(t: &str, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
        let mut path = prefix.to_vec();
        let mut i = 0;
        loop {
            let rest = &t[i..];
            let skip = rest.len() - rest.trim_start().len();
            i += skip;
            let rest = &t[i..];
            if let Some(group) = rest.strip_prefix('{') {
                i += 1;
                let mut j = 0;
                loop {
                    let g = &group[j..];
                    let ws = g.len() - g.trim_start().len();
                    j += ws;
                    if group[j..].starts_with('}') {
                        j += 1;
                        break;
                    }
                    if group[j..].starts_with(',') {
                        j += 1;
                        continue;
                    }
                    let used = tree(&group[j..], &path, out);
                    if used == 0 {
                        j += 1;
                    } else {
                        j += used;
                    }
                    // ` as x` and the like, up to the next `,` or `}` at this depth.
                    while j < group.len() && !group[j..].starts_with([',', '}']) {
                        j += group[j..].chars().next().unwrap().len_utf8();
                    }
                    if j >= group.len() {
                        break;
                    }
                }
                return i + j;
            }
            if rest.starts_with('*') {
                out.push(path);
                return i + 1;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                out.push(path);
                return i;
            }
            i += name.len();
            if name != "self" {
                path.push(name);
            }
            if t[i..].starts_with("::") {
                i += 2;
            } else {
                out.push(path);
                return i;
            }
        }
    }
    let mut out = Vec::new();
    tree(text, &[], &mut out);
    out
}

/// The inline modules (`mod tests { … }`) of `code`: each one's name and byte range.
fn inline_modules(code: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = rest[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0usize;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((name.clone(), open..open + i));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// One import of a file into another file of host/src.
struct FileImport {
    from: PathBuf,
    to: PathBuf,
    at: String,
}

/// Every import between files of host/src (the binary's crate left out): `crate::`,
/// `super::` and `self::` paths anywhere in code, and `use child::…` of a module's own child
/// modules, each resolved to the deepest file it names ([`file_of`]).
///
/// A re-export (`pub use`, `pub(crate) use`) is a facade, not a dependency: a path through
/// it resolves to the file the item comes from (`crate::sql::Database`, re-exported by
/// `sql/mod.rs` from `sql/store.rs`, names `sql/store.rs`), and the re-export itself is no
/// edge. So a `mod.rs` that re-exports its children and children that use what `mod.rs`
/// itself defines are no cycle; a child using an item that a sibling using the child defines is.
fn file_imports() -> Vec<FileImport> {
    let src = root().join("host/src");
    // (file, line, full module path of what is named, whether it is a re-export)
    let mut named: Vec<(PathBuf, String, Vec<String>, bool)> = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap().to_path_buf();
        if rel.starts_with("bin") {
            continue;
        }
        let module = module_of(&rel);
        let text = read(&file);
        let code: String = text
            .lines()
            .map(|l| match l.find("//") {
                Some(i) => &l[..i],
                None => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let inline = inline_modules(&code);
        // The module the code at `offset` is in: the file's, plus the inline modules around it.
        let module_at = |offset: usize| -> Vec<String> {
            let mut m = module.clone();
            m.extend(
                inline
                    .iter()
                    .filter(|(_, r)| r.contains(&offset))
                    .map(|(n, _)| n.clone()),
            );
            m
        };
        let mut found: Vec<(usize, Vec<String>)> = Vec::new();
        let boundary = |at: usize| {
            !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        for (at, _) in code.match_indices("crate::") {
            if boundary(at) {
                found.extend(use_tree(&code[at + 7..]).into_iter().map(|p| (at, p)));
            }
        }
        for key in ["super::", "self::"] {
            for (at, _) in code.match_indices(key) {
                if !boundary(at) {
                    continue;
                }
                let mut base = module_at(at);
                let mut rest = &code[at..];
                while let Some(r) = rest.strip_prefix("super::") {
                    base.pop();
                    rest = r;
                }
                if let Some(r) = rest.strip_prefix("self::") {
                    rest = r;
                }
                for p in use_tree(rest) {
                    let mut full = base.clone();
                    full.extend(p);
                    found.push((at, full));
                }
            }
        }
        // `use child::…`: a path relative to the module, naming one of its own files.
        for (at, _) in code.match_indices("use ") {
            if !boundary(at) {
                continue;
            }
            let base = module_at(at);
            for p in use_tree(&code[at + 4..]) {
                let Some(first) = p.first() else { continue };
                if ["crate", "super", "self"].contains(&first.as_str()) {
                    continue;
                }
                let mut child = base.clone();
                child.push(first.clone());
                let dir = src.join(child.join("/"));
                if dir.with_extension("rs").is_file() || dir.join("mod.rs").is_file() {
                    let mut full = base.clone();
                    full.extend(p);
                    found.push((at + 4, full));
                }
            }
        }
        // A path right after `pub use` / `pub(…) use` is a re-export.
        let reexport = |at: usize| {
            let before = code[..at].trim_end();
            before.strip_suffix("use").is_some_and(|b| {
                let b = b.trim_end();
                b.ends_with("pub")
                    || (b.ends_with(')')
                        && b.rsplit("pub").next().is_some_and(|r| r.starts_with('(')))
            })
        };
        for (at, path) in found {
            let line = code[..at].matches('\n').count() + 1;
            named.push((
                file.clone(),
                format!("{}:{line}", shown(&file)),
                path,
                reexport(at),
            ));
            if let Some(last) = named.last_mut()
                && last.3
            {
                // The re-export's key: the module it is in plus the name it gives.
                let mut key = module_at(at);
                key.extend(last.2.last().cloned());
                last.1 = key.join("::");
            }
        }
    }
    // Re-exports: `a::b::Name` (as a module path joined by `::`) is really `path`.
    let reexports: BTreeMap<String, Vec<String>> = named
        .iter()
        .filter(|n| n.3)
        .map(|n| (n.1.clone(), n.2.clone()))
        .collect();
    let resolve = |path: &[String]| -> Vec<String> {
        let mut path = path.to_vec();
        'follow: for _ in 0..8 {
            for k in (1..=path.len()).rev() {
                if let Some(to) = reexports.get(&path[..k].join("::"))
                    && to.as_slice() != &path[..k]
                {
                    let mut next = to.clone();
                    next.extend_from_slice(&path[k..]);
                    path = next;
                    continue 'follow;
                }
            }
            break;
        }
        path
    };
    let mut all = Vec::new();
    for (file, at, path, reexport) in &named {
        if *reexport {
            continue;
        }
        let to = file_of(&src, &resolve(path));
        if &to == file {
            continue;
        }
        all.push(FileImport {
            from: file.clone(),
            to,
            at: at.clone(),
        });
    }
    all
}

#[test]
fn the_file_import_scanner_reads_trees_and_resolves_files() {
    let paths: Vec<String> = use_tree("a::b::{c, d::{e as f, self}, *};")
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(paths, ["a::b::c", "a::b::d::e", "a::b::d", "a::b"]);
    let src = root().join("host/src");
    let path = |p: &str| p.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(
        file_of(&src, &path("sql::error::SqlError")),
        src.join("sql/error.rs")
    );
    assert_eq!(
        file_of(&src, &path("sql::SqlError")),
        src.join("sql/mod.rs")
    );
    assert_eq!(
        file_of(&src, &path("sql::sqlite::X")),
        src.join("sql/sqlite/mod.rs")
    );
    assert_eq!(module_of(Path::new("sql/mod.rs")), ["sql"]);
    assert_eq!(module_of(Path::new("sql/store.rs")), ["sql", "store"]);
}

/// The imports that close a cycle of files: from `a` to `b` where `b` reaches back to `a`.
fn imports_closing_a_file_cycle() -> Vec<FileImport> {
    let imports = file_imports();
    assert!(imports.len() > 100, "found only {} imports", imports.len());
    let mut edges: BTreeMap<&Path, BTreeSet<&Path>> = BTreeMap::new();
    for i in &imports {
        edges.entry(&i.from).or_default().insert(&i.to);
    }
    let reaches = |from: &Path| -> BTreeSet<&Path> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&Path> = edges.get(from).into_iter().flatten().copied().collect();
        while let Some(m) = todo.pop() {
            if seen.insert(m) {
                todo.extend(edges.get(m).into_iter().flatten().copied());
            }
        }
        seen
    };
    let back: BTreeSet<(PathBuf, PathBuf)> = imports
        .iter()
        .filter(|i| reaches(&i.to).contains(i.from.as_path()))
        .map(|i| (i.from.clone(), i.to.clone()))
        .collect();
    imports
        .into_iter()
        .filter(|i| back.contains(&(i.from.clone(), i.to.clone())))
        .collect()
}

fn shown_imports<'a>(imports: impl Iterator<Item = &'a FileImport>) -> String {
    imports
        .map(|i| format!("{}: -> {}", i.at, shown(&i.to)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// No cycle of files that spans folders: the generated bindings, the capabilities, the
/// runtime and start-up import one way at file level. (A cycle inside one folder, between a
/// `mod.rs` and the children it was split into, is the next test's.)
#[test]
fn no_cycle_between_files_of_different_folders() {
    let closing = imports_closing_a_file_cycle();
    let across: Vec<&FileImport> = closing
        .iter()
        .filter(|i| i.from.parent() != i.to.parent())
        .collect();
    assert!(
        across.is_empty(),
        "imports between folders that close a cycle of files:\n{}",
        shown_imports(across.into_iter())
    );
}

/// No cycle of files at all, inside a folder either: a `mod.rs` that uses its children's
/// items while the children use what `mod.rs` defines (`use super::*`) would be one. Items a
/// folder's files share live in a file of their own (`config.rs`, `errors.rs`, …).
#[test]
fn no_cycle_between_files() {
    let closing = imports_closing_a_file_cycle();
    assert!(
        closing.is_empty(),
        "imports that close a cycle of files:\n{}",
        shown_imports(closing.iter())
    );
}
