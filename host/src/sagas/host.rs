//! The generated `Host` traits of `silo:service/sagas`, and nothing else.
//!
//! `start` writes into the guest's own transaction, found in the instance's resource table
//! through [`crate::sql::transaction_mut`]; a refusal is the WIT `error` variant, mapped by
//! this capability's `convert_error`.

use wasmtime::component::Resource;

use super::{MAX_STEPS, SagasCtxView, check_step};
use crate::bindings::WitError;
use crate::bindings::silo::service::sagas::{self as wit, SagaStatus, Step};
use crate::bindings::silo::service::types;
use crate::sql::{SqlError, Transaction, transaction_mut};
use crate::telemetry::metrics;

impl types::Host for SagasCtxView<'_> {
    fn convert_error(&mut self, err: SqlError) -> wasmtime::Result<WitError> {
        err.to_wit()
    }
}

impl wit::Host for SagasCtxView<'_> {
    async fn start(
        &mut self,
        tx: Resource<Transaction>,
        kind: String,
        key: String,
        steps: Vec<Step>,
    ) -> Result<String, SqlError> {
        let grant = self.ctx.grant.clone();
        let service = self.request.service.to_string();
        let (Some(store), Some(log)) = (grant.store, grant.log) else {
            metrics::count_refusal(&service, "saga");
            return Err(SqlError::AccessDenied(format!(
                "service `{service}` starts no sagas: its manifest entry lists no `saga-participants`"
            )));
        };
        if steps.is_empty() || steps.len() > MAX_STEPS {
            return Err(SqlError::LimitExceeded(format!(
                "a saga has 1 to {MAX_STEPS} steps, not {}",
                steps.len()
            )));
        }
        for (i, s) in steps.iter().enumerate() {
            if !grant.participants.contains(&s.service) {
                metrics::count_refusal(&service, "saga");
                return Err(SqlError::AccessDenied(format!(
                    "step `{}`: service `{service}` may not send commands to `{}`: its manifest entry's `saga-participants` does not list it",
                    s.name, s.service
                )));
            }
            // The participant as deployed now; one not deployed is checked when its step is
            // sent (the engine waits for it).
            let spec = grant.directory.spec(&s.service);
            let names = std::iter::once((s.command.as_str(), false))
                .chain(s.compensation.as_deref().map(|c| (c, true)));
            for (name, compensation) in names {
                check_step(
                    &service,
                    &grant.participants,
                    &s.name,
                    &s.service,
                    spec.as_ref(),
                    name,
                    compensation,
                )
                .map_err(|why| {
                    metrics::count_refusal(&service, "saga");
                    SqlError::AccessDenied(why)
                })?;
            }
            if s.name.is_empty() || steps[..i].iter().any(|t| t.name == s.name) {
                return Err(SqlError::BadQuery(format!(
                    "step names must be non-empty and unique (`{}`)",
                    s.name
                )));
            }
            if s.payload.len() > crate::events::MAX_DATA_BYTES
                || kind.len() > 128
                || key.len() > crate::events::MAX_KEY_BYTES
            {
                return Err(SqlError::LimitExceeded(
                    "a saga's kind is at most 128 bytes, its key 256, a payload 1 MiB".into(),
                ));
            }
        }
        let t = transaction_mut(self.table, &tx)?;
        if t.store() != &*store {
            return Err(SqlError::AccessDenied(format!(
                "sagas are started in a transaction on store `{store}` (the service's event store), not `{}`",
                t.store()
            )));
        }
        let trace = self.request.trace;
        let id = log
            .create(t.inner_mut()?, &kind, &key, &steps, trace)
            .await?;
        t.wake_on_commit(&log.notify);
        t.started_saga = true;
        Ok(id)
    }

    async fn status(&mut self, id: String) -> Result<Option<SagaStatus>, SqlError> {
        let Some(log) = self.ctx.grant.log.clone() else {
            return Ok(None);
        };
        log.status(&id).await
    }
}
