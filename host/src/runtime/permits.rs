//! A service's concurrency, shared fairly between the ones asking for it.
//!
//! Every instance of a service runs under one of its `concurrency` permits. Who asks is an
//! *origin*: outside clients (all of them together), each calling service by name, and the
//! host's own deliveries (events, saga commands and endings). No single origin may hold more
//! than its share — all permits but a quarter (rounded up) — so a caller flooding a callee,
//! or outside clients flooding a service that others call, always leave some instances for
//! everyone else. Below its share an origin takes free permits as they come: the sharing
//! costs nothing while there is room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Who asks for an instance.
pub const OUTSIDE: &str = "outside clients";
/// The host's event and saga deliveries.
pub const DELIVERIES: &str = "the host's deliveries";

/// The permits of one service.
pub struct Permits {
    semaphore: Arc<Semaphore>,
    held: Mutex<HashMap<Arc<str>, u32>>,
    freed: Notify,
    concurrency: u32,
    share: u32,
}

/// One running instance's permit; returned when dropped.
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    origin: Arc<str>,
    owner: Arc<Permits>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        // The instance's permit goes back first: an origin's count never falls below the
        // permits it really holds, so no origin can slip past its share while one drops.
        drop(self.permit.take());
        {
            let mut held = self.owner.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = held.get_mut(&self.origin) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&self.origin);
                }
            }
        }
        self.owner.freed.notify_waiters();
    }
}

/// Why no permit was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// Every permit is taken.
    Full { concurrency: u32 },
    /// The origin holds its whole share.
    Share {
        origin: String,
        held: u32,
        concurrency: u32,
    },
}

impl Busy {
    /// The refusal, for service `service`.
    pub fn message(&self, service: &str) -> String {
        match self {
            Busy::Full { concurrency } => {
                format!("service `{service}` is at its concurrency limit ({concurrency})")
            }
            Busy::Share {
                origin,
                held,
                concurrency,
            } => {
                let who = if origin == OUTSIDE || origin == DELIVERIES {
                    origin.clone()
                } else {
                    format!("calls from service `{origin}`")
                };
                format!(
                    "{who} hold their share of service `{service}`'s concurrency ({held} of {concurrency} instances; the rest is kept for others)"
                )
            }
        }
    }
}

impl Permits {
    pub fn new(concurrency: u32) -> Arc<Self> {
        let concurrency = concurrency.max(1);
        Arc::new(Self {
            semaphore: Arc::new(Semaphore::new(concurrency as usize)),
            held: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            concurrency,
            share: share_of(concurrency),
        })
    }

    /// The most permits one origin may hold.
    pub fn share(&self) -> u32 {
        self.share
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// A permit for `origin` now, or why not.
    pub fn try_acquire(self: &Arc<Self>, origin: &str) -> Result<Permit, Busy> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mine = held.get(origin).copied().unwrap_or(0);
        if mine >= self.share {
            return Err(Busy::Share {
                origin: origin.to_string(),
                held: mine,
                concurrency: self.concurrency,
            });
        }
        let Ok(permit) = self.semaphore.clone().try_acquire_owned() else {
            return Err(Busy::Full {
                concurrency: self.concurrency,
            });
        };
        let origin: Arc<str> = Arc::from(origin);
        *held.entry(origin.clone()).or_insert(0) += 1;
        Ok(Permit {
            permit: Some(permit),
            origin,
            owner: self.clone(),
        })
    }

    /// A permit for `origin`, waiting for one (the host's deliveries wait; requests don't).
    pub async fn acquire(self: &Arc<Self>, origin: &str) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Ok(p) = self.try_acquire(origin) {
                return p;
            }
            freed.await;
        }
    }
}

/// All permits but a quarter (rounded up), and at least one.
fn share_of(concurrency: u32) -> u32 {
    if concurrency <= 1 {
        return concurrency;
    }
    (concurrency - concurrency.div_ceil(4)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_keep_a_quarter_for_others() {
        assert_eq!(share_of(1), 1);
        assert_eq!(share_of(2), 1);
        assert_eq!(share_of(4), 3);
        assert_eq!(share_of(8), 6);
        assert_eq!(share_of(256), 192);
    }

    #[test]
    fn one_origin_cannot_take_every_permit() {
        let p = Permits::new(4);
        let mine: Vec<_> = (0..3).map(|_| p.try_acquire("intruder").unwrap()).collect();
        assert_eq!(
            p.try_acquire("intruder").err(),
            Some(Busy::Share {
                origin: "intruder".into(),
                held: 3,
                concurrency: 4
            })
        );
        assert_eq!(
            p.try_acquire("intruder")
                .err()
                .unwrap()
                .message("reference"),
            "calls from service `intruder` hold their share of service `reference`'s concurrency (3 of 4 instances; the rest is kept for others)"
        );
        let other = p.try_acquire(OUTSIDE).expect("the quarter kept for others");
        assert_eq!(
            p.try_acquire(OUTSIDE).err(),
            Some(Busy::Full { concurrency: 4 })
        );
        drop(mine);
        assert_eq!(p.available(), 3);
        drop(other);
        assert_eq!(p.available(), 4);
        assert!(p.held.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_waiting_delivery_gets_the_next_free_permit() {
        let p = Permits::new(1);
        let first = p.try_acquire(OUTSIDE).unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.acquire(DELIVERIES).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(first);
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
            .await
            .expect("woken when the permit was returned")
            .unwrap();
        assert_eq!(&*got.origin, DELIVERIES);
    }
}
