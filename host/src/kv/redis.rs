//! The Redis key-value backend: a shared Redis server, each store its own ACL user.
//!
//! Isolation is by credentials, not by prefix alone. At open, the host connects with the
//! administrative URL of `[backends.redis]` only to claim the store ([`Owner`], in the hash
//! `_silo:owner:USER`, which no store's user can reach) and to run `ACL SETUSER` for the
//! store's user (see [`user_name`]): on, its own password, the key pattern
//! `PREFIX:SERVICE:STORE:*` (`prefix` of `[backends.redis]`, default `silo`), and the handful
//! of commands the backend sends (no `KEYS`, no `SCAN`, no admin commands). The store then
//! connects as that user, so even a bug in the host could not make it read or write another
//! service's keys: Redis itself answers `NOPERM`. A user another data folder owns is
//! refused, never reset.
//!
//! Layout: value of key `k` at `PREFIX:SERVICE:STORE:k:` + `k` (with `PX` for a time-to-live);
//! the store's key names in the sorted set `PREFIX:SERVICE:STORE:idx`, for prefix listing with
//! `ZRANGEBYLEX` (a `SCAN` would walk every service's key names). Expired keys leave their
//! name in the index; a listing skips and removes them.
//!
//! **Size cap.** Each store counts its bytes (key name + value, per key) in
//! `PREFIX:SERVICE:STORE:bytes`, with each key's share in the hash `…:sizes`; a set and a
//! delete update them in the same Lua script as the key itself, so the count is exact under
//! any concurrency and survives exactly what the keys survive (a restart that keeps the
//! data keeps the count). A set that would take the store past its cap is refused
//! (`limit-exceeded`, "the store is full"); a key that expired is taken off the count when
//! it is next touched, when a listing finds it gone, or when a full store looks for room.
//!
//! Passwords are derived from a secret generated once into `DATA/kv/redis.secret` (mode
//! 0600), so a restarted host finds the same users.

use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, IntoConnectionInfo};
use sha2::Digest;

use super::KvStore;
use crate::sql::error::SqlError;
use crate::sql::server::Owner;

/// Settings of the Redis backend (`[backends.redis]`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Administrative connection URL (`redis://[user:password@]host:port`).
    pub admin_url: String,
    /// Longest wait for a connection and its first answer (start-up included).
    pub connect_timeout: Duration,
    /// First part of every ACL user and key name.
    pub prefix: String,
}

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
    owner: Owner,
    /// For the refusal message: the server, and the prefix in force.
    server: String,
    prefix: String,
    connect_timeout: Duration,
}

/// Claims the store for `owner` unless another owner is on record. KEYS: the owner hash;
/// ARGV: id, folder, machine, and `1` if the store's user exists with another password
/// (made before owners were recorded, by another secret). Returns `{}` when claimed, else
/// the owner on record (`{id, folder, machine}`; all empty for the unrecorded one).
const CLAIM_SCRIPT: &str = r#"
local id = redis.call('HGET', KEYS[1], 'id')
if id and id ~= ARGV[1] then
  return {id, redis.call('HGET', KEYS[1], 'folder') or '?', redis.call('HGET', KEYS[1], 'machine') or '?'}
end
if not id and ARGV[4] == '1' then
  return {'', '', ''}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'folder', ARGV[2], 'machine', ARGV[3])
return {}
"#;

