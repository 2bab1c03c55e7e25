//! The host's own statements inside a service's database: the prefix of its tables, the
//! mark that keeps its cached statements apart from a guest's, and their recording.

/// Prefix of every table the host keeps inside a service's database.
pub const HOST_TABLE_PREFIX: &str = "_silo_";

/// Every host statement's text starts with this comment, and a guest statement that starts
/// with it is refused. SQLite authorizes a statement when it is prepared, and a connection
/// caches prepared statements by their exact text: without the mark, a guest sending the
/// host's text (it is public, in this source) would get the host's already-authorized
/// statement back from the cache, with the host's rights.
pub(super) const HOST_MARK: &str = "/*silo:host*/ ";

/// The cache key of a host statement: its text behind [`HOST_MARK`].
pub(super) fn host_text(sql: &str) -> String {
    record_host_statement(sql);
    let mut text = String::with_capacity(HOST_MARK.len() + sql.len());
    text.push_str(HOST_MARK);
    text.push_str(sql);
    text
}

/// `SILO_RECORD_HOST_SQL=FILE` appends each distinct host statement text the SQLite backend
/// runs to `FILE`, one JSON string a line: the isolation tests and `silo demo isolation`
/// send every one of them back as guest SQL and expect `access-denied`.
fn record_host_statement(sql: &str) {
    type Seen = std::sync::Mutex<(std::collections::HashSet<String>, std::fs::File)>;
    static RECORD: std::sync::OnceLock<Option<Seen>> = std::sync::OnceLock::new();
    let record = RECORD.get_or_init(|| {
        let path = std::env::var_os("SILO_RECORD_HOST_SQL")?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()?;
        Some(std::sync::Mutex::new((Default::default(), file)))
    });
    if let Some(seen) = record {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.0.insert(sql.to_string()) {
            use std::io::Write;
            let line = serde_json::to_string(sql).unwrap_or_default();
            let _ = writeln!(seen.1, "{line}");
        }
    }
}
