//! The saga log of one orchestrating service: its tables in the service's event store and
//! what the host reads and writes in them (their schema and statements are in
//! [`crate::sql::host_tables`]).
//!
//! - `_silo_sagas`: one row per saga: kind, key, state (`running`, `compensating`,
//!   `completed`, `compensated`, `failed`), the reason it compensated or failed, and whether
//!   the orchestrator's `saga-handler` has been told of its end (`handled`), and the
//!   `traceparent` of the span that started it (see [`super::trace`]).
//! - `_silo_saga_steps`: its steps in order: participant, command, payload, compensation,
//!   state, attempts (of the command and of the compensation), the success data and the
//!   last detail (refusal reason or error).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::bindings::silo::service::sagas::{SagaState, SagaStatus, Step, StepStatus};
use crate::events::now_ms;
use crate::events::outbox::host_limits;
use crate::sql::host_tables::{self as tables, HostTables, StepUpdate};
use crate::sql::{SqlError, SqlStore, SqlTransaction};
use crate::telemetry::TraceContext;

pub use crate::sql::host_tables::StepRow;

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
    /// The `traceparent` it was started in (see [`super::trace::saga_context`]).
    pub trace_parent: Option<String>,
    pub steps: Vec<StepRow>,
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
    /// The host tables of `store`.
    tables: HostTables,
    /// Woken by every commit that started a saga here.
    pub notify: Arc<Notify>,
    /// Set when a newer log for the same service replaced this one (its store changed).
    pub retired: AtomicBool,
}

/// The id of saga `saga_id`'s span (see [`super::trace`]): the same whoever derives it,
/// whenever, so every action of the saga, after a restart too, names the same parent.
pub fn saga_span_id(saga_id: &str) -> [u8; 8] {
    let digest = Sha256::digest(format!("silo saga span {saga_id}").as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// The `traceparent` the log keeps for saga `saga_id` started in span `starter` (`None`:
/// no trace to continue, so the saga's own span is the root of a new trace).
pub fn starter_traceparent(saga_id: &str, starter: Option<TraceContext>) -> String {
    starter
        .unwrap_or_else(|| TraceContext {
            trace_id: loop {
                let id: [u8; 16] = rand::random();
                if id != [0; 16] {
                    break id;
                }
            },
            span_id: saga_span_id(saga_id),
            sampled: true,
        })
        .traceparent()
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
        let tables = HostTables::of(store.as_ref())?;
        tables
            .create_in(
                store.as_ref(),
                &[&tables::SAGAS, &tables::HEADS, &tables::SAGA_STEPS],
                &["sagas"],
            )
            .await?;
        Ok(Arc::new(Self {
            service: service.into(),
            store,
            tables,
            notify: Arc::new(Notify::new()),
            retired: AtomicBool::new(false),
        }))
    }

    /// Writes a new saga into `tx` (the orchestrator's own transaction), started in span
    /// `starter` (the request's), which its steps' spans will continue.
    pub async fn create(
        &self,
        tx: &mut Box<dyn SqlTransaction>,
        kind: &str,
        key: &str,
        steps: &[Step],
        starter: Option<TraceContext>,
    ) -> Result<String, SqlError> {
        let id = format!("saga_{}", hex::encode(rand::random::<[u8; 12]>()));
        let trace = starter_traceparent(&id, starter);
        self.tables.lock_log(tx.as_mut(), "sagas").await?;
        self.tables
            .insert_saga(tx.as_mut(), &id, kind, key, now_ms(), Some(&trace))
            .await?;
        for (i, s) in steps.iter().enumerate() {
            self.tables
                .insert_step(tx.as_mut(), &id, i as i64, s)
                .await?;
        }
        Ok(id)
    }

    /// The saga `id`, with its steps.
    pub async fn load(&self, id: &str) -> Result<Option<SagaRow>, SqlError> {
        let Some(r) = self.tables.load_saga(self.store.as_ref(), id).await? else {
            return Ok(None);
        };
        let steps = self.tables.load_steps(self.store.as_ref(), id).await?;
        Ok(Some(SagaRow {
            id: r.id,
            kind: r.kind,
            key: r.key,
            state: r.state,
            reason: r.reason,
            handled: r.handled,
            created_ms: r.created_ms,
            trace_parent: r.trace_parent,
            steps,
        }))
    }

    /// The WIT status of saga `id`.
    pub async fn status(&self, id: &str) -> Result<Option<SagaStatus>, SqlError> {
        Ok(self.load(id).await?.map(|s| s.status()))
    }

    /// Sagas with work left (running, compensating, or ended and not yet handled) that were
    /// started after position `after` in the log; with their positions, oldest first.
    pub async fn open_ids(&self, after: i64) -> Result<Vec<(i64, String)>, SqlError> {
        self.tables.open_sagas(self.store.as_ref(), after).await
    }

    /// How many sagas still have work left.
    pub async fn open_count(&self) -> Result<u64, SqlError> {
        self.tables.open_count(self.store.as_ref()).await
    }

    /// Sagas by state (all states when `state` is `None`), newest first, at most `limit`.
    pub async fn list(&self, state: Option<&str>, limit: usize) -> Result<Vec<SagaRow>, SqlError> {
        let ids = self
            .tables
            .saga_ids(self.store.as_ref(), state, limit)
            .await?;
        let mut out = Vec::new();
        for id in &ids {
            if let Some(s) = self.load(id).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// How many sagas are in each state.
    pub async fn counts(&self) -> Result<Vec<(String, u64)>, SqlError> {
        self.tables.saga_counts(self.store.as_ref()).await
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
        if let Some((idx, c)) = step {
            let update = StepUpdate {
                state: c.state.map(String::from),
                attempts: c.attempts,
                comp_attempts: c.comp_attempts,
                result: c.result,
                detail: c.detail,
            };
            self.tables
                .update_step(tx.as_mut(), id, idx, update)
                .await?;
        }
        match saga {
            Some((state, reason)) => {
                self.tables
                    .update_saga(tx.as_mut(), id, state, reason, now_ms())
                    .await
            }
            None => self.tables.touch_saga(tx.as_mut(), id, now_ms()).await,
        }
    }

    /// Marks saga `id` handled inside `tx` (the transaction its `finished` handler ran in).
    pub async fn mark_handled(
        &self,
        tx: &mut Box<dyn SqlTransaction>,
        id: &str,
    ) -> Result<(), SqlError> {
        self.tables.mark_handled(tx.as_mut(), id, now_ms()).await
    }
}
