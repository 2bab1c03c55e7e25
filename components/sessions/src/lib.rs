//! sessions: login sessions that expire on their own, kept only in the key-value store
//! `sessions` (the manifest's `[services.sessions.kv.sessions]`; no SQL store).
//!
//! A session is `{"token","userId","createdAt","expiresAt"}` (times in milliseconds
//! since the Unix epoch, from `wasi:clocks`); its token is `ses_` and 32 hex digits
//! (128 random bits). Two keys hold it, both with the session's time to live, so the
//! store forgets them together:
//!
//! - `session:{token}`: the session as JSON;
//! - `user:{userId}:{token}`: empty, an index entry so that a user's sessions list by
//!   prefix. A user id never contains `:`, so one user's prefix never matches another's.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use silo_sdk::{ApiError, Kv, Request, Response, Router, Service};

/// The key-value store every session lives in.
const STORE: &str = "sessions";
/// What a session token starts with, before the `_`.
const TOKEN_PREFIX: &str = "ses";
/// Hex digits after `ses_` (128 bits).
const TOKEN_HEX_DIGITS: usize = 32;
/// A session's lifetime when the request does not say.
const DEFAULT_TTL_SECONDS: u64 = 30 * 60;
/// The longest lifetime a request may ask for: one day.
const MAX_TTL_SECONDS: u64 = 24 * 60 * 60;
/// The longest user id, in characters.
const MAX_USER_ID_CHARS: usize = 128;
/// The most sessions `GET /sessions?userId=` lists for one user.
const MAX_LISTED: u32 = 1000;

struct Sessions;

impl Service for Sessions {
    fn router() -> Router {
        Router::new()
            .post("/sessions", create)
            .get("/sessions", list)
            .get("/sessions/{token}", get)
            .delete("/sessions/{token}", delete)
    }
}

silo_sdk::service!(Sessions);

/// A session as the API shows it and as it is stored under `session:{token}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    token: String,
    user_id: String,
    /// Milliseconds since the Unix epoch.
    created_at: u64,
    /// Milliseconds since the Unix epoch; the store forgets the session then.
    expires_at: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewSession {
    user_id: String,
    /// Signed, so that a negative value gets the same message as any other out of range.
    ttl_seconds: Option<i64>,
}

/// `POST /sessions {userId, ttlSeconds?}` → 201 with the new session.
fn create(req: Request) -> Result<Response, ApiError> {
    let new: NewSession = req.json()?;
    validate_user_id(&new.user_id)?;
    let ttl_seconds = validate_ttl(new.ttl_seconds)?;
    let created_at = now_millis();
    let session = Session {
        token: silo_sdk::new_token(TOKEN_PREFIX),
        user_id: new.user_id,
        created_at,
        expires_at: created_at + ttl_seconds * 1000,
    };
    let ttl = Some(Duration::from_secs(ttl_seconds));
    let kv = Kv::open(STORE)?;
    // The index entry first: if the second write fails, what is left is an entry `list`
    // skips (and the store forgets), never a session missing from its user's list.
    kv.set(&index_key(&session.user_id, &session.token), &[], ttl)?;
    kv.set_json(&session_key(&session.token), &session, ttl)?;
    Ok(Response::created(&session))
}

/// `GET /sessions/{token}` → 200 with the session, or 404.
fn get(req: Request) -> Result<Response, ApiError> {
    let token = req.param("token")?;
    let session = load(&Kv::open(STORE)?, token)?.ok_or_else(|| not_found(token))?;
    Ok(Response::ok(&session))
}

/// `DELETE /sessions/{token}` → 204, or 404 if there is no such session (any more).
fn delete(req: Request) -> Result<Response, ApiError> {
    let token = req.param("token")?;
    let kv = Kv::open(STORE)?;
    let session = load(&kv, token)?.ok_or_else(|| not_found(token))?;
    // It may have expired, or been deleted by another request, since `load`: then that
    // request answered 204 and removes the index entry itself.
    if !kv.delete(&session_key(token))? {
        return Err(not_found(token));
    }
    kv.delete(&index_key(&session.user_id, token))?;
    Ok(Response::no_content())
}

