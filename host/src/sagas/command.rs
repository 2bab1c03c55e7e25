//! The participant side: one saga command, applied once.
//!
//! One transaction on the participant's event store: if `_silo_commands` already holds the
//! command's id, its recorded reply is returned and nothing runs (a redelivery after the
//! orchestrator lost the reply). Otherwise the participant's `command-handler` runs with the
//! transaction lent to it, and a reply (success or business refusal) is recorded in the same
//! transaction before it commits. An error, a trap or the step's timeout rolls everything
//! back: a transient failure the orchestrator retries.
//!
//! The participant checks for itself, whatever the orchestrator's log says (see the
//! invariant in [`super`]): a name outside its declared `commands` is refused without the
//! handler; a recorded reply is only ever returned to the orchestrator that got it; and a
//! compensation runs only for a command this store applied successfully for the same
//! orchestrator, with the success data recorded here (not the data in the orchestrator's
//! log).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bindings::exports::silo::service::command_handler::{Command, Reply};
use crate::delivery::lend::{Call, Unlent, call_lent};
use crate::delivery::{Export, InstanceError, Lent, Recipient, host_limits, now_ms, run_on};
use crate::sql::host_tables::{self as tables, HostTables, NewCommandReply};
use crate::sql::{SqlError, SqlStore};
use crate::telemetry::TraceContext;

/// Creates the command inbox in a participant's event store.
pub async fn ensure_inbox(store: &dyn SqlStore) -> Result<(), SqlError> {
    HostTables::of(store)?
        .create_in(store, &[&tables::COMMANDS], &[])
        .await
}

/// What became of one delivery of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Applied (now or before), with the handler's data.
    Success(Vec<u8>),
    /// Refused for a business reason (now or before).
    Refused(String),
    /// Failed this time (error, trap, timeout, a store error): retry later.
    Transient(String),
    /// The participant cannot take commands now (not deployed, no `command-handler`).
    Unavailable(String),
}

/// Delivers `command` to `participant`, giving its handler at most `timeout`, on the
/// participant's own executor and under one of its permits: the saga engine only waits.
/// `compensation` picks the failpoint that fires after the participant's commit. The
/// handler runs in span `trace` (the step's).
pub async fn deliver(
    participant: &Arc<dyn Recipient>,
    command: &Command,
    compensation: bool,
    timeout: Duration,
    duplicates: &Arc<AtomicU64>,
    trace: Option<TraceContext>,
) -> Delivery {
    let (command, duplicates) = (command.clone(), duplicates.clone());
    run_on(participant, timeout, move |p| async move {
        deliver_here(&*p, &command, compensation, timeout, &duplicates, trace).await
    })
    .await
    .unwrap_or_else(Delivery::Transient)
}

