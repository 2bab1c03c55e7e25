//! Running sagas: one worker ([`crate::delivery::worker`]) per orchestrator's saga log, on
//! the host's background thread, advancing each open saga one recorded action at a time.
//! The engine is the embedded [`Transport`] of saga logs.
//!
//! Every action is: read the saga from the log, do one thing (send one command, or tell the
//! orchestrator the saga ended), record the result in the log. A crash between "do" and
//! "record" repeats the "do" on restart, and the participant's command inbox (or the
//! `handled` flag, for the end) makes the repeat harmless.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::command::{self, Delivery};
use super::log::{SagaLog, SagaRow, StepChange, StepRow, is_terminal};
use super::trace;
use crate::bindings::exports::silo::service::command_handler::Command;
use crate::delivery::lend::{Call, Unlent, call_lent};
use crate::delivery::worker::{self, Schedule, earliest};
use crate::delivery::{
    AfterFailure, Directory, Export, InstanceError, Lent, Recipient, Transport, backoff, give_up,
    host_limits, now_ms, percentiles, record_latency, run_on,
};
use crate::manifest::SagaSettings;
use crate::telemetry::{Span, metrics};

/// Sagas of one orchestrator advanced at once.
const CONCURRENCY: usize = 64;
/// How long a saga whose participant or orchestrator is not deployed waits to try again.
const WAIT: Duration = Duration::from_millis(500);

/// Per orchestrator, as `/admin/sagas` and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaStats {
    pub service: String,
    /// Sagas in each state (`running`, `compensating`, `completed`, `compensated`, `failed`).
    pub states: HashMap<String, u64>,
    /// Sagas with work left (running, compensating, or their end not yet handled).
    pub open: u64,
    /// Transient failures of steps and compensations that were retried.
    pub retries: u64,
    /// Steps and compensations the host refused to send: a participant not in the
    /// orchestrator's `saga-participants`, or a name not in the participant's `commands`
    /// (a forged or outdated row of the saga log).
    pub refused: u64,
    /// Start (the orchestrator's commit) to end handled, over the last sagas, in ms.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}

/// Counters shared by the workers.
#[derive(Default)]
struct Shared {
    retries: Mutex<HashMap<Arc<str>, u64>>,
    /// Per orchestrator: steps and compensations refused before sending.
    refused: Mutex<HashMap<Arc<str>, u64>>,
    /// Per orchestrator: the latencies of its last sagas, in ms.
    latencies: Mutex<HashMap<Arc<str>, std::collections::VecDeque<u64>>>,
    /// Per participant: redelivered commands its inbox answered without running the handler.
    duplicates: Mutex<HashMap<Arc<str>, Arc<AtomicU64>>>,
}

impl Shared {
    fn duplicates_of(&self, participant: &Arc<str>) -> Arc<AtomicU64> {
        self.duplicates
            .lock()
            .expect("saga counters")
            .entry(participant.clone())
            .or_default()
            .clone()
    }

    fn ended(&self, service: &Arc<str>, latency_ms: u64) {
        let mut all = self.latencies.lock().expect("saga counters");
        record_latency(all.entry(service.clone()).or_default(), latency_ms);
    }

    fn retried(&self, service: &Arc<str>) {
        *self
            .retries
            .lock()
            .expect("saga counters")
            .entry(service.clone())
            .or_default() += 1;
    }

    fn refused(&self, service: &Arc<str>) {
        *self
            .refused
            .lock()
            .expect("saga counters")
            .entry(service.clone())
            .or_default() += 1;
    }
}

/// Runs the sagas of every attached saga log.
pub struct SagaEngine {
    directory: Arc<dyn Directory>,
    runtime: tokio::runtime::Handle,
    logs: Mutex<Vec<Arc<SagaLog>>>,
    shared: Arc<Shared>,
}

