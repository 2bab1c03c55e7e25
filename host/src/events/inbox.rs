//! The inbox side: handing a batch of one subscription's events to the subscriber's
//! `event-handler` export, each applied exactly once.
//!
//! One transaction on the subscriber's event store holds the whole batch (one commit, so one
//! disk sync, for up to `batch` events). Each event runs inside its own savepoint:
//! inbox record first (an event already recorded is a duplicate and is acknowledged without
//! its handler), then the handler with the transaction lent to it. `ok` releases the
//! savepoint; `err` or a trap rolls back to it, so a failing event leaves no trace and the
//! others of the batch still commit. One instance handles the batch's events in turn; a
//! trap discards it and the next event gets a fresh one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::outbox::{EventRecord, host_limits};
use super::{now_ms, rfc3339_ms};
use crate::bindings::exports::silo::service::event_handler::Guest;
use crate::bindings::silo::service::events::Event;
use crate::runtime::service::{Service, arm};
use crate::runtime::state::RequestState;
use crate::sql::host_tables::HostTables;
use crate::sql::{SqlError, SqlTransaction};

/// The longest a batch keeps the subscriber's writer before it commits what it has.
const BATCH_TIME: Duration = Duration::from_millis(50);

/// What became of one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler ran and its transaction committed; the event's latency in ms (publish to
    /// commit).
    Handled { latency_ms: u64 },
    /// The inbox already had it: handled before, acknowledged again.
    Duplicate,
    /// The handler failed or trapped, or the transaction did not commit.
    Failed(String),
    /// Not tried (the batch ran out of time first).
    Skipped,
}

/// Why a whole batch could not be tried (nothing counted against its events).
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

/// Delivers `events` (in order) to subscription `subscription` of `service`, on the
/// subscriber's own executor and under one of its permits: the router only waits.
pub async fn deliver(
    service: &Arc<Service>,
    subscription: &str,
    events: &[Arc<EventRecord>],
) -> Result<Vec<Outcome>, Unavailable> {
    let wait = Duration::from_millis(service.spec.limits.deadline_ms);
    let (subscription, events) = (subscription.to_string(), events.to_vec());
    service
        .deliver(wait, move |s| async move {
            deliver_here(&s, &subscription, &events).await
        })
        .await
        .map_err(Unavailable)?
}

/// [`deliver`], on the calling thread.
async fn deliver_here(
    service: &Arc<Service>,
    subscription: &str,
    events: &[Arc<EventRecord>],
) -> Result<Vec<Outcome>, Unavailable> {
    let name = &service.name;
    let Some(indices) = &service.event_handler else {
        return Err(Unavailable(format!(
            "service `{name}` does not export `silo:service/event-handler`"
        )));
    };
    let Some(store_name) = service.spec.event_store() else {
        return Err(Unavailable(format!("service `{name}` has no event store")));
    };
    let Some(db) = service.grants.get(store_name) else {
        return Err(Unavailable(format!(
            "service `{name}`: store `{store_name}` is not open"
        )));
    };
    let mut tx = db
        .begin(&host_limits())
        .await
        .map_err(|e| Unavailable(format!("opening the inbox transaction: {e}")))?;
    let started = Instant::now();
    let mut instance: Option<(Store<RequestState>, Guest)> = None;
    let mut outcomes = Vec::with_capacity(events.len());
    let mut woken = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if i > 0 && started.elapsed() > BATCH_TIME {
            outcomes.push(Outcome::Skipped);
            continue;
        }
        let (outcome, returned) = handle_one(
            service,
            indices,
            store_name,
            subscription,
            event,
            tx,
            &mut instance,
        )
        .await;
        tx = match returned {
            Ok(tx) => tx,
            Err(e) => {
                // The transaction is lost (the backend failed): nothing of the batch commits.
                let why = format!("the inbox transaction failed: {e}");
                return Ok(events
                    .iter()
                    .map(|_| Outcome::Failed(why.clone()))
                    .collect());
            }
        };
        if let Some((store, _)) = &mut instance {
            woken.extend(store.data_mut().sql.take_published());
        }
        outcomes.push(outcome);
    }
    if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Handled { .. }))
    {
        crate::failpoint::crash("mid-batch");
    }
    if let Err(e) = tx.commit().await {
        let why = format!("the inbox transaction did not commit: {e}");
        return Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Skipped => Outcome::Skipped,
                _ => Outcome::Failed(why.clone()),
            })
            .collect());
    }
    crate::failpoint::crash("after-handler-commit");
    let now = now_ms();
    for (o, e) in outcomes.iter_mut().zip(events) {
        if let Outcome::Handled { latency_ms } = o {
            *latency_ms = (now - e.time_ms).max(0) as u64;
        }
    }
    for n in woken {
        n.notify_one();
    }
    Ok(outcomes)
}

