//! Attacks on fair sharing: work that costs the host more than the intruder's limits say.
//!
//! - `costly-function`: SQL statements whose cost is in one costly VDBE op (huge values,
//!   quadratic searches, sorts), each timed on the monotonic clock: each must be refused or
//!   interrupted within the intruder's `statement-ms` (50) plus [`SLACK_MS`]; the detail
//!   says the worst overrun.
//! - `log-flood`: 32 MiB to stdout and stderr as fast as it can; the runner judges how much
//!   of it reached the host's log.
//! - `host-fields`: `wasi:http` fields with 63 KiB values, created in a loop and kept; the
//!   runner judges how much the host's memory grew. The host must trap the instance at a
//!   cap (a 503) before the loop ends.

use std::io::Write as _;

use serde_json::json;
use silo_sdk::wasip2::clocks::monotonic_clock;
use silo_sdk::wasip2::http::types::Fields;
use silo_sdk::{ApiError, Request, Response, SqlError, describe};

use super::{Findings, own};

/// The intruder's `statement-ms` in `silo::isolation::manifest`.
const BUDGET_MS: f64 = 50.0;
/// How far past its budget a statement may stop and still count as interrupted in time:
/// generous, for a loaded 2-core machine where the host's thread waits for a core (quiet,
/// the worst is a few ms; before the fix it was 120 ms for 60 calls in one expression and
/// 17 s for one `instr`). The worst overrun is reported either way.
pub const SLACK_MS: f64 = 100.0;

/// Statements whose cost is in single costly ops, by what they try.
const COSTLY: &[(&str, &str)] = &[
    (
        "randomblob(16000000)",
        "SELECT length(randomblob(16000000)) AS n",
    ),
    (
        "a zeroblob of 1 GB made real",
        "SELECT length(zeroblob(1000000000) || x'01') AS n",
    ),
    (
        "printf('%.*c') of 1 GB",
        "SELECT length(printf('%.*c', 1000000000, 'x')) AS n",
    ),
    (
        "replace() growing a string",
        "SELECT length(replace(hex(zeroblob(500000)), '0', hex(zeroblob(4000)))) AS n",
    ),
    (
        "group_concat over an endless CTE",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
         SELECT length(group_concat(hex(randomblob(1000)))) AS n FROM c",
    ),
    (
        "an endless CTE of randomblob(900000)",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
         SELECT max(length(randomblob(900000))) AS n FROM c",
    ),
    (
        "a LIKE pattern of 10 000 bytes",
        "SELECT hex(zeroblob(500000)) LIKE ('%' || hex(zeroblob(5000)) || '1') AS n",
    ),
    (
        "LIKE: 1 MB of text against the longest pattern allowed",
        "SELECT (hex(zeroblob(499999)) || '1') LIKE ('%' || substr(hex(zeroblob(600)), 1, 997) || '1_') AS n",
    ),
    (
        "GLOB: 1 MB of text against the longest pattern allowed",
        "SELECT (hex(zeroblob(499999)) || '1') GLOB ('*' || substr(hex(zeroblob(600)), 1, 997) || '1?') AS n",
    ),
    (
        "instr() of 0.5 MB in 1 MB that almost matches everywhere",
        "SELECT instr(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1') AS n",
    ),
    (
        "replace() of 0.5 MB in 1 MB that almost matches everywhere",
        "SELECT length(replace(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1', 'x')) AS n",
    ),
    (
        "sort of 300 000 rows",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000) \
         SELECT x AS n FROM c ORDER BY hex(randomblob(8)) LIMIT 1 OFFSET 299999",
    ),
    (
        "sort of 60 rows of 0.5 MB that differ at their end",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 60) \
         SELECT length(k) AS n FROM (SELECT zeroblob(500000) || randomblob(8) AS k FROM c) \
         ORDER BY k LIMIT 1 OFFSET 59",
    ),
];

fn now_ms() -> f64 {
    monotonic_clock::now() as f64 / 1e6
}

