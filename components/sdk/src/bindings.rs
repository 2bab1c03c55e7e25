//! The guest-side bindings for silo's WIT, generated once here and nowhere else.
//!
//! Services never name these modules directly: [`crate::Db`], [`crate::Migration`] and
//! [`crate::service!`] wrap them. They are public so a service can reach a raw handle
//! when the wrappers do not cover a case.

wit_bindgen::generate!({
    path: "../../wit",
    world: "silo:service/sdk",
    pub_export_macro: true,
    export_macro_name: "export_migrations",
    default_bindings_module: "::silo_sdk::bindings",
});
