//! `silo dead-letters [replay ID]`: the events that exhausted their retries, and putting one
//! back in line.

use std::process::ExitCode;

use crate::fail;
use crate::remote::{AdminArgs, admin_call};

pub(crate) fn dead_letters(
    action: Option<&str>,
    id: Option<String>,
    admin: &AdminArgs,
) -> ExitCode {
    match (action, id) {
        (None, None) => admin_call(
            admin,
            hyper::Method::GET,
            "/admin/dead-letters",
            Vec::new(),
            dead_letters_table,
        ),
        (Some("replay"), Some(id)) => admin_call(
            admin,
            hyper::Method::POST,
            &format!(
                "/admin/dead-letters/{}/replay",
                silo::admin::path_segment(&id)
            ),
            Vec::new(),
            |v| format!("replayed {}", v["replayed"].as_str().unwrap_or("?")),
        ),
        (Some("replay"), None) => fail(2, "dead-letters replay: give the ID to replay"),
        (Some(other), _) => fail(
            2,
            format!("dead-letters: unknown action `{other}` (only `replay ID`)"),
        ),
        (None, Some(_)) => unreachable!("clap fills `action` before `id`"),
    }
}

/// `silo dead-letters`: one line per dead letter.
fn dead_letters_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<20} {:<40} {:<38} {:<24} {:>8}  LAST ERROR",
        "ID", "SUBSCRIPTION", "EVENT", "KEY", "ATTEMPTS"
    );
    let list = v["deadLetters"].as_array().cloned().unwrap_or_default();
    for d in &list {
        let s = |k: &str| d[k].as_str().unwrap_or("?").to_string();
        out.push_str(&format!(
            "\n{:<20} {:<40} {:<38} {:<24} {:>8}  {}",
            s("id"),
            s("subscription"),
            s("eventId"),
            s("key"),
            d["attempts"],
            s("lastError").replace('\n', " ")
        ));
    }
    if list.is_empty() {
        out.push_str("\n(no dead letters)");
    }
    out
}