/// Each costly statement must end in `limit-exceeded` within the budget and the slack.
pub fn costly_function(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    let mut worst: (f64, &str) = (f64::MIN, "");
    let budget = BUDGET_MS + SLACK_MS;
    // The sum of 60 calls that each build 0.9 MB: cheap to check, costly between checks.
    let many = format!(
        "SELECT {} AS n",
        ["length(randomblob(900000))"; 60].join(" + ")
    );
    let statements = COSTLY
        .iter()
        .map(|(what, sql)| (*what, sql.to_string()))
        .chain([("60 randomblob(900000) in one expression", many)]);
    for (what, sql) in statements {
        let start = now_ms();
        let result = db.query(&sql, &[]);
        let ms = now_ms() - start;
        let over = ms - BUDGET_MS;
        if over > worst.0 {
            worst = (over, what);
        }
        match result {
            Err(err @ SqlError::LimitExceeded(_)) if ms <= budget => {
                f.refused(what, format!("{} after {ms:.1} ms", describe(&err)))
            }
            Err(err @ SqlError::LimitExceeded(_)) => f.got_through(
                what,
                format!(
                    "stopped after {ms:.1} ms, past {budget} ms: {}",
                    describe(&err)
                ),
            ),
            Err(err) => f.got_through(
                what,
                format!("not limit-exceeded but {} after {ms:.1} ms", describe(&err)),
            ),
            Ok(_) if ms <= budget => f.refused(what, format!("done within its budget, {ms:.1} ms")),
            Ok(rows) => f.got_through(
                what,
                format!("ran to its end in {ms:.1} ms ({} rows)", rows.len()),
            ),
        }
    }
    f.note(format!(
        "worst: {:.1} ms past the {BUDGET_MS} ms budget ({})",
        worst.0, worst.1
    ));
    Ok(())
}

/// Bytes `log-flood` writes.
const FLOOD_BYTES: usize = 32 << 20;

/// `GET /intruder/flood/log`: 16 MiB of 128-byte lines to stderr and 16 MiB of one line
/// to stdout, as fast as the streams take them. 200 `{"written": bytes, "ms": …}`: what
/// reached the host's log is for the runner to judge.
pub fn log_flood(_req: Request) -> Result<Response, ApiError> {
    let start = now_ms();
    let mut line = [b'#'; 128];
    line[127] = b'\n';
    let chunk: Vec<u8> = line.iter().copied().cycle().take(64 << 10).collect();
    let mut written = 0;
    let mut err = std::io::stderr();
    while written < FLOOD_BYTES / 2 {
        err.write_all(&chunk)
            .map_err(|e| ApiError::internal(format!("stderr: {e}")))?;
        written += chunk.len();
    }
    let long = vec![b'x'; 64 << 10];
    let mut out = std::io::stdout();
    while written < FLOOD_BYTES {
        out.write_all(&long)
            .map_err(|e| ApiError::internal(format!("stdout: {e}")))?;
        written += long.len();
    }
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    Ok(Response::ok(
        &json!({ "written": written, "ms": now_ms() - start }),
    ))
}

/// Fields `host-fields` tries to create: 16 384 × 63 KiB, 1 GiB of host memory if nothing
/// stops it.
const FIELDS: usize = 16 << 10;

/// `GET /intruder/flood/fields`: `wasi:http` fields, each with one 64 KiB value, all kept.
/// The host must stop the instance (503) at a cap; if the loop ends, the answer is a 200
/// `{"created": n}` and the runner's measure of the host's memory decides.
pub fn host_fields(_req: Request) -> Result<Response, ApiError> {
    let value = vec![b'v'; 63 << 10];
    let mut kept = Vec::new();
    let mut refused = None;
    for i in 0..FIELDS {
        let fields = Fields::new();
        if let Err(e) = fields.append("x-fill", &value) {
            refused = Some(format!("field {i}: {e:?}"));
            break;
        }
        kept.push(fields);
    }
    Ok(Response::ok(
        &json!({ "created": kept.len(), "refused": refused }),
    ))
}
