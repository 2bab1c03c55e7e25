//! The judges: how each kind of attack ([`Judge`]) is carried out and decided, and the
//! host measurements they use (store size on disk, resident memory, recorded statements).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::victim::p99;
use super::{Attack, Judge, LOG_SLACK, Target};

/// Reads a report answer: `(blocked, observed)`.
fn read_report(status: u16, text: &str) -> (bool, String) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let detail = v["detail"].as_str().unwrap_or(text).to_string();
    match (status, v["outcome"].as_str()) {
        (200, Some("blocked")) => (true, format!("blocked: {detail}")),
        (200, Some(other)) => (false, format!("{other}: {detail}")),
        // The host stopped the instance before it could report: its probes did not all
        // run, so nothing shows they were refused. An attack that must end in a stop is
        // judged by `HostStops`, with the stop it expects.
        (503, _) => (
            false,
            format!(
                "inconclusive: the host stopped the instance before it reported: {}",
                short(text)
            ),
        ),
        (s, _) => (false, format!("unexpected answer {s}: {}", short(text))),
    }
}

/// A report attack's answer, asked again (three times in all) while the host stops the
/// instance before it reports (its deadline, on a busy machine): an inconclusive run is run
/// again, never counted as blocked.
async fn ask_report(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut answer = target.send(method, path, body).await;
    for _ in 1..3 {
        if answer.0 != 503 {
            break;
        }
        answer = target.send(method, path, body).await;
    }
    answer
}

/// The texts of `SILO_RECORD_HOST_SQL`, one JSON string a line.
pub fn recorded_host_statements(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<String>(l).map_err(|e| format!("{l}: {e}")))
        .collect()
}

/// The resident memory of process `pid` (`VmRSS` of `/proc/PID/status`), in bytes.
pub fn resident_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib << 10)
        .ok_or_else(|| format!("{path} has no VmRSS line"))
}

/// Bytes of a SQLite store on disk: the database and its write-ahead log.
pub fn store_bytes(data: &Path, service: &str, store: &str) -> u64 {
    let db = data
        .join("stores")
        .join(service)
        .join(format!("{store}.db"));
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    len(&db) + len(Path::new(&wal))
}

