//! The Redis key-value backend: a shared Redis server, each store its own ACL user.
//!
//! Isolation is by credentials, not by prefix alone. At open, the host connects with the
//! administrative URL of `[backends.redis]` only to run `ACL SETUSER` for the store's user
//! (see [`user_name`]): on, its own password, the key pattern `silo:SERVICE:STORE:*`, and the
//! handful of commands the backend sends (no `KEYS`, no `SCAN`, no admin commands). The store
//! then connects as that user, so even a bug in the host could not make it read or write
//! another service's keys: Redis itself answers `NOPERM`.
//!
//! Layout: value of key `k` at `silo:SERVICE:STORE:k:` + `k` (with `PX` for a time-to-live);
//! the store's key names in the sorted set `silo:SERVICE:STORE:idx`, for prefix listing with
//! `ZRANGEBYLEX` (a `SCAN` would walk every service's key names). Expired keys leave their
//! name in the index; a listing skips and removes them.
//!
//! **Size cap.** Each store counts its bytes (key name + value, per key) in
//! `silo:SERVICE:STORE:bytes`, with each key's share in the hash `…:sizes`; a set and a
//! delete update them in the same Lua script as the key itself, so the count is exact under
//! any concurrency and survives exactly what the keys survive (a restart that keeps the
//! data keeps the count). A set that would take the store past its cap is refused
//! (`limit-exceeded`, "the store is full"); a key that expired is taken off the count when
//! it is next touched, when a listing finds it gone, or when a full store looks for room.
//!
//! Passwords are derived from a secret generated once into `DATA/kv/redis.secret` (mode
//! 0600), so a restarted host finds the same users.

use std::path::Path;
use std::time::Instant;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, IntoConnectionInfo};
use sha2::Digest;

use super::KvStore;
use crate::sql::SqlError;

/// One Redis key-value store.
pub struct RedisKv {
    conn: ConnectionManager,
    /// `silo:SERVICE:STORE:`.
    base: String,
    /// Most bytes (key names + values) the store may hold.
    max_bytes: u64,
    /// When a full store last looked for expired keys to take off its count.
    last_reclaim: std::sync::Mutex<Option<Instant>>,
    /// How to create the store's ACL user again (a restarted server that keeps nothing on
    /// disk has forgotten it).
    provision: Provision,
    /// When the user was last re-created, so a server that stays down is not hammered.
    last_provision: std::sync::Mutex<Option<Instant>>,
}

/// Everything [`provision`] needs.
struct Provision {
    admin: redis::ConnectionInfo,
    user: String,
    pass: String,
    base: String,
}

/// Creates (or resets) the store's ACL user through the admin connection.
async fn provision(p: &Provision, deadline: Instant) -> Result<(), SqlError> {
    let admin = redis::Client::open(p.admin.clone()).map_err(unavailable)?;
    let mut a = timed(deadline, admin.get_multiplexed_async_connection()).await?;
    let mut acl = redis::cmd("ACL");
    acl.arg("SETUSER")
        .arg(&p.user)
        .arg("reset")
        .arg("on")
        .arg(format!(">{}", p.pass))
        .arg(format!("~{}*", p.base));
    for c in COMMANDS.split_whitespace() {
        acl.arg(c);
    }
    timed(deadline, acl.query_async::<()>(&mut a)).await
}

fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(format!("redis: {e}"))
}

/// The ACL user of a store: `silo-SERVICE-STORE` when neither name has a `-` (the two
/// `-` then split it one way only, and stores named so before keep their user), else
/// `silo:SERVICE:STORE`. `-` alone is ambiguous: service `x` with store `a-b` and service
/// `x-a` with store `b` would share `silo-x-a-b`. Names are `[a-z0-9-]`, so no `:` is in
/// them, and no name of the first form has one.
pub fn user_name(service: &str, store: &str) -> String {
    if service.contains('-') || store.contains('-') {
        format!("silo:{service}:{store}")
    } else {
        format!("silo-{service}-{store}")
    }
}

/// The key prefix a store's user may touch.
pub fn key_base(service: &str, store: &str) -> String {
    format!("silo:{service}:{store}:")
}

/// The password of `user`, derived from the host's secret.
pub fn password(data_dir: &Path, user: &str) -> std::io::Result<String> {
    let secret = crate::admin::private_secret(&data_dir.join("kv").join("redis.secret"))?;
    Ok(hex::encode(sha2::Sha256::digest(
        format!("{secret}:{user}").as_bytes(),
    )))
}

/// The commands a store's user may run: exactly what this backend sends (scripts run their
/// commands under the same user and key pattern).
const COMMANDS: &str = "+get +set +del +exists +zadd +zrem +zrangebylex +multi +exec +discard \
     +ping +hello +eval +hget +hset +hdel +hscan +incrby +decrby";

