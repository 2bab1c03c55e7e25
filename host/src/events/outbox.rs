//! One publishing service's outbox: its tables, the rows a publish writes, and the host's
//! reads and writes of them (loading pending deliveries, acknowledging, dead letters).
//!
//! Tables, all in the publisher's event store and reachable only by host statements:
//! - `_silo_outbox`: one row per published event that some subscription still needs;
//!   `seq` is the source's sequence number.
//! - `_silo_subscriptions`: the subscriptions registered for this source's topics.
//! - `_silo_deliveries`: one row per (subscription, event) not yet delivered, with the
//!   attempts so far and the last error.
//! - `_silo_dead_letters`: events a subscription gave up on, each with a copy of the event.
//!
//! The subscriber's `_silo_inbox` is created by [`ensure_inbox`]. Their schema and every
//! statement on them are in [`crate::sql::host_tables`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::Notify;

use super::{new_event_id, now_ms, subscription_id};
use crate::sql::host_tables::{self as tables, HostTables, NewEvent, SubscriptionRow};
use crate::sql::{SqlError, SqlStore, SqlTransaction};
use crate::telemetry::{Span, TraceContext};

pub(crate) use crate::sql::host_tables::host_limits;

/// Creates the inbox table in a subscriber's event store.
pub async fn ensure_inbox(store: &dyn SqlStore) -> Result<(), SqlError> {
    HostTables::of(store)?
        .create_in(store, &[&tables::INBOX], &[])
        .await
}

/// One registered subscription of an outbox's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// `SUBSCRIBER:SOURCE/TOPIC`.
    pub id: Arc<str>,
    pub subscriber: Arc<str>,
    pub topic: String,
}

/// An event as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: String,
    pub source: Arc<str>,
    pub topic: String,
    pub key: String,
    pub seq: i64,
    pub time_ms: i64,
    pub content_type: String,
    pub data: Vec<u8>,
    /// The span it was published in (its deliveries' parent), if it was stored with it.
    pub trace: Option<TraceContext>,
}

/// A delivery row as loaded by the router.
#[derive(Debug, Clone)]
pub struct PendingRow {
    pub subscription: Arc<str>,
    pub attempts: u32,
    pub event: Arc<EventRecord>,
}

/// What became of one delivery, as the outbox records it.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Handled (or found in the inbox): the delivery row goes.
    Done,
    /// Failed; `attempts` so far. Kept for a retry.
    Retry { attempts: u32, error: String },
    /// Failed for the last time: moved to the dead letters.
    Dead { attempts: u32, error: String },
}

/// The outbox of one publishing service.
pub struct Outbox {
    pub source: Arc<str>,
    pub store: Arc<dyn SqlStore>,
    /// The host tables of `store`.
    tables: HostTables,
    /// Subscriptions of this source's topics, as registered (mirrors `_silo_subscriptions`).
    subscriptions: ArcSwap<Vec<Registered>>,
    /// Woken by every commit that published here, and by registrations and replays.
    pub notify: Arc<Notify>,
    /// Set when a newer outbox for the same service replaced this one (its store changed).
    pub retired: AtomicBool,
}

impl Outbox {
    /// Creates the outbox tables if needed and reads the registered subscriptions.
    pub async fn open(source: &str, store: Arc<dyn SqlStore>) -> Result<Arc<Self>, SqlError> {
        let tables = HostTables::of(store.as_ref())?;
        tables
            .create_in(
                store.as_ref(),
                &[
                    &tables::OUTBOX,
                    &tables::SUBSCRIPTIONS,
                    &tables::DELIVERIES,
                    &tables::HEADS,
                    &tables::DEAD_LETTERS,
                ],
                &["outbox"],
            )
            .await?;
        let outbox = Arc::new(Self {
            source: source.into(),
            store,
            tables,
            subscriptions: ArcSwap::from_pointee(Vec::new()),
            notify: Arc::new(Notify::new()),
            retired: AtomicBool::new(false),
        });
        outbox.reload_subscriptions().await?;
        Ok(outbox)
    }

    async fn reload_subscriptions(&self) -> Result<(), SqlError> {
        let subs = self
            .tables
            .subscriptions(self.store.as_ref())
            .await?
            .into_iter()
            .map(|r| Registered {
                id: r.subscription.into(),
                subscriber: r.subscriber.into(),
                topic: r.topic,
            })
            .collect();
        self.subscriptions.store(Arc::new(subs));
        Ok(())
    }