impl SagaEngine {
    pub fn new(directory: Arc<dyn Directory>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            directory,
            runtime,
            logs: Mutex::new(Vec::new()),
            shared: Default::default(),
        }
    }

    /// Starts running `log`'s sagas. Attaching the same log twice does nothing.
    pub fn attach(&self, log: Arc<SagaLog>) {
        let mut logs = self.logs.lock().expect("saga logs");
        if logs.iter().any(|l| Arc::ptr_eq(l, &log)) {
            return;
        }
        logs.retain(|l| !l.retired.load(Ordering::Acquire));
        logs.push(log.clone());
        let runner = Runner {
            log,
            directory: self.directory.clone(),
            shared: self.shared.clone(),
        };
        self.runtime.spawn(worker::run(LogSchedule {
            runner: Arc::new(runner),
            due: HashMap::new(),
            in_flight: HashSet::new(),
            loaded_upto: 0,
        }));
    }

    fn logs(&self) -> Vec<Arc<SagaLog>> {
        self.logs
            .lock()
            .expect("saga logs")
            .iter()
            .filter(|l| !l.retired.load(Ordering::Acquire))
            .cloned()
            .collect()
    }

    /// Sagas of every orchestrator in `state` (all when `None`), newest first.
    pub async fn list(&self, state: Option<&str>, limit: usize) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for log in self.logs() {
            match log.list(state, limit).await {
                Ok(rows) => out.extend(rows.iter().map(|r| {
                    let mut v = r.json();
                    v["service"] = serde_json::Value::String(log.service.to_string());
                    v
                })),
                Err(e) => tracing::warn!(service = %log.service, "reading sagas: {e}"),
            }
        }
        out
    }

    /// Per orchestrator: sagas by state and retries.
    pub async fn stats(&self) -> Vec<SagaStats> {
        let mut out = Vec::new();
        for log in self.logs() {
            let states = log.counts().await.unwrap_or_default().into_iter().collect();
            let open = log.open_count().await.unwrap_or_default();
            let retries = self
                .shared
                .retries
                .lock()
                .expect("saga counters")
                .get(&log.service)
                .copied()
                .unwrap_or(0);
            let refused = self
                .shared
                .refused
                .lock()
                .expect("saga counters")
                .get(&log.service)
                .copied()
                .unwrap_or(0);
            let (latency_p50_ms, latency_p99_ms) = self
                .shared
                .latencies
                .lock()
                .expect("saga counters")
                .get(&log.service)
                .map(percentiles)
                .unwrap_or((None, None));
            out.push(SagaStats {
                service: log.service.to_string(),
                states,
                open,
                retries,
                refused,
                latency_p50_ms,
                latency_p99_ms,
            });
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }

    /// Per participant: redelivered commands its inbox turned away (answered from the record).
    pub fn command_duplicates(&self) -> Vec<(String, u64)> {
        let mut out: Vec<_> = self
            .shared
            .duplicates
            .lock()
            .expect("saga counters")
            .iter()
            .map(|(k, v)| (k.to_string(), v.load(Ordering::Relaxed)))
            .collect();
        out.sort();
        out
    }
}

/// What to do next with a saga.
enum Next {
    /// Take the next action now.
    Now,
    /// Try again after this long.
    After(Duration),
    /// Nothing left to do.
    Done,
}

impl Transport<SagaLog> for SagaEngine {
    fn attach(&self, log: Arc<SagaLog>) {
        SagaEngine::attach(self, log);
    }
}

/// What one saga log's sagas need to advance.
struct Runner {
    log: Arc<SagaLog>,
    directory: Arc<dyn Directory>,
    shared: Arc<Shared>,
}

/// The schedule of one saga log's worker: when each open saga is due, and which are in
/// flight (one action per saga at a time).
struct LogSchedule {
    runner: Arc<Runner>,
    due: HashMap<String, Instant>,
    in_flight: HashSet<String>,
    /// Position in the log of the newest saga loaded: a wake-up loads only newer ones
    /// (the ones already known stay in `due` until they are done).
    loaded_upto: i64,
}

#[async_trait]
impl Schedule for LogSchedule {
    type Done = (String, Next);

    fn notify(&self) -> Arc<Notify> {
        self.runner.log.notify.clone()
    }

    fn retired(&self) -> bool {
        self.runner.log.retired.load(Ordering::Acquire)
    }

