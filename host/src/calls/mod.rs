//! The `calls` capability: one service calling another through the standard
//! `wasi:http/outgoing-handler`, dispatched by the host in-process, never over the network.
//!
//! A guest addresses a service by the internal authority `SERVICE.silo.internal`
//! (`http://users.silo.internal/users/7`). The host then checks, before anything runs:
//! the target is one the caller's manifest entry lists in `calls` (else `HTTP-request-denied`,
//! the same answer as for any outside host); the call chain has no cycle and is at most
//! [`MAX_CALL_DEPTH`] deep (else `loop-detected`). The callee gets a fresh instance, the
//! header `silo-caller: CALLER` (set by the host, overwriting anything the caller put there),
//! and a deadline no later than the caller's own and the caller's `call-timeout-ms`.
//!
//! Architecture invariant: outbound HTTP leaves the process nowhere; every outgoing request
//! either becomes an in-process dispatch to a declared service or is refused.

mod hooks;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Linker;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub use hooks::{CallHooks, OUTGOING_BODY_CHUNK};

use crate::request::RequestCtx;

/// The suffix of every internal service authority.
pub const INTERNAL_SUFFIX: &str = ".silo.internal";

/// The header that tells a callee which service called it.
pub const CALLER_HEADER: &str = "silo-caller";

/// The longest chain of calls a request may make (A → B → C … counts each hop).
pub const MAX_CALL_DEPTH: usize = 8;

/// Who makes a call, as the callee's dispatch needs it.
pub struct CallOrigin {
    /// The calling service.
    pub caller: Arc<str>,
    /// The services the request passed through, outermost first, the caller last.
    pub chain: Arc<[Arc<str>]>,
    /// The call's deadline: no later than the caller's own.
    pub deadline: Instant,
}

/// The callee's answer, as it streams back.
pub type CallResponse = Pin<Box<dyn Future<Output = http::Response<HyperOutgoingBody>> + Send>>;

/// What a call needs from the host: route a request to a service, with who is calling and
/// until when. Implemented by the runtime (its routing table) and handed in with each
/// [`CallCtx`], so this capability never imports the runtime.
pub trait Dispatch: Send + Sync + 'static {
    /// Serves `request` with a fresh instance of the service named `target`; `None` if no
    /// such service is loaded now (declared but undeployed: down, not forbidden).
    fn dispatch(
        &self,
        target: &str,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        origin: CallOrigin,
    ) -> Option<CallResponse>;
}

/// Per-request state of the capability: what this service may call, where calls go, and
/// how long one may take. Who calls, and the chain of services this request already passes
/// through, are the request's ([`RequestCtx`]).
pub struct CallCtx {
    /// The services this one declares in `calls`.
    pub allowed: Arc<[String]>,
    /// Where calls go.
    pub dispatch: Arc<dyn Dispatch>,
    pub call_timeout: Duration,
}

/// A borrowed view of the capability's state and the request's context.
pub struct CallCtxView<'a> {
    pub ctx: &'a mut CallCtx,
    pub request: &'a RequestCtx,
}

/// Implemented by the store data of an instance that may make calls.
pub trait CallView: Send {
    fn calls(&mut self) -> CallCtxView<'_>;
}

/// Adds `wasi:http/outgoing-handler` and `wasi:http/types` to a linker: the guest's door
/// to calls. Where its requests go is decided by the hooks ([`CallHooks`]).
pub fn add_to_linker<T: WasiHttpView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}

/// Why a call was refused before reaching any service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an internal authority, or a service the caller did not declare.
    Denied(String),
    /// The target is already on the chain, or the chain is too deep.
    Loop(String),
}

