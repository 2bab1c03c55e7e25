//! The guest-side bindings for silo's WIT, generated once here and nowhere else.
//!
//! Services never name these modules directly: [`crate::Db`], [`crate::Tx`], [`crate::Kv`],
//! [`crate::Event`], [`crate::Migration`], [`crate::Step`], [`crate::Command`] and
//! [`crate::service!`] wrap or re-export them. They are public so a service can reach a
//! raw handle when the wrappers do not cover a case.
//!
//! `export_silo!` exports all four of the `sdk` world's interfaces,
//! `silo:service/migrations`, `silo:service/event-handler`,
//! `silo:service/command-handler` and `silo:service/saga-handler`; [`crate::service!`]
//! is its one caller.

wit_bindgen::generate!({
    path: "../../wit",
    world: "silo:service/sdk",
    pub_export_macro: true,
    export_macro_name: "export_silo",
    default_bindings_module: "::silo_sdk::bindings",
});