    /// The registered subscriptions.
    pub fn subscriptions(&self) -> Arc<Vec<Registered>> {
        self.subscriptions.load_full()
    }

    /// Makes `subscriber`'s subscriptions to this source exactly `topics`: new ones start
    /// with the next event published; dropped ones lose their pending deliveries (the
    /// subscriber's manifest no longer asks for them). Returns how many deliveries were
    /// dropped.
    pub async fn sync_subscriber(
        &self,
        subscriber: &str,
        topics: &[String],
    ) -> Result<u64, SqlError> {
        let current = self.subscriptions();
        let wanted: Vec<String> = topics
            .iter()
            .map(|t| subscription_id(subscriber, &self.source, t))
            .collect();
        let add: Vec<(&String, &String)> = wanted
            .iter()
            .zip(topics)
            .filter(|(id, _)| !current.iter().any(|r| &*r.id == id.as_str()))
            .collect();
        let drop: Vec<&Registered> = current
            .iter()
            .filter(|r| &*r.subscriber == subscriber && !wanted.iter().any(|w| w == &*r.id))
            .collect();
        if add.is_empty() && drop.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store.begin(&host_limits()).await?;
        for (id, topic) in &add {
            let row = SubscriptionRow {
                subscription: (*id).clone(),
                subscriber: subscriber.into(),
                topic: (*topic).clone(),
            };
            self.tables
                .add_subscription(tx.as_mut(), &row, now_ms())
                .await?;
        }
        let mut dropped = 0;
        for r in &drop {
            dropped += self.tables.drop_subscription(tx.as_mut(), &r.id).await?;
        }
        self.tables.prune_outbox(tx.as_mut()).await?;
        tx.commit().await?;
        self.reload_subscriptions().await?;
        self.notify.notify_one();
        Ok(dropped)
    }

    /// Writes one event into `tx` (the publisher's own transaction): the outbox row, with
    /// `trace` (the publish span's context), and a delivery row per subscription of
    /// `topic`. An event no one subscribes to is not kept.
    #[allow(clippy::too_many_arguments, reason = "one event's fields")]
    pub async fn write(
        &self,
        tx: &mut Box<dyn SqlTransaction>,
        first_in_tx: bool,
        topic: &str,
        key: &str,
        content_type: &str,
        data: &[u8],
        trace: Option<TraceContext>,
    ) -> Result<String, SqlError> {
        let id = new_event_id();
        let targets: Vec<String> = self
            .subscriptions()
            .iter()
            .filter(|s| s.topic == topic)
            .map(|s| s.id.to_string())
            .collect();
        if targets.is_empty() {
            return Ok(id);
        }
        if first_in_tx {
            self.tables.lock_log(tx.as_mut(), "outbox").await?;
        }
        let event = NewEvent {
            id: &id,
            topic,
            key,
            time_ms: now_ms(),
            content_type,
            data,
        };
        let trace = trace.map(|c| c.traceparent());
        let seq = self
            .tables
            .append_traced_event(tx.as_mut(), &event, trace.as_deref())
            .await?;
        for s in targets {
            self.tables.add_delivery(tx.as_mut(), &s, seq).await?;
        }
        Ok(id)
    }

    /// Delivery rows after sequence `after`, oldest first, at most `limit`.
    pub async fn load(&self, after: i64, limit: usize) -> Result<Vec<PendingRow>, SqlError> {
        let rows = self
            .tables
            .pending_deliveries(self.store.as_ref(), after, limit)
            .await?;
        let mut out: Vec<PendingRow> = Vec::with_capacity(rows.len());
        for r in rows {
            // Rows of one event share its record.
            let event = match out.last() {
                Some(prev) if prev.event.seq == r.seq => prev.event.clone(),
                _ => Arc::new(EventRecord {
                    id: r.id,
                    source: self.source.clone(),
                    topic: r.topic,
                    key: r.key,
                    seq: r.seq,
                    time_ms: r.time_ms,
                    content_type: r.content_type,
                    data: r.data,
                    trace: r.trace_parent.as_deref().and_then(TraceContext::parse),
                }),
            };
            out.push(PendingRow {
                subscription: r.subscription.into(),
                attempts: r.attempts.max(0) as u32,
                event,
            });
        }
        Ok(out)
    }

