//! Per-service executors: the threads a service's guest code runs on.
//!
//! Every service gets a small multi-threaded tokio runtime of its own, created the first
//! time a service of that name is loaded and kept for the life of the process (a redeploy
//! or a new version runs on the same threads). Requests, event deliveries, saga commands and
//! saga endings all run their instance there, so a service whose guest computes or whose
//! embedded SQL statements block a thread holds up only its own threads: the accept loops,
//! the event router, the saga engine and every other service keep theirs, and the kernel
//! shares the cores between services' threads.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::runtime::Handle;

/// The executors of one host, by service name.
pub struct Executors {
    threads: usize,
    by_service: Mutex<HashMap<String, Handle>>,
}

/// Why a service's work could not be run on its executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("the task running service `{0}`'s code failed: {1}")]
    Failed(String, String),
}

impl Executors {
    /// Executors of `threads` threads each (at least one).
    pub fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            by_service: Mutex::new(HashMap::new()),
        }
    }

    /// The executor of service `name`, created on first use.
    pub fn for_service(&self, name: &str) -> std::io::Result<Handle> {
        let mut map = self.by_service.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = map.get(name) {
            return Ok(h.clone());
        }
        let short: String = name.chars().take(10).collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .max_blocking_threads(self.threads)
            .thread_name(format!("silo-svc-{short}"))
            // A guest yields every epoch tick; the sockets its requests wait on must get
            // their turn at each yield.
            .event_interval(2)
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        // The runtime lives as long as the process: dropping one inside an async context
        // panics, and a service that comes back under the same name reuses its threads.
        std::mem::forget(rt);
        map.insert(name.to_string(), handle.clone());
        Ok(handle)
    }
}

/// Runs `work` on `executor` and waits for it from wherever the caller runs. The work is
/// spawned, so it goes on even if the waiter is dropped (a request whose client went away
/// still finishes its transaction).
pub async fn run_on<F>(
    executor: &Handle,
    service: &str,
    work: F,
) -> Result<F::Output, ExecutorError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    executor
        .spawn(work)
        .await
        .map_err(|e| ExecutorError::Failed(service.to_string(), e.to_string()))
}
