//! The state of one instance (one request): cheap to build, dropped with the request.
//!
//! It pairs the sandbox's WASI context (no preopens, no environment, no arguments, sockets
//! denied, stdout and stderr into the host log) with the wasi:http context, silo's
//! capabilities and the instance's memory limits. Everything here is per request, so
//! nothing one request does is visible to the next.

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::stdio::GuestLog;
use crate::sql::{SqlCtx, SqlCtxView, SqlView};

/// The `T` of every `Store<T>` silo creates.
pub struct RequestState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: OutboundPolicy,
    pub sql: SqlCtx,
    pub limits: StoreLimits,
}

impl RequestState {
    /// The sandbox every instance starts in: each grant empty.
    pub fn new(service: &Arc<str>, sql: SqlCtx, limits: StoreLimits) -> Self {
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
            hooks: OutboundPolicy,
            sql,
            limits,
        }
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

/// What `wasi:http/outgoing-handler` may reach: nothing. Every outgoing request is refused
/// with the standard `HTTP-request-denied` error before any connection is attempted.
pub struct OutboundPolicy;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
