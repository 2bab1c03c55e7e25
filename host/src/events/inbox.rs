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
//!
//! Each attempt is a span `deliver TOPIC` of the subscriber, a child of the span the event
//! was published in (stored with it in the outbox): the handler runs with it as its
//! `RequestCtx.trace`, so its statements, calls and events nest under it, and a trace
//! follows the event from the publisher's request to every subscriber.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outbox::EventRecord;
use super::rfc3339_ms;
use crate::bindings::silo::service::events::Event;
use crate::delivery::lend::{Call, Unlent, call_lent};
use crate::delivery::{
    Export, Instance, InstanceError, Lent, Recipient, host_limits, now_ms, run_on,
};
use crate::sql::host_tables::HostTables;
use crate::sql::{SqlError, SqlTransaction};
use crate::telemetry::{Span, TraceContext, metrics};

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

/// Delivers `events` (in order, each with its failed attempts so far) to subscription
/// `subscription` of `service`, on the subscriber's own executor and under one of its
/// permits: the router only waits.
pub async fn deliver(
    service: &Arc<dyn Recipient>,
    subscription: &str,
    events: &[(u32, Arc<EventRecord>)],
) -> Result<Vec<Outcome>, Unavailable> {
    let wait = Duration::from_millis(service.spec().limits.deadline_ms);
    let (subscription, events) = (subscription.to_string(), events.to_vec());
    run_on(service, wait, move |s| async move {
        deliver_here(&*s, &subscription, &events).await
    })
    .await
    .map_err(Unavailable)?
}

/// The span of one delivery attempt of `event` (its `attempt`-th) to `subscriber`.
fn delivery_span(subscriber: &str, subscription: &str, event: &EventRecord, attempt: u32) -> Span {
    let mut span = Span::start(format!("deliver {}", event.topic), subscriber, event.trace);
    span.attr("silo.subscription", subscription);
    span.attr("silo.event_id", event.id.as_str());
    span.attr("silo.source", &*event.source);
    span.attr("silo.attempt", attempt);
    span
}

/// [`deliver`], on the calling thread.
async fn deliver_here(
    service: &dyn Recipient,
    subscription: &str,
    events: &[(u32, Arc<EventRecord>)],
) -> Result<Vec<Outcome>, Unavailable> {
    let name = service.name();
    if !service.exports(Export::EventHandler) {
        return Err(Unavailable(format!(
            "service `{name}` does not export `silo:service/event-handler`"
        )));
    }
    let Some(store_name) = service.spec().event_store() else {
        return Err(Unavailable(format!("service `{name}` has no event store")));
    };
    let Some(db) = service.store(store_name) else {
        return Err(Unavailable(format!(
            "service `{name}`: store `{store_name}` is not open"
        )));
    };
    let mut tx = db
        .begin(&host_limits())
        .await
        .map_err(|e| Unavailable(format!("opening the inbox transaction: {e}")))?;
    let started = Instant::now();
    let mut instance: Option<Box<dyn Instance>> = None;
    let mut outcomes = Vec::with_capacity(events.len());
    // The attempts' spans end once the batch's fate is known (its commit).
    let mut spans: Vec<Option<Span>> = Vec::with_capacity(events.len());
    let mut woken = Vec::new();
    for (i, (attempts, event)) in events.iter().enumerate() {
        if i > 0 && started.elapsed() > BATCH_TIME {
            outcomes.push(Outcome::Skipped);
            spans.push(None);
            continue;
        }
        let mut span = delivery_span(name, subscription, event, attempts + 1);
        let trace = Some(span.context());
        let (outcome, returned) = handle_one(
            service,
            store_name,
            subscription,
            event,
            tx,
            &mut instance,
            trace,
        )
        .await;
        tx = match returned {
            Ok(tx) => tx,
            Err(e) => {
                // The transaction is lost (the backend failed): nothing of the batch commits.
                let why = format!("the inbox transaction failed: {e}");
                span.error(why.clone());
                for s in spans.iter_mut().flatten() {
                    s.error(why.clone());
                }
                return Ok(events
                    .iter()
                    .map(|_| Outcome::Failed(why.clone()))
                    .collect());
            }
        };
        match &outcome {
            Outcome::Failed(why) => span.error(why.clone()),
            Outcome::Duplicate => span.attr("silo.duplicate", true),
            _ => {}
        }
        if let Some(instance) = &mut instance {
            woken.extend(instance.take_published());
        }
        outcomes.push(outcome);
        spans.push(Some(span));
    }
    if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Handled { .. }))
    {
        crate::failpoint::crash("mid-batch");
    }
    if let Err(e) = tx.commit().await {
        let why = format!("the inbox transaction did not commit: {e}");
        for s in spans.iter_mut().flatten() {
            s.error(why.clone());
        }
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
    for (o, (_, e)) in outcomes.iter_mut().zip(events) {
        if let Outcome::Handled { latency_ms } = o {
            *latency_ms = (now - e.time_ms).max(0) as u64;
            let lag = Duration::from_millis(*latency_ms);
            metrics::observe_delivery(subscription, &e.source, &e.topic, name, lag);
        }
    }
    drop(spans);
    for n in woken {
        n.notify_one();
    }
    Ok(outcomes)
}

/// One event inside the batch's transaction. Returns its outcome and the transaction (or
/// the backend error that lost it).
async fn handle_one(
    service: &dyn Recipient,
    store_name: &str,
    subscription: &str,
    event: &EventRecord,
    mut tx: Box<dyn SqlTransaction>,
    instance: &mut Option<Box<dyn Instance>>,
    trace: Option<TraceContext>,
) -> (Outcome, Result<Box<dyn SqlTransaction>, SqlError>) {
    let tables = match service.store(store_name) {
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
    let deadline = Instant::now() + Duration::from_millis(service.spec().limits.deadline_ms);
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
    let call = Call::Event(wit);
    let lent = call_lent(
        service,
        instance,
        Export::EventHandler,
        store_name,
        &call,
        tx,
        deadline,
        trace,
    )
    .await;
    match lent {
        Err(Unlent::Lost(e)) => (Outcome::Failed(e.to_string()), Err(e)),
        Err(Unlent::NoInstance(InstanceError::Instantiate(e) | InstanceError::Export(e), tx)) => {
            undo(
                &tables,
                tx,
                format!("instantiating `{}`: {e}", service.name()),
            )
            .await
        }
        Ok((Lent::Returned(_), mut tx)) => match tables.release(tx.as_mut()).await {
            Ok(()) => (Outcome::Handled { latency_ms: 0 }, Ok(tx)),
            Err(e) => (Outcome::Failed(e.to_string()), Err(e)),
        },
        Ok((Lent::Failed(message), tx)) => {
            undo(&tables, tx, format!("the handler failed: {message}")).await
        }
        Ok((Lent::Trapped { root_cause, .. }, tx)) => {
            service.count_trap();
            undo(&tables, tx, format!("the handler trapped: {root_cause}")).await
        }
    }
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
        Ok(()) => (Outcome::Failed(why), Ok(tx)),
        Err(e) => (Outcome::Failed(why), Err(e)),
    }
}
