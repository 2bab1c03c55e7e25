//! The host side of silo's WIT: bindings generated once, from `wit/`, for every silo interface.
//!
//! Hand-written `Host` impls live beside the capability they belong to (`sql/host.rs`,
//! `kv/host.rs`, `events/host.rs`, `sagas/host.rs`), each on that capability's own view, and
//! each capability links its own interfaces; this module only generates. The WIT
//! `types.error` is shared by every store capability, so its host type is one
//! ([`crate::sql::SqlError`]); each capability maps it in its own `convert_error`. Resources are mapped to the host types that back them, so a
//! guest only ever holds an index into its own instance's resource table, never a host pointer
//! or an id it could forge for another instance.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "silo:service/sdk",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "silo:service/sql.database": crate::sql::Database,
        "silo:service/sql.transaction": crate::sql::Transaction,
        "silo:service/kv.bucket": crate::kv::store::Bucket,
    },
    trappable_error_type: {
        "silo:service/types.error" => crate::sql::SqlError,
    },
});

pub use self::silo::service::types::{Error as WitError, ExecResult, RowSet, Value};
