//! Sagas: a transaction across services, run durably by the host.
//!
//! The flow, kept visible:
//!
//! 1. **Start** (`start` below, the `silo:service/sagas` host function): the saga and its
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
pub mod log;

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::bindings::silo::service::sagas::{self as wit, SagaStatus, Step};
use crate::calls::ServiceDirectory;
use crate::manifest::ServiceSpec;
use crate::sql::{SqlCtxView, SqlError, Transaction};

pub use engine::{SagaEngine, SagaStats};
pub use log::SagaLog;

/// What a service may do with sagas: the participants it may command, and its saga log.
#[derive(Clone, Default)]
pub struct SagaGrant {
    pub participants: Arc<[String]>,
    /// The service's event store (where its saga log is).
    pub store: Option<Arc<str>>,
    pub log: Option<Arc<SagaLog>>,
    /// The services deployed now, for the participants' `commands`.
    pub directory: ServiceDirectory,
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

impl wit::Host for SqlCtxView<'_> {
    async fn start(
        &mut self,
        tx: Resource<Transaction>,
        kind: String,
        key: String,
        steps: Vec<Step>,
    ) -> Result<String, SqlError> {
        let grant = self.ctx.sagas.clone();
        let service = self.ctx.service().to_string();
        let (Some(store), Some(log)) = (grant.store, grant.log) else {
            return Err(SqlError::AccessDenied(format!(
                "service `{service}` starts no sagas: its manifest entry lists no `saga-participants`"
            )));
        };
        if steps.is_empty() || steps.len() > MAX_STEPS {
            return Err(SqlError::LimitExceeded(format!(
                "a saga has 1 to {MAX_STEPS} steps, not {}",
                steps.len()
            )));
        }
        let deployed = grant.directory.load_full();
        for (i, s) in steps.iter().enumerate() {
            if !grant.participants.contains(&s.service) {
                return Err(SqlError::AccessDenied(format!(
                    "step `{}`: service `{service}` may not send commands to `{}`: its manifest entry's `saga-participants` does not list it",
                    s.name, s.service
                )));
            }
            // The participant as deployed now; one not deployed is checked when its step is
            // sent (the engine waits for it).
            let spec = deployed.by_name(&s.service).map(|p| &p.spec);
            let names = std::iter::once((s.command.as_str(), false))
                .chain(s.compensation.as_deref().map(|c| (c, true)));
            for (name, compensation) in names {
                check_step(
                    &service,
                    &grant.participants,
                    &s.name,
                    &s.service,
                    spec,
                    name,
                    compensation,
                )
                .map_err(SqlError::AccessDenied)?;
            }
            if s.name.is_empty() || steps[..i].iter().any(|t| t.name == s.name) {
                return Err(SqlError::BadQuery(format!(
                    "step names must be non-empty and unique (`{}`)",
                    s.name
                )));
            }
            if s.payload.len() > crate::events::MAX_DATA_BYTES
                || kind.len() > 128
                || key.len() > crate::events::MAX_KEY_BYTES
            {
                return Err(SqlError::LimitExceeded(
                    "a saga's kind is at most 128 bytes, its key 256, a payload 1 MiB".into(),
                ));
            }
        }
        let t = self.table.get_mut(&tx).map_err(wasmtime::Error::from)?;
        if t.store() != &*store {
            return Err(SqlError::AccessDenied(format!(
                "sagas are started in a transaction on store `{store}` (the service's event store), not `{}`",
                t.store()
            )));
        }
        let id = log.create(t.inner_mut()?, &kind, &key, &steps).await?;
        t.wake_on_commit(&log.notify);
        t.started_saga = true;
        Ok(id)
    }

    async fn status(&mut self, id: String) -> Result<Option<SagaStatus>, SqlError> {
        let Some(log) = self.ctx.sagas.log.clone() else {
            return Ok(None);
        };
        log.status(&id).await
    }
}

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
