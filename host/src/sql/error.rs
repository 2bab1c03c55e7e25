//! The one failure type of silo's store capabilities: the host side of WIT `types.error`.
//!
//! It sits apart from the rest of `sql` (it imports nothing of the crate) so that `kv`, whose
//! functions return the same WIT `error`, can use it without importing the `sql` capability;
//! each capability maps it into the WIT variant in its own `convert_error`
//! ([`SqlError::to_wit`](crate::sql::SqlError::to_wit)).

/// Every failure a statement can have. All but [`SqlError::Trap`] reach the guest as the WIT
/// `error` variant of the same name; `Trap` is a host fault and ends the instance.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("constraint violation: {0}")]
    ConstraintViolation(String),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("invalid handle: {0}")]
    InvalidHandle(String),
    #[error("{0}")]
    Other(String),
    /// At provisioning only, never seen by a guest: the store's objects on its server
    /// belong to another data folder (see `sql::server::Owner`). Start-up refuses it (exit 2).
    #[error("{0}")]
    OwnedElsewhere(String),
    #[error("host fault: {0}")]
    Trap(#[from] wasmtime::Error),
}
