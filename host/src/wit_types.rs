//! The WIT `silo:service/types` interface (values, rows, the shared `error`), generated on
//! its own so that the host types behind the resources of `bindings` can name these types
//! without importing `bindings` (which names those host types): no file imports a file that
//! imports it back.

wasmtime::component::bindgen!({
    path: "../wit",
    inline: "package silo:types-only; world types-only { import silo:service/types@0.1.0; }",
    imports: { default: async | trappable },
    trappable_error_type: {
        "silo:service/types.error" => crate::sql::error::SqlError,
    },
});

pub use self::silo::service::types::{Error as WitError, ExecResult, RowSet, Value};
