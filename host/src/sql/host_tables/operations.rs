//! The typed operations on the host's tables, written once for every backend: values in,
//! typed rows out; the statement text is the backend's ([`super::Statements`]).

use super::{Dialect, Statements, Table};
use crate::sql::col::{blob, int, opt, opt_text, text};
use crate::sql::{RowSet, SqlError, SqlStore, SqlTransaction, Value};

/// An event to append to an outbox.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub id: &'a str,
    pub topic: &'a str,
    pub key: &'a str,
    pub time_ms: i64,
    pub content_type: &'a str,
    pub data: &'a [u8],
}

/// A registered subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub subscription: String,
    pub subscriber: String,
    pub topic: String,
}

/// A pending delivery, with its event.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub subscription: String,
    pub attempts: i64,
    pub id: String,
    pub topic: String,
    pub key: String,
    pub seq: i64,
    pub time_ms: i64,
    pub content_type: String,
    pub data: Vec<u8>,
    /// The `traceparent` of the span it was published in (`None`: an event written before
    /// events carried one).
    pub trace_parent: Option<String>,
}

/// A dead letter, its event's data left out.
#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    pub id: String,
    pub subscription: String,
    pub subscriber: String,
    pub event_id: String,
    pub seq: i64,
    pub topic: String,
    pub key: String,
    pub time_ms: i64,
    pub attempts: i64,
    pub last_error: String,
    pub dead_ms: i64,
}

/// A reply a participant recorded for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandReply {
    /// `Some(1)` for a success.
    pub ok: Option<i64>,
    pub data: Option<Vec<u8>>,
    pub reason: Option<String>,
    /// The orchestrator it was recorded for.
    pub source: Option<String>,
}

/// A reply to record for a command.
#[derive(Debug, Clone)]
pub struct NewCommandReply<'a> {
    pub command_id: &'a str,
    pub saga_id: &'a str,
    pub source: &'a str,
    pub ok: bool,
    pub data: Option<Vec<u8>>,
    pub reason: Option<String>,
    pub received_ms: i64,
}

/// A saga's own row.
#[derive(Debug, Clone)]
pub struct SagaHead {
    pub id: String,
    pub kind: String,
    pub key: String,
    pub state: String,
    pub reason: Option<String>,
    pub handled: bool,
    pub created_ms: i64,
    /// The `traceparent` of the span that started it (see [`HostTables::insert_saga`]).
    pub trace_parent: Option<String>,
}

/// One saga step as the log holds it.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub idx: i64,
    pub name: String,
    pub service: String,
    pub command: String,
    pub payload: Vec<u8>,
    pub compensation: Option<String>,
    pub state: String,
    pub attempts: u32,
    pub comp_attempts: u32,
    pub result: Option<Vec<u8>>,
    pub detail: Option<String>,
}

/// A change to a saga step; `None` keeps a value.
#[derive(Debug, Clone, Default)]
pub struct StepUpdate {
    pub state: Option<String>,
    pub attempts: Option<u32>,
    pub comp_attempts: Option<u32>,
    pub result: Option<Vec<u8>>,
    pub detail: Option<String>,
}

/// A column value that only a blob fills.
fn only_blob(v: Option<&Value>) -> Option<Vec<u8>> {
    match v {
        Some(Value::Blob(b)) => Some(b.clone()),
        _ => None,
    }
}

fn opt_int(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Integer(i)) => Some(*i),
        _ => None,
    }
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

/// The host's tables on one store, through its backend's [`Dialect`].
#[derive(Clone, Copy)]
pub struct HostTables {
    dialect: &'static dyn Dialect,
}

impl HostTables {
    /// The host tables of `store`, in its backend's dialect.
    pub fn of(store: &dyn SqlStore) -> Result<Self, SqlError> {
        super::dialect(store.backend())
            .map(|dialect| Self { dialect })
            .ok_or_else(|| {
                SqlError::Other(format!("backend `{}` has no host tables", store.backend()))
            })
    }