/// Sets a key within the cap. KEYS: value, index, sizes, bytes; ARGV: name, value, TTL in
/// ms (`""`: none), cap. A key whose value is gone (expired) no longer counts.
const SET_SCRIPT: &str = r#"
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if old > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('DECRBY', KEYS[4], old)
  old = 0
end
local new = string.len(ARGV[1]) + string.len(ARGV[2])
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
if new > old and total - old + new > tonumber(ARGV[4]) then
  return redis.error_reply('SILOFULL ' .. total)
end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], new)
redis.call('INCRBY', KEYS[4], new - old)
return 1
"#;

/// Deletes a key and its share of the count. KEYS: value, index, sizes, bytes; ARGV: name.
/// Returns how many values were deleted (0 if it had expired).
const DELETE_SCRIPT: &str = r#"
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if old > 0 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('DECRBY', KEYS[4], old)
end
return n
"#;

/// Takes an expired key off the count (nothing if it is set again meanwhile). KEYS: value,
/// index, sizes, bytes; ARGV: name.
const FORGET_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
redis.call('ZREM', KEYS[2], ARGV[1])
if old > 0 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('DECRBY', KEYS[4], old)
end
return 1
"#;

/// Opens a timed operation: past the request's deadline the store is unavailable.
async fn timed<T>(
    deadline: Instant,
    op: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, SqlError> {
    match tokio::time::timeout_at(deadline.into(), op).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(SqlError::Unavailable(
            "redis: no answer before the request's deadline".into(),
        )),
    }
}

/// Checks that `url` is a Redis URL (`redis://[user:password@]host:port[/db]`), without
/// connecting: the manifest's `[backends.redis] url` is refused at start-up otherwise.
pub fn check_url(url: &str) -> Result<(), String> {
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| format!("not a Redis URL (redis://[user:password@]host:port): {e}"))
}

impl RedisKv {
    /// Creates (or resets) the store's ACL user through `admin_url`, then connects as it.
    pub async fn open(
        admin_url: &str,
        data_dir: &Path,
        service: &str,
        store: &str,
    ) -> Result<Self, SqlError> {
        let user = user_name(service, store);
        let pass = password(data_dir, &user).map_err(unavailable)?;
        let base = key_base(service, store);
        let admin = admin_url.into_connection_info().map_err(unavailable)?;
        let p = Provision {
            admin: admin.clone(),
            user: user.clone(),
            pass: pass.clone(),
            base: base.clone(),
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        provision(&p, deadline).await?;
        let mut info = admin;
        info.redis.username = Some(user);
        info.redis.password = Some(pass);
        let client = redis::Client::open(info).map_err(unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(2))
            .set_response_timeout(std::time::Duration::from_secs(5))
            .set_number_of_retries(2);
        let conn = timed(deadline, ConnectionManager::new_with_config(client, config)).await?;
        Ok(Self {
            conn,
            base,
            max_bytes: u64::MAX,
            last_reclaim: std::sync::Mutex::new(None),
            provision: p,
            last_provision: std::sync::Mutex::new(None),
        })
    }

    /// This store, capped at `max_bytes` (key names + values; uncapped until set).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// After a failed operation: if the server may have forgotten the store's user (it
    /// restarted), create it again, at most once a second. The connection manager
    /// reconnects on its own; the next operation then succeeds.
    async fn recover(&self, error: &SqlError) {
        let forgot = matches!(error, SqlError::Unavailable(m)
            if m.contains("WRONGPASS") || m.contains("NOAUTH") || m.contains("NOPERM")
                || m.contains("onnection") || m.contains("broken pipe") || m.contains("reset"));
        if !forgot {
            return;
        }
        {
            let mut last = self.last_provision.lock().expect("provision lock");
            if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        match provision(&self.provision, deadline).await {
            Ok(()) => {
                tracing::info!(user = %self.provision.user, "redis: the store's ACL user was created again")
            }
            Err(e) => {
                tracing::warn!(user = %self.provision.user, "redis: cannot create the store's ACL user again: {e}")
            }
        }
    }

    /// Runs `op`; a failure that looks like a restarted server triggers [`RedisKv::recover`]
    /// (the request itself still fails fast, as `unavailable`).
    async fn run<T>(&self, op: impl Future<Output = Result<T, SqlError>>) -> Result<T, SqlError> {
        let r = op.await;
        if let Err(e) = &r {
            self.recover(e).await;
        }
        r
    }

    fn key(&self, key: &str) -> String {
        format!("{}k:{key}", self.base)
    }

    fn index(&self) -> String {
        format!("{}idx", self.base)
    }

    /// `EVAL` of `script` with the four keys the scripts take for key `name` (value, index,
    /// sizes, bytes); its arguments follow.
    fn eval(&self, script: &str, name: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script)
            .arg(4)
            .arg(self.key(name))
            .arg(self.index())
            .arg(format!("{}sizes", self.base))
            .arg(format!("{}bytes", self.base));
        cmd
    }

    /// Takes expired keys off a full store's count (at most once every 5 s: it walks the
    /// store's whole size table). True if it found any.
    async fn reclaim(&self, deadline: Instant) -> Result<bool, SqlError> {
        {
            let mut last = self.last_reclaim.lock().expect("reclaim lock");
            if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5)) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let mut c = self.conn.clone();
        let sizes = format!("{}sizes", self.base);
        let mut cursor: u64 = 0;
        let mut found = false;
        loop {
            let (next, page): (u64, Vec<String>) = timed(
                deadline,
                redis::cmd("HSCAN")
                    .arg(&sizes)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut c),
            )
            .await?;
            let names: Vec<&String> = page.iter().step_by(2).collect();
            if !names.is_empty() {
                let mut pipe = redis::pipe();
                for n in &names {
                    pipe.cmd("EXISTS").arg(self.key(n));
                }
                let live: Vec<u64> = timed(deadline, pipe.query_async(&mut c)).await?;
                for (n, l) in names.into_iter().zip(live) {
                    if l == 0 {
                        found = true;
                        self.forget(deadline, n).await?;
                    }
                }
            }
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Takes the expired key `name` off the index and the count.
    async fn forget(&self, deadline: Instant, name: &str) -> Result<(), SqlError> {
        let mut c = self.conn.clone();
        let mut cmd = self.eval(FORGET_SCRIPT, name);
        cmd.arg(name);
        timed(deadline, cmd.query_async::<i64>(&mut c))
            .await
            .map(|_| ())
    }

    async fn set_capped(
        &self,
        deadline: Instant,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), SqlError> {
        let mut c = self.conn.clone();
        let mut cmd = self.eval(SET_SCRIPT, key);
        cmd.arg(key)
            .arg(value)
            .arg(ttl_ms.map(|t| t.to_string()).unwrap_or_default())
            .arg(self.max_bytes);
        let r = tokio::time::timeout_at(deadline.into(), cmd.query_async::<i64>(&mut c)).await;
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.to_string().contains("SILOFULL") => {
                Err(SqlError::LimitExceeded(format!(
                    "the store is full: {} bytes of keys and values is its cap (`max-size-mb`)",
                    self.max_bytes
                )))
            }
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(SqlError::Unavailable(
                "redis: no answer before the request's deadline".into(),
            )),
        }
    }
}

