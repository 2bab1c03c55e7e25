//! Events between services: the transactional outbox, the idempotent inbox, and the router
//! between them.
//!
//! The flow, kept visible:
//!
//! 1. **Publish** (`publish` in `host.rs`, the `silo:service/events` host function): the event is
//!    written into the publisher's outbox (`_silo_outbox`) with one delivery row per
//!    registered subscription (`_silo_deliveries`), by the guest's own open transaction.
//!    Rolled back: no event. Committed: the rows are on disk before anyone is told, and the
//!    commit wakes the router ([`outbox::Outbox::notify`]).
//! 2. **Route** ([`router::LocalRouter`], behind the [`router::EventRouter`] trait): one
//!    task per outbox loads the delivery rows, keeps them per subscription and per key, and
//!    hands out batches: at most one event per key at a time (so per-key order holds even
//!    across retries), failures retried with exponential backoff and jitter, and after
//!    `max-attempts` moved to `_silo_dead_letters` with their last error.
//! 3. **Handle** ([`inbox::deliver`]): in one transaction on the subscriber's store, each
//!    event gets a savepoint, an inbox record (`_silo_inbox`, keyed by subscription and event
//!    id) and a call of the subscriber's `event-handler` export with that transaction lent to
//!    it. A record already present means the event was handled before: it is acknowledged
//!    without running the handler. The batch commits once.
//! 4. **Acknowledge**: the delivered rows are deleted from the publisher's outbox in one
//!    transaction. A crash between 3 and 4 redelivers, and step 3 turns the duplicate away.
//!
//! Invariants: every event row is written by the publisher's transaction or not at all;
//! a delivery row is deleted only after the subscriber's transaction holding the event's
//! inbox record committed (or the event went to the dead letters); the `_silo_*` tables are
//! reachable only by host statements (the SQLite authorizer denies them to guests); the
//! source of an event is the publishing service's name, taken from its grants, never from
//! the guest.

pub mod host;
pub mod inbox;
pub mod outbox;
pub mod router;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

use crate::request::RequestCtx;

pub use outbox::{DeadLetter, EventRecord, Outbox};
pub use router::{EventRouter, LocalRouter, SubscriptionStats};

/// Largest event payload, in bytes.
pub const MAX_DATA_BYTES: usize = 1 << 20;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// What a service may publish, and where: built per instance from its manifest entry.
#[derive(Clone, Default)]
pub struct PublishGrant {
    /// The topics of `publishes`.
    pub topics: Arc<[String]>,
    /// The service's event store (where its outbox is).
    pub store: Option<Arc<str>>,
    /// The outbox itself, once the service's store is open.
    pub outbox: Option<Arc<Outbox>>,
}

/// The name a subscription goes by: `SUBSCRIBER:SOURCE/TOPIC`.
pub fn subscription_id(subscriber: &str, source: &str, topic: &str) -> String {
    format!("{subscriber}:{source}/{topic}")
}

pub use crate::delivery::now_ms;

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds (`2026-11-26T08:15:00.123Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A fresh event id: `evt_` and 128 random bits in hex.
pub fn new_event_id() -> String {
    format!("evt_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// Per-request state of the capability: what the service may publish, and its outbox.
pub struct EventsCtx {
    grant: PublishGrant,
}

impl EventsCtx {
    pub fn new(grant: PublishGrant) -> Self {
        Self { grant }
    }
}

/// A borrowed view of the capability's state, the request's context and the instance's
/// resource table (where the guest's `transaction` handles are: the table is shared by
/// every capability, the `sql` context is not).
pub struct EventsCtxView<'a> {
    pub ctx: &'a mut EventsCtx,
    pub request: &'a RequestCtx,
    pub table: &'a mut ResourceTable,
}

/// Implemented by the store data of an instance that may publish events.
pub trait EventsView: Send {
    fn events(&mut self) -> EventsCtxView<'_>;
}

/// Marker for `add_to_linker`: the `Host` impls are on [`EventsCtxView`].
pub struct Events;

impl HasData for Events {
    type Data<'a> = EventsCtxView<'a>;
}

/// Adds `silo:service/events` to a linker.
pub fn add_to_linker<T: EventsView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::bindings::silo::service::events::add_to_linker::<T, Events>(linker, T::events)
}

#[cfg(test)]
mod trace_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_679_999_999), "2026-11-26T07:59:59.999Z");
    }
}