    async fn load(&mut self) -> bool {
        match self.runner.log.open_ids(self.loaded_upto).await {
            Ok(ids) => {
                let now = Instant::now();
                for (pos, id) in ids {
                    self.loaded_upto = self.loaded_upto.max(pos);
                    self.due.entry(id).or_insert(now);
                }
                true
            }
            Err(e) => {
                tracing::warn!(service = %self.runner.log.service, "reading the saga log: {e}");
                false
            }
        }
    }

    fn dispatch(&mut self, tasks: &mut JoinSet<(String, Next)>) -> Option<Instant> {
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        if self.in_flight.len() < CONCURRENCY {
            // The longest-waiting first, so no saga is passed over while others cycle.
            let mut ready: Vec<(Instant, &String)> = Vec::new();
            for (id, at) in &self.due {
                if self.in_flight.contains(id) {
                    continue;
                }
                if *at <= now {
                    ready.push((*at, id));
                } else {
                    earliest(&mut wake, *at);
                }
            }
            ready.sort_unstable();
            let start: Vec<String> = ready
                .into_iter()
                .take(CONCURRENCY - self.in_flight.len())
                .map(|(_, id)| id.clone())
                .collect();
            for id in start {
                self.in_flight.insert(id.clone());
                let runner = self.runner.clone();
                tasks.spawn(async move {
                    let next = runner.advance(&id).await;
                    (id, next)
                });
            }
        }
        wake
    }

    fn apply(&mut self, (id, next): (String, Next)) {
        self.in_flight.remove(&id);
        match next {
            Next::Now => {
                self.due.insert(id, Instant::now());
            }
            Next::After(d) => {
                self.due.insert(id, Instant::now() + d);
            }
            Next::Done => {
                self.due.remove(&id);
            }
        }
    }
}

impl Runner {
    fn service(&self, name: &str) -> Option<Arc<dyn Recipient>> {
        self.directory.recipient(name)
    }

    /// Takes one action on saga `id` and records it.
    async fn advance(self: &Arc<Self>, id: &str) -> Next {
        let saga = match self.log.load(id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Next::Done,
            Err(e) => {
                tracing::warn!(saga = id, "reading the saga: {e}");
                return Next::After(WAIT);
            }
        };
        if is_terminal(&saga.state) && saga.handled {
            return Next::Done;
        }
        // Every action is taken for the orchestrator as deployed now: undeployed, its sagas
        // wait (nothing is sent on behalf of a service that declares nothing).
        let Some(orchestrator) = self.service(&self.log.service) else {
            return Next::After(WAIT);
        };
        let settings = orchestrator.spec().sagas.clone();
        let r = if is_terminal(&saga.state) {
            // The orchestrator's handler runs on its own executor, under one of its permits.
            let wait = Duration::from_millis(orchestrator.spec().limits.deadline_ms);
            let this = self.clone();
            let (saga, settings) = (saga.clone(), settings.clone());
            run_on(&orchestrator, wait, move |o| async move {
                this.finish(&*o, &saga, &settings).await
            })
            .await
            .unwrap_or_else(|why| {
                tracing::warn!(saga = id, "the saga's ending waits: {why}");
                Ok(Next::After(WAIT))
            })
        } else if saga.state == "compensating" {
            self.compensate(&*orchestrator, &saga, &settings).await
        } else {
            self.step(&*orchestrator, &saga, &settings).await
        };
        r.unwrap_or_else(|e| {
            tracing::warn!(saga = id, "recording the saga: {e}");
            Next::After(WAIT)
        })
    }

    fn command(&self, saga: &SagaRow, idx: i64, compensation: bool) -> Command {
        let step = &saga.steps[idx as usize];
        Command {
            id: format!(
                "{}/{}/{}",
                saga.id,
                step.idx,
                if compensation { "undo" } else { "do" }
            ),
            saga_id: saga.id.clone(),
            source: self.log.service.to_string(),
            step: step.name.clone(),
            name: if compensation {
                step.compensation.clone().unwrap_or_default()
            } else {
                step.command.clone()
            },
            payload: step.payload.clone(),
            succeeded_with: compensation.then(|| step.result.clone().unwrap_or_default()),
        }
    }