/// True if ACL user `user` exists and `pass` is none of its passwords (`ACL GETUSER` lists
/// their SHA-256).
async fn foreign_user(
    p: &Provision,
    deadline: Instant,
    a: &mut redis::aio::MultiplexedConnection,
) -> Result<bool, SqlError> {
    let got: redis::Value = p
        .timed(
            deadline,
            redis::cmd("ACL").arg("GETUSER").arg(&p.user).query_async(a),
        )
        .await?;
    let fields: Vec<(redis::Value, redis::Value)> = match got {
        redis::Value::Nil => return Ok(false),
        redis::Value::Map(m) => m,
        redis::Value::Array(a) => {
            let mut it = a.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        _ => return Ok(false),
    };
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    let mine = hex::encode(sha2::Sha256::digest(p.pass.as_bytes()));
    for (k, v) in &fields {
        if text(k) == "passwords" {
            let hashes: Vec<String> = match v {
                redis::Value::Array(a) | redis::Value::Set(a) => a.iter().map(text).collect(),
                _ => Vec::new(),
            };
            return Ok(!hashes.contains(&mine));
        }
    }
    Ok(false)
}

/// Where the owner of `user`'s store is recorded: `_` starts no prefix, so no store's key
/// pattern matches it.
pub fn owner_key(user: &str) -> String {
    format!("_silo:owner:{user}")
}

/// Claims the store (see [`Owner`]), then creates (or resets) its ACL user, through the
/// admin connection; all within `deadline`.
async fn provision(p: &Provision, deadline: Instant) -> Result<(), SqlError> {
    let admin = redis::Client::open(p.admin.clone()).map_err(unavailable)?;
    let mut a = p
        .timed(deadline, admin.get_multiplexed_async_connection())
        .await?;
    let foreign = foreign_user(p, deadline, &mut a).await?;
    let theirs: Vec<String> = p
        .timed(
            deadline,
            redis::cmd("EVAL")
                .arg(CLAIM_SCRIPT)
                .arg(1)
                .arg(owner_key(&p.user))
                .arg(&p.owner.id)
                .arg(&p.owner.folder)
                .arg(&p.owner.machine)
                .arg(if foreign { "1" } else { "0" })
                .query_async(&mut a),
        )
        .await?;
    if let [id, folder, machine] = theirs.as_slice() {
        let theirs = Owner {
            id: id.clone(),
            folder: folder.clone(),
            machine: machine.clone(),
        };
        return Err(theirs.refusal(
            &p.owner,
            &format!("Redis ACL user `{}` and keys `{}*`", p.user, p.base),
            &p.server,
            "kv/redis.secret",
            "backends.redis",
            &p.prefix,
        ));
    }
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
    p.timed(deadline, acl.query_async::<()>(&mut a)).await
}

impl Provision {
    /// Runs an administrative step within `deadline` (at most `connect-timeout-ms` from the
    /// start of provisioning): a server that accepts and never answers holds nothing up.
    async fn timed<T>(
        &self,
        deadline: Instant,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SqlError> {
        match tokio::time::timeout_at(deadline.into(), op).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(SqlError::Unavailable(format!(
                "redis at {}: no answer within connect-timeout-ms = {}",
                self.server,
                self.connect_timeout.as_millis()
            ))),
        }
    }
}

/// Removes the store's ACL user, its keys and its owner record from the server (what
/// `silo demo isolation` and the tests made for one run). Everything the store held is
/// gone.
pub async fn deprovision(config: &RedisConfig, service: &str, store: &str) -> Result<(), SqlError> {
    let user = user_name(&config.prefix, service, store)?;
    let base = key_base(&config.prefix, service, store)?;
    let client = redis::Client::open(config.admin_url.as_str()).map_err(unavailable)?;
    let deadline = after(config.connect_timeout.max(Duration::from_secs(10)));
    let mut c = timed(deadline, client.get_multiplexed_async_connection()).await?;
    timed(
        deadline,
        redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&user)
            .query_async::<i64>(&mut c),
    )
    .await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = timed(
            deadline,
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{base}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c),
        )
        .await?;
        if !keys.is_empty() {
            timed(
                deadline,
                redis::cmd("DEL").arg(keys).query_async::<i64>(&mut c),
            )
            .await?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    timed(
        deadline,
        redis::cmd("DEL")
            .arg(owner_key(&user))
            .query_async::<i64>(&mut c),
    )
    .await?;
    Ok(())
}

fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(format!("redis: {e}"))
}

/// The ACL user of a store: `PREFIX-SERVICE-STORE` when neither name has a `-` (the two
/// `-` then split it one way only, and stores named so before keep their user), else
/// `PREFIX:SERVICE:STORE`. `-` alone is ambiguous: service `x` with store `a-b` and service
/// `x-a` with store `b` would share `silo-x-a-b`. Names are `[a-z0-9-]` and a prefix
/// `[a-z0-9_]` (checked here), so no `:` is in them, and no name of the first form has one.
pub fn user_name(prefix: &str, service: &str, store: &str) -> Result<String, SqlError> {
    crate::sql::server::check_prefix(prefix)?;
    Ok(if service.contains('-') || store.contains('-') {
        format!("{prefix}:{service}:{store}")
    } else {
        format!("{prefix}-{service}-{store}")
    })
}

/// The key prefix a store's user may touch: `PREFIX:SERVICE:STORE:` (no part has a `:`, so
/// no store's pattern matches another's keys).
pub fn key_base(prefix: &str, service: &str, store: &str) -> Result<String, SqlError> {
    crate::sql::server::check_prefix(prefix)?;
    Ok(format!("{prefix}:{service}:{store}:"))
}

/// The password of `user`, derived from the host's secret.
pub fn password(data_dir: &Path, user: &str) -> std::io::Result<String> {
    Ok(derive_password(&secret(data_dir)?, user))
}

/// The host's Redis secret (`DATA/kv/redis.secret`, made on first use).
fn secret(data_dir: &Path) -> std::io::Result<String> {
    crate::secrets::private_secret(&data_dir.join("kv").join("redis.secret"))
}

fn derive_password(secret: &str, user: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("{secret}:{user}").as_bytes()))
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

/// `timeout` from now (a timeout too long to add is a day: as good as none at start-up).
fn after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

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

