//! Reading a manifest: the file checks, then the three passes of the parse (TOML syntax,
//! the shape, the fields with their types), each error naming its line or key.

use std::path::Path;

use super::{MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES, Manifest, ManifestError};

/// What TOML calls the type of `value`, for "expected a table, found an array".
fn toml_type(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// The positions of the manifest that hold tables (`*`: any key). serde would otherwise
/// fill a table's fields from an array by position (`limits = [1, 1]`); these are refused
/// first, naming the key.
const TABLES: &[&[&str]] = &[
    &["services"],
    &["services", "*"],
    &["services", "*", "stores"],
    &["services", "*", "stores", "*"],
    &["services", "*", "kv"],
    &["services", "*", "kv", "*"],
    &["services", "*", "events"],
    &["services", "*", "sagas"],
    &["services", "*", "limits"],
    &["backends"],
    &["backends", "*"],
];

/// Checks that every position of [`TABLES`] under `table` (at `path`) holds a table, and
/// that each `subscribes` entry is one.
fn check_tables(table: &toml::Table, path: &[&str]) -> Result<(), (String, String)> {
    let dotted = |path: &[&str]| path.join(".");
    for (key, value) in table {
        let mut here = path.to_vec();
        here.push(key);
        let pattern_matches = |p: &&[&str]| {
            p.len() == here.len() && p.iter().zip(&here).all(|(p, k)| *p == "*" || p == k)
        };
        let wants_table = TABLES.iter().any(pattern_matches);
        match value {
            toml::Value::Table(inner) => check_tables(inner, &here)?,
            other if wants_table => {
                let example = if here.len() == 1 {
                    format!("[{}.NAME]", dotted(&here))
                } else {
                    format!("[{}]", dotted(&here))
                };
                return Err((
                    dotted(&here),
                    format!(
                        "expected a table (`{example}` or `{{ … }}`), found {}",
                        toml_type(other)
                    ),
                ));
            }
            toml::Value::Array(items)
                if here.len() == 3 && here[0] == "services" && key == "subscribes" =>
            {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_table() {
                        return Err((
                            format!("{}[{i}]", dotted(&here)),
                            format!(
                                "expected a table (`{{ source = \"SERVICE\", topic = \"TOPIC\" }}`), found {}",
                                toml_type(item)
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A serde error at `path` as `(key, message)`: an unknown field becomes the key itself.
fn serde_error(path: String, message: String) -> (String, String) {
    let path = if path == "." { String::new() } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        // The path already ends with the unknown key.
        let key = if path.is_empty() {
            field.to_string()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path
        } else {
            format!("{path}.{field}")
        };
        let known = rest
            .split_once("expected one of ")
            .or_else(|| rest.split_once("expected "))
            .map(|(_, k)| format!(" (known keys: {k})"))
            .unwrap_or_default();
        return (key, format!("unknown key `{field}`{known}"));
    }
    if message.starts_with("missing field `") {
        let field = message
            .trim_start_matches("missing field `")
            .trim_end_matches('`');
        let key = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return (key, "is required".into());
    }
    // serde says `u64`/`u32`/`usize`; the manifest's reader wants to know what to write.
    let message = message
        .replace(
            "unit variant, expected string only",
            "not a string, expected a string",
        )
        .replace("expected a sequence", "expected an array")
        .replace("expected u64", "expected a whole number, 0 or more")
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected usize", "expected a whole number, 0 or more");
    (path, message)
}

/// The line (1-based) of byte `offset` of `bytes`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Manifest {
    /// Reads and validates the manifest at `path`, and checks that each component it names
    /// is a regular file of at most [`MAX_COMPONENT_BYTES`] (its content is checked when it
    /// is compiled, and never shown in an error).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let err = |key: &str, message: String| ManifestError {
            file: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let meta = std::fs::metadata(path)
            .map_err(|e| err("", format!("cannot read the manifest: {e}")))?;
        if meta.is_dir() {
            return Err(err(
                "",
                "is a folder: give the manifest file (--manifest PATH/silo.toml)".into(),
            ));
        }
        if !meta.is_file() {
            return Err(err(
                "",
                "is not a regular file: give the manifest file (--manifest PATH/silo.toml)".into(),
            ));
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(err(
                "",
                format!(
                    "is {} bytes long; a manifest is at most {MAX_MANIFEST_BYTES}",
                    meta.len()
                ),
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|e| err("", format!("cannot read the manifest: {e}")))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            err(
                &format!("line {}", line_of(&bytes, e.valid_up_to())),
                "is not UTF-8 text: a manifest is TOML, written in UTF-8".into(),
            )
        })?;
        let mut manifest = Self::parse(text).map_err(|(key, message)| err(&key, message))?;
        if manifest.services.is_empty() {
            return Err(err(
                "services",
                "the manifest declares no service: add one as `[services.NAME]` with its `component` and `route`"
                    .into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for (name, svc) in &mut manifest.services {
            let key = format!("services.{name}.component");
            let resolved = base.join(&svc.component);
            let shown = resolved.display();
            let meta = std::fs::metadata(&resolved).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    err(&key, format!("component file `{shown}` not found"))
                }
                _ => err(&key, format!("component file `{shown}`: {e}")),
            })?;
            if meta.is_dir() {
                return Err(err(
                    &key,
                    format!("`{shown}` is a folder: name the component's .wasm file"),
                ));
            }
            if !meta.is_file() {
                return Err(err(
                    &key,
                    format!("`{shown}` is not a regular file: name the component's .wasm file"),
                ));
            }
            if meta.len() > MAX_COMPONENT_BYTES {
                return Err(err(
                    &key,
                    format!(
                        "`{shown}` is {} bytes long; a component is at most {} MiB",
                        meta.len(),
                        MAX_COMPONENT_BYTES >> 20
                    ),
                ));
            }
            svc.component = resolved;
            svc.source = svc.source.as_ref().map(|s| base.join(s));
        }
        Ok(manifest)
    }

    /// Parses and validates manifest text; errors are `(key, message)`. Component paths are
    /// left as written (not checked on disk).
    ///
    /// Three passes: TOML syntax (errors name the line), the shape (a table where a table
    /// belongs), then the fields with their types (errors name the key, as a dotted path),
    /// and last [`Manifest::validate`].
    pub fn parse(text: &str) -> Result<Self, (String, String)> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end().replace('\n', " ");
            let line = e
                .span()
                .map(|s| line_of(text.as_bytes(), s.start))
                .unwrap_or(1);
            (format!("line {line}"), msg)
        })?;
        check_tables(&table, &[])?;
        let manifest: Manifest = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                serde_error(path, e.into_inner().message().to_string())
            })?;
        manifest.validate()?;
        Ok(manifest)
    }
}