    /// Checks step `step`'s command (or compensation) against the orchestrator's
    /// `saga-participants` and the participant's `commands`, as deployed now. A refusal is
    /// logged and counted; the caller records it and sends nothing.
    fn check(
        &self,
        orchestrator: &dyn Recipient,
        participant: Option<&dyn Recipient>,
        saga: &SagaRow,
        step: &StepRow,
        compensation: bool,
    ) -> Result<(), String> {
        let name = if compensation {
            step.compensation.as_deref().unwrap_or_default()
        } else {
            step.command.as_str()
        };
        super::check_step(
            orchestrator.name(),
            &orchestrator.spec().saga_participants,
            &step.name,
            &step.service,
            participant.map(|p| p.spec()),
            name,
            compensation,
        )
        .map_err(|why| {
            tracing::warn!(saga = %saga.id, service = %self.log.service, participant = %step.service, trace_id = %trace::trace_id(saga), "saga step NOT SENT: {why}");
            self.shared.refused(&self.log.service);
            metrics::count_refusal(&self.log.service, "saga");
            trace::step_span(saga, step, compensation, 0).error(format!("not sent: {why}"));
            format!("not sent: {why}")
        })
    }

    /// Runs the first pending step (or completes the saga).
    async fn step(
        &self,
        orchestrator: &dyn Recipient,
        saga: &SagaRow,
        s: &SagaSettings,
    ) -> Result<Next, crate::sql::SqlError> {
        let Some(step) = saga.steps.iter().find(|st| st.state == "pending") else {
            self.log
                .record(&saga.id, None, Some(("completed", None)))
                .await?;
            return Ok(Next::Now);
        };
        let participant = self.service(&step.service);
        if let Err(why) = self.check(orchestrator, participant.as_deref(), saga, step, false) {
            // Never sent: the step is refused and the saga compensates what did succeed.
            let change = StepChange {
                state: Some("refused"),
                detail: Some(why.clone()),
                ..Default::default()
            };
            let reason = format!("step `{}` refused: {why}", step.name);
            self.log
                .record(
                    &saga.id,
                    Some((step.idx, change)),
                    Some(("compensating", Some(reason))),
                )
                .await?;
            return Ok(Next::Now);
        }
        let Some(participant) = participant else {
            return Ok(Next::After(WAIT));
        };
        let cmd = self.command(saga, step.idx, false);
        let dups = self.shared.duplicates_of(participant.name());
        let timeout = Duration::from_millis(s.step_timeout_ms);
        let attempts = step.attempts + 1;
        let refuse = |why: String| {
            let reason = format!("step `{}` refused: {why}", step.name);
            (
                StepChange {
                    state: Some("refused"),
                    attempts: Some(attempts),
                    detail: Some(why),
                    ..Default::default()
                },
                reason,
            )
        };
        let mut span = trace::step_span(saga, step, false, attempts);
        let delivered = command::deliver(
            &participant,
            &cmd,
            false,
            timeout,
            &dups,
            Some(span.context()),
        )
        .await;
        settle_span(&mut span, &delivered);
        drop(span);
        match delivered {
            Delivery::Success(data) => {
                let change = StepChange {
                    state: Some("succeeded"),
                    attempts: Some(attempts),
                    detail: Some(String::from_utf8_lossy(&data).chars().take(500).collect()),
                    result: Some(data),
                    ..Default::default()
                };
                self.log
                    .record(&saga.id, Some((step.idx, change)), None)
                    .await?;
                Ok(Next::Now)
            }
            Delivery::Refused(why) => {
                let (change, reason) = refuse(why);
                self.log
                    .record(
                        &saga.id,
                        Some((step.idx, change)),
                        Some(("compensating", Some(reason))),
                    )
                    .await?;
                Ok(Next::Now)
            }
            Delivery::Transient(err)
                if give_up(attempts, s.max_attempts) == AfterFailure::GiveUp =>
            {
                let (change, reason) = refuse(format!("gave up after {attempts} attempts: {err}"));
                self.log
                    .record(
                        &saga.id,
                        Some((step.idx, change)),
                        Some(("compensating", Some(reason))),
                    )
                    .await?;
                Ok(Next::Now)
            }
            Delivery::Transient(err) => {
                trace::log_retry(&self.log.service, saga, step, false, attempts, &err);
                let change = StepChange {
                    attempts: Some(attempts),
                    detail: Some(err),
                    ..Default::default()
                };
                self.retry_later(saga, step.idx, change, attempts, s).await
            }
            Delivery::Unavailable(_) => Ok(Next::After(WAIT)),
        }
    }

