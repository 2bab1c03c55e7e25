//! `silo deploy SERVICE FILE`: sends a component, with the grants given as flags, to a
//! running host.

use std::path::Path;
use std::process::ExitCode;

use crate::fail;
use crate::remote::{AdminArgs, admin_call};

/// What `silo deploy` may change besides the component (the flags it was given).
pub(crate) struct Grants {
    pub(crate) route: Option<String>,
    pub(crate) stores: Vec<String>,
    pub(crate) calls: Option<String>,
    pub(crate) publishes: Option<String>,
    pub(crate) subscribes: Option<String>,
}

pub(crate) fn deploy(service: &str, file: &Path, grants: Grants, admin: &AdminArgs) -> ExitCode {
    let Grants {
        route,
        stores,
        calls,
        publishes,
        subscribes,
    } = grants;
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return fail(2, format!("{}: {e}", file.display())),
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(r) = &route {
        query.append_pair("route", r);
    }
    for s in &stores {
        query.append_pair("store", s);
    }
    for (k, v) in [
        ("calls", &calls),
        ("publishes", &publishes),
        ("subscribes", &subscribes),
    ] {
        if let Some(v) = v {
            query.append_pair(k, v);
        }
    }
    let path = format!("/admin/services/{service}?{}", query.finish());
    admin_call(admin, hyper::Method::POST, &path, bytes, |v| {
        if v["unchanged"] == true {
            return format!(
                "{} v{} already serves this component ({}) with these grants: unchanged, no new version",
                v["service"].as_str().unwrap_or("?"),
                v["version"],
                v["digest"].as_str().unwrap_or("?"),
            );
        }
        format!(
            "deployed {} v{} ({}) in {} ms, {} migration(s) applied",
            v["service"].as_str().unwrap_or("?"),
            v["version"],
            v["digest"].as_str().unwrap_or("?"),
            v["tookMs"],
            v["migrationsApplied"]
        )
    })
}
