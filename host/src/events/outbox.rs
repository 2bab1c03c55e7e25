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
//! The subscriber's `_silo_inbox` is created by [`ensure_inbox`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::{new_event_id, now_ms, subscription_id};
use crate::sql::col::{blob, int, text};
use crate::sql::{CallLimits, SqlError, SqlStore, SqlTransaction, Value};

const OUTBOX_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS main._silo_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        topic TEXT NOT NULL,
        key TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        data BLOB NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS main._silo_subscriptions (
        subscription TEXT PRIMARY KEY,
        subscriber TEXT NOT NULL,
        topic TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS main._silo_deliveries (
        subscription TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (subscription, seq)
    )",
    "CREATE INDEX IF NOT EXISTS main._silo_deliveries_seq ON _silo_deliveries (seq)",
    HEADS_SCHEMA,
    "INSERT INTO main._silo_heads (log, n) VALUES ('outbox', 0) ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS main._silo_dead_letters (
        id TEXT PRIMARY KEY,
        subscription TEXT NOT NULL,
        subscriber TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        topic TEXT NOT NULL,
        key TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        data BLOB NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        dead_ms INTEGER NOT NULL
    )",
];

/// One row per append-only log of the store (`outbox`, `sagas`): a transaction appending to
/// a log first updates its row, so appends commit in the order of their sequence numbers
/// on every backend (SQLite has one writer anyway; on a server this is what lets a reader
/// take "everything after the last sequence seen" without missing a late commit).
pub(crate) const HEADS_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS main._silo_heads (log TEXT PRIMARY KEY, n INTEGER NOT NULL)";

/// Takes log `log`'s append lock for the rest of `tx` (see [`HEADS_SCHEMA`]).
pub(crate) async fn lock_log(tx: &mut Box<dyn SqlTransaction>, log: &str) -> Result<(), SqlError> {
    tx.execute_host(
        "UPDATE main._silo_heads SET n = n + 1 WHERE log = ?",
        &[Value::Text(log.into())],
    )
    .await
    .map(|_| ())
}

const INBOX_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS main._silo_inbox (
    subscription TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (subscription, event_id)
)";

/// The budget of the host's own outbox statements (waiting for the writer included).
pub(crate) fn host_limits() -> CallLimits {
    CallLimits {
        deadline: Instant::now() + Duration::from_secs(30),
        statement_budget: Duration::from_secs(30),
        max_result_bytes: usize::MAX,
    }
}

async fn run_host(store: &dyn SqlStore, statements: &[&str]) -> Result<(), SqlError> {
    let mut tx = store.begin(&host_limits()).await?;
    for s in statements {
        tx.execute_host(s, &[]).await?;
    }
    tx.commit().await
}