    /// Undoes the last succeeded step (or ends the saga as compensated).
    async fn compensate(
        &self,
        orchestrator: &dyn Recipient,
        saga: &SagaRow,
        s: &SagaSettings,
    ) -> Result<Next, crate::sql::SqlError> {
        let Some(step) = saga.steps.iter().rev().find(|st| st.state == "succeeded") else {
            self.log
                .record(&saga.id, None, Some(("compensated", None)))
                .await?;
            return Ok(Next::Now);
        };
        if step.compensation.is_none() {
            let change = StepChange {
                state: Some("not-compensated"),
                ..Default::default()
            };
            self.log
                .record(&saga.id, Some((step.idx, change)), None)
                .await?;
            return Ok(Next::Now);
        }
        let participant = self.service(&step.service);
        if let Err(why) = self.check(orchestrator, participant.as_deref(), saga, step, true) {
            // Never sent, and retrying cannot help until the manifest changes: the saga is
            // FAILED for an operator, like a compensation out of attempts.
            let reason = format!(
                "compensation `{}` of step `{}` refused: {why}",
                step.compensation.as_deref().unwrap_or_default(),
                step.name
            );
            tracing::error!(saga = %saga.id, service = %self.log.service, "saga FAILED: {reason}");
            let change = StepChange {
                state: Some("compensation-failed"),
                detail: Some(why),
                ..Default::default()
            };
            self.log
                .record(
                    &saga.id,
                    Some((step.idx, change)),
                    Some(("failed", Some(reason))),
                )
                .await?;
            return Ok(Next::Now);
        }
        let Some(participant) = participant else {
            return Ok(Next::After(WAIT));
        };
        let cmd = self.command(saga, step.idx, true);
        let dups = self.shared.duplicates_of(participant.name());
        let timeout = Duration::from_millis(s.step_timeout_ms);
        let attempts = step.comp_attempts + 1;
        let mut span = trace::step_span(saga, step, true, attempts);
        let delivered = command::deliver(
            &participant,
            &cmd,
            true,
            timeout,
            &dups,
            Some(span.context()),
        )
        .await;
        settle_span(&mut span, &delivered);
        drop(span);
        let err = match delivered {
            Delivery::Success(_) => {
                let change = StepChange {
                    state: Some("compensated"),
                    comp_attempts: Some(attempts),
                    ..Default::default()
                };
                self.log
                    .record(&saga.id, Some((step.idx, change)), None)
                    .await?;
                return Ok(Next::Now);
            }
            Delivery::Unavailable(_) => return Ok(Next::After(WAIT)),
            Delivery::Refused(why) => format!("refused: {why}"),
            Delivery::Transient(err) => err,
        };
        if give_up(attempts, s.compensation_attempts) == AfterFailure::GiveUp {
            let reason = format!(
                "compensation `{}` of step `{}` failed {attempts} times: {err}",
                cmd.name, step.name
            );
            tracing::error!(saga = %saga.id, service = %self.log.service, "saga FAILED: {reason}");
            let change = StepChange {
                state: Some("compensation-failed"),
                comp_attempts: Some(attempts),
                detail: Some(err),
                ..Default::default()
            };
            self.log
                .record(
                    &saga.id,
                    Some((step.idx, change)),
                    Some(("failed", Some(reason))),
                )
                .await?;
            return Ok(Next::Now);
        }
        trace::log_retry(&self.log.service, saga, step, true, attempts, &err);
        let change = StepChange {
            comp_attempts: Some(attempts),
            detail: Some(err),
            ..Default::default()
        };
        self.retry_later(saga, step.idx, change, attempts, s).await
    }

