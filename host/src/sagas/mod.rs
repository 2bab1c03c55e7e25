//! Sagas: a transaction across services, run durably by the host.
//!
//! The flow, kept visible:
//!
//! 1. **Start** (`start` in `host.rs`, the `silo:service/sagas` host function): the saga and its
//!    steps are written into the orchestrator's saga log (`_silo_sagas`, `_silo_saga_steps`)
//!    by the guest's own transaction, so the saga exists if and only if, say, the order row
//!    does. The commit wakes the orchestrator's [`engine::SagaEngine`] worker.
//! 2. **Run** ([`engine`]): one action at a time per saga, each recorded in the log before
//!    the next: a step's command goes to its participant ([`command::deliver`]); success
//!    moves on, a business refusal turns the saga to compensating, a transient failure
//!    (trap, timeout, error) is retried with backoff and after `max-attempts` counts as a
//!    refusal. Compensating sends the compensations of the succeeded steps in reverse order,
//!    retried until they succeed or `compensation-attempts` is reached (then FAILED: an
//!    operator's attention, shown in `/admin/sagas` and the metrics, never silent).
//! 3. **Participant** ([`command::deliver`]): the command runs in one transaction on the
//!    participant's store that also records it, with its reply, in `_silo_commands`. A
//!    redelivery (the orchestrator crashed before recording the reply) gets the recorded reply
//!    back without running the handler: every step and compensation applies once.
//! 4. **End**: the orchestrator's `saga-handler.finished` runs in a transaction that also
//!    marks the saga handled, so it too runs to completion exactly once.
//!
//! *Invariant:* what a step may do is checked where it takes effect, against the manifest
//! as deployed now, not only when the saga was started: the log is a table in the
//! orchestrator's own store, so a row in it is a request, never a permission. Before every
//! command and compensation the engine checks the participant against the orchestrator's
//! `saga-participants` and the name against the participant's `commands` ([`check_step`]);
//! the participant checks the name again, and that a compensation undoes a command it
//! applied for the same orchestrator ([`command::deliver`]).

pub mod command;
pub mod engine;
pub mod host;
pub mod log;
pub mod trace;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

use crate::manifest::ServiceSpec;
use crate::request::RequestCtx;

pub use engine::{SagaEngine, SagaStats};
pub use log::SagaLog;

/// What a service may do with sagas: the participants it may command, and its saga log.
#[derive(Clone)]
pub struct SagaGrant {
    pub participants: Arc<[String]>,
    /// The service's event store (where its saga log is).
    pub store: Option<Arc<str>>,
    pub log: Option<Arc<SagaLog>>,
    /// The services deployed now, for the participants' `commands`.
    pub directory: Arc<dyn DeployedServices>,
}

/// The services deployed now, as `sagas.start` needs to see them: implemented by the
/// runtime (its routing table), handed in with the grant, so this capability never
/// imports the runtime.
pub trait DeployedServices: Send + Sync + 'static {
    /// The manifest entry of `service` as deployed now, if it is deployed.
    fn spec(&self, service: &str) -> Option<ServiceSpec>;
}

/// Why the host will not send command `name` of step `step` (a compensation if
/// `compensation`) from `orchestrator` to `participant`, if it will not: the participant
/// must be one of the orchestrator's `saga-participants`, and take the name if it declares
/// `commands`. `participant_spec` is the participant as deployed now (`None`: not deployed,
/// so only the first check applies). The one check behind `sagas.start` and the engine.
pub fn check_step(
    orchestrator: &str,
    participants: &[String],
    step: &str,
    participant: &str,
    participant_spec: Option<&ServiceSpec>,
    name: &str,
    compensation: bool,
) -> Result<(), String> {
    if !participants.iter().any(|p| p == participant) {
        return Err(format!(
            "step `{step}` names service `{participant}`, which `{orchestrator}` does not declare in `saga-participants`"
        ));
    }
    match participant_spec {
        Some(spec) if !spec.accepts_command(name) => Err(format!(
            "step `{step}`: service `{participant}` does not take the {} `{name}` (its `commands` are {})",
            if compensation {
                "compensation"
            } else {
                "command"
            },
            spec.commands
                .iter()
                .flatten()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Ok(()),
    }
}

/// Most steps in one saga.
pub const MAX_STEPS: usize = 64;

/// Per-request state of the capability: the service's saga grant and log.
pub struct SagasCtx {
    grant: SagaGrant,
}

impl SagasCtx {
    pub fn new(grant: SagaGrant) -> Self {
        Self { grant }
    }
}

/// A borrowed view of the capability's state, the request's context and the instance's
/// resource table (where the guest's `transaction` handles are: the table is shared by
/// every capability, the `sql` context is not).
pub struct SagasCtxView<'a> {
    pub ctx: &'a mut SagasCtx,
    pub request: &'a RequestCtx,
    pub table: &'a mut ResourceTable,
}

/// Implemented by the store data of an instance that may start sagas.
pub trait SagasView: Send {
    fn sagas(&mut self) -> SagasCtxView<'_>;
}

/// Marker for `add_to_linker`: the `Host` impls are on [`SagasCtxView`].
pub struct Sagas;

impl HasData for Sagas {
    type Data<'a> = SagasCtxView<'a>;
}

/// Adds `silo:service/sagas` to a linker.
pub fn add_to_linker<T: SagasView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::bindings::silo::service::sagas::add_to_linker::<T, Sagas>(linker, T::sagas)
}

#[cfg(test)]
mod trace_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_needs_a_declared_participant_and_one_of_its_commands() {
        let m = crate::manifest::Manifest::parse(
            "[services.o]\ncomponent = \"o.wasm\"\nroute = \"/o\"\nsaga-participants = [\"p\"]\n[services.o.stores.main]\n\
             [services.p]\ncomponent = \"p.wasm\"\nroute = \"/p\"\ncommands = [\"reserve\", \"release\"]\n[services.p.stores.main]\n\
             [services.q]\ncomponent = \"q.wasm\"\nroute = \"/q\"\n[services.q.stores.main]\n",
        )
        .unwrap();
        let participants = &m.services["o"].saga_participants;
        let p = Some(&m.services["p"]);
        assert_eq!(
            check_step("o", participants, "s", "p", p, "reserve", false),
            Ok(())
        );
        assert_eq!(
            check_step("o", participants, "s", "p", p, "release", true),
            Ok(())
        );
        let e = check_step(
            "o",
            participants,
            "s",
            "q",
            Some(&m.services["q"]),
            "x",
            false,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "step `s` names service `q`, which `o` does not declare in `saga-participants`"
        );
        let e = check_step("o", participants, "s", "p", p, "charge", false).unwrap_err();
        assert_eq!(
            e,
            "step `s`: service `p` does not take the command `charge` (its `commands` are `reserve`, `release`)"
        );
        let e = check_step("o", participants, "s", "p", p, "refund", true).unwrap_err();
        assert!(e.contains("the compensation `refund`"), "{e}");
        // Not deployed now: only the participant list can be checked (the engine waits).
        assert_eq!(
            check_step("o", participants, "s", "p", None, "charge", false),
            Ok(())
        );
    }
}
