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

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::runtime::dispatch::RouteTable;

/// The suffix of every internal service authority.
pub const INTERNAL_SUFFIX: &str = ".silo.internal";

/// The header that tells a callee which service called it.
pub const CALLER_HEADER: &str = "silo-caller";

/// The longest chain of calls a request may make (A → B → C … counts each hop).
pub const MAX_CALL_DEPTH: usize = 8;

/// Where calls find their targets: the host's live routing table.
pub type ServiceDirectory = Arc<ArcSwap<RouteTable>>;

/// Per-request state of the capability: who is calling, what it may call, and the chain of
/// services this request already passes through.
pub struct CallCtx {
    pub caller: Arc<str>,
    pub allowed: Arc<[String]>,
    pub directory: ServiceDirectory,
    /// The services this request passes through, outermost first, this one last.
    pub chain: Arc<[Arc<str>]>,
    pub deadline: Instant,
    pub call_timeout: Duration,
}

/// Why a call was refused before reaching any service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an internal authority, or a service the caller did not declare.
    Denied(String),
    /// The target is already on the chain, or the chain is too deep.
    Loop(String),
}

impl CallCtx {
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
                self.caller
            )));
        };
        if !self.allowed.iter().any(|a| a == target) {
            return Err(Refusal::Denied(format!(
                "`{}` does not declare calls to `{target}`",
                self.caller
            )));
        }
        if self.chain.iter().any(|s| &**s == target) {
            let path: Vec<&str> = self.chain.iter().map(|s| &**s).collect();
            return Err(Refusal::Loop(format!(
                "call cycle: {} -> {target}",
                path.join(" -> ")
            )));
        }
        if self.chain.len() >= MAX_CALL_DEPTH {
            return Err(Refusal::Loop(format!(
                "call chain deeper than {MAX_CALL_DEPTH}"
            )));
        }
        Ok(target.to_string())
    }

    /// The deadline a call started now gets.
    pub fn call_deadline(&self) -> Instant {
        self.deadline.min(Instant::now() + self.call_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(chain: &[&str], allowed: &[&str]) -> CallCtx {
        CallCtx {
            caller: chain.last().copied().unwrap_or("a").into(),
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            directory: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            chain: chain.iter().map(|s| Arc::<str>::from(*s)).collect(),
            deadline: Instant::now() + Duration::from_secs(5),
            call_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn only_declared_internal_services_may_be_called() {
        let c = ctx(&["orders"], &["users"]);
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
        let c = ctx(&["a", "b"], &["a", "c"]);
        assert!(
            matches!(c.check("a.silo.internal"), Err(Refusal::Loop(m)) if m.contains("a -> b -> a"))
        );
        assert!(c.check("c.silo.internal").is_ok());
        let deep: Vec<String> = (0..MAX_CALL_DEPTH).map(|i| format!("s{i}")).collect();
        let deep_refs: Vec<&str> = deep.iter().map(String::as_str).collect();
        let c = ctx(&deep_refs, &["z"]);
        assert!(matches!(c.check("z.silo.internal"), Err(Refusal::Loop(_))));
    }

    #[test]
    fn a_call_never_outlives_its_caller() {
        let mut c = ctx(&["a"], &["b"]);
        c.deadline = Instant::now() + Duration::from_millis(100);
        assert!(c.call_deadline() <= c.deadline);
        c.deadline = Instant::now() + Duration::from_secs(60);
        assert!(c.call_deadline() <= Instant::now() + Duration::from_secs(1));
    }
}
