//! The event router: what moves committed outbox rows to subscribers.
//!
//! [`EventRouter`] is the seam: a [`Transport`] of outboxes plus the figures the admin API
//! shows. [`LocalRouter`], the embedded default, delivers in this process, with one worker
//! ([`crate::delivery::worker`]) per outbox on the host's events thread; a transport across
//! hosts (NATS JetStream) implements the same trait by relaying outbox rows to a stream and
//! running [`super::inbox::deliver`] on the consuming host, without touching services, the
//! outbox or the inbox (see [`crate::delivery`]).
//!
//! Scheduling, per outbox: delivery rows are loaded in sequence order (a page at a time) into
//! per-subscription queues, one queue per key. Only the head of a key's queue is ever in
//! flight or waiting out a backoff, so events of one key reach a subscription in publish
//! order even across retries, while other keys go on. One batch per subscription is in
//! flight at a time; subscriptions run concurrently.
//!
//! *Invariant:* an event is delivered only if, as deployed now, its publisher declares its
//! topic in `publishes` and its subscriber declares `{ source, topic }` in `subscribes`
//! (and the delivery row's subscription is for that very topic). The outbox is a table in
//! the publisher's own store, so a row in it is a request, never a permission: an event
//! that fails the check is dead-lettered without its handler ([`admit`]). The `source` the
//! handler sees is the outbox's service name, known to the host; no column of a row can set
//! it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::inbox::{self, Outcome};
use super::outbox::{DeadLetter, EventRecord, Outbox, Registered, Settle};
use crate::delivery::retries;
use crate::delivery::worker::{self, Schedule, earliest};
use crate::delivery::{
    AfterFailure, Directory, Recipient, Transport, backoff, give_up, now_ms, percentiles,
    record_latency,
};
use crate::manifest::{ServiceSpec, Subscription};

/// Rows loaded per page, and the in-memory backlog below which the next page loads.
const PAGE: usize = 2048;
const LOW_WATER: usize = 512;
/// How long a subscription whose subscriber cannot take events now waits before trying again.
const PARK: Duration = Duration::from_millis(500);

/// One subscription's state, as `/admin/events` and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStats {
    pub subscription: String,
    pub source: String,
    pub topic: String,
    pub subscriber: String,
    /// Events committed and not yet delivered.
    pub pending: u64,
    /// Age of the oldest of them, in ms.
    pub oldest_pending_age_ms: Option<u64>,
    /// Publish-to-handler-commit latency over the last deliveries, in ms.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    pub delivered: u64,
    /// Deliveries the inbox turned away (handled before).
    pub duplicates: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Events the host refused to deliver (their publisher does not declare the topic, or
    /// the row names another subscription's topic): dead-lettered without the handler.
    pub refused: u64,
    /// Dead letters now held.
    pub dead_letters: u64,
    /// Why it is not delivering now, if it is not.
    pub stalled: Option<String>,
}

/// Moves committed events from outboxes to subscribers: the [`Transport`] of outboxes,
/// with what the admin API shows of it.
#[async_trait]
pub trait EventRouter: Transport<Outbox> {
    /// Every subscription with its backlog and delivery figures.
    async fn subscriptions(&self) -> Vec<SubscriptionStats>;
    /// Every dead letter.
    async fn dead_letters(&self) -> Vec<DeadLetter>;
    /// Puts dead letter `id` back in line. `Ok(false)`: no such dead letter.
    async fn replay(&self, id: &str) -> Result<bool, String>;
}

/// Counters of one subscription, kept in memory.
#[derive(Default)]
struct Counters {
    delivered: u64,
    duplicates: u64,
    retries: u64,
    refused: u64,
    latencies: VecDeque<u64>,
    stalled: Option<String>,
}

type CounterMap = Arc<Mutex<HashMap<Arc<str>, Counters>>>;

