//! The host side of silo's WIT: bindings generated once, from `wit/`, for every silo interface.
//!
//! Hand-written `Host` impls live beside the capability they belong to (`sql/host.rs`,
//! `kv/host.rs`, `events/host.rs`, `sagas/host.rs`), each on that capability's own view, and
//! each capability links its own interfaces; this module only generates. The WIT
//! `types.error` is shared by every store capability, so its host type is one
//! (`sql::error::SqlError`); each capability maps it in its own `convert_error`. Resources
//! are mapped to the host types that back them, so a guest only ever holds an index into its
//! own instance's resource table, never a host pointer or an id it could forge for another
//! instance.
//!
//! `silo:service/types` is generated apart, in `wit_types.rs`, and mapped here: the files
//! this one names (`sql/store.rs`, `sql/error.rs`, `kv/store.rs`) import only those types,
//! so no file imports a file that imports it back. The capabilities' `mod.rs` and `host.rs`
//! import this file; the capabilities' host types are the only thing it names of them.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "silo:service/sdk",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "silo:service/types": crate::wit_types::silo::service::types,
        "silo:service/sql.database": crate::sql::store::Database,
        "silo:service/sql.transaction": crate::sql::store::Transaction,
        "silo:service/kv.bucket": crate::kv::store::Bucket,
    },
    trappable_error_type: {
        "silo:service/types.error" => crate::sql::error::SqlError,
    },
});

pub use crate::wit_types::{ExecResult, RowSet, Value, WitError};
