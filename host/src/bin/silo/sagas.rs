//! `silo sagas [--state STATE]`: sagas, newest first, with their steps.

use std::process::ExitCode;

use crate::remote::{AdminArgs, admin_call};

pub(crate) fn sagas(state: Option<&str>, admin: &AdminArgs) -> ExitCode {
    let path = match &state {
        Some(s) => format!("/admin/sagas?state={}", silo::admin::path_segment(s)),
        None => "/admin/sagas".to_string(),
    };
    admin_call(admin, hyper::Method::GET, &path, Vec::new(), sagas_table)
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