/// The embedded router.
pub struct LocalRouter {
    directory: Arc<dyn Directory>,
    attached: Mutex<Vec<Arc<Outbox>>>,
    counters: CounterMap,
    runtime: tokio::runtime::Handle,
}

impl LocalRouter {
    /// A router delivering to the services of `directory`, its tasks on `runtime`.
    pub fn new(directory: Arc<dyn Directory>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            directory,
            attached: Mutex::new(Vec::new()),
            counters: Default::default(),
            runtime,
        }
    }

    fn outboxes(&self) -> Vec<Arc<Outbox>> {
        self.attached
            .lock()
            .expect("router lock")
            .iter()
            .filter(|o| !o.retired.load(Ordering::Acquire))
            .cloned()
            .collect()
    }
}

impl Transport<Outbox> for LocalRouter {
    fn attach(&self, outbox: Arc<Outbox>) {
        let mut attached = self.attached.lock().expect("router lock");
        if attached.iter().any(|o| Arc::ptr_eq(o, &outbox)) {
            return;
        }
        attached.retain(|o| !o.retired.load(Ordering::Acquire));
        attached.push(outbox.clone());
        let worker = OutboxSchedule {
            outbox,
            directory: self.directory.clone(),
            counters: self.counters.clone(),
            queues: HashMap::new(),
            loaded_upto: 0,
            more: true,
        };
        self.runtime.spawn(worker::run(worker));
    }
}

#[async_trait]
impl EventRouter for LocalRouter {
    async fn subscriptions(&self) -> Vec<SubscriptionStats> {
        let mut out = Vec::new();
        let now = now_ms();
        for outbox in self.outboxes() {
            let backlog = outbox.backlog().await.unwrap_or_default();
            let dead = outbox.dead_letter_counts().await.unwrap_or_default();
            let counters = self.counters.lock().expect("counters");
            for reg in outbox.subscriptions().iter() {
                let (pending, oldest) = backlog
                    .iter()
                    .find(|(s, ..)| *s == *reg.id)
                    .map(|(_, n, t)| (*n, *t))
                    .unwrap_or((0, None));
                let c = counters.get(&reg.id);
                let (p50, p99) = c.map(|c| percentiles(&c.latencies)).unwrap_or((None, None));
                out.push(SubscriptionStats {
                    subscription: reg.id.to_string(),
                    source: outbox.source.to_string(),
                    topic: reg.topic.clone(),
                    subscriber: reg.subscriber.to_string(),
                    pending,
                    oldest_pending_age_ms: oldest.map(|t| (now - t).max(0) as u64),
                    latency_p50_ms: p50,
                    latency_p99_ms: p99,
                    delivered: c.map_or(0, |c| c.delivered),
                    duplicates: c.map_or(0, |c| c.duplicates),
                    retries: c.map_or(0, |c| c.retries),
                    refused: c.map_or(0, |c| c.refused),
                    dead_letters: dead
                        .iter()
                        .find(|(s, _)| *s == *reg.id)
                        .map_or(0, |(_, n)| *n),
                    stalled: c.and_then(|c| c.stalled.clone()),
                });
            }
        }
        out.sort_by(|a, b| a.subscription.cmp(&b.subscription));
        out
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        let mut out = Vec::new();
        for outbox in self.outboxes() {
            match outbox.dead_letters().await {
                Ok(d) => out.extend(d),
                Err(e) => tracing::warn!(source = %outbox.source, "reading dead letters: {e}"),
            }
        }
        out
    }