impl RedisKv {
    /// Claims the store and creates (or resets) its ACL user through the admin URL, then
    /// connects as that user; all within `connect-timeout-ms`.
    pub async fn open(
        config: &RedisConfig,
        data_dir: &Path,
        service: &str,
        store: &str,
    ) -> Result<Self, SqlError> {
        let user = user_name(&config.prefix, service, store)?;
        let secret =
            secret(data_dir).map_err(|e| SqlError::Other(format!("the redis secret: {e}")))?;
        let pass = derive_password(&secret, &user);
        let base = key_base(&config.prefix, service, store)?;
        let admin = config
            .admin_url
            .as_str()
            .into_connection_info()
            .map_err(unavailable)?;
        let p = Provision {
            server: admin.addr.to_string(),
            admin: admin.clone(),
            user: user.clone(),
            pass: pass.clone(),
            base: base.clone(),
            owner: Owner::this_host(&secret, &user, data_dir),
            prefix: config.prefix.clone(),
            connect_timeout: config.connect_timeout,
        };
        let deadline = after(config.connect_timeout);
        provision(&p, deadline).await?;
        let mut info = admin;
        info.redis.username = Some(user);
        info.redis.password = Some(pass);
        let client = redis::Client::open(info).map_err(unavailable)?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(config.connect_timeout)
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(2);
        let conn = p
            .timed(
                deadline,
                ConnectionManager::new_with_config(client, manager),
            )
            .await?;
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
        let deadline = after(self.provision.connect_timeout);
        match provision(&self.provision, deadline).await {
            Ok(()) => {
                tracing::info!(user = %self.provision.user, "redis: the store's ACL user was created again")
            }
            Err(e @ SqlError::OwnedElsewhere(_)) => {
                tracing::error!(user = %self.provision.user, "redis: not creating the store's ACL user again: {e}")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Users and key bases under a prefix read back one way only, and a prefix that could
    /// make two stores' names meet (`-` or `:` in it, an uppercase letter) is refused, in
    /// the manifest (exit 2 naming `backends.redis.prefix`) as here.
    #[test]
    fn prefixes_name_users_and_keys() {
        assert_eq!(
            user_name("silo", "users", "main").unwrap(),
            "silo-users-main"
        );
        assert_eq!(user_name("st_1", "a-b", "c").unwrap(), "st_1:a-b:c");
        assert_eq!(key_base("st_1", "a", "b").unwrap(), "st_1:a:b:");
        assert!(owner_key("st_1:a-b:c").starts_with('_'));
        for bad in ["", "a-b", "a:b", "Silo", "1x"] {
            assert!(user_name(bad, "a", "b").is_err(), "{bad:?}");
            assert!(key_base(bad, "a", "b").is_err(), "{bad:?}");
        }
        let manifest = |prefix: &str| {
            format!("[backends.redis]\nurl = \"redis://127.0.0.1:6379\"\nprefix = \"{prefix}\"\n")
        };
        let parsed = crate::manifest::Manifest::parse(&manifest("stage_2")).unwrap();
        let redis = parsed.backends.redis.unwrap();
        assert_eq!(
            (redis.prefix.as_str(), redis.connect_timeout_ms),
            ("stage_2", 2000)
        );
        let (key, message) = crate::manifest::Manifest::parse(&manifest("a:b")).unwrap_err();
        assert_eq!(key, "backends.redis.prefix");
        assert_eq!(
            message,
            "prefix `a:b`: a lowercase letter, then lowercase letters, digits and `_`"
        );
    }

    /// The refusal names the owner's folder (and machine, when it is another), the secret to
    /// copy and the prefix to change.
    #[test]
    fn the_refusal_says_who_owns_the_store_and_what_to_do() {
        let theirs = Owner {
            id: "x".into(),
            folder: "/a/.silo".into(),
            machine: "m1".into(),
        };
        let mine = Owner {
            id: "y".into(),
            folder: "/b/.silo".into(),
            machine: "m2".into(),
        };
        let e = theirs.refusal(
            &mine,
            "Redis ACL user `silo-s-k` and keys `silo:s:k:*`",
            "127.0.0.1:6379",
            "kv/redis.secret",
            "backends.redis",
            "silo",
        );
        assert!(matches!(e, SqlError::OwnedElsewhere(_)));
        assert_eq!(
            e.to_string(),
            "Redis ACL user `silo-s-k` and keys `silo:s:k:*` on 127.0.0.1:6379 belong to another \
             data folder, /a/.silo on machine m1, not to this one (/b/.silo): provisioning them \
             would reset that host's passwords, so nothing was changed. To share them, give \
             this data folder that one's secret (copy /a/.silo/kv/redis.secret to \
             /b/.silo/kv/redis.secret); to keep apart, set a `prefix` of its own in \
             [backends.redis] (now \"silo\")"
        );
    }
}