impl CallCtxView<'_> {
    /// Decides whether `authority` may be called from here; returns the target's name.
    pub fn check(&self, authority: &str) -> Result<String, Refusal> {
        let host = authority
            .split(':')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(target) = host.strip_suffix(INTERNAL_SUFFIX) else {
            return Err(Refusal::Denied(format!(
                "`{}` may not reach `{authority}`: outbound HTTP is closed",
                self.request.service
            )));
        };
        if !self.ctx.allowed.iter().any(|a| a == target) {
            return Err(Refusal::Denied(format!(
                "`{}` does not declare calls to `{target}`",
                self.request.service
            )));
        }
        if self.request.chain.iter().any(|s| &**s == target) {
            let path: Vec<&str> = self.request.chain.iter().map(|s| &**s).collect();
            return Err(Refusal::Loop(format!(
                "call cycle: {} -> {target}",
                path.join(" -> ")
            )));
        }
        if self.request.chain.len() >= MAX_CALL_DEPTH {
            return Err(Refusal::Loop(format!(
                "call chain deeper than {MAX_CALL_DEPTH}"
            )));
        }
        Ok(target.to_string())
    }

    /// The deadline a call started now gets.
    pub fn call_deadline(&self) -> Instant {
        self.request
            .deadline
            .min(Instant::now() + self.ctx.call_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dispatches nowhere: these tests only check what is refused before dispatch.
    struct Nowhere;

    impl Dispatch for Nowhere {
        fn dispatch(
            &self,
            _: &str,
            _: http::Request<wasmtime_wasi_http::WasiBody>,
            _: CallOrigin,
        ) -> Option<CallResponse> {
            None
        }
    }

    fn ctx(chain: &[&str], allowed: &[&str]) -> (CallCtx, RequestCtx) {
        let calls = CallCtx {
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            dispatch: Arc::new(Nowhere),
            call_timeout: Duration::from_secs(1),
        };
        let request = RequestCtx {
            service: chain.last().copied().unwrap_or("a").into(),
            deadline: Instant::now() + Duration::from_secs(5),
            chain: chain.iter().map(|s| Arc::<str>::from(*s)).collect(),
            trace: None,
        };
        (calls, request)
    }

    fn view<'a>((calls, request): &'a mut (CallCtx, RequestCtx)) -> CallCtxView<'a> {
        CallCtxView {
            ctx: calls,
            request,
        }
    }

    #[test]
    fn only_declared_internal_services_may_be_called() {
        let mut c = ctx(&["orders"], &["users"]);
        let c = view(&mut c);
        assert_eq!(c.check("users.silo.internal"), Ok("users".into()));
        assert_eq!(c.check("USERS.silo.internal:80"), Ok("users".into()));
        assert!(matches!(
            c.check("products.silo.internal"),
            Err(Refusal::Denied(_))
        ));
        assert!(matches!(c.check("example.com"), Err(Refusal::Denied(_))));
        assert!(matches!(c.check("127.0.0.1:8080"), Err(Refusal::Denied(_))));
        assert!(matches!(
            c.check("users.silo.internal.evil.com"),
            Err(Refusal::Denied(_))
        ));
        assert!(matches!(c.check(""), Err(Refusal::Denied(_))));
    }

    #[test]
    fn cycles_and_depth_are_refused() {
        let mut c = ctx(&["a", "b"], &["a", "c"]);
        let c = view(&mut c);
        assert!(
            matches!(c.check("a.silo.internal"), Err(Refusal::Loop(m)) if m.contains("a -> b -> a"))
        );
        assert!(c.check("c.silo.internal").is_ok());
        let deep: Vec<String> = (0..MAX_CALL_DEPTH).map(|i| format!("s{i}")).collect();
        let deep_refs: Vec<&str> = deep.iter().map(String::as_str).collect();
        let mut c = ctx(&deep_refs, &["z"]);
        let c = view(&mut c);
        assert!(matches!(c.check("z.silo.internal"), Err(Refusal::Loop(_))));
    }

    #[test]
    fn a_call_never_outlives_its_caller() {
        let mut c = ctx(&["a"], &["b"]);
        c.1.deadline = Instant::now() + Duration::from_millis(100);
        assert!(view(&mut c).call_deadline() <= c.1.deadline);
        c.1.deadline = Instant::now() + Duration::from_secs(60);
        assert!(view(&mut c).call_deadline() <= Instant::now() + Duration::from_secs(1));
    }
}