/// [`deliver`], on the calling thread.
async fn deliver_here(
    participant: &dyn Recipient,
    command: &Command,
    compensation: bool,
    timeout: Duration,
    duplicates: &AtomicU64,
    trace: Option<TraceContext>,
) -> Delivery {
    let name = participant.name();
    if !participant.spec().accepts_command(&command.name) {
        return Delivery::Refused(format!(
            "service `{name}` does not take the {} `{}`: its manifest entry's `commands` does not list it",
            if compensation {
                "compensation"
            } else {
                "command"
            },
            command.name
        ));
    }
    if !participant.exports(Export::CommandHandler) {
        return Delivery::Unavailable(format!(
            "service `{name}` does not export `silo:service/command-handler`"
        ));
    }
    let Some(store_name) = participant.spec().event_store() else {
        return Delivery::Unavailable(format!("service `{name}` has no event store"));
    };
    let Some(db) = participant.store(store_name) else {
        return Delivery::Unavailable(format!(
            "service `{name}`: store `{store_name}` is not open"
        ));
    };
    let tables = match HostTables::of(db.as_ref()) {
        Ok(t) => t,
        Err(e) => return Delivery::Transient(e.to_string()),
    };
    let mut tx = match db.begin(&host_limits()).await {
        Ok(tx) => tx,
        Err(e) => return Delivery::Transient(format!("opening the command transaction: {e}")),
    };
    match tables.command_reply(tx.as_mut(), &command.id).await {
        Err(e) => return Delivery::Transient(e.to_string()),
        Ok(Some(r)) => {
            if r.source.as_deref() != Some(command.source.as_str()) {
                // Saga ids are random: another orchestrator's id in this one's log is a
                // forged row, fishing for the reply recorded for the other.
                return Delivery::Refused(format!(
                    "command `{}` was applied here for another orchestrator",
                    command.id
                ));
            }
            duplicates.fetch_add(1, Ordering::Relaxed);
            return match r {
                r if r.ok == Some(1) => Delivery::Success(r.data.unwrap_or_default()),
                r => Delivery::Refused(r.reason.unwrap_or_default()),
            };
        }
        Ok(None) => {}
    }
    let undone;
    let command = if compensation {
        match applied_here(&tables, &mut tx, command).await {
            Ok(data) => {
                undone = Command {
                    succeeded_with: Some(data),
                    ..command.clone()
                };
                &undone
            }
            Err(delivery) => return delivery,
        }
    } else {
        command
    };
    let deadline =
        Instant::now() + timeout.min(Duration::from_millis(participant.spec().limits.deadline_ms));
    let call = Call::Command(command.clone());
    let mut instance = None;
    let lent = call_lent(
        participant,
        &mut instance,
        Export::CommandHandler,
        store_name,
        &call,
        tx,
        deadline,
        trace,
    )
    .await;
    let (reply, mut tx) = match lent {
        Ok((Lent::Returned(Some(reply)), tx)) => (reply, tx),
        Ok((Lent::Returned(None), _)) => {
            return Delivery::Transient("the handler returned no reply".into());
        }
        Ok((Lent::Failed(message), _)) => {
            return Delivery::Transient(format!("the handler failed: {message}"));
        }
        Ok((Lent::Trapped { root_cause, .. }, _)) => {
            participant.count_trap();
            return Delivery::Transient(format!("the handler trapped: {root_cause}"));
        }
        Err(Unlent::NoInstance(InstanceError::Instantiate(e), _)) => {
            return Delivery::Transient(format!("instantiating `{name}`: {e}"));
        }
        Err(Unlent::NoInstance(InstanceError::Export(e), _)) => {
            return Delivery::Transient(format!("`{name}`: {e}"));
        }
        Err(Unlent::Lost(e)) => return Delivery::Transient(e.to_string()),
    };
    let (ok, data, reason, outcome) = match reply {
        Reply::Success(d) => (true, Some(d.clone()), None, Delivery::Success(d)),
        Reply::Failure(why) => (false, None, Some(why.clone()), Delivery::Refused(why)),
    };
    let row = NewCommandReply {
        command_id: &command.id,
        saga_id: &command.saga_id,
        source: &command.source,
        ok,
        data,
        reason,
        received_ms: now_ms(),
    };
    let recorded = tables.record_command(tx.as_mut(), row).await;
    if let Err(e) = recorded {
        return Delivery::Transient(format!("recording the reply: {e}"));
    }
    if let Err(e) = tx.commit().await {
        return Delivery::Transient(format!("the command transaction did not commit: {e}"));
    }
    crate::failpoint::crash(if compensation {
        "after-compensation-commit"
    } else {
        "after-command-commit"
    });
    if let Some(instance) = &mut instance {
        for n in instance.take_published() {
            n.notify_one();
        }
    }
    outcome
}

/// The success data recorded here for the command that compensation `undo` undoes (same
/// saga and step, same orchestrator). A compensation of a command this store never applied
/// successfully for that orchestrator is refused.
async fn applied_here(
    tables: &HostTables,
    tx: &mut Box<dyn crate::sql::SqlTransaction>,
    undo: &Command,
) -> Result<Vec<u8>, Delivery> {
    let Some(step) = undo.id.strip_suffix("/undo") else {
        return Err(Delivery::Refused(format!(
            "`{}` is not a compensation's command id",
            undo.id
        )));
    };
    let done = tables
        .command_reply(tx.as_mut(), &format!("{step}/do"))
        .await
        .map_err(|e| Delivery::Transient(e.to_string()))?;
    match done {
        Some(r) if r.ok == Some(1) && r.source.as_deref() == Some(undo.source.as_str()) => {
            Ok(r.data.unwrap_or_default())
        }
        _ => Err(Delivery::Refused(format!(
            "compensation `{}`: no command `{step}/do` of `{}` succeeded here",
            undo.name, undo.source
        ))),
    }
}
