//! The saga log of one orchestrating service: its tables in the service's event store and
//! every host statement on them.
//!
//! - `_silo_sagas`: one row per saga: kind, key, state (`running`, `compensating`,
//!   `completed`, `compensated`, `failed`), the reason it compensated or failed, and whether
//!   the orchestrator's `saga-handler` has been told of its end (`handled`).
//! - `_silo_saga_steps`: its steps in order: participant, command, payload, compensation,
//!   state, attempts (of the command and of the compensation), the success data and the
//!   last detail (refusal reason or error).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::Notify;

use crate::bindings::silo::service::sagas::{SagaState, SagaStatus, Step, StepStatus};
use crate::events::now_ms;
use crate::events::outbox::host_limits;
use crate::sql::col::{int, opt, opt_blob, opt_text, text};
use crate::sql::{SqlError, SqlStore, SqlTransaction, Value};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS main._silo_sagas (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        handled INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS main._silo_sagas_open ON _silo_sagas (handled, state)",
    crate::events::outbox::HEADS_SCHEMA,
    "INSERT INTO main._silo_heads (log, n) VALUES ('sagas', 0) ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS main._silo_saga_steps (
        saga_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        service TEXT NOT NULL,
        command TEXT NOT NULL,
        payload BLOB NOT NULL,
        compensation TEXT,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        comp_attempts INTEGER NOT NULL DEFAULT 0,
        result BLOB,
        detail TEXT,
        PRIMARY KEY (saga_id, idx)
    )",
];

/// A saga as the log holds it.
#[derive(Debug, Clone)]
pub struct SagaRow {
    pub id: String,
    pub kind: String,
    pub key: String,
    pub state: String,
    pub reason: Option<String>,
    pub handled: bool,
    /// When it was started, ms since the Unix epoch.
    pub created_ms: i64,
    pub steps: Vec<StepRow>,
}

/// One step as the log holds it.
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

/// A change to one step: its new state (if any), its attempt counters, its data and detail.
#[derive(Debug, Clone, Default)]
pub struct StepChange {
    pub state: Option<&'static str>,
    pub attempts: Option<u32>,
    pub comp_attempts: Option<u32>,
    pub result: Option<Vec<u8>>,
    pub detail: Option<String>,
}

/// The saga log of one service.
pub struct SagaLog {
    pub service: Arc<str>,
    pub store: Arc<dyn SqlStore>,
    /// Woken by every commit that started a saga here.
    pub notify: Arc<Notify>,
    /// Set when a newer log for the same service replaced this one (its store changed).
    pub retired: AtomicBool,
}

/// The WIT state of a state name in the log.
pub fn wit_state(state: &str) -> SagaState {
    match state {
        "compensating" => SagaState::Compensating,
        "completed" => SagaState::Completed,
        "compensated" => SagaState::Compensated,
        "failed" => SagaState::Failed,
        _ => SagaState::Running,
    }
}

/// True for a saga that has ended (its handler may still be owed the news).
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "completed" | "compensated" | "failed")
}

impl SagaRow {
    /// As the WIT `saga-status` shows it.
    pub fn status(&self) -> SagaStatus {
        SagaStatus {
            id: self.id.clone(),
            kind: self.kind.clone(),
            key: self.key.clone(),
            state: wit_state(&self.state),
            reason: self.reason.clone(),
            steps: self
                .steps
                .iter()
                .map(|s| StepStatus {
                    name: s.name.clone(),
                    service: s.service.clone(),
                    command: s.command.clone(),
                    state: s.state.clone(),
                    attempts: s.attempts + s.comp_attempts,
                    detail: s.detail.clone(),
                })
                .collect(),
        }
    }

