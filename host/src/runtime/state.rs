//! The state of one instance (one request): cheap to build, dropped with the request.
//!
//! It pairs the sandbox's WASI context (no preopens, no environment, no arguments, sockets
//! denied, stdout and stderr into the host log) with the wasi:http context (whose outgoing
//! requests only reach declared services, in-process), silo's capabilities and the
//! instance's memory limits. The capabilities are composed, not merged: one request context
//! ([`RequestCtx`]: service, deadline, call chain) that they all read, one context per
//! capability holding only its own grants (`sql`, `kv`, `events`, `sagas`, `calls`), and the
//! one resource table they share; [`RequestState`] implements each capability's view trait,
//! and the engine links each capability's interfaces through its own `add_to_linker`.
//! Everything here is per request, so
//! nothing one request does is visible to the next (the events of one delivery batch share
//! an instance; see `events::inbox`).

use std::sync::Arc;

use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{FieldMapError, WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::budget::ServiceMemory;
use super::stdio::GuestLog;
use crate::calls::{CallCtx, CallCtxView, CallHooks, CallView};
use crate::events::{EventsCtx, EventsCtxView, EventsView};
use crate::kv::{KvCtx, KvCtxView, KvView};
use crate::request::RequestCtx;
use crate::sagas::{SagasCtx, SagasCtxView, SagasView};
use crate::sql::{SqlCtx, SqlCtxView, SqlError, SqlTransaction, SqlView, Transaction};
use wasmtime::component::Resource;

/// Host resources (handles: `wasi:http` fields, requests, bodies and streams, pollables,
/// databases, transactions…) one instance may hold at once. Each lives in the host's
/// memory, outside the instance's `memory-mb`; past the cap the instance traps.
pub const MAX_RESOURCES: usize = 1024;
/// Bytes one `wasi:http` `fields` resource a guest builds may hold (names and values, plus
/// the host's own per-entry cost, as wasmtime-wasi-http counts them); past it the instance
/// traps. Together with [`MAX_RESOURCES`] this bounds the header bytes one instance can make
/// the host hold: 1024 × 64 KiB = 64 MiB.
pub const MAX_FIELDS_BYTES: usize = 64 << 10;

/// The `T` of every `Store<T>` silo creates: the request's context, each capability's own
/// context, and the one resource table they share.
pub struct RequestState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    /// The request's context ([`RequestState::request`]) with the `calls` capability: where
    /// outgoing `wasi:http` requests go (calls to declared services, nothing else).
    /// wasi:http holds its hooks as one object, and a call needs both.
    pub hooks: CallHooks,
    pub sql: SqlCtx,
    pub kv: KvCtx,
    pub events: EventsCtx,
    pub sagas: SagasCtx,
    pub limits: InstanceLimits,
}

/// Each capability's context of one instance, before the request state composes them.
pub struct CapabilityCtxs {
    pub sql: SqlCtx,
    pub kv: KvCtx,
    pub events: EventsCtx,
    pub sagas: SagasCtx,
    pub calls: CallCtx,
}

/// The instance's memory, table and instance limits, remembering whether the memory limit
/// refused a growth: a guest's allocator then aborts (a trap that does not say why), and
/// the host's answer should say it was the memory limit.
pub struct InstanceLimits {
    limits: StoreLimits,
    memory_bytes: usize,
    /// A `memory.grow` past the limit was refused.
    pub memory_refused: bool,
    /// The service's account in the host's memory budget, and what this instance is charged.
    account: Option<Arc<ServiceMemory>>,
    charged: u64,
    /// A `memory.grow` was refused because the service held its share of the host's budget.
    share_refused: bool,
}

impl InstanceLimits {
    pub fn new(limits: StoreLimits, memory_bytes: usize) -> Self {
        Self {
            limits,
            memory_bytes,
            memory_refused: false,
            account: None,
            charged: 0,
            share_refused: false,
        }
    }

    /// These limits, with every growth charged to `account` as well.
    pub fn charged_to(mut self, account: Arc<ServiceMemory>) -> Self {
        self.account = Some(account);
        self
    }

