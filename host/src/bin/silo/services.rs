//! `silo services`: the services of a running host, one line each.

use std::process::ExitCode;

use crate::remote::{AdminArgs, admin_call};

pub(crate) fn services(args: &AdminArgs) -> ExitCode {
    admin_call(
        args,
        hyper::Method::GET,
        "/admin/services",
        Vec::new(),
        |v| {
            let mut out = format!(
                "{:<14} {:<8} {:<20} {:<14} {:<24} {:<8}",
                "SERVICE", "VERSION", "DIGEST", "ROUTE", "STORES", "STATE"
            );
            for s in v["services"].as_array().into_iter().flatten() {
                let stores: Vec<String> = s["stores"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|st| {
                        format!(
                            "{}:{}",
                            st["name"].as_str().unwrap_or("?"),
                            st["backend"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                let digest = s["digest"].as_str().unwrap_or("");
                out.push_str(&format!(
                    "\n{:<14} {:<8} {:<20} {:<14} {:<24} {:<8}",
                    s["name"].as_str().unwrap_or("?"),
                    s["version"].to_string(),
                    digest.get(..19).unwrap_or(digest),
                    s["route"].as_str().unwrap_or("?"),
                    stores.join(","),
                    s["state"].as_str().unwrap_or("?"),
                ));
            }
            out
        },
    )
}
