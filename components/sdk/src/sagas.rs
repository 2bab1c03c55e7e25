//! Sagas, the orchestrator's side: [`Step`]s built from JSON payloads,
//! [`Tx::start_saga`] inside the orchestrator's own transaction, [`saga_status`] to read
//! one back, and [`crate::Service::saga_finished`] to hear how it ended. The
//! participants' side (the commands the steps send) is [`crate::commands`].
//!
//! A saga is a transaction across services that the host runs durably: it sends each
//! step's command to its participant in order, and when one is refused it sends the
//! compensations of the completed steps in reverse order. Starting it is part of a
//! transaction, so the saga exists if and only if the writes beside it commit:
//!
//! ```ignore
//! let steps = [
//!     Step::new("reserve-stock", "products", "reserve", &reserve)?.compensate_with("release"),
//!     Step::new("charge-payment", "payments", "charge", &charge)?.compensate_with("refund"),
//! ];
//! db.transaction(|tx| {
//!     let saga_id = tx.start_saga("order", &order.id, &steps)?;
//!     tx.execute("INSERT INTO orders (id, status, saga_id) VALUES (?, 'PENDING', ?)",
//!         &[&order.id, &saga_id])?;
//!     Ok::<_, ApiError>(saga_id)
//! })?;
//! ```
//!
//! When the saga ends (completed, compensated or failed) the host calls the service's
//! [`crate::Service::saga_finished`] once, in a transaction that also records that the
//! end was handled. The participants a service may send commands to are its manifest
//! entry's `saga-participants`; any other is `access-denied`.
//!
//! [`SagaStatus`], [`StepStatus`] and [`SagaState`] serialize (serde) as the JSON an API
//! shows: `{"id","kind","key","state":"RUNNING","reason","steps":[{"name","service",
//! "command","state","attempts","detail"}]}`.

use std::fmt;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::bindings::silo::service::sagas;
use crate::bindings::silo::service::sql::Transaction;
use crate::{Service, SqlError, Tx};

/// One step of a saga (the WIT record `silo:service/sagas.step`): a command to a
/// participant service, and the command that undoes it. Build it with [`Step::new`] and
/// [`Step::compensate_with`], or as a struct literal for a payload that is not JSON.
pub use crate::bindings::silo::service::sagas::Step;

/// Where a saga stands (`running`, `compensating`, `completed`, `compensated`,
/// `failed`); [`SagaState::as_str`] names it.
pub use crate::bindings::silo::service::sagas::SagaState;

/// A saga as it stands: its `id`, `kind`, `key`, [`SagaState`], the `reason` it
/// compensated or failed, and its [`StepStatus`]es in order.
pub use crate::bindings::silo::service::sagas::SagaStatus;

/// One step of a [`SagaStatus`]: `name`, `service`, `command`, `state` (`pending`,
/// `succeeded`, `refused`, `compensated`, `not-compensated`, `compensation-failed`),
/// `attempts` and `detail` (the success data as text, the refusal reason or the last
/// transient error).
pub use crate::bindings::silo::service::sagas::StepStatus;

impl Step {
    /// Step `name` (unique within the saga) sends `command` to the participant `service`
    /// with `payload` as JSON. No compensation until [`Step::compensate_with`].
    ///
    /// A payload serde cannot serialize (a map with non-string keys) is `other`.
    pub fn new<T: serde::Serialize + ?Sized>(
        name: &str,
        service: &str,
        command: &str,
        payload: &T,
    ) -> Result<Self, SqlError> {
        let payload = serde_json::to_vec(payload).map_err(|err| {
            SqlError::Other(format!(
                "cannot serialize the payload of saga step {name} as JSON: {err}"
            ))
        })?;
        Ok(Self {
            name: name.to_string(),
            service: service.to_string(),
            command: command.to_string(),
            payload,
            compensation: None,
        })
    }

    /// Undoes the step with `command` once it succeeded: the participant gets it with
    /// the same payload and, as `succeeded_with`, the data the step's command succeeded
    /// with.
    #[must_use]
    pub fn compensate_with(mut self, command: &str) -> Self {
        self.compensation = Some(command.to_string());
        self
    }
}

impl SagaState {
    /// The state as an API shows it: `RUNNING`, `COMPENSATING`, `COMPLETED`,
    /// `COMPENSATED` or `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Compensating => "COMPENSATING",
            Self::Completed => "COMPLETED",
            Self::Compensated => "COMPENSATED",
            Self::Failed => "FAILED",
        }
    }

    /// Whether the saga has ended (completed, compensated or failed): it changes no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated | Self::Failed)
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As [`SagaState::as_str`]: `"RUNNING"`.
impl Serialize for SagaState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `{"id","kind","key","state","reason","steps"}`, `reason` `null` unless it
/// compensated or failed.
impl Serialize for SagaStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("SagaStatus", 6)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("kind", &self.kind)?;
        s.serialize_field("key", &self.key)?;
        s.serialize_field("state", &self.state)?;
        s.serialize_field("reason", &self.reason)?;
        s.serialize_field("steps", &self.steps)?;
        s.end()
    }
}