    /// `error` with the reason added when a memory limit (the instance's, or its service's
    /// share of the host's budget) was what stopped the instance, or said in the host's words
    /// when it was a cap on host resources.
    pub fn explain(&self, error: wasmtime::Error) -> wasmtime::Error {
        let cause = error.root_cause();
        if self.share_refused {
            let share = self.account.as_ref().map(|a| a.share() >> 20).unwrap_or(0);
            error.context(MemoryLimitReached {
                mib: share as usize,
                of: "its service's share of the host's memory budget",
            })
        } else if matches!(
            cause.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        ) {
            wasmtime::format_err!(
                "it holds {MAX_RESOURCES} host resources (handles), its cap per instance ({cause})"
            )
        } else if matches!(
            cause.downcast_ref::<FieldMapError>(),
            Some(FieldMapError::TotalSizeTooBig | FieldMapError::TooManyFields)
        ) {
            wasmtime::format_err!(
                "a wasi:http fields resource grew past its cap of {} KiB ({cause})",
                MAX_FIELDS_BYTES >> 10
            )
        } else if self.memory_refused {
            error.context(MemoryLimitReached {
                mib: self.memory_bytes >> 20,
                of: "its memory limit",
            })
        } else {
            error
        }
    }
}

impl Drop for InstanceLimits {
    fn drop(&mut self) {
        if let Some(account) = &self.account {
            account.release(self.charged);
        }
    }
}

/// Why an instance failed, when it was its memory limit (found by `downcast_ref`).
#[derive(Debug)]
pub struct MemoryLimitReached {
    pub mib: usize,
    /// Which limit: the instance's own, or its service's share of the host's budget.
    pub of: &'static str,
}

impl std::fmt::Display for MemoryLimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "it reached {} of {} MiB", self.of, self.mib)
    }
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.memory_refused |= !allowed;
        if !allowed {
            return Ok(false);
        }
        if let Some(account) = &self.account {
            let delta = desired.saturating_sub(current) as u64;
            if !account.charge(delta) {
                self.share_refused = true;
                return Ok(false);
            }
            self.charged += delta;
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl RequestState {
    /// The sandbox every instance starts in: each grant empty but the capabilities' own.
    pub fn new(request: RequestCtx, capabilities: CapabilityCtxs, limits: InstanceLimits) -> Self {
        let service = &request.service;
        let wasi = WasiCtx::builder()
            .stdout(GuestLog::new(service.clone(), "stdout"))
            .stderr(GuestLog::new(service.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELDS_BYTES);
        let CapabilityCtxs {
            sql,
            kv,
            events,
            sagas,
            calls,
        } = capabilities;
        Self {
            table,
            wasi,
            http,
            hooks: CallHooks { request, calls },
            sql,
            kv,
            events,
            sagas,
            limits,
        }
    }

    /// What every capability of this instance shares: service, deadline, call chain.
    pub fn request(&self) -> &RequestCtx {
        &self.hooks.request
    }

    /// The same, to arm the instance for its next request.
    pub fn request_mut(&mut self) -> &mut RequestCtx {
        &mut self.hooks.request
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
            request: &self.hooks.request,
            table: &mut self.table,
        }
    }
}

impl KvView for RequestState {
    fn kv(&mut self) -> KvCtxView<'_> {
        KvCtxView {
            ctx: &mut self.kv,
            request: &self.hooks.request,
            table: &mut self.table,
        }
    }
}

impl EventsView for RequestState {
    fn events(&mut self) -> EventsCtxView<'_> {
        EventsCtxView {
            ctx: &mut self.events,
            request: &self.hooks.request,
            table: &mut self.table,
        }
    }
}

impl SagasView for RequestState {
    fn sagas(&mut self) -> SagasCtxView<'_> {
        SagasCtxView {
            ctx: &mut self.sagas,
            request: &self.hooks.request,
            table: &mut self.table,
        }
    }
}

impl CallView for RequestState {
    fn calls(&mut self) -> CallCtxView<'_> {
        self.hooks.view()
    }
}
