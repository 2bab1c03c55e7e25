//! Running components: the engine and linker, per-request state, dispatch, migrations.
//!
//! Architecture invariant: a trap, a deadline or an exhausted limit ends one instance and
//! answers one request; it never takes down a worker thread, the router or another service.

pub mod budget;
pub mod dispatch;
pub mod engine;
pub mod executor;
pub mod exports;
pub mod grants;
pub mod metrics;
pub mod migrations;
pub mod permits;
pub mod recipient;
pub mod refusals;
pub mod service;
pub mod state;
pub mod stdio;
