//! Sagas, the participant's side: the [`Command`]s a saga's steps send this service,
//! handled by the [`Commands`] it registers, each answering a [`Reply`]. The
//! orchestrator's side (starting a saga) is [`crate::sagas`].
//!
//! A participant lists its handlers by command name in [`crate::Service::commands`]; the
//! host calls the one named by each command with a [`Tx`] that already holds the
//! command's inbox record. A handler has three ways to end:
//!
//! - `Ok(Reply::ok(&data)?)`, or simply `Reply::ok(&data)`: applied. The handler's writes
//!   commit together with the reply, so a command never applies twice; the data (JSON)
//!   is kept in the saga's log and given back to the step's compensation.
//! - `Ok(Reply::refuse("out of stock"))`: refused for a business reason. The handler's
//!   writes commit too (usually there are none) and the saga compensates the steps that
//!   succeeded before. A refusal is final: it is never retried.
//! - `Err(ApiError)` (or a panic, which traps): a transient failure. The writes are
//!   discarded and the host sends the command again later.
//!
//! ```ignore
//! fn reserve(command: &Command, tx: &Tx) -> Result<Reply, ApiError> {
//!     let wanted: Reserve = command.json()?;
//!     let updated = tx.execute(
//!         "UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?",
//!         &[&wanted.quantity, &wanted.product_id, &wanted.quantity],
//!     )?;
//!     if updated.rows_affected == 0 {
//!         return Ok(Reply::refuse(format!("out of stock: {}", wanted.product_id)));
//!     }
//!     Reply::ok(&Reserved { reserved: wanted.quantity })
//! }
//! ```
//!
//! A compensation is a command like any other (registered under its own name); it
//! carries the step's payload and, in [`Command::succeeded_with_json`], the data the
//! step's command succeeded with. It should succeed when there is nothing (left) to
//! undo: a refused compensation cannot be undone in turn, and fails the saga.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::silo::service::sql::Transaction;
use crate::{ApiError, Service, Tx};

/// One delivered command (the WIT record `silo:service/command-handler.command`): `id`,
/// `saga_id`, `source` (the orchestrating service), `step`, `name`, `payload` and, for a
/// compensation, `succeeded_with`. Read the payload with [`Command::json`].
pub use crate::bindings::exports::silo::service::command_handler::Command;

/// A handler's answer (the WIT variant `silo:service/command-handler.reply`):
/// `Success(data)` or `Failure(reason)`. Build it with [`Reply::ok`] or
/// [`Reply::refuse`].
pub use crate::bindings::exports::silo::service::command_handler::Reply;

impl Command {
    /// The payload parsed as JSON into `T`. A payload that does not parse is a 400
    /// `bad_request` naming the command; as a handler's error it makes the host retry the
    /// command, so a handler should accept every payload its orchestrators have ever sent.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.payload).map_err(|err| {
            ApiError::bad_request(format!("{}: invalid JSON payload: {err}", self.describe()))
        })
    }

    /// For a compensation, the data the step's command succeeded with, parsed as JSON
    /// into `T`; `None` for a step's own command. Data that does not parse is a 400
    /// `bad_request` naming the command.
    pub fn succeeded_with_json<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        self.succeeded_with
            .as_deref()
            .map(|data| {
                serde_json::from_slice(data).map_err(|err| {
                    ApiError::bad_request(format!(
                        "{}: invalid JSON success data: {err}",
                        self.describe()
                    ))
                })
            })
            .transpose()
    }

    /// `command NAME ID (step STEP of saga SAGA from SOURCE)`, for messages.
    fn describe(&self) -> String {
        format!(
            "command {} {} (step {} of saga {} from {})",
            self.name, self.id, self.step, self.saga_id, self.source
        )
    }
}

impl Reply {
    /// Success with `data` as JSON: `Reply::ok(&Reserved { reserved: 2 })` is a
    /// handler's whole last line. Data serde cannot serialize (a map with non-string
    /// keys) is a 500 `internal` error, which the host retries.
    pub fn ok<T: Serialize + ?Sized>(data: &T) -> Result<Self, ApiError> {
        serde_json::to_vec(data)
            .map(Self::Success)
            .map_err(|err| ApiError::internal(format!("cannot serialize the reply as JSON: {err}")))
    }

    /// A refusal for a business reason (out of stock, payment declined): the saga
    /// compensates, and the command is never retried. `reason` is kept in the saga's log
    /// and becomes the saga's reason.
    pub fn refuse(reason: impl Into<String>) -> Self {
        Self::Failure(reason.into())
    }
}

