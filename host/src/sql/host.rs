//! The generated `Host` traits of `silo:service/sql` and `silo:service/types`, and nothing else.
//!
//! A bad handle (a rep not in this instance's table, or of the wrong type) is a trap from
//! `ResourceTable`; a finished transaction is `invalid-handle`; everything else is the
//! backend's [`SqlError`], converted to the WIT variant by `convert_error` ([`SqlError::to_wit`]).

use wasmtime::component::Resource;

use super::{Database, SqlCtxView, SqlError, Transaction};
use crate::bindings::silo::service::{sql, types};
use crate::bindings::{ExecResult, RowSet, Value, WitError};
use crate::telemetry::CapabilityCall;

impl types::Host for SqlCtxView<'_> {
    fn convert_error(&mut self, err: SqlError) -> wasmtime::Result<WitError> {
        self.to_wit(err)
    }
}

impl sql::Host for SqlCtxView<'_> {}

impl SqlCtxView<'_> {
    fn database(&self, db: &Resource<Database>) -> Result<&Database, SqlError> {
        Ok(self.table.get(db).map_err(wasmtime::Error::from)?)
    }

    /// The statement would wait for a writer this same instance holds: refuse it now.
    fn check_no_open_tx(&self, db: &Database) -> Result<(), SqlError> {
        if db.tx_open.load(std::sync::atomic::Ordering::Acquire) {
            return Err(SqlError::Unavailable(format!(
                "a transaction is open on store `{}` in this request; run the statement on it",
                db.name
            )));
        }
        Ok(())
    }

    /// Times one guest call on store `store` as a child span of the request's: the store's
    /// name and backend always, the statement text only when the operator opted in.
    fn traced(&self, op: &'static str, store: &str, statement: Option<&str>) -> CapabilityCall {
        let mut call = CapabilityCall::start(&self.request.service, "sql", op, self.request.trace);
        let span = call.span();
        if let Some(backend) = self.ctx.stores.get(store).map(|s| s.backend()) {
            span.attr("db.system", crate::telemetry::db_system(backend));
        }
        span.attr("db.name", store);
        if let Some(text) = statement
            && crate::telemetry::statements_traced()
        {
            span.attr("db.statement", text);
        }
        call
    }

    /// The store a guest transaction handle is on (for its span), if the handle is good.
    fn tx_store(&mut self, tx: &Resource<Transaction>) -> String {
        super::transaction_mut(self.table, tx)
            .map(|t| t.store.to_string())
            .unwrap_or_default()
    }

    fn transaction(
        &mut self,
        tx: &Resource<Transaction>,
    ) -> Result<&mut Box<dyn super::SqlTransaction>, SqlError> {
        super::transaction_mut(self.table, tx)?.inner_mut()
    }
}

