//! `silo rollback SERVICE`: returns a service to its previous version.

use std::process::ExitCode;

use crate::remote::{AdminArgs, admin_call};

pub(crate) fn rollback(service: &str, admin: &AdminArgs) -> ExitCode {
    admin_call(
        admin,
        hyper::Method::POST,
        &format!("/admin/services/{service}/rollback"),
        Vec::new(),
        |v| {
            format!(
                "rolled back {} to v{} ({})",
                v["service"].as_str().unwrap_or("?"),
                v["version"],
                v["digest"].as_str().unwrap_or("?")
            )
        },
    )
}
