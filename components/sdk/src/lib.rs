//! silo-sdk: write a silo service as ordinary Rust — routes, JSON and SQL rows — and
//! export it as a `wasi:http` component with one macro.
//!
//! A service is a type implementing [`Service`]: a [`Router`] of handlers, the
//! [`Migration`]s that build its schema and the [`Subscriptions`] that handle events
//! from other services. [`service!`] exports it: the standard
//! `wasi:http/incoming-handler` (so the component runs on any wasi:http host) and silo's
//! `silo:service/migrations` and `silo:service/event-handler`. Inside a handler, [`Db`]
//! is the service's store; [`Tx::publish`] publishes an event in a transaction.
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
//! Another service is called with [`Call`] (one call) or [`send_all`] (several at
//! once): `Call::get("users", "/users/usr_1").send()?` is a `GET` to
//! `http://users.silo.internal/users/usr_1` over the standard
//! `wasi:http/outgoing-handler`, which the host routes to the `users` service if the
//! caller's manifest entry lists it in `calls`.
//!
//! Architecture invariant: this crate is the only place guest bindings for silo's WIT
//! are generated ([`bindings`]), and the only place that touches `wasi:http`
//! (`wasi_http.rs` for the incoming request, [`call`] for outgoing ones). Services see
//! [`Request`], [`Response`], [`Db`], [`Tx`], [`Call`], [`Event`], [`Subscriptions`]
//! and [`ApiError`].

#[allow(unsafe_code, reason = "wit-bindgen's generated canonical-ABI glue")]
pub mod bindings;
pub mod call;
mod error;
pub mod events;
mod request;
mod response;
mod router;
mod sql;
mod wasi_http;

pub use call::{
    Call, CallError, CallErrorKind, CallResponse, encode_path_segment, encode_query_value, send_all,
};
pub use error::ApiError;
pub use events::{Event, EventHandler, Subscriptions, publish, publish_raw};
pub use request::{CALLER_HEADER, Method, Request};
pub use response::Response;
pub use router::{Handler, Router};
pub use sql::{
    Db, ExecResult, FromValue, Row, SqlError, ToValue, Tx, Value, describe, variant_name,
};

/// The `wasi:http` bindings (the `wasip2` crate), for services that need a raw call.
pub use wasip2;

/// One step of a service's schema; see [`Migration::new`].
pub use bindings::exports::silo::service::migrations::Migration;

#[doc(hidden)]
pub use events::handle as __handle_event;
#[doc(hidden)]
pub use wasi_http::serve as __serve;

/// The largest request body the SDK reads; a larger one is a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A silo service: its routes, its schema and its event subscriptions. Export it with
/// [`service!`].
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
/// `wasi:random`), e.g. `usr_3f9a0c1b2d4e5f60`.
pub fn new_id(prefix: &str) -> String {
    let bytes = wasip2::random::random::get_random_bytes(8);
    let mut id = String::with_capacity(prefix.len() + 17);
    id.push_str(prefix);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Exports a [`Service`] as a component: `wasi:http/incoming-handler@0.2.12` (every
/// request goes through the service's [`Router`]), `silo:service/migrations@0.1.0` and
/// `silo:service/event-handler@0.1.0` (every event goes through its [`Subscriptions`]).
/// Use it once, at the crate root of a `cdylib`.
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

            $crate::wasip2::http::proxy::export!(__SiloComponent with_types_in $crate::wasip2);
            $crate::bindings::export_silo!(__SiloComponent with_types_in $crate::bindings);
        };
    };
}
