//! The start that serves each service as soon as it is ready ([`Host::start_each`]), instead
//! of all of them at the end: compiling in parallel, opening one by one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::start::Chosen;
use super::{Host, StartError};

impl Host {
    /// Puts every chosen service on the board (`/healthz`, the service port) as compiling.
    pub fn begin_startup(&self, chosen: &Chosen) {
        self.begin_board(chosen.specs());
    }

    /// Starts the chosen services one by one, each as soon as it is ready: they compile in
    /// parallel on threads of their own, and each, once compiled, is checked
    /// ([`Host::check_one`]), opened and routed ([`Host::open_one`]) while the others still
    /// compile. `before_first_write` runs once, just before the first service opens (the
    /// data folder is created there): a component refused before that point has written
    /// nothing. The host is ready once all are open. The first failure ends the start: the
    /// caller stops serving; what the services opened before it wrote stays, and nothing
    /// of the refused service is written.
    pub async fn start_each(
        self: &Arc<Self>,
        path: &Path,
        chosen: Chosen,
        mut before_first_write: impl FnMut() -> Result<(), StartError>,
    ) -> Result<(), StartError> {
        self.begin_startup(&chosen);
        let total = chosen.len();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let host = self.clone();
        let owned_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("silo-compile".into())
            .spawn(move || {
                host.compile_each(&owned_path, chosen, |_, _, planned| {
                    let _ = tx.send(planned);
                });
            })
            .map_err(|e| StartError::Other(e.into()))?;
        let mut written = false;
        for _ in 0..total {
            let plan = rx.recv().await.ok_or_else(|| {
                StartError::Other(wasmtime::format_err!("the compiler threads stopped"))
            })??;
            self.check_one(path, &plan).await?;
            if !written {
                before_first_write()?;
                written = true;
            }
            self.open_one(plan).await?;
        }
        if !written {
            before_first_write()?;
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }
}