pub(super) async fn judge(target: &Target, attack: &Attack) -> (bool, String) {
    match attack.judge {
        Judge::Report => {
            let path = format!("/intruder/attack/{}", attack.name);
            let (status, text) = ask_report(target, "GET", &path, None).await;
            read_report(status, &text)
        }
        Judge::ReportWithinCap { store, cap_mb } => {
            let Some(data) = target.data.clone() else {
                return (false, "the runner cannot see the host's data folder".into());
            };
            let (stop, worst) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicU64::new(0)),
            );
            let poller = {
                let (stop, worst) = (stop.clone(), worst.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        worst.fetch_max(store_bytes(&data, "intruder", store), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            };
            let path = format!("/intruder/attack/{}", attack.name);
            let (status, text) = ask_report(target, "GET", &path, None).await;
            stop.store(true, Ordering::Relaxed);
            let _ = poller.await;
            let (blocked, observed) = read_report(status, &text);
            let worst = worst.load(Ordering::Relaxed);
            let cap = cap_mb << 20;
            (
                blocked && worst <= cap,
                format!(
                    "store on disk at most {:.2} MiB of {cap_mb} MiB; {observed}",
                    worst as f64 / f64::from(1 << 20)
                ),
            )
        }
        Judge::HostStatements => {
            let Some(path) = &target.host_sql else {
                return (false, "the runner cannot read the host's statements".into());
            };
            let texts = match recorded_host_statements(path) {
                Ok(t) => t,
                Err(e) => return (false, e),
            };
            let body = serde_json::to_string(&texts).unwrap_or_default();
            let (status, text) = ask_report(
                target,
                "POST",
                "/intruder/attack/host-statements",
                Some(&body),
            )
            .await;
            read_report(status, &text)
        }
        Judge::HostLog(path) => judge_host_log(target, path).await,
        Judge::HostMemory {
            path,
            max_mib,
            code,
            says,
        } => judge_host_memory(target, path, max_mib, code, says).await,
        Judge::HostStops { path, code, says } => {
            let t = Instant::now();
            let (status, text) = target.send("GET", path, None).await;
            let error = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
            let got = error["error"]["code"].as_str().unwrap_or_default();
            let message = error["error"]["message"].as_str().unwrap_or_default();
            (
                status == 503 && got == code && message.contains(says),
                format!(
                    "{status} {got} after {} ms: {}",
                    t.elapsed().as_millis(),
                    short(message)
                ),
            )
        }
        Judge::Load {
            path,
            clients,
            millis,
        } => {
            let until = Instant::now() + Duration::from_millis(millis);
            let answers = hammer(target, path, clients, until).await;
            let wrong = answers
                .iter()
                .filter(|(s, _)| *s != 200 && *s != 503)
                .count();
            (
                wrong == 0 && !answers.is_empty(),
                format!("{} requests: {:?}", answers.len(), tally(&answers)),
            )
        }
        Judge::CalleeStaysOpen {
            path,
            callee,
            millis,
        } => {
            let until = Instant::now() + Duration::from_millis(millis);
            let attack = {
                let target = target.clone();
                tokio::spawn(async move { hammer(&target, path, 2, until).await })
            };
            let outside = hammer(target, callee, 2, until).await;
            let attack = attack.await.unwrap_or_default();
            let busy = outside.iter().filter(|(s, _)| *s == 503).count();
            let seen: Vec<String> = attack.iter().map(|(_, t)| short(t)).take(1).collect();
            // The quarter kept for others is a guarantee of 4 instances of 16: a client that
            // sends its next request while its last instance is still finishing can, for a
            // moment, want a fifth. Starved looks different: most requests refused.
            (
                busy * 100 <= outside.len() && !outside.is_empty(),
                format!(
                    "outside requests to the callee: {:?}; the intruder's: {:?} (e.g. {seen:?})",
                    tally(&outside),
                    tally(&attack)
                ),
            )
        }
        Judge::SlowBodies {
            path,
            clients,
            millis,
        } => {
            let until = Instant::now() + Duration::from_millis(millis);
            let holder = {
                let http = target.http.clone();
                tokio::spawn(async move { slow_bodies(&http, path, clients, until).await })
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            let answers = hammer(target, path, 2, until).await;
            let opened = holder.await.unwrap_or(0);
            let busy = answers.iter().filter(|(s, _)| *s == 503).count();
            (
                busy == 0 && opened == clients && !answers.is_empty(),
                format!(
                    "{opened} unfinished bodies held; other clients' requests: {:?}",
                    tally(&answers)
                ),
            )
        }
        Judge::EventLag { slow } => match event_lag(target, slow).await {
            Ok(r) => r,
            Err(e) => (false, e),
        },
        Judge::Flood(path, n) => {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let target = target.clone();
                tasks.push(tokio::spawn(
                    async move { target.send("GET", path, None).await },
                ));
            }
            let (mut busy, mut other503, mut wrong) = (0, 0, 0);
            for t in tasks {
                match t.await {
                    Ok((503, text)) if text.contains("\"busy\"") => busy += 1,
                    Ok((503, _)) => other503 += 1,
                    _ => wrong += 1,
                }
            }
            (
                wrong == 0 && busy > 0,
                format!("{busy} refused busy, {other503} stopped at the deadline, {wrong} other"),
            )
        }
    }
}

