//! The generated `Host` traits of `silo:service/events`, and nothing else.
//!
//! `publish` writes into the guest's own transaction, found in the instance's resource
//! table through [`crate::sql::transaction_mut`]; a refusal is the WIT `error` variant,
//! mapped by this capability's `convert_error`.

use wasmtime::component::Resource;

use super::{EventsCtxView, MAX_DATA_BYTES, MAX_KEY_BYTES};
use crate::bindings::WitError;
use crate::bindings::silo::service::{events, types};
use crate::sql::{SqlError, Transaction, transaction_mut};
use crate::telemetry::{Span, metrics};

impl types::Host for EventsCtxView<'_> {
    fn convert_error(&mut self, err: SqlError) -> wasmtime::Result<WitError> {
        err.to_wit()
    }
}

impl events::Host for EventsCtxView<'_> {
    async fn publish(
        &mut self,
        tx: Resource<Transaction>,
        topic: String,
        key: String,
        content_type: String,
        data: Vec<u8>,
    ) -> Result<String, SqlError> {
        let grant = self.ctx.grant.clone();
        let service = self.request.service.to_string();
        if !grant.topics.contains(&topic) {
            metrics::count_refusal(&service, "topic");
            return Err(SqlError::AccessDenied(format!(
                "service `{service}` may not publish `{topic}`: its manifest entry's `publishes` does not list it"
            )));
        }
        if key.len() > MAX_KEY_BYTES || content_type.len() > 128 || data.len() > MAX_DATA_BYTES {
            return Err(SqlError::LimitExceeded(format!(
                "an event's key is at most {MAX_KEY_BYTES} bytes, its content type 128, its data {MAX_DATA_BYTES}"
            )));
        }
        let (Some(store), Some(outbox)) = (grant.store, grant.outbox) else {
            return Err(SqlError::AccessDenied(format!(
                "service `{service}` has no outbox"
            )));
        };
        let t = transaction_mut(self.table, &tx)?;
        if t.store() != &*store {
            return Err(SqlError::AccessDenied(format!(
                "events are published in a transaction on store `{store}` (the service's event store), not `{}`",
                t.store()
            )));
        }
        let first = !t.published;
        // The event carries this span's context to its deliveries (stored with it).
        let mut span = Span::start(format!("publish {topic}"), &service, self.request.trace);
        span.attr("silo.topic", topic.as_str());
        span.attr("silo.key", key.as_str());
        let written = outbox
            .write(
                t.inner_mut()?,
                first,
                &topic,
                &key,
                &content_type,
                &data,
                Some(span.context()),
            )
            .await;
        let id = match written {
            Ok(id) => id,
            Err(e) => {
                span.error(e.to_string());
                return Err(e);
            }
        };
        span.attr("silo.event_id", id.as_str());
        t.wake_on_commit(&outbox.notify);
        t.published = true;
        Ok(id)
    }
}
