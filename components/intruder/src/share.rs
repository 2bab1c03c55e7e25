//! Attacks on fair sharing: each stays within every limit the intruder's manifest entry
//! declares and tries to slow down *other* services. The runner measures the victims; these
//! endpoints only do the work and say what they saw.
//!
//! - `GET /intruder/exhaust/sql`: SQL statements that each run their whole statement budget
//!   (interrupted there by the host), back to back until the request's deadline.
//! - `GET /intruder/exhaust/slow-call-bodies?n=N`: `N` concurrent calls to `reference`
//!   whose bodies are started and never finished; waits for their answers (or its own
//!   deadline) and reports `{"statuses": {"408": n, …}, "unanswered": n}`.
//! - `GET /intruder/exhaust/fanout?n=N`: `N` concurrent ordinary calls to `reference`;
//!   reports their statuses the same way.
//! - Events: a `UserCreated` whose user's name starts with `slow` makes the handler run
//!   budget-long statements for 900 ms before it returns.

use std::collections::BTreeMap;

use serde_json::json;
use silo_sdk::wasip2::clocks::monotonic_clock;
use silo_sdk::wasip2::http::outgoing_handler::{self, FutureIncomingResponse};
use silo_sdk::wasip2::http::types::{
    Fields, Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
};
use silo_sdk::wasip2::io::poll;
use silo_sdk::{ApiError, Db, Event, Request, Response, Tx};

/// A statement that never ends on its own: the host interrupts it at `statement-ms`.
const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                       SELECT count(*) AS n FROM c";

/// `GET /intruder/exhaust/sql`: never answers on its own; the host's deadline ends it.
pub fn sql_until_deadline(_req: Request) -> Result<Response, ApiError> {
    let db = Db::open("main")?;
    loop {
        let _ = db.query(ENDLESS, &[]);
    }
}

/// The event handler: slow for users named `slow…`, instant for everyone else.
pub fn on_user_created(event: &Event, _tx: &Tx<'_>) -> Result<(), ApiError> {
    let slow = serde_json::from_slice::<serde_json::Value>(&event.data)
        .ok()
        .and_then(|v| v["name"].as_str().map(|n| n.starts_with("slow")))
        .unwrap_or(false);
    if slow {
        let db = Db::open("main")?;
        let until = monotonic_clock::now() + 900_000_000;
        while monotonic_clock::now() < until {
            let _ = db.query(ENDLESS, &[]);
        }
    }
    Ok(())
}

fn count(req: &Request) -> usize {
    req.query("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(64)
        .clamp(1, 512)
}

/// One outgoing request to `reference`, its body started (and kept, unfinished) if
/// `unfinished`, else finished empty.
fn send(
    path: &str,
    unfinished: bool,
    bodies: &mut Vec<OutgoingBody>,
) -> Result<FutureIncomingResponse, String> {
    let headers = Fields::new();
    if unfinished {
        headers
            .set("content-length", &[b"1024".to_vec()])
            .map_err(|e| format!("{e:?}"))?;
    }
    let req = OutgoingRequest::new(headers);
    let method = if unfinished {
        WasiMethod::Post
    } else {
        WasiMethod::Get
    };
    req.set_method(&method).map_err(|()| "method".to_string())?;
    req.set_scheme(Some(&Scheme::Http))
        .map_err(|()| "scheme".to_string())?;
    req.set_authority(Some("reference.silo.internal"))
        .map_err(|()| "authority".to_string())?;
    req.set_path_with_query(Some(path))
        .map_err(|()| "path".to_string())?;
    let body = req.body().map_err(|()| "body".to_string())?;
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    if unfinished {
        {
            let stream = body.write().map_err(|()| "body stream".to_string())?;
            stream
                .blocking_write_and_flush(b"the start of a body that never ends")
                .map_err(|e| format!("{e:?}"))?;
        }
        bodies.push(body);
    } else {
        OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    }
    Ok(future)
}

/// Waits for every answer (until the instance's deadline stops it) and counts statuses.
fn settle(futures: Vec<FutureIncomingResponse>, errors: Vec<String>) -> Response {
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for e in errors {
        *statuses.entry(e).or_default() += 1;
    }
    for f in futures {
        poll::poll(&[&f.subscribe()]);
        let key = match f.get() {
            Some(Ok(Ok(resp))) => resp.status().to_string(),
            Some(Ok(Err(code))) => format!("{code:?}"),
            _ => "no answer".to_string(),
        };
        *statuses.entry(key).or_default() += 1;
    }
    Response::ok(&json!({ "statuses": statuses }))
}

/// `GET /intruder/exhaust/slow-call-bodies?n=N`.
pub fn slow_call_bodies(req: Request) -> Result<Response, ApiError> {
    let (mut futures, mut errors, mut bodies) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..count(&req) {
        match send("/reference/countries", true, &mut bodies) {
            Ok(f) => futures.push(f),
            Err(e) => errors.push(e),
        }
    }
    let answer = settle(futures, errors);
    drop(bodies);
    Ok(answer)
}

/// `GET /intruder/exhaust/fanout?n=N`.
pub fn fanout(req: Request) -> Result<Response, ApiError> {
    let (mut futures, mut errors, mut bodies) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..count(&req) {
        match send("/reference/countries", false, &mut bodies) {
            Ok(f) => futures.push(f),
            Err(e) => errors.push(e),
        }
    }
    Ok(settle(futures, errors))
}