/// One event inside the batch's transaction. Returns its outcome and the transaction (or
/// the backend error that lost it).
async fn handle_one(
    service: &Arc<Service>,
    indices: &crate::bindings::exports::silo::service::event_handler::GuestIndices,
    store_name: &str,
    subscription: &str,
    event: &EventRecord,
    mut tx: Box<dyn SqlTransaction>,
    instance: &mut Option<(Store<RequestState>, Guest)>,
) -> (Outcome, Result<Box<dyn SqlTransaction>, SqlError>) {
    let tables = match service.grants.get(store_name) {
        Some(db) => HostTables::of(db.as_ref()),
        None => Err(SqlError::Other(format!("store `{store_name}` is not open"))),
    };
    let tables = match tables {
        Ok(t) => t,
        Err(e) => return (Outcome::Failed(e.to_string()), Err(e)),
    };
    if let Err(e) = tables.savepoint(tx.as_mut()).await {
        return (Outcome::Failed(e.to_string()), Err(e));
    }
    let recorded = tables
        .record_inbox(tx.as_mut(), subscription, &event.id, now_ms())
        .await;
    match recorded {
        Err(e) => return (Outcome::Failed(e.to_string()), Err(e)),
        Ok(false) => {
            return match tables.release(tx.as_mut()).await {
                Ok(()) => (Outcome::Duplicate, Ok(tx)),
                Err(e) => (Outcome::Failed(e.to_string()), Err(e)),
            };
        }
        Ok(true) => {}
    }
    let deadline = Instant::now() + Duration::from_millis(service.spec.limits.deadline_ms);
    if instance.is_none() {
        match instantiate(service, indices, deadline).await {
            Ok(i) => *instance = Some(i),
            Err(e) => {
                return undo(
                    &tables,
                    tx,
                    format!("instantiating `{}`: {e:#}", service.name),
                )
                .await;
            }
        }
    }
    let Some((store, guest)) = instance.as_mut() else {
        return undo(&tables, tx, "no instance".into()).await;
    };
    arm(store, deadline, &[]);
    let handle = match store.data_mut().lend_tx(store_name, tx) {
        Ok(h) => h,
        Err(e) => return (Outcome::Failed(e.to_string()), Err(e)),
    };
    let rep = handle.rep();
    let wit = Event {
        id: event.id.clone(),
        source: event.source.to_string(),
        topic: event.topic.clone(),
        key: event.key.clone(),
        sequence: event.seq as u64,
        time: rfc3339_ms(event.time_ms),
        content_type: event.content_type.clone(),
        data: event.data.clone(),
    };
    let result = guest.call_handle(&mut *store, &wit, handle).await;
    let tx = match store.data_mut().take_back_tx(rep) {
        Ok(tx) => tx,
        Err(e) => return (Outcome::Failed(e.to_string()), Err(e)),
    };
    match result {
        Ok(Ok(())) => {
            let mut tx = tx;
            match tables.release(tx.as_mut()).await {
                Ok(()) => (Outcome::Handled { latency_ms: 0 }, Ok(tx)),
                Err(e) => (Outcome::Failed(e.to_string()), Err(e)),
            }
        }
        Ok(Err(message)) => undo(&tables, tx, format!("the handler failed: {message}")).await,
        Err(trap) => {
            *instance = None;
            service
                .metrics
                .traps
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            undo(
                &tables,
                tx,
                format!("the handler trapped: {}", trap.root_cause()),
            )
            .await
        }
    }
}

async fn instantiate(
    service: &Arc<Service>,
    indices: &crate::bindings::exports::silo::service::event_handler::GuestIndices,
    deadline: Instant,
) -> wasmtime::Result<(Store<RequestState>, Guest)> {
    let (mut store, instance) = service.instance(deadline).await?;
    let guest = indices.load(&mut store, &instance)?;
    Ok((store, guest))
}

/// Rolls the event's savepoint back: it leaves no trace, the rest of the batch goes on.
async fn undo(
    tables: &HostTables,
    mut tx: Box<dyn SqlTransaction>,
    why: String,
) -> (Outcome, Result<Box<dyn SqlTransaction>, SqlError>) {
    let undone = async {
        tables.rollback_to(tx.as_mut()).await?;
        tables.release(tx.as_mut()).await
    }
    .await;
    match undone {
        Ok(_) => (Outcome::Failed(why), Ok(tx)),
        Err(e) => (Outcome::Failed(why), Err(e)),
    }
}
