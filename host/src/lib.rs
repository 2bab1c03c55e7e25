//! silo: a host runtime for the database-per-service pattern.
//!
//! Each service is a sandboxed WebAssembly component (a standard `wasi:http` component) that
//! holds capability handles to its own stores and nothing else. The host routes HTTP
//! requests to a fresh instance of the right service and hands it only what its manifest
//! entry declares.
//!
//! The wiring, start to finish:
//!
//! ```no_run
//! # async fn example() -> wasmtime::Result<()> {
//! use std::path::Path;
//! use silo::{host::Host, manifest::Manifest};
//!
//! let manifest_path = Path::new("silo.toml");
//! let manifest = Manifest::load(manifest_path)?;          // strict: errors name the key
//! let host = Host::new(Path::new(".silo"), None)?;          // engine + linker, once
//! host.load_manifest(manifest_path, &manifest).await?;     // compile, link, open stores, migrate
//! let routes = host.routes();                              // what requests are routed by
//! assert!(routes.route("/users/42").is_some());
//! # Ok(()) }
//! ```
//!
//! Code map: [`manifest`] (what a service declares), [`runtime`] (engine, per-request
//! state, dispatch, migrations), [`sql`] (the store capability and its backends), [`calls`] (host-routed calls between services),
//! [`kv`] (the key-value capability and its backends), [`events`] (outbox, router, inbox), [`sagas`] (saga log, engine, participants' commands),
//! [`host`] (start-up, listeners, deploys, shutdown), [`admin`] (health, metrics, admin API,
//! one file per resource); at the bottom, [`names`] (names and URLs of shared servers, checked
//! without a connection) and [`secrets`] (the host's private secret files).

pub mod admin;
pub mod bindings;
pub mod calls;
pub mod delivery;
pub mod deploy;
pub mod events;
pub mod failpoint;
pub mod host;
pub mod isolation;
pub mod kv;
pub mod manifest;
pub mod names;
pub mod request;
pub mod runtime;
pub mod sagas;
pub mod secrets;
pub mod sql;
pub mod telemetry;
pub mod wit_types;