    fn s(&self) -> &'static Statements {
        self.dialect.statements()
    }

    async fn exec(
        tx: &mut dyn SqlTransaction,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, SqlError> {
        Ok(tx.execute_host(sql, params).await?.rows_affected)
    }

    /// Creates `tables` in `tx` where the host creates them (see
    /// [`Dialect::creates_at_open`]), adding the columns a table made before them lacks,
    /// and gives each log of `logs` its head row.
    pub async fn create(
        &self,
        tx: &mut dyn SqlTransaction,
        tables: &[&Table],
        logs: &[&str],
    ) -> Result<(), SqlError> {
        if self.dialect.creates_at_open() {
            for table in tables {
                for s in self.dialect.create_table(table) {
                    tx.execute_host(&s, &[]).await?;
                }
                for c in table.columns.iter().filter(|c| c.added) {
                    // Probed by naming it, not through `pragma_table_info`: every text
                    // the host runs names its own tables, which a guest may never read,
                    // so no host statement works as guest SQL.
                    let probe = format!("SELECT {} FROM main.{} LIMIT 0", c.name, table.name);
                    if tx.query_host(&probe, &[]).await.is_err() {
                        let add = self.dialect.add_column(table, c);
                        tx.execute_host(&add, &[]).await?;
                    }
                }
            }
        }
        for log in logs {
            Self::exec(tx, self.s().init_head, &[t(log)]).await?;
        }
        Ok(())
    }

    /// [`HostTables::create`] in a transaction of its own.
    pub async fn create_in(
        &self,
        store: &dyn SqlStore,
        tables: &[&Table],
        logs: &[&str],
    ) -> Result<(), SqlError> {
        let mut tx = store.begin(&host_limits()).await?;
        self.create(tx.as_mut(), tables, logs).await?;
        tx.commit().await
    }

    /// Takes log `log`'s append lock for the rest of `tx` (see [`super::HEADS`]).
    pub async fn lock_log(&self, tx: &mut dyn SqlTransaction, log: &str) -> Result<(), SqlError> {
        Self::exec(tx, self.s().lock_log, &[t(log)])
            .await
            .map(|_| ())
    }

    // ----- the outbox

    /// The registered subscriptions, by id.
    pub async fn subscriptions(
        &self,
        store: &dyn SqlStore,
    ) -> Result<Vec<SubscriptionRow>, SqlError> {
        let rows = store.query_host(self.s().subscriptions, &[]).await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| SubscriptionRow {
                subscription: text(r.first()),
                subscriber: text(r.get(1)),
                topic: text(r.get(2)),
            })
            .collect())
    }

    pub async fn add_subscription(
        &self,
        tx: &mut dyn SqlTransaction,
        row: &SubscriptionRow,
        created_ms: i64,
    ) -> Result<(), SqlError> {
        let p = [
            t(&row.subscription),
            t(&row.subscriber),
            t(&row.topic),
            Value::Integer(created_ms),
        ];
        Self::exec(tx, self.s().add_subscription, &p)
            .await
            .map(|_| ())
    }

    /// Removes a subscription and its pending deliveries; returns how many were dropped.
    pub async fn drop_subscription(
        &self,
        tx: &mut dyn SqlTransaction,
        subscription: &str,
    ) -> Result<u64, SqlError> {
        Self::exec(tx, self.s().drop_subscription, &[t(subscription)]).await?;
        Self::exec(tx, self.s().drop_deliveries_of, &[t(subscription)]).await
    }

    /// Removes the events no delivery needs any more.
    pub async fn prune_outbox(&self, tx: &mut dyn SqlTransaction) -> Result<(), SqlError> {
        Self::exec(tx, self.s().prune_outbox, &[]).await.map(|_| ())
    }

    /// Appends an event; returns its sequence number.
    pub async fn append_event(
        &self,
        tx: &mut dyn SqlTransaction,
        e: &NewEvent<'_>,
    ) -> Result<i64, SqlError> {
        self.append_traced_event(tx, e, None).await
    }

    /// Appends an event published in the span `trace_parent` (a `traceparent`); returns its
    /// sequence number.
    pub async fn append_traced_event(
        &self,
        tx: &mut dyn SqlTransaction,
        e: &NewEvent<'_>,
        trace_parent: Option<&str>,
    ) -> Result<i64, SqlError> {
        let p = [
            t(e.id),
            t(e.topic),
            t(e.key),
            Value::Integer(e.time_ms),
            t(e.content_type),
            Value::Blob(e.data.to_vec()),
            opt(trace_parent.map(String::from)),
        ];
        let written = tx.query_host(self.s().append_event, &p).await?;
        written
            .rows
            .first()
            .map(|r| int(r.first()))
            .ok_or_else(|| SqlError::Other("the outbox returned no sequence number".into()))
    }

    pub async fn add_delivery(
        &self,
        tx: &mut dyn SqlTransaction,
        subscription: &str,
        seq: i64,
    ) -> Result<(), SqlError> {
        let p = [t(subscription), Value::Integer(seq)];
        Self::exec(tx, self.s().add_delivery, &p).await.map(|_| ())
    }

    /// Deliveries after sequence `after`, by sequence then subscription, at most `limit`.
    pub async fn pending_deliveries(
        &self,
        store: &dyn SqlStore,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, SqlError> {
        let p = [Value::Integer(after), Value::Integer(limit as i64)];
        let rows = store.query_host(self.s().pending, &p).await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| DeliveryRow {
                subscription: text(r.first()),
                attempts: int(r.get(1)),
                id: text(r.get(2)),
                topic: text(r.get(3)),
                key: text(r.get(4)),
                seq: int(r.get(5)),
                time_ms: int(r.get(6)),
                content_type: text(r.get(7)),
                data: blob(r.get(8)),
                trace_parent: opt_text(r.get(9)),
            })
            .collect())
    }

    pub async fn record_failure(
        &self,
        tx: &mut dyn SqlTransaction,
        subscription: &str,
        seq: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), SqlError> {
        let p = [
            Value::Integer(attempts.into()),
            t(error),
            t(subscription),
            Value::Integer(seq),
        ];
        Self::exec(tx, self.s().record_failure, &p)
            .await
            .map(|_| ())
    }

    /// Copies event `seq` into the dead letters of `subscription` as `id`.
    #[allow(clippy::too_many_arguments, reason = "one dead letter's fields")]
    pub async fn dead_letter(
        &self,
        tx: &mut dyn SqlTransaction,
        id: &str,
        subscription: &str,
        subscriber: &str,
        seq: i64,
        attempts: u32,
        error: &str,
        dead_ms: i64,
    ) -> Result<(), SqlError> {
        let p = [
            t(id),
            t(subscription),
            t(subscriber),
            Value::Integer(attempts.into()),
            t(error),
            Value::Integer(dead_ms),
            Value::Integer(seq),
        ];
        Self::exec(tx, self.s().dead_letter, &p).await.map(|_| ())
    }

    /// Removes delivery (`subscription`, `seq`), and its event if no other delivery needs it.
    pub async fn ack(
        &self,
        tx: &mut dyn SqlTransaction,
        subscription: &str,
        seq: i64,
    ) -> Result<(), SqlError> {
        let seq = Value::Integer(seq);
        Self::exec(tx, self.s().ack, &[t(subscription), seq.clone()]).await?;
        Self::exec(tx, self.s().prune_event, &[seq.clone(), seq])
            .await
            .map(|_| ())
    }

    /// Per subscription: pending deliveries and the publish time of the oldest.
    pub async fn backlog(
        &self,
        store: &dyn SqlStore,
    ) -> Result<Vec<(String, u64, Option<i64>)>, SqlError> {
        let rows = store.query_host(self.s().backlog, &[]).await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| (text(r.first()), int(r.get(1)) as u64, Some(int(r.get(2)))))
            .collect())
    }

    /// Per subscription: dead letters held.
    pub async fn dead_letter_counts(
        &self,
        store: &dyn SqlStore,
    ) -> Result<Vec<(String, u64)>, SqlError> {
        let rows = store.query_host(self.s().dead_letter_counts, &[]).await?;
        Ok(counts(&rows))
    }

    /// Dead letters, oldest first.
    pub async fn dead_letters(&self, store: &dyn SqlStore) -> Result<Vec<DeadLetterRow>, SqlError> {
        let rows = store.query_host(self.s().dead_letters, &[]).await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| DeadLetterRow {
                id: text(r.first()),
                subscription: text(r.get(1)),
                subscriber: text(r.get(2)),
                event_id: text(r.get(3)),
                seq: int(r.get(4)),
                topic: text(r.get(5)),
                key: text(r.get(6)),
                time_ms: int(r.get(7)),
                attempts: int(r.get(8)),
                last_error: text(r.get(9)),
                dead_ms: int(r.get(10)),
            })
            .collect())
    }

    /// Dead letter `id`'s subscription and event (`seq` not set), if it exists.
    pub async fn dead_letter_event(
        &self,
        tx: &mut dyn SqlTransaction,
        id: &str,
    ) -> Result<Option<(String, DeliveryRow)>, SqlError> {
        let rows = tx.query_host(self.s().dead_letter_event, &[t(id)]).await?;
        Ok(rows.rows.first().map(|r| {
            let subscription = text(r.first());
            let event = DeliveryRow {
                subscription: subscription.clone(),
                attempts: 0,
                id: text(r.get(1)),
                topic: text(r.get(2)),
                key: text(r.get(3)),
                seq: 0,
                time_ms: int(r.get(4)),
                content_type: text(r.get(5)),
                data: blob(r.get(6)),
                trace_parent: opt_text(r.get(7)),
            };
            (subscription, event)
        }))
    }

    pub async fn delete_dead_letter(
        &self,
        tx: &mut dyn SqlTransaction,
        id: &str,
    ) -> Result<(), SqlError> {
        Self::exec(tx, self.s().delete_dead_letter, &[t(id)])
            .await
            .map(|_| ())
    }

    // ----- the event inbox

    /// Records event `event_id` for `subscription`; false if it was recorded before.
    pub async fn record_inbox(
        &self,
        tx: &mut dyn SqlTransaction,
        subscription: &str,
        event_id: &str,
        received_ms: i64,
    ) -> Result<bool, SqlError> {
        let p = [t(subscription), t(event_id), Value::Integer(received_ms)];
        Ok(Self::exec(tx, self.s().record_inbox, &p).await? > 0)
    }

    /// Sets the host's savepoint (one event of a batch).
    pub async fn savepoint(&self, tx: &mut dyn SqlTransaction) -> Result<(), SqlError> {
        Self::exec(tx, self.s().savepoint, &[]).await.map(|_| ())
    }

    /// Releases the host's savepoint.
    pub async fn release(&self, tx: &mut dyn SqlTransaction) -> Result<(), SqlError> {
        Self::exec(tx, self.s().release, &[]).await.map(|_| ())
    }

    /// Rolls back to the host's savepoint (which stays set).
    pub async fn rollback_to(&self, tx: &mut dyn SqlTransaction) -> Result<(), SqlError> {
        Self::exec(tx, self.s().rollback_to, &[]).await.map(|_| ())
    }

    // ----- the command inbox

    /// The reply recorded for command `command_id`, if any.
    pub async fn command_reply(
        &self,
        tx: &mut dyn SqlTransaction,
        command_id: &str,
    ) -> Result<Option<CommandReply>, SqlError> {
        let rows = tx
            .query_host(self.s().command_reply, &[t(command_id)])
            .await?;
        Ok(rows.rows.first().map(|r| CommandReply {
            ok: opt_int(r.first()),
            data: only_blob(r.get(1)),
            reason: opt_text(r.get(2)),
            source: opt_text(r.get(3)),
        }))
    }

    pub async fn record_command(
        &self,
        tx: &mut dyn SqlTransaction,
        reply: NewCommandReply<'_>,
    ) -> Result<(), SqlError> {
        let p = [
            t(reply.command_id),
            t(reply.saga_id),
            t(reply.source),
            Value::Integer(reply.ok.into()),
            reply.data.map_or(Value::Null, Value::Blob),
            opt(reply.reason),
            Value::Integer(reply.received_ms),
        ];
        Self::exec(tx, self.s().record_command, &p)
            .await
            .map(|_| ())
    }

    // ----- the saga log

    /// Inserts a running saga, started in the span `trace_parent` (a `traceparent`).
    pub async fn insert_saga(
        &self,
        tx: &mut dyn SqlTransaction,
        id: &str,
        kind: &str,
        key: &str,
        now_ms: i64,
        trace_parent: Option<&str>,
    ) -> Result<(), SqlError> {
        let p = [
            t(id),
            t(kind),
            t(key),
            Value::Integer(now_ms),
            Value::Integer(now_ms),
            opt(trace_parent.map(String::from)),
        ];
        Self::exec(tx, self.s().insert_saga, &p).await.map(|_| ())
    }

    /// Inserts a pending step.
    pub async fn insert_step(
        &self,
        tx: &mut dyn SqlTransaction,
        saga_id: &str,
        idx: i64,
        step: &crate::bindings::silo::service::sagas::Step,
    ) -> Result<(), SqlError> {
        let p = [
            t(saga_id),
            Value::Integer(idx),
            t(&step.name),
            t(&step.service),
            t(&step.command),
            Value::Blob(step.payload.clone()),
            opt(step.compensation.clone()),
        ];
        Self::exec(tx, self.s().insert_step, &p).await.map(|_| ())
    }

    /// Saga `id`'s own row.
    pub async fn load_saga(
        &self,
        store: &dyn SqlStore,
        id: &str,
    ) -> Result<Option<SagaHead>, SqlError> {
        let rows = store.query_host(self.s().load_saga, &[t(id)]).await?;
        Ok(rows.rows.first().map(|r| SagaHead {
            id: text(r.first()),
            kind: text(r.get(1)),
            key: text(r.get(2)),
            state: text(r.get(3)),
            reason: opt_text(r.get(4)),
            handled: int(r.get(5)) != 0,
            created_ms: int(r.get(6)),
            trace_parent: opt_text(r.get(7)),
        }))
    }

    /// Saga `id`'s steps, in order.
    pub async fn load_steps(
        &self,
        store: &dyn SqlStore,
        id: &str,
    ) -> Result<Vec<StepRow>, SqlError> {
        let rows = store.query_host(self.s().load_steps, &[t(id)]).await?;
        Ok(rows
            .rows
            .iter()
            .map(|s| StepRow {
                idx: int(s.first()),
                name: text(s.get(1)),
                service: text(s.get(2)),
                command: text(s.get(3)),
                payload: crate::sql::col::opt_blob(s.get(4)).unwrap_or_default(),
                compensation: opt_text(s.get(5)),
                state: text(s.get(6)),
                attempts: int(s.get(7)) as u32,
                comp_attempts: int(s.get(8)) as u32,
                result: crate::sql::col::opt_blob(s.get(9)),
                detail: opt_text(s.get(10)),
            })
            .collect())
    }

    /// Sagas not yet handled inserted after position `after`, with their positions, in
    /// insertion order.
    pub async fn open_sagas(
        &self,
        store: &dyn SqlStore,
        after: i64,
    ) -> Result<Vec<(i64, String)>, SqlError> {
        let rows = store
            .query_host(self.s().open_sagas, &[Value::Integer(after)])
            .await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| (int(r.first()), text(r.get(1))))
            .collect())
    }

    /// How many sagas are not yet handled.
    pub async fn open_count(&self, store: &dyn SqlStore) -> Result<u64, SqlError> {
        let rows = store.query_host(self.s().open_count, &[]).await?;
        Ok(rows.rows.first().map_or(0, |r| int(r.first()) as u64))
    }

    /// Ids of sagas in `state` (any state for `None`), newest first, at most `limit`.
    pub async fn saga_ids(
        &self,
        store: &dyn SqlStore,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, SqlError> {
        let limit = Value::Integer(limit as i64);
        let rows = match state {
            Some(s) => {
                store
                    .query_host(self.s().sagas_in_state, &[t(s), limit])
                    .await?
            }
            None => store.query_host(self.s().sagas_newest, &[limit]).await?,
        };
        Ok(rows.rows.iter().map(|r| text(r.first())).collect())
    }

    /// How many sagas are in each state.
    pub async fn saga_counts(&self, store: &dyn SqlStore) -> Result<Vec<(String, u64)>, SqlError> {
        let rows = store.query_host(self.s().saga_counts, &[]).await?;
        Ok(counts(&rows))
    }

    pub async fn update_step(
        &self,
        tx: &mut dyn SqlTransaction,
        saga_id: &str,
        idx: i64,
        c: StepUpdate,
    ) -> Result<(), SqlError> {
        let p = [
            opt(c.state),
            c.attempts.map_or(Value::Null, |a| Value::Integer(a.into())),
            c.comp_attempts
                .map_or(Value::Null, |a| Value::Integer(a.into())),
            c.result.map_or(Value::Null, Value::Blob),
            opt(c.detail),
            t(saga_id),
            Value::Integer(idx),
        ];
        Self::exec(tx, self.s().update_step, &p).await.map(|_| ())
    }

    /// Sets saga `id`'s state, and its reason unless `reason` is `None`.
    pub async fn update_saga(
        &self,
        tx: &mut dyn SqlTransaction,
        id: &str,
        state: &str,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<(), SqlError> {
        let p = [t(state), opt(reason), Value::Integer(now_ms), t(id)];
        Self::exec(tx, self.s().update_saga, &p).await.map(|_| ())
    }

    /// Sets saga `id`'s update time.
    pub async fn touch_saga(
        &self,
        tx: &mut dyn SqlTransaction,
        id: &str,
        now_ms: i64,
    ) -> Result<(), SqlError> {
        let p = [Value::Integer(now_ms), t(id)];
        Self::exec(tx, self.s().touch_saga, &p).await.map(|_| ())
    }

    pub async fn mark_handled(
        &self,
        tx: &mut dyn SqlTransaction,
        id: &str,
        now_ms: i64,
    ) -> Result<(), SqlError> {
        let p = [Value::Integer(now_ms), t(id)];
        Self::exec(tx, self.s().mark_handled, &p).await.map(|_| ())
    }

    // ----- migrations

    /// The applied migration steps: version and checksum.
    pub async fn applied_migrations(
        &self,
        tx: &mut dyn SqlTransaction,
    ) -> Result<Vec<(i64, String)>, SqlError> {
        let rows = tx.query_host(self.s().applied_migrations, &[]).await?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|row| match (row.first(), row.get(1)) {
                (Some(Value::Integer(v)), Some(Value::Text(c))) => Some((*v, c.clone())),
                _ => None,
            })
            .collect())
    }

    pub async fn record_migration(
        &self,
        tx: &mut dyn SqlTransaction,
        version: u32,
        description: &str,
        checksum: &str,
    ) -> Result<(), SqlError> {
        let p = [Value::Integer(version.into()), t(description), t(checksum)];
        Self::exec(tx, self.s().record_migration, &p)
            .await
            .map(|_| ())
    }
}

fn counts(rows: &RowSet) -> Vec<(String, u64)> {
    rows.rows
        .iter()
        .map(|r| (text(r.first()), int(r.get(1)) as u64))
        .collect()
}

/// The budget of the host's own statements on its tables (waiting for the writer included).
pub fn host_limits() -> crate::sql::CallLimits {
    use std::time::{Duration, Instant};
    crate::sql::CallLimits {
        deadline: Instant::now() + Duration::from_secs(30),
        statement_budget: Duration::from_secs(30),
        max_result_bytes: usize::MAX,
    }
}
