//! `silo events`: every subscription with its backlog, lag and delivery figures.

use std::process::ExitCode;

use crate::remote::{AdminArgs, admin_call};

pub(crate) fn events(admin: &AdminArgs) -> ExitCode {
    admin_call(
        admin,
        hyper::Method::GET,
        "/admin/events",
        Vec::new(),
        events_table,
    )
}

/// `silo events`: one line per subscription.
fn events_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<40} {:>8} {:>12} {:>8} {:>8} {:>10} {:>8} {:>6}",
        "SUBSCRIPTION",
        "PENDING",
        "OLDEST(ms)",
        "P50(ms)",
        "P99(ms)",
        "DELIVERED",
        "RETRIES",
        "DEAD"
    );
    for s in v["subscriptions"].as_array().into_iter().flatten() {
        let n = |k: &str| match &s[k] {
            serde_json::Value::Null => "-".to_string(),
            x => x.to_string(),
        };
        out.push_str(&format!(
            "\n{:<40} {:>8} {:>12} {:>8} {:>8} {:>10} {:>8} {:>6}",
            s["subscription"].as_str().unwrap_or("?"),
            n("pending"),
            n("oldestPendingAgeMs"),
            n("latencyP50Ms"),
            n("latencyP99Ms"),
            n("delivered"),
            n("retries"),
            n("deadLetters")
        ));
        if let Some(why) = s["stalled"].as_str() {
            out.push_str(&format!("\n    stalled: {why}"));
        }
    }
    out
}
