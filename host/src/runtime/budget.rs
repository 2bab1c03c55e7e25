//! The host's memory budget for guest instances, shared between services.
//!
//! A service's `memory-mb` bounds one instance; `concurrency` instances of it could together
//! ask for far more than the machine has (256 × 64 MiB). The host therefore has a budget for
//! all guest linear memory (`[host] memory-mb`, by default half the machine's memory), split
//! into max-min fair shares of what each declares (`concurrency × memory-mb`): a service
//! declaring less than an equal part gets all of it, the rest is split equally. Every `memory.grow` of an instance — the first one at instantiation
//! included — is charged to its service and given back when the instance ends; a growth past
//! the service's share is refused, and a request arriving while its service holds its whole
//! share is refused at once (503 `busy`) instead of the kernel killing the host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::manifest::fair_shares;

/// The budget of one host.
pub struct MemoryBudget {
    total: u64,
    services: Mutex<HashMap<String, (u64, Arc<ServiceMemory>)>>,
}

/// One service's share of the budget and what its instances use now.
#[derive(Debug)]
pub struct ServiceMemory {
    pub name: String,
    share: AtomicU64,
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Self {
        Self {
            total,
            services: Mutex::new(HashMap::new()),
        }
    }

    /// Half the machine's memory (from `/proc/meminfo`), or 4 GiB if it cannot be read.
    pub fn default_total() -> u64 {
        let kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            });
        kib.map(|k| (k << 10) / 2).unwrap_or(4 << 30)
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Registers (or re-weighs) service `name` with what it declares, `demand` bytes (its
    /// `concurrency × memory-mb`), and returns its account; every share is recomputed.
    pub fn register(&self, name: &str, demand: u64) -> Arc<ServiceMemory> {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let account = services
            .get(name)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| {
                Arc::new(ServiceMemory {
                    name: name.to_string(),
                    share: AtomicU64::new(0),
                    used: AtomicU64::new(0),
                })
            });
        services.insert(name.to_string(), (demand, account.clone()));
        self.reshare(&services);
        account
    }

    /// Forgets service `name` (undeployed); its share goes to the others.
    pub fn remove(&self, name: &str) {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services.remove(name);
        self.reshare(&services);
    }

    /// Max-min fair shares: a service that declares less than an equal part gets all it
    /// declares, and what it leaves is split equally between the others, the same way.
    fn reshare(&self, services: &HashMap<String, (u64, Arc<ServiceMemory>)>) {
        let accounts: Vec<&(u64, Arc<ServiceMemory>)> = services.values().collect();
        let demands: Vec<u64> = accounts.iter().map(|(d, _)| *d).collect();
        for ((_, account), share) in accounts.iter().zip(fair_shares(self.total, &demands)) {
            account.share.store(share, Ordering::Relaxed);
        }
    }
}

impl ServiceMemory {
    /// Bytes its instances use now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Its share, in bytes.
    pub fn share(&self) -> u64 {
        self.share.load(Ordering::Relaxed)
    }

    /// True while its instances hold its whole share.
    pub fn exhausted(&self) -> bool {
        self.used() >= self.share()
    }

    /// Charges `bytes` if they fit in the share.
    pub fn charge(&self, bytes: u64) -> bool {
        let share = self.share();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + bytes <= share).then_some(used + bytes)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// The refusal of a request while the share is held.
    pub fn refusal(&self) -> String {
        format!(
            "service `{}` holds its whole share of the host's memory budget ({} MiB in use of {} MiB)",
            self.name,
            self.used() >> 20,
            self.share() >> 20
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_max_min_fair_and_bound_use() {
        let b = MemoryBudget::new(1000);
        let a = b.register("a", 5000);
        let c = b.register("c", 200);
        let d = b.register("d", 9000);
        assert_eq!((a.share(), c.share(), d.share()), (400, 200, 400));
        assert!(c.charge(150));
        assert!(!c.charge(100), "past the share");
        assert!(!c.exhausted());
        assert!(c.charge(50));
        assert!(c.exhausted());
        c.release(200);
        assert_eq!(c.used(), 0);
        b.remove("a");
        assert_eq!((c.share(), d.share()), (200, 800));
    }
}