/// The smallest string greater than every string starting with `prefix`, if any.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    None
}

#[async_trait]
impl KvStore for RedisKv {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, deadline: Instant, key: &str) -> Result<Option<Vec<u8>>, SqlError> {
        let mut c = self.conn.clone();
        self.run(timed(deadline, c.get::<_, Option<Vec<u8>>>(self.key(key))))
            .await
    }

    async fn set(
        &self,
        deadline: Instant,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), SqlError> {
        let r = self
            .run(self.set_capped(deadline, key, value, ttl_ms))
            .await;
        // Full: expired keys may still count; take them off, then try once more.
        if matches!(r, Err(SqlError::LimitExceeded(_))) && self.reclaim(deadline).await? {
            return self.set_capped(deadline, key, value, ttl_ms).await;
        }
        r
    }

    async fn delete(&self, deadline: Instant, key: &str) -> Result<bool, SqlError> {
        let mut c = self.conn.clone();
        let mut cmd = self.eval(DELETE_SCRIPT, key);
        cmd.arg(key);
        let deleted: i64 = self.run(timed(deadline, cmd.query_async(&mut c))).await?;
        Ok(deleted > 0)
    }

    async fn list_keys(
        &self,
        deadline: Instant,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, SqlError> {
        self.run(self.list(deadline, prefix, limit)).await
    }
}

impl RedisKv {
    async fn list(
        &self,
        deadline: Instant,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, SqlError> {
        let mut c = self.conn.clone();
        let min = format!("[{prefix}");
        let max = prefix_end(prefix).map_or_else(|| "+".to_string(), |e| format!("({e}"));
        let mut out = Vec::new();
        let mut offset = 0usize;
        let page = (limit as usize).clamp(16, 1000);
        while out.len() < limit as usize {
            let names: Vec<String> = timed(
                deadline,
                redis::cmd("ZRANGEBYLEX")
                    .arg(self.index())
                    .arg(&min)
                    .arg(&max)
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(page)
                    .query_async(&mut c),
            )
            .await?;
            if names.is_empty() {
                break;
            }
            offset += names.len();
            let mut pipe = redis::pipe();
            for n in &names {
                pipe.cmd("EXISTS").arg(self.key(n));
            }
            let live: Vec<u64> = timed(deadline, pipe.query_async(&mut c)).await?;
            let mut gone = Vec::new();
            for (n, l) in names.into_iter().zip(live) {
                if l > 0 {
                    if out.len() < limit as usize {
                        out.push(n);
                    }
                } else {
                    gone.push(n);
                }
            }
            if !gone.is_empty() {
                offset -= gone.len();
                for n in &gone {
                    self.forget(deadline, n).await?;
                }
            }
        }
        Ok(out)
    }
}