    /// Records what became of a batch of one subscription's deliveries, in one transaction.
    pub async fn settle(
        &self,
        subscription: &str,
        subscriber: &str,
        outcomes: &[(Arc<EventRecord>, Settle)],
    ) -> Result<(), SqlError> {
        let mut tx = self.store.begin(&host_limits()).await?;
        for (event, settle) in outcomes {
            match settle {
                Settle::Done => {}
                Settle::Retry { attempts, error } => {
                    self.tables
                        .record_failure(tx.as_mut(), subscription, event.seq, *attempts, error)
                        .await?;
                    continue;
                }
                Settle::Dead { attempts, error } => {
                    let id = format!("dl_{}", hex::encode(rand::random::<[u8; 8]>()));
                    self.tables
                        .dead_letter(
                            tx.as_mut(),
                            &id,
                            subscription,
                            subscriber,
                            event.seq,
                            *attempts,
                            error,
                            now_ms(),
                        )
                        .await?;
                }
            }
            self.tables
                .ack(tx.as_mut(), subscription, event.seq)
                .await?;
        }
        tx.commit().await
    }

    /// Per subscription: pending deliveries and the publish time of the oldest.
    pub async fn backlog(&self) -> Result<Vec<(String, u64, Option<i64>)>, SqlError> {
        self.tables.backlog(self.store.as_ref()).await
    }

    /// Per subscription: dead letters held.
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, SqlError> {
        self.tables.dead_letter_counts(self.store.as_ref()).await
    }

    /// Dead letters, oldest first (the event's data left out).
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, SqlError> {
        let rows = self.tables.dead_letters(self.store.as_ref()).await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                id: r.id,
                subscription: r.subscription,
                subscriber: r.subscriber,
                source: self.source.to_string(),
                event_id: r.event_id,
                sequence: r.seq,
                topic: r.topic,
                key: r.key,
                time: super::rfc3339_ms(r.time_ms),
                attempts: r.attempts as u32,
                last_error: r.last_error,
                dead_at: super::rfc3339_ms(r.dead_ms),
            })
            .collect())
    }

    /// Puts dead letter `id` back in line for its subscription, as a new outbox entry with
    /// the same event id (the inbox still recognises it). `Ok(false)`: no such dead letter
    /// here. Fails if its subscription is no longer registered. The replay is a span of its
    /// own in the event's trace (a child of the publish span the dead letter kept), and the
    /// new entry carries it to the delivery.
    pub async fn replay(&self, id: &str) -> Result<bool, SqlError> {
        let mut tx = self.store.begin(&host_limits()).await?;
        let Some((subscription, e)) = self.tables.dead_letter_event(tx.as_mut(), id).await? else {
            return Ok(false);
        };
        if !self.subscriptions().iter().any(|s| *s.id == *subscription) {
            return Err(SqlError::InvalidHandle(format!(
                "subscription `{subscription}` is no longer registered"
            )));
        }
        self.tables.lock_log(tx.as_mut(), "outbox").await?;
        let stored = e.trace_parent.as_deref().and_then(TraceContext::parse);
        let mut span = Span::start(format!("replay {}", e.topic), &self.source, stored);
        span.attr("silo.dead_letter", id);
        span.attr("silo.subscription", subscription.as_str());
        span.attr("silo.event_id", e.id.as_str());
        if let Some(link) = &e.trace_parent {
            span.attr("silo.link", link.as_str());
        }
        let event = NewEvent {
            id: &e.id,
            topic: &e.topic,
            key: &e.key,
            time_ms: e.time_ms,
            content_type: &e.content_type,
            data: &e.data,
        };
        let trace = span.context().traceparent();
        let seq = self
            .tables
            .append_traced_event(tx.as_mut(), &event, Some(&trace))
            .await?;
        self.tables
            .add_delivery(tx.as_mut(), &subscription, seq)
            .await?;
        self.tables.delete_dead_letter(tx.as_mut(), id).await?;
        tx.commit().await?;
        self.notify.notify_one();
        Ok(true)
    }
}

/// An event a subscription gave up on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// What `silo dead-letters replay` takes.
    pub id: String,
    pub subscription: String,
    pub subscriber: String,
    pub source: String,
    pub event_id: String,
    pub sequence: i64,
    pub topic: String,
    pub key: String,
    pub time: String,
    pub attempts: u32,
    pub last_error: String,
    pub dead_at: String,
}
