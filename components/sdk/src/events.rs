//! Events between services: [`Tx::publish`] in the publisher's transaction (the
//! outbox), [`Subscriptions`] of handlers in the subscriber (the inbox).
//!
//! Publishing is part of a transaction, so an event goes out if and only if the writes
//! beside it commit:
//!
//! ```ignore
//! db.transaction(|tx| {
//!     tx.execute("UPDATE users SET name = ?, version = version + 1 WHERE id = ?", &[&name, &id])?;
//!     let user = read_user(tx, &id)?;
//!     tx.publish("UserUpdated", &id, &user)?;   // JSON, `application/json`
//!     Ok::<_, ApiError>(user)
//! })?;
//! ```
//!
//! A subscriber lists its handlers in [`crate::Service::subscriptions`]; the host calls
//! the one matching each event's source and topic with a [`Tx`] that already holds the
//! event's inbox record. The handler's writes go through that `Tx` (not a fresh
//! [`crate::Db`]: while the transaction is open it is the store's only writer) and
//! commit together with the inbox record when the handler returns `Ok`, so an event
//! never applies twice. An `Err` (or a panic, which traps) discards them, and the host
//! delivers the event again later.
//!
//! The topics a service publishes and subscribes to must also be declared in its
//! manifest entry; publishing an undeclared topic is `access-denied`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::silo::service::events;
use crate::bindings::silo::service::sql::Transaction;
use crate::{ApiError, Service, SqlError, Tx};

/// One delivered event (the WIT record `silo:service/events.event`): `id`, `source`
/// (the publishing service), `topic`, `key`, `sequence`, `time`, `content_type` and
/// `data`. Read the data with [`Event::json`] or [`Event::text`].
pub use crate::bindings::silo::service::events::Event;

/// The content type [`Tx::publish`] sends.
pub const JSON: &str = "application/json";

impl Event {
    /// The data parsed as JSON into `T`. Data that does not parse is a 400 `bad_request`
    /// naming the event; as a handler's error it makes the host retry the event, so a
    /// handler should accept every payload its publishers have ever sent.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.data).map_err(|err| {
            ApiError::bad_request(format!("{}: invalid JSON data: {err}", self.describe()))
        })
    }

    /// The data as UTF-8 text; other bytes are a 400 `bad_request` naming the event.
    pub fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.data).map_err(|err| {
            ApiError::bad_request(format!("{}: data is not UTF-8: {err}", self.describe()))
        })
    }

    /// `SOURCE/TOPIC event ID`, for messages.
    fn describe(&self) -> String {
        format!("{}/{} event {}", self.source, self.topic, self.id)
    }
}

impl Tx<'_> {
    /// Publishes `value` as JSON (`application/json`) on `topic` with `key`, as part of
    /// this transaction: the event is delivered if and only if the transaction commits.
    /// Events of one publisher with the same key reach each subscriber in publish order.
    /// Returns the event's id.
    ///
    /// A topic the manifest does not let this service publish, or a transaction on a
    /// store other than the service's event store, is `access-denied`. A value serde
    /// cannot serialize (a map with non-string keys) is `other`.
    pub fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        key: &str,
        value: &T,
    ) -> Result<String, SqlError> {
        let data = serde_json::to_vec(value).map_err(|err| {
            SqlError::Other(format!("cannot serialize the {topic} event as JSON: {err}"))
        })?;
        self.publish_raw(topic, key, JSON, &data)
    }

    /// Publishes `data` with any `content_type`; otherwise as [`Tx::publish`].
    pub fn publish_raw(
        &self,
        topic: &str,
        key: &str,
        content_type: &str,
        data: &[u8],
    ) -> Result<String, SqlError> {
        events::publish(self.raw(), topic, key, content_type, data)
    }
}

/// [`Tx::publish`] as a function: `publish(tx, "UserCreated", &user.id, &user)`.
pub fn publish<T: Serialize + ?Sized>(
    tx: &Tx<'_>,
    topic: &str,
    key: &str,
    value: &T,
) -> Result<String, SqlError> {
    tx.publish(topic, key, value)
}

/// [`Tx::publish_raw`] as a function.
pub fn publish_raw(
    tx: &Tx<'_>,
    topic: &str,
    key: &str,
    content_type: &str,
    data: &[u8],
) -> Result<String, SqlError> {
    tx.publish_raw(topic, key, content_type, data)
}