/// Answers by status (and error code), as `{"200": n, "503 busy": n}`.
fn tally(answers: &[(u16, String)]) -> std::collections::BTreeMap<String, usize> {
    let mut t = std::collections::BTreeMap::new();
    for (status, text) in answers {
        let code = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        let key = match code {
            Some(c) => format!("{status} {c}"),
            None => status.to_string(),
        };
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

/// `clients` loops of `GET path` until `until`; every answer.
async fn hammer(target: &Target, path: &str, clients: usize, until: Instant) -> Vec<(u16, String)> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (target, path) = (target.clone(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while Instant::now() < until {
                let answer = target.send("GET", &path, None).await;
                if answer.0 == 503 && answer.1.contains("\"busy\"") {
                    // Refused at once: ask again soon, not in a tight loop.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                got.push(answer);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

/// How much a subscriber's lag may grow during an attack: five times its quiet p99, plus
/// 300 ms for the scheduling of two busy cores.
pub fn lag_bound(quiet_p99: Duration) -> Duration {
    quiet_p99 * 5 + Duration::from_millis(300)
}

/// Creates a user named `name` and, unless `wait` is false, waits until the `probe`
/// service has handled its `UserCreated`; the time from the user's creation to then.
async fn user_lag(target: &Target, name: &str, wait: bool) -> Result<Duration, String> {
    let email = format!("{name}-{}@example.com", rand::random::<u32>());
    let body = format!(r#"{{"email":"{email}","name":"{name}"}}"#);
    let (status, text) = target.send("POST", "/users", Some(&body)).await;
    if status != 201 {
        return Err(format!("creating user {name}: {status} {}", short(&text)));
    }
    let created = Instant::now();
    if !wait {
        return Ok(Duration::ZERO);
    }
    let id = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .ok_or("no id")?;
    while created.elapsed() < Duration::from_secs(30) {
        let (_, text) = target.send("GET", "/probe/received", None).await;
        if text.contains(&id) {
            return Ok(created.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(format!("user {name}'s event never reached the probe"))
}

async fn event_lag(target: &Target, slow: usize) -> Result<(bool, String), String> {
    let mut quiet = Vec::new();
    for i in 0..8 {
        quiet.push(user_lag(target, &format!("quiet-{i}"), true).await?);
    }
    let quiet = p99(quiet);
    for i in 0..slow {
        user_lag(target, &format!("slow-{i}"), false).await?;
    }
    let mut loud = Vec::new();
    for i in 0..10 {
        loud.push(user_lag(target, &format!("loud-{i}"), true).await?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loud = p99(loud);
    let bound = lag_bound(quiet);
    Ok((
        loud <= bound,
        format!(
            "probe's event lag p99 {:.1} ms quiet, {:.1} ms under attack (bound {:.1} ms)",
            quiet.as_secs_f64() * 1e3,
            loud.as_secs_f64() * 1e3,
            bound.as_secs_f64() * 1e3
        ),
    ))
}

/// Opens `clients` connections that send headers and part of a body to `POST path` and
/// stop; holds them until `until`.
async fn slow_bodies(http: &str, path: &str, clients: usize, until: Instant) -> usize {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..clients {
        let Ok(mut s) = tokio::net::TcpStream::connect(http).await else {
            continue;
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {http}\r\ncontent-type: application/json\r\ncontent-length: 1024\r\n\r\n{{\"partial\":"
        );
        if s.write_all(head.as_bytes()).await.is_ok() {
            held.push(s);
        }
    }
    let opened = held.len();
    tokio::time::sleep_until(until.into()).await;
    drop(held);
    opened
}

/// [`Judge::HostLog`].
async fn judge_host_log(target: &Target, path: &str) -> (bool, String) {
    use crate::runtime::stdio::{LOG_BURST_BYTES, LOG_BYTES_PER_SEC, NOTICE_EVERY};
    let Some(log) = target.host_log.clone() else {
        return (false, "the runner cannot read the host's log".into());
    };
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = len(&log);
    let start = Instant::now();
    let (status, text) = target.send("GET", path, None).await;
    // The guest's last line and the notice of what was dropped land after the answer.
    tokio::time::sleep(NOTICE_EVERY + Duration::from_millis(500)).await;
    let secs = start.elapsed().as_secs_f64();
    let grew = len(&log).saturating_sub(before);
    let bound = LOG_BURST_BYTES + (LOG_BYTES_PER_SEC as f64 * secs) as u64 + LOG_SLACK;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let written = v["written"].as_u64().unwrap_or(0);
    if status != 200 || written < 32 << 20 {
        return (
            false,
            format!(
                "the flood did not run: {status} {} (host log +{} KiB)",
                short(&text),
                grew >> 10
            ),
        );
    }
    (
        grew <= bound,
        format!(
            "{} MiB written in {:.0} ms; host log +{} KiB of at most {} KiB",
            written >> 20,
            v["ms"].as_f64().unwrap_or(0.0),
            grew >> 10,
            bound >> 10
        ),
    )
}

/// [`Judge::HostMemory`].
async fn judge_host_memory(
    target: &Target,
    path: &str,
    max_mib: u64,
    code: &str,
    says: &str,
) -> (bool, String) {
    let Some(pid) = target.host_pid else {
        return (false, "the runner does not know the host's process".into());
    };
    let before = match resident_bytes(pid) {
        Ok(b) => b,
        Err(e) => return (false, e),
    };
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(before)),
    );
    let poller = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(b) = resident_bytes(pid) {
                    peak.fetch_max(b, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let t = Instant::now();
    let (status, text) = target.send("GET", path, None).await;
    stop.store(true, Ordering::Relaxed);
    let _ = poller.await;
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    let error = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    let got = error["error"]["code"].as_str().unwrap_or_default();
    let message = error["error"]["message"].as_str().unwrap_or(&text);
    (
        status == 503 && got == code && message.contains(says) && grew <= max_mib << 20,
        format!(
            "{status} {got} after {} ms: {}; host memory +{:.1} MiB of at most {max_mib} MiB",
            t.elapsed().as_millis(),
            short(message),
            grew as f64 / f64::from(1 << 20)
        ),
    )
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}