    /// As `/admin/sagas` shows it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "kind": self.kind,
            "key": self.key,
            "state": self.state,
            "reason": self.reason,
            "handled": self.handled,
            "steps": self.steps.iter().map(|s| serde_json::json!({
                "name": s.name,
                "service": s.service,
                "command": s.command,
                "compensation": s.compensation,
                "state": s.state,
                "attempts": s.attempts,
                "compensationAttempts": s.comp_attempts,
                "detail": s.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

impl SagaLog {
    /// Creates the saga tables if needed.
    pub async fn open(service: &str, store: Arc<dyn SqlStore>) -> Result<Arc<Self>, SqlError> {
        let mut tx = store.begin(&host_limits()).await?;
        for s in SCHEMA {
            tx.execute_host(s, &[]).await?;
        }
        tx.commit().await?;
        Ok(Arc::new(Self {
            service: service.into(),
            store,
            notify: Arc::new(Notify::new()),
            retired: AtomicBool::new(false),
        }))
    }

    /// Writes a new saga into `tx` (the orchestrator's own transaction).
    pub async fn create(
        &self,
        tx: &mut Box<dyn SqlTransaction>,
        kind: &str,
        key: &str,
        steps: &[Step],
    ) -> Result<String, SqlError> {
        let id = format!("saga_{}", hex::encode(rand::random::<[u8; 12]>()));
        let now = now_ms();
        crate::events::outbox::lock_log(tx, "sagas").await?;
        tx.execute_host(
            "INSERT INTO main._silo_sagas (id, kind, key, state, created_ms, updated_ms) VALUES (?, ?, ?, 'running', ?, ?)",
            &[
                Value::Text(id.clone()),
                Value::Text(kind.into()),
                Value::Text(key.into()),
                Value::Integer(now),
                Value::Integer(now),
            ],
        )
        .await?;
        for (i, s) in steps.iter().enumerate() {
            tx.execute_host(
                "INSERT INTO main._silo_saga_steps (saga_id, idx, name, service, command, payload, compensation, state)
                 VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
                &[
                    Value::Text(id.clone()),
                    Value::Integer(i as i64),
                    Value::Text(s.name.clone()),
                    Value::Text(s.service.clone()),
                    Value::Text(s.command.clone()),
                    Value::Blob(s.payload.clone()),
                    opt(s.compensation.clone()),
                ],
            )
            .await?;
        }
        Ok(id)
    }

    /// The saga `id`, with its steps.
    pub async fn load(&self, id: &str) -> Result<Option<SagaRow>, SqlError> {
        let sagas = self
            .store
            .query_host(
                "SELECT id, kind, key, state, reason, handled, created_ms FROM main._silo_sagas WHERE id = ?",
                &[Value::Text(id.into())],
            )
            .await?;
        let Some(r) = sagas.rows.first() else {
            return Ok(None);
        };
        let steps = self
            .store
            .query_host(
                "SELECT idx, name, service, command, payload, compensation, state, attempts, comp_attempts, result, detail
                 FROM main._silo_saga_steps WHERE saga_id = ? ORDER BY idx",
                &[Value::Text(id.into())],
            )
            .await?;
        Ok(Some(SagaRow {
            id: text(r.first()),
            kind: text(r.get(1)),
            key: text(r.get(2)),
            state: text(r.get(3)),
            reason: opt_text(r.get(4)),
            handled: int(r.get(5)) != 0,
            created_ms: int(r.get(6)),
            steps: steps
                .rows
                .iter()
                .map(|s| StepRow {
                    idx: int(s.first()),
                    name: text(s.get(1)),
                    service: text(s.get(2)),
                    command: text(s.get(3)),
                    payload: opt_blob(s.get(4)).unwrap_or_default(),
                    compensation: opt_text(s.get(5)),
                    state: text(s.get(6)),
                    attempts: int(s.get(7)) as u32,
                    comp_attempts: int(s.get(8)) as u32,
                    result: opt_blob(s.get(9)),
                    detail: opt_text(s.get(10)),
                })
                .collect(),
        }))
    }

    /// The WIT status of saga `id`.
    pub async fn status(&self, id: &str) -> Result<Option<SagaStatus>, SqlError> {
        Ok(self.load(id).await?.map(|s| s.status()))
    }

    /// Sagas with work left (running, compensating, or ended and not yet handled) that were
    /// started after position `after` in the log; with their positions, oldest first.
    pub async fn open_ids(&self, after: i64) -> Result<Vec<(i64, String)>, SqlError> {
        let rows = self
            .store
            .query_host(
                "SELECT rowid, id FROM main._silo_sagas WHERE handled = 0 AND rowid > ? ORDER BY rowid",
                &[Value::Integer(after)],
            )
            .await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| (int(r.first()), text(r.get(1))))
            .collect())
    }

    /// How many sagas still have work left.
    pub async fn open_count(&self) -> Result<u64, SqlError> {
        let rows = self
            .store
            .query_host(
                "SELECT count(*) FROM main._silo_sagas WHERE handled = 0",
                &[],
            )
            .await?;
        Ok(rows.rows.first().map_or(0, |r| int(r.first()) as u64))
    }

    /// Sagas by state (all states when `state` is `None`), newest first, at most `limit`.
    pub async fn list(&self, state: Option<&str>, limit: usize) -> Result<Vec<SagaRow>, SqlError> {
        let limit = Value::Integer(limit as i64);
        let rows = match state {
            Some(s) => {
                self.store
                    .query_host(
                        "SELECT id FROM main._silo_sagas WHERE state = ? ORDER BY created_ms DESC LIMIT ?",
                        &[Value::Text(s.into()), limit],
                    )
                    .await?
            }
            None => {
                self.store
                    .query_host(
                        "SELECT id FROM main._silo_sagas ORDER BY created_ms DESC LIMIT ?",
                        &[limit],
                    )
                    .await?
            }
        };
        let mut out = Vec::new();
        for r in &rows.rows {
            if let Some(s) = self.load(&text(r.first())).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// How many sagas are in each state.
    pub async fn counts(&self) -> Result<Vec<(String, u64)>, SqlError> {
        let rows = self
            .store
            .query_host(
                "SELECT state, count(*) FROM main._silo_sagas GROUP BY state",
                &[],
            )
            .await?;
        Ok(rows
            .rows
            .iter()
            .map(|r| (text(r.first()), int(r.get(1)) as u64))
            .collect())
    }

    /// Records one step's change and, with it, the saga's new state and reason.
    pub async fn record(
        &self,
        id: &str,
        step: Option<(i64, StepChange)>,
        saga: Option<(&str, Option<String>)>,
    ) -> Result<(), SqlError> {
        let mut tx = self.store.begin(&host_limits()).await?;
        self.record_in(&mut tx, id, step, saga).await?;
        tx.commit().await
    }

    /// [`SagaLog::record`] inside an open transaction.
    pub async fn record_in(
        &self,
        tx: &mut Box<dyn SqlTransaction>,
        id: &str,
        step: Option<(i64, StepChange)>,
        saga: Option<(&str, Option<String>)>,
    ) -> Result<(), SqlError> {
        let sid = Value::Text(id.into());
        if let Some((idx, c)) = step {
            tx.execute_host(
                "UPDATE main._silo_saga_steps SET
                    state = coalesce(?, state),
                    attempts = coalesce(?, attempts),
                    comp_attempts = coalesce(?, comp_attempts),
                    result = coalesce(?, result),
                    detail = coalesce(?, detail)
                 WHERE saga_id = ? AND idx = ?",
                &[
                    opt(c.state.map(String::from)),
                    c.attempts.map_or(Value::Null, |a| Value::Integer(a.into())),
                    c.comp_attempts
                        .map_or(Value::Null, |a| Value::Integer(a.into())),
                    c.result.map_or(Value::Null, Value::Blob),
                    opt(c.detail),
                    sid.clone(),
                    Value::Integer(idx),
                ],
            )
            .await?;
        }
        match saga {
            Some((state, reason)) => {
                tx.execute_host(
                    "UPDATE main._silo_sagas SET state = ?, reason = coalesce(?, reason), updated_ms = ? WHERE id = ?",
                    &[Value::Text(state.into()), opt(reason), Value::Integer(now_ms()), sid],
                )
                .await?;
            }
            None => {
                tx.execute_host(
                    "UPDATE main._silo_sagas SET updated_ms = ? WHERE id = ?",
                    &[Value::Integer(now_ms()), sid],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Marks saga `id` handled inside `tx` (the transaction its `finished` handler ran in).
    pub async fn mark_handled(
        &self,
        tx: &mut Box<dyn SqlTransaction>,
        id: &str,
    ) -> Result<(), SqlError> {
        tx.execute_host(
            "UPDATE main._silo_sagas SET handled = 1, updated_ms = ? WHERE id = ?",
            &[Value::Integer(now_ms()), Value::Text(id.into())],
        )
        .await?;
        Ok(())
    }
}
