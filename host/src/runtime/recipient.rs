//! The runtime's side of durable delivery: deployed services as [`delivery::Recipient`]s,
//! their instances as [`delivery::Instance`]s, and the routing table as the
//! [`delivery::Directory`] the event router and the saga engine look them up in.
//!
//! The delivery layer never imports the runtime; this is where the two meet, handed in at
//! start-up (`LocalRouter::new`, `SagaEngine::new`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use wasmtime::Store;

use super::dispatch::RouteTable;
use super::service::{Service, arm};
use super::state::RequestState;
use crate::bindings::exports::silo::service::{command_handler, event_handler, saga_handler};
use crate::delivery::lend::Call;
use crate::delivery::{Directory, Export, Instance, InstanceError, Lent, Recipient, Work};
use crate::manifest::ServiceSpec;
use crate::sql::{SqlError, SqlStore, SqlTransaction};
use crate::telemetry::TraceContext;

/// A deployed service, as a recipient of deliveries.
pub struct Deployed(pub Arc<Service>);

impl Directory for ArcSwap<RouteTable> {
    fn recipient(&self, name: &str) -> Option<Arc<dyn Recipient>> {
        self.load()
            .by_name(name)
            .map(|s| Arc::new(Deployed(s.clone())) as Arc<dyn Recipient>)
    }
}

#[async_trait]
impl Recipient for Deployed {
    fn name(&self) -> &Arc<str> {
        &self.0.name
    }

    fn spec(&self) -> &ServiceSpec {
        &self.0.spec
    }

    fn exports(&self, export: Export) -> bool {
        match export {
            Export::EventHandler => self.0.event_handler.is_some(),
            Export::CommandHandler => self.0.command_handler.is_some(),
            Export::SagaHandler => self.0.saga_handler.is_some(),
        }
    }

    fn store(&self, name: &str) -> Option<Arc<dyn SqlStore>> {
        self.0.grants.get(name).cloned()
    }

    fn count_trap(&self) {
        self.0.metrics.traps.fetch_add(1, Ordering::Relaxed);
    }

    async fn run(&self, wait: Duration, work: Work) -> Result<(), String> {
        self.0.deliver(wait, move |_| work).await
    }

    async fn instance(
        &self,
        export: Export,
        deadline: Instant,
    ) -> Result<Box<dyn Instance>, InstanceError> {
        let service = &self.0;
        let (mut store, instance) = service
            .instance(deadline)
            .await
            .map_err(|e| InstanceError::Instantiate(format!("{e:#}")))?;
        let missing = || {
            InstanceError::Export(format!(
                "service `{}` does not export the handler asked for",
                service.name
            ))
        };
        let loaded = |e: wasmtime::Error| InstanceError::Export(format!("{e:#}"));
        let guest = match export {
            Export::EventHandler => Guest::Event(
                service
                    .event_handler
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut store, &instance)
                    .map_err(loaded)?,
            ),
            Export::CommandHandler => Guest::Command(
                service
                    .command_handler
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut store, &instance)
                    .map_err(loaded)?,
            ),
            Export::SagaHandler => Guest::Saga(
                service
                    .saga_handler
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut store, &instance)
                    .map_err(loaded)?,
            ),
        };
        Ok(Box::new(Armed { store, guest }))
    }
}

/// The export an instance was made for.
enum Guest {
    Event(event_handler::Guest),
    Command(command_handler::Guest),
    Saga(saga_handler::Guest),
}

/// An instance of a deployed service, ready to call one export with a lent transaction.
struct Armed {
    store: Store<RequestState>,
    guest: Guest,
}

#[async_trait]
impl Instance for Armed {
    async fn call(
        &mut self,
        store: &str,
        call: &Call,
        tx: Box<dyn SqlTransaction>,
        deadline: Instant,
        trace: Option<TraceContext>,
    ) -> Result<(Lent, Box<dyn SqlTransaction>), SqlError> {
        arm(&mut self.store, deadline, &[]);
        // The handler's statements, calls and events nest under the delivery's span.
        self.store.data_mut().request_mut().trace = trace;
        let handle = self.store.data_mut().lend_tx(store, tx)?;
        let rep = handle.rep();
        let result = match (&self.guest, call) {
            (Guest::Event(g), Call::Event(e)) => g
                .call_handle(&mut self.store, e, handle)
                .await
                .map(|r| r.map(|()| None)),
            (Guest::Command(g), Call::Command(c)) => g
                .call_handle(&mut self.store, c, handle)
                .await
                .map(|r| r.map(Some)),
            (Guest::Saga(g), Call::Finished(s)) => g
                .call_finished(&mut self.store, s, handle)
                .await
                .map(|r| r.map(|()| None)),
            _ => Err(wasmtime::format_err!(
                "a call of another export than the instance was made for"
            )),
        };
        let tx = self.store.data_mut().take_back_tx(rep)?;
        let lent = match result {
            Ok(Ok(reply)) => Lent::Returned(reply),
            Ok(Err(message)) => Lent::Failed(message),
            Err(trap) => Lent::Trapped {
                root_cause: trap.root_cause().to_string(),
                full: format!("{trap:#}"),
            },
        };
        Ok((lent, tx))
    }

    fn take_published(&mut self) -> Vec<Arc<tokio::sync::Notify>> {
        self.store.data_mut().sql.take_published()
    }
}
