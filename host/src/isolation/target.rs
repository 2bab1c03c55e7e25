//! The runner's HTTP client for one host, and what it may read of that host beside HTTP
//! (its data folder, statement record, log file and process).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A client for one host.
#[derive(Clone)]
pub struct Target {
    pub http: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The host's data folder, where the intruder's store files are measured.
    pub data: Option<PathBuf>,
    /// The file the host records its SQL statement texts into (`SILO_RECORD_HOST_SQL`).
    pub host_sql: Option<PathBuf>,
    /// The file the host writes its log to (its stderr).
    pub host_log: Option<PathBuf>,
    /// The host's process id, for its resident memory.
    pub host_pid: Option<u32>,
}

impl Target {
    pub fn new(http: &str) -> Self {
        Self {
            http: http.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            data: None,
            host_sql: None,
            host_log: None,
            host_pid: None,
        }
    }

    /// This target, with the host's log file and process id known to the runner.
    pub fn with_host(mut self, log: &Path, pid: u32) -> Self {
        self.host_log = Some(log.to_path_buf());
        self.host_pid = Some(pid);
        self
    }

    /// A target whose data folder and statement record the runner can read.
    pub fn local(http: &str, data: &Path, host_sql: &Path) -> Self {
        Self {
            data: Some(data.to_path_buf()),
            host_sql: Some(host_sql.to_path_buf()),
            ..Self::new(http)
        }
    }

    /// `(status, body)`; a transport failure is status 0.
    pub async fn send(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.http));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .expect("a valid request");
        match tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                    .unwrap_or_default();
                (status, body)
            }
            Ok(Err(e)) => (0, e.to_string()),
            Err(_) => (0, "timed out".into()),
        }
    }
}
