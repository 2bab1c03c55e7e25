//! Lending a transaction to a guest export: the step every delivery ends in.
//!
//! The host opens a transaction on the recipient's store, records in it what it delivers
//! (an inbox row, a command's reply, a saga's `handled` flag) and lends it to one export of
//! one instance of the recipient, under a deadline: the handler's writes and the host's
//! record commit together or not at all. `ok` keeps the handler's writes; `err` or a trap
//! discards them (rolled back to a savepoint, or with the whole transaction); a trap also
//! discards the instance, so the next call gets a fresh one. The runtime does the calling
//! through [`Instance`]; this module owns the sequence.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{InstanceError, Recipient};
use crate::bindings::exports::silo::service::command_handler::{Command, Reply};
use crate::bindings::silo::service::events::Event;
use crate::bindings::silo::service::sagas::SagaStatus;
use crate::sql::{SqlError, SqlTransaction};
use crate::telemetry::TraceContext;

/// The exports that take a lent transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// `silo:service/event-handler`.
    EventHandler,
    /// `silo:service/command-handler`.
    CommandHandler,
    /// `silo:service/saga-handler`.
    SagaHandler,
}

/// One call of an export, with its argument (the lent transaction is passed beside it).
#[derive(Debug, Clone)]
pub enum Call {
    /// `event-handler.handle`.
    Event(Event),
    /// `command-handler.handle`.
    Command(Command),
    /// `saga-handler.finished`.
    Finished(SagaStatus),
}

/// What the export came to.
#[derive(Debug, Clone)]
pub enum Lent {
    /// It returned `ok`, with the command's reply if it was one.
    Returned(Option<Reply>),
    /// It returned `err` with this message.
    Failed(String),
    /// It trapped (a deadline, a limit, a guest bug): the root cause, and the whole chain.
    Trapped { root_cause: String, full: String },
}

/// An instance of a recipient, able to call its exports with a transaction lent to them.
/// `runtime::recipient` implements it.
#[async_trait]
pub trait Instance: Send {
    /// Calls `call` with `tx` (open on store `store`) lent to it, the instance armed for
    /// `deadline` and working in span `trace` (the delivery's or the saga command's: the
    /// parent of the spans its capabilities start); returns the transaction after the
    /// call, or the error that lost it.
    async fn call(
        &mut self,
        store: &str,
        call: &Call,
        tx: Box<dyn SqlTransaction>,
        deadline: Instant,
        trace: Option<TraceContext>,
    ) -> Result<(Lent, Box<dyn SqlTransaction>), SqlError>;
    /// The outboxes and saga logs its calls wrote to, to wake once the transaction commits.
    fn take_published(&mut self) -> Vec<Arc<tokio::sync::Notify>>;
}

/// Why a transaction could not be lent.
pub enum Unlent {
    /// No instance could be had: the transaction comes back untouched.
    NoInstance(InstanceError, Box<dyn SqlTransaction>),
    /// The transaction was lost (the backend or the resource table failed).
    Lost(SqlError),
}

/// Calls `call` on `instance` (a fresh instance of `recipient` first, if it holds none)
/// with `tx` lent, by `deadline`, in span `trace`. A trap discards the instance.
#[allow(clippy::too_many_arguments, reason = "one lent call's parts")]
pub async fn call_lent(
    recipient: &dyn Recipient,
    instance: &mut Option<Box<dyn Instance>>,
    export: Export,
    store: &str,
    call: &Call,
    tx: Box<dyn SqlTransaction>,
    deadline: Instant,
    trace: Option<TraceContext>,
) -> Result<(Lent, Box<dyn SqlTransaction>), Unlent> {
    if instance.is_none() {
        match recipient.instance(export, deadline).await {
            Ok(i) => *instance = Some(i),
            Err(e) => return Err(Unlent::NoInstance(e, tx)),
        }
    }
    let Some(i) = instance.as_mut() else {
        unreachable!("an instance was just made");
    };
    let (lent, tx) = i
        .call(store, call, tx, deadline, trace)
        .await
        .map_err(Unlent::Lost)?;
    if matches!(lent, Lent::Trapped { .. }) {
        *instance = None;
    }
    Ok((lent, tx))
}
