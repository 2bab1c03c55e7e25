//! Comparing two versions of a service's declarations: which manifest keys differ, and
//! whether a new version grants the same (then a deploy may reuse the open stores). Apart
//! from `apply.rs` and `deploys.rs` because both use it and each imports the other's items.

use std::path::PathBuf;

use crate::manifest::ServiceSpec;

/// `spec` as compared between versions: without the component's path.
fn declarations(spec: &ServiceSpec) -> serde_json::Map<String, serde_json::Value> {
    let mut spec = spec.clone();
    spec.component = PathBuf::new();
    match serde_json::to_value(spec) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => Default::default(),
    }
}

/// The manifest keys (`limits`, `calls`, …) whose values differ between `a` and `b`.
pub(super) fn differing_keys(a: &ServiceSpec, b: &ServiceSpec) -> Vec<String> {
    let (a, b) = (declarations(a), declarations(b));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// True if `a` and `b` grant the same and set the same limits.
pub(super) fn same_grants(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    differing_keys(a, b).is_empty()
}