/// What a command registration calls: a plain
/// `fn(&Command, &Tx) -> Result<Reply, ApiError>` or a closure. `?` converts a
/// [`crate::SqlError`] as in an HTTP handler.
pub type CommandHandler = Box<dyn Fn(&Command, &Tx<'_>) -> Result<Reply, ApiError>>;

/// A participant's command handlers by command name, built once per command by
/// [`crate::Service::commands`] the way a [`crate::Router`] is built per request:
///
/// ```ignore
/// Commands::new()
///     .on("reserve", reserve)
///     .on("release", release)   // the compensation of `reserve`
/// ```
///
/// A command no registration names is an error (`no handler for command NAME`), which
/// the host retries: the orchestrator's steps and the participant disagree.
#[derive(Default)]
pub struct Commands {
    handlers: Vec<(String, CommandHandler)>,
}

impl Commands {
    /// No handlers: every command is an error.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles the command `name` (a step's command or a compensation). A second
    /// registration of the same name is never reached.
    pub fn on(
        mut self,
        name: &str,
        handler: impl Fn(&Command, &Tx<'_>) -> Result<Reply, ApiError> + 'static,
    ) -> Self {
        self.handlers.push((name.to_string(), Box::new(handler)));
        self
    }

    /// Calls the handler for `command` in `tx`. The error is the short message the WIT
    /// `command-handler.handle` returns to the host: the handler's
    /// [`ApiError::message`], or `no handler for command NAME`.
    pub fn handle(&self, command: &Command, tx: &Tx<'_>) -> Result<Reply, String> {
        (self.handler_for(&command.name)?)(command, tx).map_err(|err| err.message)
    }

    /// The first handler registered for `name`.
    fn handler_for(&self, name: &str) -> Result<&CommandHandler, String> {
        self.handlers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, handler)| handler)
            .ok_or_else(|| format!("no handler for command {name}"))
    }
}

/// Handles one delivered command with `S`'s commands. Called by the code
/// [`crate::service!`] emits; `tx` is borrowed from the host, which commits it.
#[doc(hidden)]
pub fn handle<S: Service>(command: &Command, tx: &Transaction) -> Result<Reply, String> {
    S::commands().handle(command, &Tx::new(tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(name: &str, payload: &[u8], succeeded_with: Option<&[u8]>) -> Command {
        Command {
            id: "cmd_1".to_string(),
            saga_id: "sga_1".to_string(),
            source: "orders".to_string(),
            step: "reserve-stock".to_string(),
            name: name.to_string(),
            payload: payload.to_vec(),
            succeeded_with: succeeded_with.map(<[u8]>::to_vec),
        }
    }

    fn refuse(_: &Command, _: &Tx<'_>) -> Result<Reply, ApiError> {
        Ok(Reply::refuse("first"))
    }

    fn ok(_: &Command, _: &Tx<'_>) -> Result<Reply, ApiError> {
        Reply::ok(&1)
    }

    /// The first registration of a name wins; other names find theirs.
    #[test]
    fn handlers_are_found_by_name() {
        let commands = Commands::new()
            .on("reserve", refuse)
            .on("release", ok)
            .on("reserve", ok);
        let ptr = |h: &CommandHandler| std::ptr::from_ref(h);
        assert_eq!(
            commands.handler_for("reserve").map(ptr),
            Ok(ptr(&commands.handlers[0].1))
        );
        assert_eq!(
            commands.handler_for("release").map(ptr),
            Ok(ptr(&commands.handlers[1].1))
        );
    }

    #[test]
    fn unknown_command_names_itself() {
        assert_eq!(
            Commands::new()
                .on("reserve", ok)
                .handler_for("refund")
                .err(),
            Some("no handler for command refund".to_string())
        );
        assert!(Commands::new().handler_for("reserve").is_err());
    }

    #[test]
    fn replies_carry_json_or_a_reason() {
        #[derive(Serialize)]
        struct Reserved {
            reserved: i64,
        }
        assert!(matches!(
            Reply::ok(&Reserved { reserved: 2 }),
            Ok(Reply::Success(data)) if data == br#"{"reserved":2}"#
        ));
        assert!(matches!(
            Reply::refuse("out of stock"),
            Reply::Failure(reason) if reason == "out of stock"
        ));
        let err = Reply::ok(&std::collections::BTreeMap::from([((1, 2), 3)])).unwrap_err();
        assert_eq!(err.status, 500);
    }

    #[test]
    fn payload_and_success_data_decode_and_explain_failures() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(rename_all = "camelCase")]
        struct Reserve {
            order_id: String,
            quantity: i64,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Reserved {
            reserved: i64,
        }
        let payload = br#"{"orderId":"ord_1","quantity":2}"#;

        let step = command("reserve", payload, None);
        assert_eq!(
            step.json::<Reserve>().unwrap(),
            Reserve {
                order_id: "ord_1".into(),
                quantity: 2
            }
        );
        assert_eq!(step.succeeded_with_json::<Reserved>().unwrap(), None);

        let undo = command("release", payload, Some(br#"{"reserved":2}"#));
        assert_eq!(
            undo.succeeded_with_json::<Reserved>().unwrap(),
            Some(Reserved { reserved: 2 })
        );

        let err = command("reserve", b"{nope", None)
            .json::<Reserve>()
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.starts_with(
                "command reserve cmd_1 (step reserve-stock of saga sga_1 from orders): invalid JSON payload"
            ),
            "{}",
            err.message
        );
        let err = command("release", payload, Some(b"[]"))
            .succeeded_with_json::<Reserved>()
            .unwrap_err();
        assert!(
            err.message.contains("invalid JSON success data"),
            "{}",
            err.message
        );
    }
}
