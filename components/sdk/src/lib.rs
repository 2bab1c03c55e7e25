//! silo-sdk: write a silo service as ordinary Rust — routes, JSON and SQL rows — and
//! export it as a `wasi:http` component with one macro.
//!
//! A service is a type implementing [`Service`]: a [`Router`] of handlers, the
//! [`Migration`]s that build its schema, the [`Subscriptions`] that handle events
//! from other services and, in sagas, the [`Commands`] it handles as a participant and
//! [`Service::saga_finished`] for the sagas it starts. [`service!`] exports it: the
//! standard `wasi:http/incoming-handler` (so the component runs on any wasi:http host)
//! and silo's `silo:service/migrations`, `event-handler`, `command-handler` and
//! `saga-handler`. Inside a handler, [`Db`] is one of the service's SQL stores and
//! [`Kv`] one of its key-value stores; [`Tx::publish`] publishes an event and
//! [`Tx::start_saga`] starts a saga in a transaction.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use silo_sdk::{
//!     ApiError, Db, Event, Migration, Request, Response, Router, Service, Subscriptions, Tx,
//! };
//!
//! struct Notes;
//!
//! impl Service for Notes {
//!     fn router() -> Router {
//!         Router::new().post("/notes", create).get("/notes/{id}", get)
//!     }
//!     fn migrations() -> Vec<Migration> {
//!         vec![Migration::new("main", 1, "notes",
//!             "CREATE TABLE notes (id TEXT PRIMARY KEY, author TEXT NOT NULL, text TEXT NOT NULL)")]
//!     }
//!     fn subscriptions() -> Subscriptions {
//!         Subscriptions::new().on("users", "UserDeleted", user_deleted)
//!     }
//! }
//!
//! #[derive(Deserialize)]
//! struct NewNote { author: String, text: String }
//!
//! /// The API's answer and the `NoteCreated` event's data.
//! #[derive(Serialize)]
//! struct Note { id: String, author: String, text: String }
//!
//! /// Stores the note and publishes `NoteCreated` in one transaction: both or neither.
//! fn create(req: Request) -> Result<Response, ApiError> {
//!     let new: NewNote = req.json()?;
//!     let note = Note { id: silo_sdk::new_id("note"), author: new.author, text: new.text };
//!     Db::open("main")?.transaction(|tx| {
//!         tx.execute("INSERT INTO notes (id, author, text) VALUES (?, ?, ?)",
//!             &[&note.id, &note.author, &note.text])?;
//!         tx.publish("NoteCreated", &note.id, &note)?;
//!         Ok::<_, ApiError>(())
//!     })?;
//!     Ok(Response::created(&note))
//! }
//!
//! fn get(req: Request) -> Result<Response, ApiError> {
//!     let id = req.param("id")?;
//!     let row = Db::open("main")?
//!         .query_opt("SELECT id, author, text FROM notes WHERE id = ?", &[&id])?
//!         .ok_or_else(|| ApiError::not_found(format!("no note {id}")))?;
//!     Ok(Response::ok(&Note { id: row.get("id")?, author: row.get("author")?, text: row.get("text")? }))
//! }
//!
//! #[derive(Deserialize)]
//! struct UserDeleted { id: String }
//!
//! /// Runs in the host's transaction, which also records the event as handled.
//! fn user_deleted(event: &Event, tx: &Tx) -> Result<(), ApiError> {
//!     let user: UserDeleted = event.json()?;
//!     tx.execute("DELETE FROM notes WHERE author = ?", &[&user.id])?;
//!     Ok(())
//! }
//!
//! silo_sdk::service!(Notes);
//! ```
//!
//! A saga is a transaction across services that the host runs: the orchestrator starts
//! it with [`Step`]s in its own transaction, each participant applies or refuses the
//! [`Command`]s the steps send it, and the host compensates completed steps in reverse
//! order when one is refused (see [`sagas`] and [`commands`]):
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use silo_sdk::{
//!     ApiError, Command, Commands, Db, Reply, Request, Response, Router, SagaState,
//!     SagaStatus, Service, Step, Tx,
//! };
//!
//! /// Orchestrates `booking` sagas and takes part in them as `rooms`, to fit one example.
//! struct Bookings;
//!
//! impl Service for Bookings {
//!     fn router() -> Router {
//!         Router::new().post("/bookings", book)
//!     }
//!     fn commands() -> Commands {
//!         Commands::new().on("hold", hold).on("free", free)
//!     }
//!     fn saga_finished(saga: &SagaStatus, tx: &Tx) -> Result<(), ApiError> {
//!         let status = if saga.state == SagaState::Completed { "BOOKED" } else { "REFUSED" };
//!         tx.execute("UPDATE bookings SET status = ? WHERE id = ?", &[&status, &saga.key])?;
//!         Ok(())
//!     }
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Hold { booking: String, room: String }
//!
//! /// Stores the booking and starts its saga in one transaction: both or neither.
//! fn book(_req: Request) -> Result<Response, ApiError> {
//!     let id = silo_sdk::new_id("bkg");
//!     let hold = Hold { booking: id.clone(), room: "101".into() };
//!     let steps = [Step::new("hold-room", "rooms", "hold", &hold)?.compensate_with("free")];
//!     Db::open("main")?.transaction(|tx| {
//!         let saga = tx.start_saga("booking", &id, &steps)?;
//!         tx.execute("INSERT INTO bookings (id, status, saga) VALUES (?, 'PENDING', ?)",
//!             &[&id, &saga])?;
//!         Ok::<_, ApiError>(())
//!     })?;
//!     Ok(Response::accepted(&serde_json::json!({ "id": id, "status": "PENDING" })))
//! }
//!
//! /// A participant's command: applied (`Reply::ok`), refused (`Reply::refuse`: the saga
//! /// compensates) or failed (`Err`: the host retries).
//! fn hold(command: &Command, tx: &Tx) -> Result<Reply, ApiError> {
//!     let hold: Hold = command.json()?;
//!     let taken = tx.execute("UPDATE rooms SET booking = ? WHERE id = ? AND booking IS NULL",
//!         &[&hold.booking, &hold.room])?;
//!     if taken.rows_affected == 0 {
//!         return Ok(Reply::refuse(format!("room {} is taken", hold.room)));
//!     }
//!     Reply::ok(&hold)
//! }
//!
//! /// The compensation of `hold`: succeeds when there is nothing (left) to undo.
//! fn free(command: &Command, tx: &Tx) -> Result<Reply, ApiError> {
//!     let hold: Hold = command.json()?;
//!     tx.execute("UPDATE rooms SET booking = NULL WHERE id = ? AND booking = ?",
//!         &[&hold.room, &hold.booking])?;
//!     Reply::ok(&hold)
//! }
//!
//! silo_sdk::service!(Bookings);
//! ```
//!
//! A key-value store holds bytes or JSON under string keys, each optionally with a
//! time to live; keys list by prefix, in byte order (see [`kv`]):
//!
//! ```no_run
//! use std::time::Duration;
//! use silo_sdk::{ApiError, Kv, Request, Response};
//!
//! /// Remembers the last search of a visitor for ten minutes.
//! fn remember(req: Request) -> Result<Response, ApiError> {
//!     let visitor = req.param("visitor")?;
//!     let search: serde_json::Value = req.json()?;
//!     let kv = Kv::open("cache")?;
//!     kv.set_json(&format!("search:{visitor}"), &search, Some(Duration::from_secs(600)))?;
//!     let visitors = kv.list_keys("search:", 100)?.len();
//!     Ok(Response::ok(&serde_json::json!({ "visitors": visitors })))
//! }
//! ```
//!
//! Another service is called with [`Call`] (one call) or [`send_all`] (several at
//! once): `Call::get("users", "/users/usr_1").send()?` is a `GET` to
//! `http://users.silo.internal/users/usr_1` over the standard
//! `wasi:http/outgoing-handler`, which the host routes to the `users` service if the
//! caller's manifest entry lists it in `calls`.
//!
//! Architecture invariant: this crate is the only place guest bindings for silo's WIT
//! are generated ([`bindings`]), and the only place that touches `wasi:http`
//! (`wasi_http.rs` for the incoming request, [`call`] for outgoing ones). Services see
//! [`Request`], [`Response`], [`Db`], [`Tx`], [`Kv`], [`Call`], [`Event`],
//! [`Subscriptions`], [`Step`], [`SagaStatus`], [`Command`], [`Reply`], [`Commands`] and
//! [`ApiError`].

#[allow(unsafe_code, reason = "wit-bindgen's generated canonical-ABI glue")]
pub mod bindings;
pub mod call;
pub mod commands;
mod error;
pub mod events;
pub mod kv;
mod request;
mod response;
mod router;
pub mod sagas;
mod sql;
mod wasi_http;

pub use call::{
    Call, CallError, CallErrorKind, CallResponse, encode_path_segment, encode_query_value, send_all,
};
pub use commands::{Command, CommandHandler, Commands, Reply};
pub use error::ApiError;
pub use events::{Event, EventHandler, Subscriptions, publish, publish_raw};
pub use kv::Kv;
pub use request::{CALLER_HEADER, Method, Request};
pub use response::Response;
pub use router::{Handler, Router};
pub use sagas::{SagaState, SagaStatus, Step, StepStatus, saga_status, start_saga};
pub use sql::{
    Db, ExecResult, FromValue, Row, SqlError, ToValue, Tx, Value, describe, variant_name,
};

/// The `wasi:http` bindings (the `wasip2` crate), for services that need a raw call.
pub use wasip2;

/// One step of a service's schema; see [`Migration::new`].
pub use bindings::exports::silo::service::migrations::Migration;

#[doc(hidden)]
pub use commands::handle as __handle_command;
#[doc(hidden)]
pub use events::handle as __handle_event;
#[doc(hidden)]
pub use sagas::finished as __saga_finished;
#[doc(hidden)]
pub use wasi_http::serve as __serve;

/// The largest request body the SDK reads; a larger one is a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A silo service: its routes, its schema, its event subscriptions and, in sagas, the
/// commands it handles as a participant and what it does when a saga it started ends.
/// Only [`Service::router`] is required. Export it with [`service!`].
pub trait Service {
    /// The routes; built once per request (an instance serves one request).
    fn router() -> Router;

    /// Every schema step of every store, oldest first. None by default.
    fn migrations() -> Vec<Migration> {
        Vec::new()
    }

    /// The event handlers; built once per event. None by default (every delivered event
    /// is then an error: the manifest should subscribe to nothing).
    fn subscriptions() -> Subscriptions {
        Subscriptions::new()
    }

    /// The command handlers of a saga participant; built once per command. None by
    /// default (every command is then the error `no handler for command NAME`: no saga
    /// should list this service as a participant).
    fn commands() -> Commands {
        Commands::new()
    }

    /// Called once when a saga this service started ends (its state is
    /// [`SagaState::is_final`]), in a transaction on the service's event store that also
    /// records that the end was handled: `Ok` commits both, an `Err` (its `message` goes
    /// to the host) or a panic discards them and the host calls again later. Match on
    /// `saga.kind` and `saga.key` to find what the saga was for. Does nothing by default.
    fn saga_finished(saga: &SagaStatus, tx: &Tx<'_>) -> Result<(), ApiError> {
        let _ = (saga, tx);
        Ok(())
    }
}

impl Migration {
    /// Step `version` (1, 2, …) of store `store`: `;`-separated SQL `statements`.
    pub fn new(
        store: impl Into<String>,
        version: u32,
        description: impl Into<String>,
        statements: impl Into<String>,
    ) -> Self {
        Self {
            store: store.into(),
            version,
            description: description.into(),
            statements: statements.into(),
        }
    }
}

/// A fresh random id: `prefix`, `_`, then 16 hex digits (64 random bits from
/// `wasi:random`), e.g. `usr_3f9a0c1b2d4e5f60`. Unique, but not meant to be secret; for
/// a bearer secret use [`new_token`].
pub fn new_id(prefix: &str) -> String {
    random_hex(prefix, 8)
}

/// A fresh unguessable token: `prefix`, `_`, then 32 hex digits (128 random bits from
/// `wasi:random`, which is cryptographically secure), e.g.
/// `ses_3f9a0c1b2d4e5f60718293a4b5c6d7e8`. For bearer secrets such as session tokens.
pub fn new_token(prefix: &str) -> String {
    random_hex(prefix, 16)
}

/// `prefix`, `_`, then `bytes` random bytes from `wasi:random` as lowercase hex.
fn random_hex(prefix: &str, bytes: u64) -> String {
    hex_id(prefix, &wasip2::random::random::get_random_bytes(bytes))
}

/// `prefix`, `_`, then `bytes` as lowercase hex.
fn hex_id(prefix: &str, bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut id = String::with_capacity(prefix.len() + 1 + 2 * bytes.len());
    id.push_str(prefix);
    id.push('_');
    for b in bytes {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// Exports a [`Service`] as a component: `wasi:http/incoming-handler@0.2.12` (every
/// request goes through the service's [`Router`]), `silo:service/migrations@0.1.0`,
/// `silo:service/event-handler@0.1.0` (every event goes through its [`Subscriptions`]),
/// `silo:service/command-handler@0.1.0` (every saga command goes through its
/// [`Commands`]) and `silo:service/saga-handler@0.1.0` (every end of a saga it started
/// goes to [`Service::saga_finished`]). All four silo exports are there whether or not
/// the service uses them. Use it once, at the crate root of a `cdylib`.
#[macro_export]
macro_rules! service {
    ($service:ty) => {
        #[allow(
            unsafe_code,
            reason = "the canonical-ABI exports generated by wasip2 and wit-bindgen"
        )]
        const _: () = {
            struct __SiloComponent;

            impl $crate::wasip2::exports::http::incoming_handler::Guest for __SiloComponent {
                fn handle(
                    request: $crate::wasip2::http::types::IncomingRequest,
                    response_out: $crate::wasip2::http::types::ResponseOutparam,
                ) {
                    $crate::__serve::<$service>(request, response_out)
                }
            }

            impl $crate::bindings::exports::silo::service::migrations::Guest for __SiloComponent {
                fn migrations() -> ::std::vec::Vec<$crate::Migration> {
                    <$service as $crate::Service>::migrations()
                }
            }

            impl $crate::bindings::exports::silo::service::event_handler::Guest
                for __SiloComponent
            {
                fn handle(
                    event: $crate::Event,
                    tx: &$crate::bindings::silo::service::sql::Transaction,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__handle_event::<$service>(&event, tx)
                }
            }

            impl $crate::bindings::exports::silo::service::command_handler::Guest
                for __SiloComponent
            {
                fn handle(
                    command: $crate::Command,
                    tx: &$crate::bindings::silo::service::sql::Transaction,
                ) -> ::std::result::Result<$crate::Reply, ::std::string::String> {
                    $crate::__handle_command::<$service>(&command, tx)
                }
            }

            impl $crate::bindings::exports::silo::service::saga_handler::Guest
                for __SiloComponent
            {
                fn finished(
                    saga: $crate::SagaStatus,
                    tx: &$crate::bindings::silo::service::sql::Transaction,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__saga_finished::<$service>(&saga, tx)
                }
            }

            $crate::wasip2::http::proxy::export!(__SiloComponent with_types_in $crate::wasip2);
            $crate::bindings::export_silo!(__SiloComponent with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_prefix_and_lowercase_hex() {
        assert_eq!(hex_id("usr", &[0x3f, 0x0a, 0xff]), "usr_3f0aff");
        assert_eq!(hex_id("ses", &[0; 16]), format!("ses_{}", "0".repeat(32)));
    }
}
