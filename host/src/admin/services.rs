//! `/admin/services`: the services serving, and one service with its version history.

use hyper::{Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::json;
use crate::host::Host;
use crate::runtime::dispatch::json_error;

/// The `/admin/services` listing.
pub fn services_json(host: &Host) -> serde_json::Value {
    let routes = host.routes();
    let services: Vec<_> = routes
        .services()
        .map(|s| {
            let mut stores: Vec<_> = s
                .grants
                .names()
                .map(|n| {
                    let backend = s.grants.get(n).map(|b| b.backend()).unwrap_or("?");
                    serde_json::json!({ "name": n, "kind": "sql", "backend": backend })
                })
                .chain(s.grants.kv_names().map(|n| {
                    let backend = s.grants.kv(n).map(|b| b.backend()).unwrap_or("?");
                    serde_json::json!({ "name": n, "kind": "kv", "backend": backend })
                }))
                .collect();
            stores.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            serde_json::json!({
                "name": &*s.name,
                "version": s.version,
                "digest": s.digest,
                "route": s.spec.route,
                "stores": stores,
                "state": "serving",
                "requests": s.metrics.total(),
                // What it declares of its neighbours: the dashboard's map draws these edges.
                "calls": s.spec.calls,
                "publishes": s.spec.publishes,
                "subscribes": s.spec.subscribes.iter()
                    .map(|sub| serde_json::json!({ "source": sub.source, "topic": sub.topic }))
                    .collect::<Vec<_>>(),
                "sagaParticipants": s.spec.saga_participants,
                "limits": {
                    "deadlineMs": s.spec.limits.deadline_ms,
                    "memoryMb": s.spec.limits.memory_mb,
                    "bodyKb": s.spec.limits.body_kb,
                    "concurrency": s.spec.limits.concurrency,
                    "resultKb": s.spec.limits.result_kb,
                    "instanceReuse": s.spec.limits.instance_reuse,
                },
            })
        })
        .collect();
    serde_json::json!({ "services": services })
}

/// One service with its version history.
pub(super) fn service_json(host: &Host, name: &str) -> Response<HyperOutgoingBody> {
    if !crate::manifest::valid_name(name) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!(
                "`{}` is not a service name (lowercase letters, digits and `-`, at most 63)",
                name.get(..64).unwrap_or(name)
            ),
        );
    }
    let history = crate::deploy::History::new(&host.data_dir);
    match history.load(name) {
        Ok(Some(h)) => json(
            StatusCode::OK,
            serde_json::json!({
                "name": name,
                "active": h.active,
                "state": if h.active.is_some() { "serving" } else { "undeployed" },
                "versions": h.versions.iter().map(|v| serde_json::json!({
                    "version": v.version,
                    "digest": v.digest,
                    "deployedAt": v.deployed_at,
                    "origin": v.origin,
                    "route": v.spec.route,
                })).collect::<Vec<_>>(),
            }),
        ),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no service `{name}`"),
        ),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}
