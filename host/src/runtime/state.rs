//! The state of one instance (one request): cheap to build, dropped with the request.
//!
//! It pairs the sandbox's WASI context (no preopens, no environment, no arguments, sockets
//! denied, stdout and stderr into the host log) with the wasi:http context (whose outgoing
//! requests only reach declared services, in-process), silo's capabilities and the
//! instance's memory limits. Everything here is per request, so
//! nothing one request does is visible to the next (the events of one delivery batch share
//! an instance; see `events::inbox`).

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::stdio::GuestLog;
use crate::calls::CallCtx;
use crate::sql::{SqlCtx, SqlCtxView, SqlError, SqlTransaction, SqlView, Transaction};
use wasmtime::component::Resource;

/// The `T` of every `Store<T>` silo creates.
pub struct RequestState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    /// Where outgoing `wasi:http` requests go: calls to declared services, nothing else.
    pub hooks: CallCtx,
    pub sql: SqlCtx,
    pub limits: StoreLimits,
}

impl RequestState {
    /// The sandbox every instance starts in: each grant empty.
    pub fn new(service: &Arc<str>, sql: SqlCtx, calls: CallCtx, limits: StoreLimits) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestLog::new(service.clone(), "stdout"))
            .stderr(GuestLog::new(service.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            hooks: calls,
            sql,
            limits,
        }
    }
}

impl RequestState {
    /// Lends a transaction the host opened on `store` to the guest, as a handle to pass to
    /// an export (an event, command or saga handler). Take it back with
    /// [`RequestState::take_back_tx`] and the handle's `rep`.
    pub fn lend_tx(
        &mut self,
        store: &str,
        tx: Box<dyn SqlTransaction>,
    ) -> Result<Resource<Transaction>, SqlError> {
        let lent = self.sql.lend(store, tx);
        self.table
            .push(lent)
            .map_err(|e| SqlError::Other(e.to_string()))
    }

    /// Takes a lent transaction back after the export returned (or trapped).
    pub fn take_back_tx(&mut self, rep: u32) -> Result<Box<dyn SqlTransaction>, SqlError> {
        self.sql.take_back(&mut self.table, rep)
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl SqlView for RequestState {
    fn sql(&mut self) -> SqlCtxView<'_> {
        SqlCtxView {
            ctx: &mut self.sql,
            table: &mut self.table,
        }
    }
}