/// What a subscription calls: a plain `fn(&Event, &Tx) -> Result<(), ApiError>` or a
/// closure. `?` converts a [`SqlError`] as in an HTTP handler.
pub type EventHandler = Box<dyn Fn(&Event, &Tx<'_>) -> Result<(), ApiError>>;

/// Which events a subscription takes.
#[derive(Debug, PartialEq, Eq)]
enum Pattern {
    /// Exactly this source and topic.
    Exact { source: String, topic: String },
    /// Every event.
    Any,
}

impl Pattern {
    fn matches(&self, source: &str, topic: &str) -> bool {
        match self {
            Self::Exact {
                source: s,
                topic: t,
            } => s == source && t == topic,
            Self::Any => true,
        }
    }
}

struct Subscription {
    pattern: Pattern,
    handler: EventHandler,
}

/// A service's event handlers, built once per event by
/// [`crate::Service::subscriptions`] the way a [`crate::Router`] is built per request:
///
/// ```ignore
/// Subscriptions::new()
///     .on("users", "UserCreated", user_changed)
///     .on("users", "UserUpdated", user_changed)
///     .on_any(log_the_rest)
/// ```
///
/// Subscriptions are tried in the order they were added and the first that matches the
/// event's source and topic handles it, so [`Subscriptions::on_any`] belongs last. An
/// event none matches is an error (the host only delivers what the manifest subscribes
/// to, so that is a mismatch between the two).
#[derive(Default)]
pub struct Subscriptions {
    subscriptions: Vec<Subscription>,
}

impl Subscriptions {
    /// No subscriptions: every event is an error.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles events on `topic` published by the service `source`.
    pub fn on(
        self,
        source: &str,
        topic: &str,
        handler: impl Fn(&Event, &Tx<'_>) -> Result<(), ApiError> + 'static,
    ) -> Self {
        self.add(
            Pattern::Exact {
                source: source.to_string(),
                topic: topic.to_string(),
            },
            handler,
        )
    }

    /// Handles every event that no earlier subscription took.
    pub fn on_any(
        self,
        handler: impl Fn(&Event, &Tx<'_>) -> Result<(), ApiError> + 'static,
    ) -> Self {
        self.add(Pattern::Any, handler)
    }

    fn add(
        mut self,
        pattern: Pattern,
        handler: impl Fn(&Event, &Tx<'_>) -> Result<(), ApiError> + 'static,
    ) -> Self {
        self.subscriptions.push(Subscription {
            pattern,
            handler: Box::new(handler),
        });
        self
    }

    /// Calls the handler for `event` in `tx`. The error is the short message the WIT
    /// `event-handler.handle` returns to the host: the handler's [`ApiError::message`],
    /// or `no handler for SOURCE/TOPIC`.
    pub fn handle(&self, event: &Event, tx: &Tx<'_>) -> Result<(), String> {
        (self.handler_for(event)?)(event, tx).map_err(|err| err.message)
    }

    /// The handler of the first subscription taking `event`.
    fn handler_for(&self, event: &Event) -> Result<&EventHandler, String> {
        self.find(&event.source, &event.topic)
            .map(|index| &self.subscriptions[index].handler)
            .ok_or_else(|| format!("no handler for {}/{}", event.source, event.topic))
    }

    /// The position of the first subscription taking `source`/`topic`.
    fn find(&self, source: &str, topic: &str) -> Option<usize> {
        self.subscriptions
            .iter()
            .position(|s| s.pattern.matches(source, topic))
    }
}

/// Handles one delivered event with `S`'s subscriptions. Called by the code
/// [`crate::service!`] emits; `tx` is borrowed from the host, which commits it.
#[doc(hidden)]
pub fn handle<S: Service>(event: &Event, tx: &Transaction) -> Result<(), String> {
    S::subscriptions().handle(event, &Tx::new(tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, topic: &str, data: &[u8]) -> Event {
        Event {
            id: "evt_0123456789abcdef0123456789abcdef".to_string(),
            source: source.to_string(),
            topic: topic.to_string(),
            key: "usr_1".to_string(),
            sequence: 7,
            time: "2025-01-01T00:00:00.000Z".to_string(),
            content_type: JSON.to_string(),
            data: data.to_vec(),
        }
    }

    fn ok(_: &Event, _: &Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[test]
    fn first_matching_subscription_wins() {
        let subs = Subscriptions::new()
            .on("users", "UserCreated", ok)
            .on("users", "UserUpdated", ok)
            .on_any(ok)
            .on("users", "UserDeleted", ok);
        assert_eq!(subs.find("users", "UserCreated"), Some(0));
        assert_eq!(subs.find("users", "UserUpdated"), Some(1));
        // `on_any` takes what no earlier subscription did, including later exact ones.
        assert_eq!(subs.find("users", "UserDeleted"), Some(2));
        assert_eq!(subs.find("products", "UserCreated"), Some(2));
    }

    #[test]
    fn source_and_topic_must_both_match() {
        let subs = Subscriptions::new().on("users", "UserCreated", ok);
        assert_eq!(subs.find("users", "UserCreated"), Some(0));
        assert_eq!(subs.find("users", "UserUpdated"), None);
        assert_eq!(subs.find("products", "UserCreated"), None);
        assert_eq!(Subscriptions::new().find("users", "UserCreated"), None);
    }

    #[test]
    fn unmatched_event_names_source_and_topic() {
        let subs = Subscriptions::new().on("users", "UserCreated", ok);
        assert!(
            subs.handler_for(&event("users", "UserCreated", b"{}"))
                .is_ok()
        );
        assert_eq!(
            subs.handler_for(&event("products", "ProductUpdated", b"{}"))
                .err(),
            Some("no handler for products/ProductUpdated".to_string())
        );
    }

    #[test]
    fn json_data_decodes_and_explains_failures() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct User {
            id: String,
            version: i64,
        }
        let good = event("users", "UserCreated", br#"{"id":"usr_1","version":2}"#);
        assert_eq!(
            good.json::<User>().unwrap(),
            User {
                id: "usr_1".into(),
                version: 2
            }
        );

        let err = event("users", "UserCreated", b"{nope")
            .json::<User>()
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.starts_with(
                "users/UserCreated event evt_0123456789abcdef0123456789abcdef: invalid JSON data"
            ),
            "{}",
            err.message
        );

        let err = event("users", "UserCreated", br#"{"id":"usr_1"}"#)
            .json::<User>()
            .unwrap_err();
        assert!(
            err.message.contains("missing field `version`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn text_data_must_be_utf8() {
        assert_eq!(event("a", "T", b"hello").text().unwrap(), "hello");
        let err = event("a", "T", &[0xff, 0xfe]).text().unwrap_err();
        assert!(err.message.contains("not UTF-8"), "{}", err.message);
    }
}