    /// Records a transient failure of step `idx` and schedules the next attempt after the
    /// backoff for `attempts`.
    async fn retry_later(
        &self,
        saga: &SagaRow,
        idx: i64,
        change: StepChange,
        attempts: u32,
        s: &SagaSettings,
    ) -> Result<Next, crate::sql::SqlError> {
        self.shared.retried(&self.log.service);
        self.log.record(&saga.id, Some((idx, change)), None).await?;
        Ok(Next::After(backoff(
            attempts,
            s.backoff_ms,
            s.max_backoff_ms,
        )))
    }

    /// Tells the orchestrator the saga ended, in the transaction that marks it handled.
    async fn finish(
        &self,
        orchestrator: &dyn Recipient,
        saga: &SagaRow,
        s: &SagaSettings,
    ) -> Result<Next, crate::sql::SqlError> {
        let retry = Next::After(backoff(1, s.backoff_ms, s.max_backoff_ms));
        let mut tx = self.log.store.begin(&host_limits()).await?;
        if !orchestrator.exports(Export::SagaHandler) {
            self.log.mark_handled(&mut tx, &saga.id).await?;
            tx.commit().await?;
            trace::ended(&self.log.service, saga);
            return Ok(Next::Done);
        }
        let Some(store_name) = orchestrator.spec().event_store() else {
            return Ok(Next::After(WAIT));
        };
        let deadline =
            Instant::now() + Duration::from_millis(orchestrator.spec().limits.deadline_ms);
        let mut instance = None;
        let call = Call::Finished(saga.status());
        let mut span = trace::finish_span(&self.log.service, saga);
        let lent = call_lent(
            orchestrator,
            &mut instance,
            Export::SagaHandler,
            store_name,
            &call,
            tx,
            deadline,
            Some(span.context()),
        )
        .await;
        let (lent, mut tx) = match lent {
            Ok(r) => r,
            Err(Unlent::NoInstance(InstanceError::Instantiate(e), _)) => {
                tracing::warn!(saga = %saga.id, "instantiating `{}`: {e}", orchestrator.name());
                return Ok(retry);
            }
            Err(Unlent::NoInstance(InstanceError::Export(_), _)) => return Ok(retry),
            Err(Unlent::Lost(e)) => return Err(e),
        };
        match lent {
            Lent::Returned(_) => {
                self.log.mark_handled(&mut tx, &saga.id).await?;
                if let Err(e) = tx.commit().await {
                    span.error(e.to_string());
                    return Err(e);
                }
                span.end();
                trace::ended(&self.log.service, saga);
                let latency = (now_ms() - saga.created_ms).max(0) as u64;
                self.shared.ended(&self.log.service, latency);
                for n in instance.iter_mut().flat_map(|i| i.take_published()) {
                    n.notify_one();
                }
                Ok(Next::Done)
            }
            Lent::Failed(message) => {
                span.error(format!("the handler failed: {message}"));
                tracing::warn!(saga = %saga.id, service = %self.log.service, trace_id = %trace::trace_id(saga), "the saga handler failed: {message}");
                Ok(retry)
            }
            Lent::Trapped { full, root_cause } => {
                span.error(format!("the handler trapped: {root_cause}"));
                tracing::warn!(saga = %saga.id, service = %self.log.service, trace_id = %trace::trace_id(saga), "the saga handler trapped: {full}");
                Ok(retry)
            }
        }
    }
}

/// Marks a command's span with what became of it (a refusal or a failure is an error).
fn settle_span(span: &mut Span, delivered: &Delivery) {
    match delivered {
        Delivery::Success(_) => {}
        Delivery::Refused(why) => span.error(format!("refused: {why}")),
        Delivery::Transient(err) => span.error(err.clone()),
        Delivery::Unavailable(why) => span.error(format!("unavailable: {why}")),
    }
}
