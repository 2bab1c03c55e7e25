//! `silo apply [SERVICE] [--yes]`: the difference between a running host and its manifest,
//! applied with `--yes`.

use std::process::ExitCode;

use crate::remote::{AdminArgs, admin_call};

pub(crate) fn apply(service: Option<&str>, yes: bool, admin: &AdminArgs) -> ExitCode {
    let path = match &service {
        Some(s) => format!("/admin/apply?service={s}"),
        None => "/admin/apply".to_string(),
    };
    let method = if yes {
        hyper::Method::POST
    } else {
        hyper::Method::GET
    };
    admin_call(admin, method, &path, Vec::new(), |v| apply_table(v, yes))
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
