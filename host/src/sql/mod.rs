//! The `sql` capability: a service's private relational stores, behind one backend trait.
//!
//! The shape follows wasmtime-wasi: a context ([`SqlCtx`], built per request from the
//! service's grants), a borrowed view pairing it with the store's resource table
//! ([`SqlCtxView`]), and a one-method view trait ([`SqlView`]) the request state implements.
//! `host.rs` holds only the generated `Host` impls; a backend is one file implementing
//! [`SqlStore`] and [`SqlTransaction`] (`sqlite.rs` today); `runtime_config.rs` decides which
//! backend serves which declared store.
//!
//! Architecture invariant: a guest reaches a store only through a [`Database`] resource, and
//! [`SqlCtx::open`] hands one out only for a name in the service's own grants. The check
//! happens before any lookup of whether such a store exists anywhere, so a denied name and a
//! missing name look the same to the guest.

pub mod error;
pub mod host;
pub mod host_tables;
pub mod mysql;
pub mod postgres;
pub mod runtime_config;
pub mod server;
pub mod sqlite;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

pub use self::store::{CallLimits, Database, SqlStore, SqlStores, SqlTransaction, Transaction};
use crate::bindings::WitError;
use crate::request::RequestCtx;
pub use crate::wit_types::{ExecResult, RowSet, Value};
pub use error::SqlError;

impl SqlError {
    /// The WIT `error` variant a guest sees for this failure; a [`SqlError::Trap`] is not
    /// one, it ends the instance. Every capability whose functions return the shared
    /// `types.error` maps its failures through here, in its own `convert_error`.
    pub fn to_wit(self) -> wasmtime::Result<WitError> {
        Ok(match self {
            SqlError::AccessDenied(m) => WitError::AccessDenied(m),
            SqlError::ConstraintViolation(m) => WitError::ConstraintViolation(m),
            SqlError::BadQuery(m) => WitError::BadQuery(m),
            SqlError::LimitExceeded(m) => WitError::LimitExceeded(m),
            SqlError::Unavailable(m) => WitError::Unavailable(m),
            SqlError::InvalidHandle(m) => WitError::InvalidHandle(m),
            SqlError::Other(m) | SqlError::OwnedElsewhere(m) => WitError::Other(m),
            SqlError::Trap(e) => return Err(e),
        })
    }
}

/// Per-request state of the capability: the service's stores and its statement limits.
pub struct SqlCtx {
    stores: SqlStores,
    /// The longest one statement may run, and the largest result it may build (the
    /// deadline is the request's, from [`RequestCtx`]).
    statement_budget: Duration,
    max_result_bytes: usize,
    /// One flag per store this instance has opened: set while it holds the store's
    /// transaction, so a second writer from the same instance fails fast instead of
    /// waiting on itself until the deadline.
    open_tx: HashMap<String, Arc<AtomicBool>>,
    /// What a lent transaction wrote to (outboxes, saga logs), to wake once the host
    /// commits it.
    published: Vec<Arc<tokio::sync::Notify>>,
    /// Set when [`SqlCtx::open`] refused a store (counted there), so the access-denied error
    /// it returns is not counted again as a refused statement by [`SqlCtxView::to_wit`].
    refused_store: bool,
}

impl SqlCtx {
    pub fn new(stores: SqlStores, statement_budget: Duration, max_result_bytes: usize) -> Self {
        Self {
            stores,
            statement_budget,
            max_result_bytes,
            open_tx: HashMap::new(),
            published: Vec::new(),
            refused_store: false,
        }
    }

    /// Takes back a transaction lent with [`SqlCtx::lend`] and pushed as `rep` into
    /// `table`; what it must wake on commit is kept for [`SqlCtx::take_published`].
    pub fn take_back(
        &mut self,
        table: &mut ResourceTable,
        rep: u32,
    ) -> Result<Box<dyn SqlTransaction>, SqlError> {
        let lost = || SqlError::Other("the lent transaction was lost".into());
        let tx: Transaction = table
            .delete(wasmtime::component::Resource::new_own(rep))
            .map_err(|_| lost())?;
        let (inner, wake) = tx.reclaim();
        self.published.extend(wake);
        inner.ok_or_else(lost)
    }

    /// What the transactions taken back so far must wake once the host commits them.
    pub fn take_published(&mut self) -> Vec<Arc<tokio::sync::Notify>> {
        std::mem::take(&mut self.published)
    }

    /// The per-call limits of a statement in a request that must end by `deadline`.
    pub fn limits(&self, deadline: Instant) -> CallLimits {
        CallLimits {
            deadline,
            statement_budget: self.statement_budget,
            max_result_bytes: self.max_result_bytes,
        }
    }