/// Creates the inbox table in a subscriber's event store.
pub async fn ensure_inbox(store: &dyn SqlStore) -> Result<(), SqlError> {
    run_host(store, &[INBOX_SCHEMA]).await
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
        run_host(store.as_ref(), OUTBOX_SCHEMA).await?;
        let outbox = Arc::new(Self {
            source: source.into(),
            store,
            subscriptions: ArcSwap::from_pointee(Vec::new()),
            notify: Arc::new(Notify::new()),
            retired: AtomicBool::new(false),
        });
        outbox.reload_subscriptions().await?;
        Ok(outbox)
    }

    async fn reload_subscriptions(&self) -> Result<(), SqlError> {
        let rows = self
            .store
            .query_host(
                "SELECT subscription, subscriber, topic FROM main._silo_subscriptions ORDER BY subscription",
                &[],
            )
            .await?;
        let subs = rows
            .rows
            .iter()
            .map(|r| Registered {
                id: text(r.first()).into(),
                subscriber: text(r.get(1)).into(),
                topic: text(r.get(2)),
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
            tx.execute_host(
                "INSERT INTO main._silo_subscriptions (subscription, subscriber, topic, created_ms) VALUES (?, ?, ?, ?)",
                &[
                    Value::Text((*id).clone()),
                    Value::Text(subscriber.into()),
                    Value::Text((*topic).clone()),
                    Value::Integer(now_ms()),
                ],
            )
            .await?;
        }
        let mut dropped = 0;
        for r in &drop {
            let id = Value::Text(r.id.to_string());
            tx.execute_host(
                "DELETE FROM main._silo_subscriptions WHERE subscription = ?",
                std::slice::from_ref(&id),
            )
            .await?;
            dropped += tx
                .execute_host(
                    "DELETE FROM main._silo_deliveries WHERE subscription = ?",
                    &[id],
                )
                .await?
                .rows_affected;
        }
        tx.execute_host(
            "DELETE FROM main._silo_outbox WHERE seq NOT IN (SELECT seq FROM main._silo_deliveries)",
            &[],
        )
        .await?;
        tx.commit().await?;
        self.reload_subscriptions().await?;
        self.notify.notify_one();
        Ok(dropped)
    }

    /// Writes one event into `tx` (the publisher's own transaction): the outbox row and a
    /// delivery row per subscription of `topic`. An event no one subscribes to is not kept.
    pub async fn write(
        &self,
        tx: &mut Box<dyn SqlTransaction>,
        first_in_tx: bool,
        topic: &str,
        key: &str,
        content_type: &str,
        data: &[u8],
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
            lock_log(tx, "outbox").await?;
        }
        let written = tx
            .query_host(
                "INSERT INTO main._silo_outbox (id, topic, key, time_ms, content_type, data) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
                &[
                    Value::Text(id.clone()),
                    Value::Text(topic.into()),
                    Value::Text(key.into()),
                    Value::Integer(now_ms()),
                    Value::Text(content_type.into()),
                    Value::Blob(data.to_vec()),
                ],
            )
            .await?;
        let seq = written
            .rows
            .first()
            .map(|r| int(r.first()))
            .ok_or_else(|| SqlError::Other("the outbox returned no sequence number".into()))?;
        for s in targets {
            tx.execute_host(
                "INSERT INTO main._silo_deliveries (subscription, seq) VALUES (?, ?)",
                &[Value::Text(s), Value::Integer(seq)],
            )
            .await?;
        }
        Ok(id)
    }

    /// Delivery rows after sequence `after`, oldest first, at most `limit`.
    pub async fn load(&self, after: i64, limit: usize) -> Result<Vec<PendingRow>, SqlError> {
        let rows = self
            .store
            .query_host(
                "SELECT d.subscription, d.attempts, o.id, o.topic, o.key, o.seq, o.time_ms, o.content_type, o.data
                 FROM main._silo_deliveries d JOIN main._silo_outbox o ON o.seq = d.seq
                 WHERE d.seq > ? ORDER BY d.seq, d.subscription LIMIT ?",
                &[Value::Integer(after), Value::Integer(limit as i64)],
            )
            .await?;
        let mut out: Vec<PendingRow> = Vec::with_capacity(rows.rows.len());
        for r in &rows.rows {
            let seq = int(r.get(5));
            // Rows of one event share its record.
            let event = match out.last() {
                Some(prev) if prev.event.seq == seq => prev.event.clone(),
                _ => Arc::new(EventRecord {
                    id: text(r.get(2)),
                    source: self.source.clone(),
                    topic: text(r.get(3)),
                    key: text(r.get(4)),
                    seq,
                    time_ms: int(r.get(6)),
                    content_type: text(r.get(7)),
                    data: blob(r.get(8)),
                }),
            };
            out.push(PendingRow {
                subscription: text(r.first()).into(),
                attempts: int(r.get(1)).max(0) as u32,
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
        let sub = Value::Text(subscription.into());
        for (event, settle) in outcomes {
            let seq = Value::Integer(event.seq);
            match settle {
                Settle::Done => {}
                Settle::Retry { attempts, error } => {
                    tx.execute_host(
                        "UPDATE main._silo_deliveries SET attempts = ?, last_error = ? WHERE subscription = ? AND seq = ?",
                        &[Value::Integer((*attempts).into()), Value::Text(error.clone()), sub.clone(), seq],
                    )
                    .await?;
                    continue;
                }
                Settle::Dead { attempts, error } => {
                    tx.execute_host(
                        "INSERT INTO main._silo_dead_letters
                           (id, subscription, subscriber, event_id, seq, topic, key, time_ms, content_type, data, attempts, last_error, dead_ms)
                         SELECT ?, ?, ?, id, seq, topic, key, time_ms, content_type, data, ?, ?, ?
                         FROM main._silo_outbox WHERE seq = ?",
                        &[
                            Value::Text(format!("dl_{}", hex::encode(rand::random::<[u8; 8]>()))),
                            sub.clone(),
                            Value::Text(subscriber.into()),
                            Value::Integer((*attempts).into()),
                            Value::Text(error.clone()),
                            Value::Integer(now_ms()),
                            seq.clone(),
                        ],
                    )
                    .await?;
                }
            }
            tx.execute_host(
                "DELETE FROM main._silo_deliveries WHERE subscription = ? AND seq = ?",
                &[sub.clone(), seq.clone()],
            )
            .await?;
            tx.execute_host(
                "DELETE FROM main._silo_outbox WHERE seq = ? AND NOT EXISTS (SELECT 1 FROM main._silo_deliveries d WHERE d.seq = ?)",
                &[seq.clone(), seq],
            )
            .await?;
        }
        tx.commit().await
    }

    /// Per subscription: pending deliveries and the publish time of the oldest.
    pub async fn backlog(&self) -> Result<Vec<(String, u64, Option<i64>)>, SqlError> {
        let rows = self
            .store
            .query_host(
                "SELECT d.subscription, count(*), min(o.time_ms)
                 FROM main._silo_deliveries d JOIN main._silo_outbox o ON o.seq = d.seq
                 GROUP BY d.subscription",
                &[],
            )
            .await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| (text(r.first()), int(r.get(1)) as u64, Some(int(r.get(2)))))
            .collect())
    }

    /// Per subscription: dead letters held.
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, SqlError> {
        let rows = self
            .store
            .query_host(
                "SELECT subscription, count(*) FROM main._silo_dead_letters GROUP BY subscription",
                &[],
            )
            .await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| (text(r.first()), int(r.get(1)) as u64))
            .collect())
    }

    /// Dead letters, oldest first (the event's data left out).
    pub async fn dead_letters(&self) -> Result<Vec<super::DeadLetter>, SqlError> {
        let rows = self
            .store
            .query_host(
                "SELECT id, subscription, subscriber, event_id, seq, topic, key, time_ms, attempts, last_error, dead_ms
                 FROM main._silo_dead_letters ORDER BY dead_ms, id",
                &[],
            )
            .await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| super::DeadLetter {
                id: text(r.first()),
                subscription: text(r.get(1)),
                subscriber: text(r.get(2)),
                source: self.source.to_string(),
                event_id: text(r.get(3)),
                sequence: int(r.get(4)),
                topic: text(r.get(5)),
                key: text(r.get(6)),
                time: super::rfc3339_ms(int(r.get(7))),
                attempts: int(r.get(8)) as u32,
                last_error: text(r.get(9)),
                dead_at: super::rfc3339_ms(int(r.get(10))),
            })
            .collect())
    }

    /// Puts dead letter `id` back in line for its subscription, as a new outbox entry with
    /// the same event id (the inbox still recognises it). `Ok(false)`: no such dead letter
    /// here. Fails if its subscription is no longer registered.
    pub async fn replay(&self, id: &str) -> Result<bool, SqlError> {
        let mut tx = self.store.begin(&host_limits()).await?;
        let found = tx
            .query_host(
                "SELECT subscription, event_id, topic, key, time_ms, content_type, data FROM main._silo_dead_letters WHERE id = ?",
                &[Value::Text(id.into())],
            )
            .await?;
        let Some(r) = found.rows.first() else {
            return Ok(false);
        };
        let subscription = text(r.first());
        if !self.subscriptions().iter().any(|s| *s.id == *subscription) {
            return Err(SqlError::InvalidHandle(format!(
                "subscription `{subscription}` is no longer registered"
            )));
        }
        lock_log(&mut tx, "outbox").await?;
        let written = tx
            .query_host(
                "INSERT INTO main._silo_outbox (id, topic, key, time_ms, content_type, data) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
                &[
                    r[1].clone(),
                    r[2].clone(),
                    r[3].clone(),
                    r[4].clone(),
                    r[5].clone(),
                    r[6].clone(),
                ],
            )
            .await?;
        let seq = written
            .rows
            .first()
            .map(|r| int(r.first()))
            .ok_or_else(|| SqlError::Other("the outbox returned no sequence number".into()))?;
        tx.execute_host(
            "INSERT INTO main._silo_deliveries (subscription, seq) VALUES (?, ?)",
            &[Value::Text(subscription), Value::Integer(seq)],
        )
        .await?;
        tx.execute_host(
            "DELETE FROM main._silo_dead_letters WHERE id = ?",
            &[Value::Text(id.into())],
        )
        .await?;
        tx.commit().await?;
        self.notify.notify_one();
        Ok(true)
    }
}