/// `GET /sessions?userId=ID` → 200 with that user's live sessions, oldest first.
fn list(req: Request) -> Result<Response, ApiError> {
    let user_id = req
        .query("userId")
        .ok_or_else(|| ApiError::bad_request("the query parameter userId is required"))?;
    validate_user_id(&user_id)?;
    let kv = Kv::open(STORE)?;
    let prefix = user_prefix(&user_id);
    let mut sessions = Vec::new();
    for key in kv.list_keys(&prefix, MAX_LISTED)? {
        let Some(token) = key.strip_prefix(&prefix) else {
            continue;
        };
        // A session can expire between the listing and this read: it is simply gone.
        if let Some(session) = load(&kv, token)? {
            sessions.push(session);
        }
    }
    sessions.sort_by(|a, b| (a.created_at, &a.token).cmp(&(b.created_at, &b.token)));
    Ok(Response::ok(&sessions))
}

/// The session `token`, or `None` if it is not set, has expired or could not be a
/// token at all (such a one is never looked up).
fn load(kv: &Kv, token: &str) -> Result<Option<Session>, ApiError> {
    if !is_token(token) {
        return Ok(None);
    }
    kv.get_json(&session_key(token))
}

/// Whether `token` has the shape [`silo_sdk::new_token`] gives: `ses_` and 32
/// lowercase hex digits.
fn is_token(token: &str) -> bool {
    token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == TOKEN_HEX_DIGITS
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

fn session_key(token: &str) -> String {
    format!("session:{token}")
}

/// The prefix every index entry of `user_id` starts with.
fn user_prefix(user_id: &str) -> String {
    format!("user:{user_id}:")
}

fn index_key(user_id: &str, token: &str) -> String {
    format!("{}{token}", user_prefix(user_id))
}

fn not_found(token: &str) -> ApiError {
    ApiError::not_found(format!("no session {token:?}"))
}

/// A user id is not blank, has at most [`MAX_USER_ID_CHARS`] characters and no `:`
/// (which would let one user's key prefix reach into another's).
fn validate_user_id(user_id: &str) -> Result<(), ApiError> {
    if user_id.trim().is_empty() {
        return Err(ApiError::bad_request("userId must be a non-empty string"));
    }
    if user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(ApiError::bad_request(format!(
            "userId must be at most {MAX_USER_ID_CHARS} characters"
        )));
    }
    if user_id.contains(':') {
        return Err(ApiError::bad_request(format!(
            "userId must not contain ':', got {user_id:?}"
        )));
    }
    Ok(())
}

/// The requested lifetime in seconds: [`DEFAULT_TTL_SECONDS`] if absent, else
/// 1..=[`MAX_TTL_SECONDS`].
fn validate_ttl(ttl_seconds: Option<i64>) -> Result<u64, ApiError> {
    let Some(requested) = ttl_seconds else {
        return Ok(DEFAULT_TTL_SECONDS);
    };
    u64::try_from(requested)
        .ok()
        .filter(|seconds| (1..=MAX_TTL_SECONDS).contains(seconds))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "ttlSeconds must be between 1 and {MAX_TTL_SECONDS}, got {requested}"
            ))
        })
}

/// Now, in milliseconds since the Unix epoch (`wasi:clocks/wall-clock`).
fn now_millis() -> u64 {
    let now = silo_sdk::wasip2::clocks::wall_clock::now();
    now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_recognised_by_shape() {
        assert!(is_token(&format!("ses_{}", "0a".repeat(16))));
        assert!(!is_token(&format!("ses_{}", "0A".repeat(16))));
        assert!(!is_token(&format!("ses_{}", "0a".repeat(15))));
        assert!(!is_token(&format!("usr_{}", "0a".repeat(16))));
        assert!(!is_token("ses_"));
        assert!(!is_token(""));
    }

    #[test]
    fn user_ids_are_validated() {
        assert!(validate_user_id("usr_1").is_ok());
        assert!(validate_user_id(&"é".repeat(128)).is_ok());
        for bad in ["", "  ", "a:b", &"x".repeat(129)] {
            assert_eq!(validate_user_id(bad).unwrap_err().status, 400, "{bad:?}");
        }
    }

    #[test]
    fn ttls_default_and_stay_in_range() {
        assert_eq!(validate_ttl(None).unwrap(), 1800);
        assert_eq!(validate_ttl(Some(1)).unwrap(), 1);
        assert_eq!(validate_ttl(Some(86_400)).unwrap(), 86_400);
        for bad in [0, -5, 86_401] {
            assert_eq!(validate_ttl(Some(bad)).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn keys_of_one_user_never_prefix_another() {
        assert!(index_key("ab", "ses_1").starts_with(&user_prefix("ab")));
        assert!(!index_key("abc", "ses_1").starts_with(&user_prefix("ab")));
    }
}