    async fn replay(&self, id: &str) -> Result<bool, String> {
        for outbox in self.outboxes() {
            if outbox.replay(id).await.map_err(|e| e.to_string())? {
                tracing::info!(source = %outbox.source, id, "dead letter replayed");
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A delivery waiting in memory.
struct Pending {
    attempts: u32,
    event: Arc<EventRecord>,
}

/// One subscription's deliveries, a queue per key.
#[derive(Default)]
struct SubQueue {
    keys: HashMap<String, VecDeque<Pending>>,
    /// Heads waiting out a backoff, by key.
    retry_at: HashMap<String, Instant>,
    in_flight: bool,
    parked_until: Option<Instant>,
    len: usize,
}

impl SubQueue {
    /// The heads ready now, oldest first, at most `max`; `wake` learns the next backoff end.
    fn ready(
        &self,
        now: Instant,
        max: usize,
        wake: &mut Option<Instant>,
    ) -> Vec<(u32, Arc<EventRecord>)> {
        let mut heads: Vec<(u32, Arc<EventRecord>)> = Vec::new();
        for (key, q) in &self.keys {
            let Some(head) = q.front() else { continue };
            if let Some(&t) = self.retry_at.get(key)
                && t > now
            {
                earliest(wake, t);
                continue;
            }
            heads.push((head.attempts, head.event.clone()));
        }
        heads.sort_by_key(|(_, e)| e.seq);
        heads.truncate(max);
        heads
    }
}

/// What one batch came to.
struct BatchDone {
    subscription: Arc<str>,
    /// Per event: its settlement (`None`: not tried).
    settled: Vec<(Arc<EventRecord>, Option<Settle>, Option<Outcome>)>,
    /// The whole batch could not be tried, and why.
    stalled: Option<String>,
    /// The subscriber's backoff settings: first delay and longest, in ms.
    backoff: (u64, u64),
    /// Duplicates turned away by an injected second delivery (`duplicate-delivery`).
    injected_duplicates: u64,
    /// Events refused before delivery (see [`admit`]).
    refused: u64,
}

/// The schedule of one outbox's worker.
struct OutboxSchedule {
    outbox: Arc<Outbox>,
    directory: Arc<dyn Directory>,
    counters: CounterMap,
    queues: HashMap<Arc<str>, SubQueue>,
    loaded_upto: i64,
    more: bool,
}

#[async_trait]
impl Schedule for OutboxSchedule {
    type Done = BatchDone;

    fn notify(&self) -> Arc<Notify> {
        self.outbox.notify.clone()
    }

    fn retired(&self) -> bool {
        self.outbox.retired.load(Ordering::Acquire)
    }

    fn wants_load(&self) -> bool {
        let backlog: usize = self.queues.values().map(|q| q.len).sum();
        self.more && backlog < LOW_WATER
    }

    async fn load(&mut self) -> bool {
        match self.load_page().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(source = %self.outbox.source, "loading the outbox: {e}");
                false
            }
        }
    }

    fn dispatch(&mut self, tasks: &mut JoinSet<BatchDone>) -> Option<Instant> {
        self.start_batches(tasks)
    }

    fn apply(&mut self, done: BatchDone) {
        self.take_in(done);
    }
}

impl OutboxSchedule {
    /// Loads the next page of delivery rows into the queues.
    async fn load_page(&mut self) -> Result<(), crate::sql::SqlError> {
        let mut rows = self.outbox.load(self.loaded_upto, PAGE).await?;
        let full = rows.len() == PAGE;
        if full && let Some(last) = rows.last().map(|r| r.event.seq) {
            // A page may end inside one event's rows: leave that event for the next page.
            rows.retain(|r| r.event.seq != last);
        }
        self.more = full;
        let registered = self.outbox.subscriptions();
        for row in rows {
            self.loaded_upto = self.loaded_upto.max(row.event.seq);
            if !registered.iter().any(|r| r.id == row.subscription) {
                continue;
            }
            let q = self.queues.entry(row.subscription.clone()).or_default();
            q.keys
                .entry(row.event.key.clone())
                .or_default()
                .push_back(Pending {
                    attempts: row.attempts,
                    event: row.event,
                });
            q.len += 1;
        }
        // Queues of subscriptions no longer registered go (their rows were deleted).
        self.queues
            .retain(|id, q| q.in_flight || registered.iter().any(|r| r.id == *id));
        Ok(())
    }

    /// Starts a batch for every subscription that has ready events; returns when the next
    /// backoff or park ends.
    fn start_batches(&mut self, tasks: &mut JoinSet<BatchDone>) -> Option<Instant> {
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        let registered = self.outbox.subscriptions();
        let publisher = self.directory.recipient(&self.outbox.source);
        for (id, q) in self.queues.iter_mut() {
            if q.in_flight || q.len == 0 {
                continue;
            }
            if let Some(t) = q.parked_until {
                if t > now {
                    earliest(&mut wake, t);
                    continue;
                }
                q.parked_until = None;
            }
            let Some(reg) = registered.iter().find(|r| r.id == *id).cloned() else {
                continue;
            };
            let wanted = Subscription {
                source: self.outbox.source.to_string(),
                topic: reg.topic.clone(),
            };
            let service = self
                .directory
                .recipient(&reg.subscriber)
                .filter(|s| s.spec().subscribes.contains(&wanted));
            let (Some(service), Some(publisher)) = (service, publisher.clone()) else {
                let why = if publisher.is_none() {
                    format!("the publisher `{}` is not deployed", self.outbox.source)
                } else {
                    format!(
                        "service `{}` is not deployed with this subscription",
                        reg.subscriber
                    )
                };
                self.counters
                    .lock()
                    .expect("counters")
                    .entry(id.clone())
                    .or_default()
                    .stalled = Some(why);
                q.parked_until = Some(now + PARK);
                earliest(&mut wake, now + PARK);
                continue;
            };
            let settings = service.spec().events.clone();
            let batch = q.ready(now, settings.batch as usize, &mut wake);
            if batch.is_empty() {
                continue;
            }
            q.in_flight = true;
            tasks.spawn(deliver_batch(
                self.outbox.clone(),
                publisher,
                service,
                reg,
                batch,
            ));
        }
        wake
    }

    /// Takes a finished batch into the queues and counters.
    fn take_in(&mut self, done: BatchDone) {
        let now = Instant::now();
        let mut counters = self.counters.lock().expect("counters");
        let c = counters.entry(done.subscription.clone()).or_default();
        c.stalled = done.stalled.clone();
        c.duplicates += done.injected_duplicates;
        c.refused += done.refused;
        let Some(q) = self.queues.get_mut(&done.subscription) else {
            return;
        };
        q.in_flight = false;
        if done.stalled.is_some() {
            q.parked_until = Some(now + PARK);
            return;
        }
        for (event, settle, outcome) in done.settled {
            match outcome {
                Some(Outcome::Handled { latency_ms }) => {
                    c.delivered += 1;
                    record_latency(&mut c.latencies, latency_ms);
                }
                Some(Outcome::Duplicate) => c.duplicates += 1,
                _ => {}
            }
            let Some(settle) = settle else { continue };
            let Some(keyq) = q.keys.get_mut(&event.key) else {
                continue;
            };
            if keyq.front().map(|p| p.event.seq) != Some(event.seq) {
                continue;
            }
            match settle {
                Settle::Done | Settle::Dead { .. } => {
                    keyq.pop_front();
                    q.len -= 1;
                    q.retry_at.remove(&event.key);
                    if keyq.is_empty() {
                        q.keys.remove(&event.key);
                    }
                }
                Settle::Retry { attempts, .. } => {
                    c.retries += 1;
                    if let Some(head) = keyq.front_mut() {
                        head.attempts = attempts;
                    }
                    let (base, max) = done.backoff;
                    q.retry_at
                        .insert(event.key.clone(), now + backoff(attempts, base, max));
                }
            }
        }
    }
}

/// Why the host will not deliver `event` from `source` (deployed now as `publisher`) on
/// subscription `reg` to `subscriber` (deployed now as `subscriber_spec`), if it will not.
/// Checked before every delivery, whatever the outbox's rows say.
pub fn admit(
    source: &str,
    publisher: &ServiceSpec,
    subscriber_spec: &ServiceSpec,
    reg: &Registered,
    event: &EventRecord,
) -> Result<(), String> {
    let topic = &event.topic;
    if !publisher.publishes.contains(topic) {
        return Err(format!(
            "service `{source}` does not declare `{topic}` in `publishes`"
        ));
    }
    if *topic != reg.topic {
        return Err(format!(
            "an event of topic `{topic}` in the deliveries of subscription `{}` (topic `{}`)",
            reg.id, reg.topic
        ));
    }
    let wanted = Subscription {
        source: source.to_string(),
        topic: topic.clone(),
    };
    if !subscriber_spec.subscribes.contains(&wanted) {
        return Err(format!(
            "service `{}` does not declare {{ source = \"{source}\", topic = \"{topic}\" }} in `subscribes`",
            reg.subscriber
        ));
    }
    Ok(())
}

/// Logs a failed delivery that will be retried, at warn: at most one line per
/// subscription per [`retries::EVERY`] (see [`retries`]).
fn log_retry(reg: &Registered, event: &EventRecord, attempts: u32, error: &str) {
    let Some(skipped) = retries::RETRIES.note(&reg.id, Instant::now()) else {
        return;
    };
    let trace_id = event.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
    tracing::warn!(
        service = %reg.subscriber,
        subscription = %reg.id,
        event = %event.id,
        attempts,
        trace_id = %trace_id,
        "event delivery failed, will retry: {error}{}",
        retries::more(skipped)
    );
}

/// Delivers one batch and records the outcome in the outbox.
async fn deliver_batch(
    outbox: Arc<Outbox>,
    publisher: Arc<dyn Recipient>,
    service: Arc<dyn Recipient>,
    reg: Registered,
    batch: Vec<(u32, Arc<EventRecord>)>,
) -> BatchDone {
    let settings = &service.spec().events;
    let backoff = (settings.backoff_ms, settings.max_backoff_ms);
    let stalled = |why: String| BatchDone {
        subscription: reg.id.clone(),
        settled: Vec::new(),
        stalled: Some(why),
        backoff,
        injected_duplicates: 0,
        refused: 0,
    };
    // Refused events never reach the subscriber: straight to the dead letters.
    let mut refused = Vec::new();
    let mut batch = batch;
    batch.retain(|(attempts, event)| {
        match admit(&outbox.source, publisher.spec(), service.spec(), &reg, event) {
            Ok(()) => true,
            Err(why) => {
                let trace_id = event.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
                tracing::warn!(service = %reg.subscriber, subscription = %reg.id, event = %event.id, trace_id = %trace_id, "event NOT DELIVERED, moved to the dead letters: {why}");
                let error = format!("refused by the host, not delivered: {why}");
                refused.push((
                    event.clone(),
                    Some(Settle::Dead {
                        attempts: attempts + 1,
                        error,
                    }),
                    None,
                ));
                false
            }
        }
    });
    let outcomes = if batch.is_empty() {
        Vec::new()
    } else {
        match inbox::deliver(&service, &reg.id, &batch).await {
            Ok(o) => o,
            Err(inbox::Unavailable(why)) if refused.is_empty() => return stalled(why),
            // The refusals are still recorded; the admitted events wait for the next batch.
            Err(inbox::Unavailable(_)) => vec![Outcome::Skipped; batch.len()],
        }
    };
    let mut injected_duplicates = 0;
    if !batch.is_empty() && crate::failpoint::enabled("duplicate-delivery") {
        // As if the acknowledgement below had been lost: the same batch again.
        match inbox::deliver(&service, &reg.id, &batch).await {
            Ok(again) => {
                injected_duplicates =
                    again.iter().filter(|o| **o == Outcome::Duplicate).count() as u64;
            }
            Err(inbox::Unavailable(why)) => return stalled(why),
        }
    }
    let refused_count = refused.len() as u64;
    let mut settled = refused;
    for ((attempts, event), outcome) in batch.into_iter().zip(outcomes) {
        let settle = match &outcome {
            Outcome::Handled { .. } | Outcome::Duplicate => Some(Settle::Done),
            Outcome::Failed(error) => {
                let attempts = attempts + 1;
                let error: String = error.chars().take(2000).collect();
                Some(match give_up(attempts, settings.max_attempts) {
                    AfterFailure::GiveUp => {
                        let trace_id = event.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
                        tracing::warn!(service = %reg.subscriber, subscription = %reg.id, event = %event.id, attempts, trace_id = %trace_id, "event moved to the dead letters: {error}");
                        Settle::Dead { attempts, error }
                    }
                    AfterFailure::Retry => {
                        log_retry(&reg, &event, attempts, &error);
                        Settle::Retry { attempts, error }
                    }
                })
            }
            Outcome::Skipped => None,
        };
        settled.push((event, settle, Some(outcome)));
    }
    let record: Vec<_> = settled
        .iter()
        .filter_map(|(e, s, _)| s.clone().map(|s| (e.clone(), s)))
        .collect();
    if let Err(e) = outbox.settle(&reg.id, &reg.subscriber, &record).await {
        // Delivered but not recorded: they stay pending and come back as duplicates.
        return stalled(format!(
            "recording deliveries in `{}`'s outbox: {e}",
            outbox.source
        ));
    }
    BatchDone {
        subscription: reg.id.clone(),
        settled,
        stalled: None,
        backoff,
        injected_duplicates,
        refused: refused_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each check of [`admit`] on its own: a row whose only fault is the one checked.
    #[test]
    fn admit_checks_topic_publisher_and_subscriber_as_deployed() {
        let m = crate::manifest::Manifest::parse(
            "[services.pub]\ncomponent = \"p.wasm\"\nroute = \"/p\"\npublishes = [\"Ping\", \"Other\"]\n[services.pub.stores.main]\n\
             [services.sub]\ncomponent = \"s.wasm\"\nroute = \"/s\"\nsubscribes = [{ source = \"pub\", topic = \"Ping\" }, { source = \"pub\", topic = \"Other\" }]\n[services.sub.stores.main]\n",
        )
        .unwrap();
        let (publisher, subscriber) = (&m.services["pub"], &m.services["sub"]);
        let reg = |topic: &str| Registered {
            id: crate::events::subscription_id("sub", "pub", topic).into(),
            subscriber: "sub".into(),
            topic: topic.into(),
        };
        let event = |topic: &str| EventRecord {
            id: "evt_1".into(),
            source: "pub".into(),
            topic: topic.into(),
            key: "k".into(),
            seq: 1,
            time_ms: 0,
            content_type: "text/plain".into(),
            data: Vec::new(),
            trace: None,
        };
        assert_eq!(
            admit("pub", publisher, subscriber, &reg("Ping"), &event("Ping")),
            Ok(())
        );
        // The publisher as deployed now no longer declares `Other`.
        let mut narrowed = publisher.clone();
        narrowed.publishes.retain(|t| t != "Other");
        let e = admit("pub", &narrowed, subscriber, &reg("Other"), &event("Other")).unwrap_err();
        assert!(
            e.contains("`pub` does not declare `Other` in `publishes`"),
            "{e}"
        );
        // A row filing an `Other` event under the `Ping` subscription.
        let e = admit("pub", publisher, subscriber, &reg("Ping"), &event("Other")).unwrap_err();
        assert!(
            e.contains("subscription `sub:pub/Ping` (topic `Ping`)"),
            "{e}"
        );
        // The subscriber as deployed now no longer declares `Other`.
        let mut unsubscribed = subscriber.clone();
        unsubscribed.subscribes.retain(|s| s.topic != "Other");
        let e = admit(
            "pub",
            publisher,
            &unsubscribed,
            &reg("Other"),
            &event("Other"),
        )
        .unwrap_err();
        assert!(e.contains("`sub` does not declare"), "{e}");
    }
}
