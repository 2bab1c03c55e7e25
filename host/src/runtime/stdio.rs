//! A guest's stdout and stderr, as lines in the host's log tagged with the service.
//!
//! Nothing a component prints reaches the host's own stdout: each complete line becomes one
//! `tracing` event with `service` and `stream` fields. Lines are cut at 4 KiB so a component
//! cannot make the host buffer without bound.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

const MAX_LINE: usize = 4096;

/// The stdout or stderr a service's instances get.
#[derive(Clone)]
pub struct GuestLog {
    service: Arc<str>,
    stream: &'static str,
}

impl GuestLog {
    pub fn new(service: Arc<str>, stream: &'static str) -> Self {
        Self { service, stream }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestLogStream {
            log: self.clone(),
            line: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this; silo serves WASIp2 components.
        Box::new(tokio::io::sink())
    }
}

struct GuestLogStream {
    log: GuestLog,
    line: Vec<u8>,
}

impl GuestLogStream {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        tracing::info!(target: "silo::guest", service = %self.log.service, stream = self.log.stream, "{text}");
        self.line.clear();
    }
}

impl Drop for GuestLogStream {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[async_trait::async_trait]
impl Pollable for GuestLogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestLogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        for &b in bytes.iter() {
            self.line.push(b);
            if b == b'\n' || self.line.len() >= MAX_LINE {
                self.emit();
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}
