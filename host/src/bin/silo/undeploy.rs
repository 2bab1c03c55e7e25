//! `silo undeploy SERVICE`: stops routing to a service; its data stays.

use std::process::ExitCode;

use crate::remote::{AdminArgs, admin_call};

pub(crate) fn undeploy(service: &str, admin: &AdminArgs) -> ExitCode {
    admin_call(
        admin,
        hyper::Method::DELETE,
        &format!("/admin/services/{service}"),
        Vec::new(),
        |v| format!("undeployed {}", v["service"].as_str().unwrap_or("?")),
    )
}