    /// Wraps a transaction the host opened on store `store` as a handle it can lend to a
    /// guest (an event handler's `borrow<transaction>`). While lent, the guest's own
    /// `begin` on that store fails fast instead of waiting on this writer.
    pub fn lend(&mut self, store: &str, inner: Box<dyn SqlTransaction>) -> Transaction {
        let tx_open = self.open_tx.entry(store.to_string()).or_default().clone();
        tx_open.store(true, Ordering::Release);
        Transaction {
            store: store.into(),
            inner: Some(inner),
            tx_open,
            on_commit: Vec::new(),
            published: false,
            started_saga: false,
        }
    }

    /// True while any transaction opened through this context is still open.
    pub fn holds_transaction(&self) -> bool {
        self.open_tx.values().any(|f| f.load(Ordering::Acquire))
    }

    /// Resolves `name` against the grants of `service` (this context's) only.
    fn open(&mut self, service: &str, name: &str) -> Result<Database, SqlError> {
        let Some(store) = self.stores.get(name) else {
            crate::telemetry::metrics::count_refusal(service, "store");
            self.refused_store = true;
            return Err(SqlError::AccessDenied(format!(
                "store `{name}` is not granted to service `{service}`"
            )));
        };
        let tx_open = self.open_tx.entry(name.to_string()).or_default().clone();
        Ok(Database {
            name: name.to_string(),
            store: store.clone(),
            tx_open,
        })
    }
}

/// A borrowed view of the capability's state, the request's context and the instance's
/// resource table.
pub struct SqlCtxView<'a> {
    pub ctx: &'a mut SqlCtx,
    pub request: &'a RequestCtx,
    pub table: &'a mut ResourceTable,
}

impl SqlCtxView<'_> {
    /// The limits of a statement started now.
    fn limits(&self) -> CallLimits {
        self.ctx.limits(self.request.deadline)
    }

    /// [`SqlError::to_wit`] for this capability's own calls (its `convert_error`): an
    /// access denied that is not a store refused by `open` is a statement the authorizer or
    /// a backend's guard refused, counted as a `statement` refusal of the request's service.
    pub fn to_wit(&mut self, err: SqlError) -> wasmtime::Result<WitError> {
        if let SqlError::AccessDenied(_) = &err
            && !std::mem::take(&mut self.ctx.refused_store)
        {
            crate::telemetry::metrics::count_refusal(&self.request.service, "statement");
        }
        err.to_wit()
    }
}

/// Implemented by the store data of an instance that may hold `sql` handles.
pub trait SqlView: Send {
    fn sql(&mut self) -> SqlCtxView<'_>;
}

/// Marker for `add_to_linker`: the `Host` impls are on [`SqlCtxView`].
pub struct Sql;

impl HasData for Sql {
    type Data<'a> = SqlCtxView<'a>;
}

/// Adds `silo:service/types` and `silo:service/sql` to a linker.
pub fn add_to_linker<T: SqlView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::bindings::silo::service::types::add_to_linker::<T, Sql>(linker, T::sql)?;
    crate::bindings::silo::service::sql::add_to_linker::<T, Sql>(linker, T::sql)?;
    Ok(())
}

/// The transaction behind the guest's handle `tx`, for a capability that writes inside a
/// guest's transaction (`events.publish`, `sagas.start`). The resource table is the
/// instance's one table, shared by every capability; the [`SqlCtx`] is not, so this is the
/// one door other capabilities use. A handle not in the table (or of another type) is a
/// trap, as for any bad handle.
pub fn transaction_mut<'t>(
    table: &'t mut ResourceTable,
    tx: &Resource<Transaction>,
) -> Result<&'t mut Transaction, SqlError> {
    Ok(table.get_mut(tx).map_err(wasmtime::Error::from)?)
}

/// Readers of the columns of a host statement's rows, for the host's own tables (outbox,
/// saga log): a missing or differently typed value reads as empty, since the host wrote it.
pub(crate) mod col {
    use super::Value;

    pub fn text(v: Option<&Value>) -> String {
        opt_text(v).unwrap_or_default()
    }

    pub fn opt_text(v: Option<&Value>) -> Option<String> {
        match v {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn int(v: Option<&Value>) -> i64 {
        match v {
            Some(Value::Integer(i)) => *i,
            _ => 0,
        }
    }

    pub fn blob(v: Option<&Value>) -> Vec<u8> {
        opt_blob(v).unwrap_or_default()
    }

    pub fn opt_blob(v: Option<&Value>) -> Option<Vec<u8>> {
        match v {
            Some(Value::Blob(b)) => Some(b.clone()),
            Some(Value::Text(s)) => Some(s.as_bytes().to_vec()),
            _ => None,
        }
    }

    /// A text parameter, or NULL.
    pub fn opt(v: Option<String>) -> Value {
        v.map(Value::Text).unwrap_or(Value::Null)
    }
}

/// Size in bytes a value adds to a result, for the result-size limit.
pub(crate) fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Integer(_) | Value::Real(_) => 8,
        Value::Text(s) => s.len() + 8,
        Value::Blob(b) => b.len() + 8,
    }
}