/// `{"name","service","command","state","attempts","detail"}`.
impl Serialize for StepStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("StepStatus", 6)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("service", &self.service)?;
        s.serialize_field("command", &self.command)?;
        s.serialize_field("state", &self.state)?;
        s.serialize_field("attempts", &self.attempts)?;
        s.serialize_field("detail", &self.detail)?;
        s.end()
    }
}

impl Tx<'_> {
    /// Starts a saga of `kind` (e.g. `order`) for `key` (e.g. the order's id) with
    /// `steps`, as part of this transaction: the saga exists, and the host runs it, if
    /// and only if the transaction commits. Returns the saga's id.
    ///
    /// A participant not in the manifest's `saga-participants`, or a transaction on a
    /// store other than the service's event store, is `access-denied`.
    pub fn start_saga(&self, kind: &str, key: &str, steps: &[Step]) -> Result<String, SqlError> {
        sagas::start(self.raw(), kind, key, steps)
    }
}

/// [`Tx::start_saga`] as a function: `start_saga(tx, "order", &order.id, &steps)`.
pub fn start_saga(tx: &Tx<'_>, kind: &str, key: &str, steps: &[Step]) -> Result<String, SqlError> {
    tx.start_saga(kind, key, steps)
}

/// The saga `id` of this service as it stands now; `None` if this service started no
/// such saga (or the transaction that started it has not committed).
pub fn saga_status(id: &str) -> Result<Option<SagaStatus>, SqlError> {
    sagas::status(id)
}

/// Tells `S` that one of its sagas ended. Called by the code [`crate::service!`] emits;
/// `tx` is borrowed from the host, which commits it.
#[doc(hidden)]
pub fn finished<S: Service>(saga: &SagaStatus, tx: &Transaction) -> Result<(), String> {
    S::saga_finished(saga, &Tx::new(tx)).map_err(|err| err.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_carry_json_payloads_and_compensations() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Reserve<'a> {
            order_id: &'a str,
            quantity: i64,
        }
        let step = Step::new(
            "reserve-stock",
            "products",
            "reserve",
            &Reserve {
                order_id: "ord_1",
                quantity: 2,
            },
        )
        .unwrap();
        assert_eq!(
            (
                step.name.as_str(),
                step.service.as_str(),
                step.command.as_str()
            ),
            ("reserve-stock", "products", "reserve")
        );
        assert_eq!(step.payload, br#"{"orderId":"ord_1","quantity":2}"#);
        assert_eq!(step.compensation, None);
        let step = step.compensate_with("release");
        assert_eq!(step.compensation.as_deref(), Some("release"));
    }

    #[test]
    fn unserializable_payload_is_other() {
        let payload = std::collections::BTreeMap::from([((1, 2), "x")]);
        let err = Step::new("s", "p", "c", &payload).unwrap_err();
        assert!(
            matches!(&err, SqlError::Other(m) if m.contains("saga step s")),
            "{err:?}"
        );
    }

    #[test]
    fn states_name_themselves_in_capitals() {
        let all = [
            (SagaState::Running, "RUNNING", false),
            (SagaState::Compensating, "COMPENSATING", false),
            (SagaState::Completed, "COMPLETED", true),
            (SagaState::Compensated, "COMPENSATED", true),
            (SagaState::Failed, "FAILED", true),
        ];
        for (state, name, last) in all {
            assert_eq!(state.as_str(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(state.is_final(), last, "{name}");
        }
    }

    #[test]
    fn status_serializes_as_the_api_shows_it() {
        let status = SagaStatus {
            id: "sga_1".into(),
            kind: "order".into(),
            key: "ord_1".into(),
            state: SagaState::Compensated,
            reason: Some("payment declined".into()),
            steps: vec![StepStatus {
                name: "reserve-stock".into(),
                service: "products".into(),
                command: "reserve".into(),
                state: "compensated".into(),
                attempts: 2,
                detail: None,
            }],
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"id":"sga_1","kind":"order","key":"ord_1","state":"COMPENSATED","reason":"payment declined","steps":[{"name":"reserve-stock","service":"products","command":"reserve","state":"compensated","attempts":2,"detail":null}]}"#
        );
    }
}