impl sql::HostDatabase for SqlCtxView<'_> {
    async fn open(&mut self, name: String) -> Result<Resource<Database>, SqlError> {
        let db = self.ctx.open(&self.request.service, &name)?;
        Ok(self.table.push(db).map_err(wasmtime::Error::from)?)
    }

    async fn query(
        &mut self,
        db: Resource<Database>,
        statement: String,
        params: Vec<Value>,
    ) -> Result<RowSet, SqlError> {
        let limits = self.limits();
        let db = self.database(&db)?;
        let call = self.traced("query", &db.name, Some(&statement));
        if let Err(e) = self.check_no_open_tx(db) {
            return ended(call, Err(e));
        }
        let store = db.store.clone();
        ended(call, store.query(&limits, &statement, &params).await)
    }

    async fn execute(
        &mut self,
        db: Resource<Database>,
        statement: String,
        params: Vec<Value>,
    ) -> Result<ExecResult, SqlError> {
        let limits = self.limits();
        let db = self.database(&db)?;
        let call = self.traced("execute", &db.name, Some(&statement));
        if let Err(e) = self.check_no_open_tx(db) {
            return ended(call, Err(e));
        }
        let store = db.store.clone();
        ended(call, store.execute(&limits, &statement, &params).await)
    }

    async fn execute_batch(
        &mut self,
        db: Resource<Database>,
        statements: String,
    ) -> Result<(), SqlError> {
        let limits = self.limits();
        let db = self.database(&db)?;
        let call = self.traced("execute_batch", &db.name, Some(&statements));
        if let Err(e) = self.check_no_open_tx(db) {
            return ended(call, Err(e));
        }
        let store = db.store.clone();
        ended(call, store.execute_batch(&limits, &statements).await)
    }

    async fn begin(&mut self, db: Resource<Database>) -> Result<Resource<Transaction>, SqlError> {
        let limits = self.limits();
        let db = self.database(&db)?;
        let mut call = self.traced("begin", &db.name, None);
        if let Err(e) = self.check_no_open_tx(db) {
            call.fail(e.to_string());
            return Err(e);
        }
        let (store, tx_open) = (db.store.clone(), db.tx_open.clone());
        let name = db.name.as_str().into();
        let inner = ended(call, store.begin(&limits).await)?;
        tx_open.store(true, std::sync::atomic::Ordering::Release);
        let tx = Transaction {
            store: name,
            inner: Some(inner),
            tx_open,
            on_commit: Vec::new(),
            published: false,
            started_saga: false,
        };
        Ok(self.table.push(tx).map_err(wasmtime::Error::from)?)
    }

    async fn backend(&mut self, db: Resource<Database>) -> wasmtime::Result<String> {
        Ok(self.table.get(&db)?.store.backend().to_string())
    }

    async fn drop(&mut self, db: Resource<Database>) -> wasmtime::Result<()> {
        self.table.delete(db)?;
        Ok(())
    }
}

impl sql::HostTransaction for SqlCtxView<'_> {
    async fn query(
        &mut self,
        tx: Resource<Transaction>,
        statement: String,
        params: Vec<Value>,
    ) -> Result<RowSet, SqlError> {
        let limits = self.limits();
        let store = self.tx_store(&tx);
        let call = self.traced("query", &store, Some(&statement));
        let result = async {
            self.transaction(&tx)?
                .query(&limits, &statement, &params)
                .await
        };
        ended(call, result.await)
    }

    async fn execute(
        &mut self,
        tx: Resource<Transaction>,
        statement: String,
        params: Vec<Value>,
    ) -> Result<ExecResult, SqlError> {
        let limits = self.limits();
        let store = self.tx_store(&tx);
        let call = self.traced("execute", &store, Some(&statement));
        let result = async {
            self.transaction(&tx)?
                .execute(&limits, &statement, &params)
                .await
        };
        ended(call, result.await)
    }

    async fn commit(&mut self, tx: Resource<Transaction>) -> Result<(), SqlError> {
        let store = self.tx_store(&tx);
        let call = self.traced("commit", &store, None);
        let mut tx = self.table.delete(tx).map_err(wasmtime::Error::from)?;
        let committed = async {
            let inner = tx
                .inner
                .take()
                .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))?;
            inner.commit().await
        };
        ended(call, committed.await)?;
        let wake = std::mem::take(&mut tx.on_commit);
        if tx.published {
            crate::failpoint::crash("after-publish-commit");
        }
        if tx.started_saga {
            crate::failpoint::crash("after-saga-start-commit");
        }
        for n in wake {
            n.notify_one();
        }
        Ok(())
    }

    async fn rollback(&mut self, tx: Resource<Transaction>) -> Result<(), SqlError> {
        let store = self.tx_store(&tx);
        let call = self.traced("rollback", &store, None);
        let mut tx = self.table.delete(tx).map_err(wasmtime::Error::from)?;
        let rolled_back = async {
            let inner = tx
                .inner
                .take()
                .ok_or_else(|| SqlError::InvalidHandle("the transaction is finished".into()))?;
            inner.rollback().await
        };
        ended(call, rolled_back.await)
    }

    async fn drop(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<()> {
        // Dropping an open transaction rolls it back (the backend's Drop does it).
        self.table.delete(tx)?;
        Ok(())
    }
}

/// Ends a traced call with its result: an error fails the span.
fn ended<T>(mut call: CapabilityCall, result: Result<T, SqlError>) -> Result<T, SqlError> {
    if let Err(e) = &result {
        call.fail(e.to_string());
    }
    result
}
