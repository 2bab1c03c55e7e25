//! `silo traces [ID]`: one recent trace as an indented tree of its spans, or without an ID
//! the recent traces, one line each.

use std::process::ExitCode;

use crate::remote::{AdminArgs, admin_call};

pub(crate) fn traces(id: Option<&str>, admin: &AdminArgs) -> ExitCode {
    match id {
        Some(id) => admin_call(
            admin,
            hyper::Method::GET,
            &format!("/admin/traces/{}", silo::admin::path_segment(id)),
            Vec::new(),
            tree,
        ),
        None => admin_call(
            admin,
            hyper::Method::GET,
            "/admin/traces?limit=20",
            Vec::new(),
            list,
        ),
    }
}

fn spans(v: &serde_json::Value) -> &[serde_json::Value] {
    v["spans"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// One line per span: its name and service, indented under its parent, with its duration
/// and status; spans whose parent is not in the trace (the root, or a parent from outside)
/// start at the left.
fn tree(v: &serde_json::Value) -> String {
    let spans = spans(v);
    let id = |s: &serde_json::Value| s["spanId"].as_str().unwrap_or("").to_string();
    let known: std::collections::HashSet<String> = spans.iter().map(id).collect();
    let mut out = String::new();
    let roots = spans.iter().filter(|s| {
        s["parentSpanId"]
            .as_str()
            .is_none_or(|p| !known.contains(p))
    });
    for root in roots {
        line(spans, root, 0, &mut out);
    }
    out.trim_end().to_string()
}

fn line(all: &[serde_json::Value], span: &serde_json::Value, depth: usize, out: &mut String) {
    if depth > 64 {
        return;
    }
    let status = match span["status"].as_str() {
        Some("error") => format!(
            "  ERROR {}",
            span["attributes"]["error"].as_str().unwrap_or("")
        ),
        _ => String::new(),
    };
    out.push_str(&format!(
        "{:indent$}{} [{}] {:.1} ms{status}\n",
        "",
        span["name"].as_str().unwrap_or("?"),
        span["service"].as_str().unwrap_or("?"),
        span["durationMs"].as_f64().unwrap_or(0.0),
        indent = depth * 2
    ));
    let me = span["spanId"].as_str();
    for child in all.iter().filter(|c| c["parentSpanId"].as_str() == me) {
        line(all, child, depth + 1, out);
    }
}

/// One line per trace: its id, first span (the root, usually), span count and duration.
fn list(v: &serde_json::Value) -> String {
    let mut traces: Vec<(&str, Vec<&serde_json::Value>)> = Vec::new();
    for s in spans(v) {
        let t = s["traceId"].as_str().unwrap_or("");
        match traces.iter_mut().find(|(id, _)| *id == t) {
            Some((_, v)) => v.push(s),
            None => traces.push((t, vec![s])),
        }
    }
    let mut out = format!("{:<32}  {:>5}  {:>10}  ROOT", "TRACE", "SPANS", "MS");
    for (id, spans) in traces {
        let root = spans
            .iter()
            .find(|s| s["parentSpanId"].is_null())
            .unwrap_or(&spans[0]);
        out.push_str(&format!(
            "\n{id:<32}  {:>5}  {:>10.1}  {} [{}]",
            spans.len(),
            root["durationMs"].as_f64().unwrap_or(0.0),
            root["name"].as_str().unwrap_or("?"),
            root["service"].as_str().unwrap_or("?"),
        ));
    }
    out
}
