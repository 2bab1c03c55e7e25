//! The isolation catalogue: every attack the intruder component makes on a live host, what
//! should happen, and the victim check that runs beside each one.
//!
//! `silo demo isolation` and the integration tests both use [`run_attack`]: it measures a
//! quiet baseline of the victim (`GET /users/{id}` on the users service), then runs one
//! attack while a victim loop keeps asking, and passes only if the attack failed *and* every
//! victim answer was correct *and* the victim's p99 latency stayed within
//! [`victim_bound`] of the baseline.
//!
//! The files: [`catalogue`] (the attacks and how each is judged), [`setup`] (the host's
//! manifest and the shared servers), [`target`] (the client for one host), [`victim`]
//! (the victim and its bound), [`judge`] (the judges and the host measurements they take),
//! [`runner`] (one attack beside the victim loop, and the table).

mod catalogue;
mod judge;
mod runner;
mod setup;
mod target;
mod victim;

pub use catalogue::{Attack, CATALOGUE, INTRUDER_STORE_MB, Judge, LOG_SLACK, SERVER_CATALOGUE};
pub use judge::{lag_bound, recorded_host_statements, resident_bytes, store_bytes};
pub use runner::{Outcome, render, run_attack};
pub use setup::{Servers, manifest};
pub use target::Target;
pub use victim::{Victim, victim_bound};
