//! intruder: a deliberately hostile service, for silo's isolation demo and tests.
//!
//! It is deployed like any other service — route `/intruder`, one store of its own
//! (`main`), `calls = ["reference"]` — and then tries, one endpoint per attack, to reach
//! past what that manifest entry grants: other services' stores, the host's own tables,
//! the SQLite file and its neighbours, undeclared services, the outside network, WASI
//! files, sockets and environment, and the host's size, time, memory and stack limits.
//!
//! **Every attack must fail.** Against a correct host each report says `"blocked"`; a
//! `"succeeded"` is a security failure of the host, and its `detail` says what got
//! through.
//!
//! Endpoints:
//!
//! - `GET /intruder/attacks` → `["open-other-store", …]`, the names below.
//! - `GET /intruder/attack/{name}` → always 200
//!   `{"attack": name, "outcome": "blocked" | "succeeded", "detail": "…"}`. Only if the
//!   attack cannot even be set up (its own store does not open) is the answer a 500: an
//!   inconclusive run must not pass for a blocked one.
//! - `GET /intruder/trap/forged-handle`, `/intruder/trap/wrong-type-handle`,
//!   `/intruder/trap/stale-transaction`, `/intruder/trap/double-drop`: use resource handles
//!   the instance does not own (forged, of another type, given up, or already dropped)
//!   (unsafe, on purpose). The host must trap the instance (503) or refuse the call; if it
//!   neither traps nor refuses, the answer is a 200 report with `"succeeded"`.
//! - `GET /intruder/exhaust/loop`, `/intruder/exhaust/memory`,
//!   `/intruder/exhaust/recursion`: spin, allocate or recurse forever. They never answer
//!   on their own: the host must stop the instance (503).
//!
//! Each attack is one small function that records every attempt in [`Findings`]: an
//! attempt the host refused, or one that got through.

use core::hint::black_box;
use std::fmt::Display;
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

use serde_json::json;
use silo_sdk::bindings::silo::service::sql::{Database, Transaction};
use silo_sdk::{
    ApiError, Call, CallError, CallResponse, Db, ExecResult, Method, Migration, Request, Response,
    Router, Row, Service, SqlError, Subscriptions, Value, describe,
};

mod fair;
mod share;

struct Intruder;

impl Service for Intruder {
    fn router() -> Router {
        Router::new()
            .get("/intruder/attacks", |_| Ok(Response::ok(&attack_names())))
            .get("/intruder/attack/{name}", attack)
            .post("/intruder/attack/host-statements", host_statements)
            .get("/intruder/trap/forged-handle", forged_handle)
            .get("/intruder/trap/wrong-type-handle", wrong_type_handle)
            .get("/intruder/trap/stale-transaction", stale_transaction)
            .get("/intruder/trap/double-drop", double_drop)
            .get("/intruder/exhaust/loop", |_| spin_forever())
            .get("/intruder/exhaust/sql", share::sql_until_deadline)
            .get(
                "/intruder/exhaust/slow-call-bodies",
                share::slow_call_bodies,
            )
            .get("/intruder/exhaust/fanout", share::fanout)
            .get("/intruder/exhaust/memory", |_| allocate_forever())
            .get("/intruder/exhaust/recursion", |_| {
                Ok(Response::ok(&json!({ "depth": dig(0) })))
            })
            .get("/intruder/flood/log", fair::log_flood)
            .get("/intruder/flood/fields", fair::host_fields)
    }

    /// A subscription of its own, so its store holds an inbox too: every host table
    /// exists there to be attacked.
    fn subscriptions() -> Subscriptions {
        Subscriptions::new().on("users", "UserCreated", share::on_user_created)
    }

    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "main",
            1,
            "somewhere to put loot, and a table to hang triggers on",
            "CREATE TABLE loot (id INTEGER PRIMARY KEY, data BLOB); CREATE TABLE bait (x)",
        )]
    }
}

silo_sdk::service!(Intruder);

// ---------------------------------------------------------------------------------------
// The catalogue and its reports
// ---------------------------------------------------------------------------------------

/// One attack: records its attempts; `Err` only if it could not be set up.
type Attack = fn(&mut Findings) -> Result<(), SqlError>;

/// Every attack that reports for itself, in the order the demo runs them.
const ATTACKS: &[(&str, Attack)] = &[
    ("open-other-store", open_other_store),
    ("guess-store-names", guess_store_names),
    ("stale-handle", stale_handle),
    ("attach", attach),
    ("vacuum-into", vacuum_into),
    ("load-extension", load_extension),
    ("pragmas", pragmas),
    ("uri-filename", uri_filename),
    ("host-tables", host_tables),
    ("plant-host-table", plant_host_table),
    ("schema-tamper", schema_tamper),
    ("call-undeclared", call_undeclared),
    ("call-external", call_external),
    ("wasi-files", wasi_files),
    ("wasi-sockets", wasi_sockets),
    ("wasi-env", wasi_env),
    ("huge-result", huge_result),
    ("huge-blob", huge_blob),
    ("fill-disk", fill_disk),
    ("runaway-sql", runaway_sql),
    ("publish-undeclared", publish_undeclared),
    ("saga-undeclared", saga_undeclared),
    ("kv-other-store", kv_other_store),
    ("temp-objects", temp_objects),
    ("file-views", file_views),
    ("fill-wal", fill_wal),
    ("pg-trap-cancel", pg_trap_cancel),
    ("pg-host-sequences", pg_host_sequences),
    ("pg-explain", pg_explain),
    ("pg-fill", pg_fill),
    ("mariadb-named-locks", mariadb_named_locks),
    ("mariadb-fill", mariadb_fill),
    ("redis-fill", redis_fill),
    ("costly-function", fair::costly_function),
];

fn attack_names() -> Vec<&'static str> {
    ATTACKS.iter().map(|(name, _)| *name).collect()
}

/// `GET /intruder/attack/{name}`: runs one attack and reports whether it got through.
fn attack(req: Request) -> Result<Response, ApiError> {
    let name = req.param("name")?;
    let (name, run) = ATTACKS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ApiError::not_found(format!("no attack named {name:?}")))?;
    let mut findings = Findings::default();
    run(&mut findings).map_err(|err| {
        ApiError::internal(format!(
            "the attack {name} could not be set up: {}",
            describe(&err)
        ))
    })?;
    Ok(findings.report(name))
}

/// What one attack observed: each attempt the host refused, and each that got through.
#[derive(Default)]
struct Findings {
    got_through: Vec<String>,
    refused: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    fn refused(&mut self, what: &str, how: impl Display) {
        self.refused.push(format!("{what} → {how}"));
    }

    fn got_through(&mut self, what: &str, how: impl Display) {
        self.got_through.push(format!("{what} → {how}"));
    }

    /// Context for a human that decides nothing (what exists, what was cleaned up).
    fn note(&mut self, text: impl Display) {
        self.notes.push(text.to_string());
    }

    /// A statement SQLite itself must refuse as malformed or forbidden by its own rules
    /// (`bad-query` whose message contains `because`), whatever the authorizer says.
    fn must_be_bad_query<T: Summary>(
        &mut self,
        what: &str,
        because: &str,
        result: Result<T, SqlError>,
    ) {
        match result {
            Ok(value) => self.got_through(what, value.summary()),
            Err(err @ SqlError::BadQuery(_)) if describe(&err).contains(because) => {
                self.refused(what, describe(&err))
            }
            Err(err) => self.got_through(
                what,
                format!("not bad-query ({because}) but {}", describe(&err)),
            ),
        }
    }

    /// A request that must be refused with `access-denied` and nothing else.
    fn must_be_denied<T: Summary>(&mut self, what: &str, result: Result<T, SqlError>) {
        match result {
            Ok(value) => self.got_through(what, value.summary()),
            Err(err @ SqlError::AccessDenied(_)) => self.refused(what, describe(&err)),
            Err(err) => self.got_through(what, format!("not access-denied but {}", describe(&err))),
        }
    }

    /// A statement that must stop at one limit: `limit-exceeded` whose message contains
    /// `says` (the limit's name). Another limit does not count: a time budget that stops a
    /// statement first says nothing about the size cap the attack is after.
    fn must_hit_limit<T: Summary>(&mut self, what: &str, says: &str, result: Result<T, SqlError>) {
        match result {
            Ok(value) => self.got_through(what, value.summary()),
            Err(err @ SqlError::LimitExceeded(_)) if describe(&err).contains(says) => {
                self.refused(what, describe(&err))
            }
            Err(err) => self.got_through(
                what,
                format!("not limit-exceeded ({says}) but {}", describe(&err)),
            ),
        }
    }

    /// A call that the host must refuse with `HTTP-request-denied`.
    fn call_must_be_denied(&mut self, what: &str, result: Result<CallResponse, CallError>) {
        match result {
            Ok(resp) => self.got_through(what, format!("answered {}", resp.status)),
            Err(err) if err.is_denied() => self.refused(what, err),
            Err(err) => self.got_through(what, format!("not denied but {err}")),
        }
    }

    /// A WASI operation that must fail with the error the missing grant gives, the one
    /// whose text contains `says`. Any other error (a platform that lacks the operation, a
    /// peer that is not listening) would fail the same with or without the defence.
    fn io_must_fail<T>(
        &mut self,
        what: &str,
        says: &str,
        result: std::io::Result<T>,
        shown: &dyn Fn(T) -> String,
    ) {
        match result {
            Ok(value) => self.got_through(what, shown(value)),
            Err(err) if err.to_string().contains(says) => {
                self.refused(what, format!("error: {err}"))
            }
            Err(err) => self.got_through(what, format!("not {says:?} but error: {err}")),
        }
    }

    /// 200 `{"attack","outcome","detail"}`: `succeeded` if anything got through.
    fn report(self, name: &str) -> Response {
        let outcome = if self.got_through.is_empty() {
            "blocked"
        } else {
            "succeeded"
        };
        let mut parts = Vec::new();
        if !self.got_through.is_empty() {
            parts.push(format!("GOT THROUGH: {}", self.got_through.join("; ")));
        }
        if !self.refused.is_empty() {
            parts.push(format!("refused: {}", self.refused.join("; ")));
        }
        if !self.notes.is_empty() {
            parts.push(format!("notes: {}", self.notes.join("; ")));
        }
        Response::ok(&json!({ "attack": name, "outcome": outcome, "detail": parts.join(" | ") }))
    }
}

/// A short description of something that should not have been obtained.
trait Summary {
    fn summary(&self) -> String;
}

impl Summary for String {
    fn summary(&self) -> String {
        format!("got {self:?}")
    }
}

impl Summary for silo_sdk::Kv {
    fn summary(&self) -> String {
        "opened".into()
    }
}

impl Summary for () {
    fn summary(&self) -> String {
        "ok".to_string()
    }
}
impl Summary for Db {
    fn summary(&self) -> String {
        "opened".to_string()
    }
}
impl Summary for Vec<Row> {
    fn summary(&self) -> String {
        format!("ok, {} rows", self.len())
    }
}
impl Summary for ExecResult {
    fn summary(&self) -> String {
        format!("ok, {} rows affected", self.rows_affected)
    }
}

/// What the host says when a statement runs past its time budget or the request's deadline.
const TIME_BUDGET: &str = "ran past its time budget";

/// The intruder's own store: the one thing it is allowed to open.
fn own() -> Result<Db, SqlError> {
    Db::open("main")
}

/// A fresh random suffix for scratch names, e.g. `3f9a0c1b2d4e5f60`.
fn suffix() -> String {
    silo_sdk::new_id("x")[2..].to_string()
}

// ---------------------------------------------------------------------------------------
// Stores that are not ours
// ---------------------------------------------------------------------------------------

/// Other services' stores, by name and by path: each must be `access-denied`.
/// Events on topics the manifest does not let the intruder publish, including another
/// service's: each publish must be `access-denied` (and nothing reaches the outbox).
fn publish_undeclared(f: &mut Findings) -> Result<(), SqlError> {
    let db = Db::open("main")?;
    for topic in ["UserUpdated", "ProductUpdated", "Secret", "intruded", ""] {
        let result: Result<String, SqlError> = db.transaction(|tx| {
            let id = tx.publish_raw(topic, "usr_1", "application/json", b"{}")?;
            Ok(id)
        });
        f.must_be_denied(&format!("publish {topic:?}"), result);
    }
    Ok(())
}

/// Sagas commanding services the manifest does not list as participants.
fn saga_undeclared(f: &mut Findings) -> Result<(), SqlError> {
    let db = Db::open("main")?;
    for service in ["payments", "users", "products", "intruder"] {
        let step = silo_sdk::Step::new("steal", service, "charge", &"{}")?;
        let result = db.transaction(|tx| tx.start_saga("heist", "k", &[step]));
        f.must_be_denied(&format!("saga step on {service:?}"), result);
    }
    Ok(())
}

/// Key-value stores the intruder never declared, another service's included.
fn kv_other_store(f: &mut Findings) -> Result<(), SqlError> {
    for name in ["sessions", "cache", "main", "../sessions/sessions", ""] {
        f.must_be_denied(&format!("kv open {name:?}"), silo_sdk::Kv::open(name));
    }
    Ok(())
}

/// TEMP objects in every spelling: they would live outside the store's file and its size
/// cap (in the system's temporary folder), outlive the request on the host's connection,
/// and could shadow the host's tables.
fn temp_objects(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "CREATE TEMP TABLE intruder_t (x)",
        "CREATE TEMPORARY TABLE intruder_t (x)",
        "CREATE TABLE temp.intruder_t (x)",
        "CREATE TABLE TEMP.intruder_t (x)",
        "CREATE TABLE \"temp\".intruder_t (x)",
        "CREATE TABLE [temp].intruder_t AS SELECT randomblob(1000) AS x",
        "CREATE VIEW temp.intruder_v AS SELECT 1",
        "CREATE TEMP VIEW intruder_v AS SELECT 1",
        "CREATE TRIGGER temp.intruder_tr AFTER INSERT ON main.bait BEGIN SELECT 1; END",
        "CREATE TEMP TRIGGER intruder_tr AFTER INSERT ON bait BEGIN SELECT 1; END",
    ] {
        f.must_be_denied(statement, db.execute(statement, &[]));
    }
    Ok(())
}

/// Virtual tables that show the file itself: page by page sizes of every table (the host's
/// included), and the connection's prepared statements.
fn file_views(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "SELECT name, pgsize FROM dbstat",
        "SELECT sum(pgsize) FROM dbstat WHERE name LIKE '!_silo!_%' ESCAPE '!'",
        "SELECT * FROM main.dbstat",
        "SELECT * FROM DbStat('main')",
    ] {
        f.must_be_denied(statement, db.query(statement, &[]));
    }
    Ok(())
}

/// Grows a store's write-ahead log instead of its database: 40 transactions of 96 KiB
/// that are deleted again, in its 1 MiB store `tiny` (the database stays small; SQLite
/// alone would let the log grow to 4 MiB before a checkpoint), then one transaction of
/// 1 MiB. The runner measures the files on disk meanwhile; here, the large transaction
/// must be refused.
fn fill_wal(f: &mut Findings) -> Result<(), SqlError> {
    let db = Db::open("tiny")?;
    db.execute("CREATE TABLE IF NOT EXISTS loot (data BLOB)", &[])?;
    db.execute("DELETE FROM loot", &[])?;
    let mut failed = 0;
    for _ in 0..40 {
        let round = db.transaction(|tx| {
            for _ in 0..24 {
                tx.execute("INSERT INTO loot (data) VALUES (randomblob(4000))", &[])?;
            }
            tx.execute("DELETE FROM loot", &[])?;
            Ok::<_, SqlError>(())
        });
        if round.is_err() {
            failed += 1;
        }
    }
    f.note(format!(
        "40 rounds of 96 KiB written and deleted, {failed} refused"
    ));
    let big = db.transaction(|tx| {
        for _ in 0..16 {
            tx.execute("INSERT INTO loot (data) VALUES (randomblob(65536))", &[])?;
        }
        Ok::<_, SqlError>(())
    });
    f.must_hit_limit(
        "one transaction of 1 MiB in a 1 MiB store",
        "the store is full",
        big,
    );
    let _ = db.execute("DELETE FROM loot", &[]);
    Ok(())
}

/// `POST /intruder/attack/host-statements` with a JSON list of the host's own statement
/// texts (the runner records them from the host; they are public anyway, in its source):
/// each is sent back as guest SQL, in a transaction and outside one, with as many NULL
/// parameters as it has placeholders. First the intruder makes the host run its statements
/// on its store's connections (publishing a declared event), so that a host that shares its
/// statement cache with guests would hand its already-authorized statements back.
fn host_statements(req: Request) -> Result<Response, ApiError> {
    let texts: Vec<String> = req.json()?;
    let mut f = Findings::default();
    let db = own()?;
    db.transaction(|tx| tx.publish_raw("Intruded", "prime", "application/json", b"{}"))?;
    for text in &texts {
        let params = vec![Value::Null; text.matches('?').count()];
        let shown: String = text.chars().take(60).collect();
        let inside = db.raw().begin().and_then(|tx| {
            let r = tx.query(text, &params);
            drop(tx);
            r.map(|rows| format!("{} rows", rows.rows.len()))
        });
        f.must_be_denied(&format!("in a transaction: {shown}"), inside);
        let outside = db
            .raw()
            .query(text, &params)
            .map(|rows| format!("{} rows", rows.rows.len()));
        f.must_be_denied(&format!("outside a transaction: {shown}"), outside);
    }
    if texts.is_empty() {
        f.got_through("no host statement texts", "nothing was tried: inconclusive");
    }
    f.note(format!("{} host statement texts tried", texts.len()));
    Ok(f.report("host-statements"))
}

// ---------------------------------------------------------------------------------------
// Stores on shared servers (run when the catalogue's host has them: stores `pg` on
// PostgreSQL and `my` on MariaDB, each capped at 2 MiB, and kv store `rkv` on Redis,
// capped at 1 MiB)
// ---------------------------------------------------------------------------------------

/// A statement that catches its own cancel and goes on, holding the store's writer: the
/// host must end it (its budget is the intruder's `statement-ms`), and the writer must be
/// free right after.
fn pg_trap_cancel(f: &mut Findings) -> Result<(), SqlError> {
    let db = Db::open("pg")?;
    patiently(|| db.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)", &[]))?;
    for statement in [
        "DO $$ BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN PERFORM pg_sleep(30); END $$",
        "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$",
    ] {
        let started = std::time::Instant::now();
        let r = db.transaction(|tx| {
            tx.execute("INSERT INTO held (x) VALUES (1)", &[])?;
            tx.execute(statement, &[])
        });
        let took = started.elapsed();
        f.must_hit_limit(&format!("{statement} (in a transaction)"), TIME_BUDGET, r);
        if took > std::time::Duration::from_secs(2) {
            f.got_through(statement, format!("answered after {} ms", took.as_millis()));
        }
        // A held writer would make this wait for the 30 s sleep (or forever, for the loop).
        let started = std::time::Instant::now();
        let next =
            patiently(|| db.transaction(|tx| tx.execute("INSERT INTO held (x) VALUES (2)", &[])));
        let waited = started.elapsed();
        match next {
            Ok(_) if waited < std::time::Duration::from_secs(2) => f.refused(
                "the store's writer after it",
                format!(
                    "free: the next transaction committed in {} ms",
                    waited.as_millis()
                ),
            ),
            Ok(_) => f.got_through(
                "the store's writer after it",
                format!(
                    "held: the next transaction waited {} ms",
                    waited.as_millis()
                ),
            ),
            Err(err) => f.got_through(
                "the store's writer after it",
                format!("still held: {}", describe(&err)),
            ),
        }
    }
    patiently(|| db.execute("DROP TABLE held", &[]))?;
    Ok(())
}

/// Runs `statement` again while it stops at its time budget (a busy machine, not the
/// attack): up to eight times.
fn patiently<T>(statement: impl Fn() -> Result<T, SqlError>) -> Result<T, SqlError> {
    let mut tries = 0;
    loop {
        match statement() {
            Err(SqlError::LimitExceeded(m)) if m.contains("time budget") && tries < 8 => tries += 1,
            r => return r,
        }
    }
}

/// The host's sequences in `silo_host`: reading or advancing them would show (and skew)
/// how many events and sagas the host recorded.
fn pg_host_sequences(f: &mut Findings) -> Result<(), SqlError> {
    let db = Db::open("pg")?;
    let seqs = patiently(|| {
        db.query(
            "SELECT count(*) AS n FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
         ON n.oid = c.relnamespace WHERE n.nspname = 'silo_host' AND c.relkind = 'S'",
            &[],
        )
    })?;
    let n: i64 = seqs.first().map(|r| r.get("n")).transpose()?.unwrap_or(0);
    if n == 0 {
        f.got_through(
            "the host's sequences",
            "none found: the probe would prove nothing",
        );
    }
    for statement in [
        "SELECT nextval('silo_host._silo_outbox_seq_seq')",
        "SELECT setval('silo_host._silo_outbox_seq_seq', 1000)",
        "SELECT pg_sequence_last_value('silo_host._silo_outbox_seq_seq')",
        "SELECT last_value FROM silo_host._silo_outbox_seq_seq",
    ] {
        f.must_be_denied(statement, patiently(|| db.query(statement, &[])));
    }
    Ok(())
}

/// `EXPLAIN ANALYZE` on the host's tables counts the rows row-level security hides.
fn pg_explain(f: &mut Findings) -> Result<(), SqlError> {
    let db = Db::open("pg")?;
    for statement in [
        "EXPLAIN ANALYZE SELECT * FROM silo_host._silo_outbox",
        "EXPLAIN (ANALYZE) SELECT * FROM silo_host._silo_outbox",
        "explain (analyse true) select * from silo_host._silo_outbox",
        "explain verbose analyze select * from silo_host._silo_outbox",
        "/* quiet */ EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM silo_host._silo_outbox",
    ] {
        f.must_be_denied(statement, patiently(|| db.query(statement, &[])));
    }
    Ok(())
}

/// 64 KiB rows into a 2 MiB PostgreSQL store.
fn pg_fill(f: &mut Findings) -> Result<(), SqlError> {
    fill_server_store(
        f,
        "pg",
        "CREATE TABLE IF NOT EXISTS filler (b BYTEA)",
        "DELETE FROM filler",
    )
}

/// 64 KiB rows into a 2 MiB MariaDB store.
fn mariadb_fill(f: &mut Findings) -> Result<(), SqlError> {
    fill_server_store(
        f,
        "my",
        "CREATE TABLE IF NOT EXISTS filler (b LONGBLOB)",
        "TRUNCATE TABLE filler",
    )
}

fn fill_server_store(
    f: &mut Findings,
    store: &str,
    create: &str,
    empty: &str,
) -> Result<(), SqlError> {
    let db = Db::open(store)?;
    patiently(|| db.execute(create, &[]))?;
    let (mut inserted, mut slow) = (0u64, 0);
    let stop = loop {
        if inserted == 256 {
            break None;
        }
        // Bytes that do not compress (PostgreSQL would TOAST-compress a repeated byte).
        let row = Value::Blob(noise(64 << 10, inserted));
        match db.raw().execute(
            "INSERT INTO filler (b) VALUES (?)",
            std::slice::from_ref(&row),
        ) {
            Ok(_) => inserted += 1,
            // A statement past its time budget on a busy machine is not the cap: again.
            Err(SqlError::LimitExceeded(m)) if m.contains("time budget") && slow < 8 => slow += 1,
            Err(err) => break Some(err),
        }
    };
    let what = format!("64 KiB rows into a 2 MiB store ({inserted} went in)");
    match stop {
        Some(err @ SqlError::LimitExceeded(_)) if describe(&err).contains("full") => {
            f.refused(&what, describe(&err))
        }
        Some(err) => f.got_through(&what, format!("not a full store but {}", describe(&err))),
        None => f.got_through(&what, "16 MiB went in"),
    }
    // Emptying may also meet a busy machine: a few tries.
    if patiently(|| db.execute(empty, &[])).is_err() {
        f.note("the filler table could not be emptied");
    }
    Ok(())
}

/// `len` bytes of xorshift noise from `seed`: data no store can compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Server-wide named locks on MariaDB: holding the host's provisioning lock would stall
/// every host's provisioning on that server.
fn mariadb_named_locks(f: &mut Findings) -> Result<(), SqlError> {
    let db = Db::open("my")?;
    for statement in [
        "SELECT GET_LOCK('silo_provision', 0)",
        "select get_lock ('_silo_provision', 0)",
        "SELECT IS_USED_LOCK('silo_provision')",
        "SELECT RELEASE_ALL_LOCKS()",
    ] {
        f.must_be_denied(statement, patiently(|| db.query(statement, &[])));
    }
    Ok(())
}

/// 100 KiB values into a 1 MiB Redis store.
fn redis_fill(f: &mut Findings) -> Result<(), SqlError> {
    let kv = silo_sdk::Kv::open("rkv")?;
    let value = noise(100 << 10, 7);
    let mut stop = None;
    let mut set = 0;
    while set < 64 {
        match kv.set(&format!("fill-{set}"), &value, None) {
            Ok(()) => set += 1,
            Err(err) => {
                stop = Some(err);
                break;
            }
        }
    }
    let what = format!("100 KiB values into a 1 MiB store ({set} went in)");
    match stop {
        Some(err @ SqlError::LimitExceeded(_)) if describe(&err).contains("full") => {
            f.refused(&what, describe(&err))
        }
        Some(err) => f.got_through(&what, format!("not a full store but {}", describe(&err))),
        None => f.got_through(&what, "6.4 MiB went in"),
    }
    for i in 0..set {
        kv.delete(&format!("fill-{i}"))?;
    }
    Ok(())
}

fn open_other_store(f: &mut Findings) -> Result<(), SqlError> {
    for name in [
        "users",
        "products",
        "orders",
        "main.db",
        "../users/main",
        "",
    ] {
        f.must_be_denied(&format!("open {name:?}"), Db::open(name));
    }
    Ok(())
}

/// Plausible store names the intruder was never granted: each must be `access-denied`.
fn guess_store_names(f: &mut Findings) -> Result<(), SqlError> {
    const GUESSES: &[&str] = &[
        "default",
        "shared",
        "db",
        "sqlite",
        "users-main",
        "users_main",
        "users/main",
        "users.main",
        "users:main",
        "orders-main",
        "products-main",
        "reference",
        "reference/main",
        "main2",
        "intruder",
        "intruder-main",
        "admin",
        "host",
        "silo",
        "_silo",
        "system",
        "temp",
        "memory",
        ":memory:",
        "file:main?mode=rwc",
        "main/../../users/main",
        "/",
        "*",
        "..",
        "stores",
        "cache",
        "data",
    ];
    for name in GUESSES {
        f.must_be_denied(&format!("open {name:?}"), Db::open(name));
    }
    Ok(())
}

/// A committed transaction, used again. Safe Rust cannot even write this: `commit` takes
/// the handle by value (WIT `own<transaction>`), and `Db` has no way to be used after it
/// is dropped. The unsafe version is `GET /intruder/trap/stale-transaction`.
fn stale_handle(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    let tx = db.raw().begin()?;
    tx.execute(
        "INSERT INTO bait (x) VALUES (?)",
        &[Value::Text("stale".into())],
    )?;
    Transaction::commit(tx)?;
    f.refused(
        "use a transaction after commit",
        "consumed by commit: not expressible (commit takes own<transaction>)",
    );
    f.refused(
        "use a Database after it was dropped",
        "not expressible in safe Rust (the handle is moved into drop)",
    );
    db.execute("DELETE FROM bait WHERE x = 'stale'", &[])?;
    f.note("see /intruder/trap/stale-transaction for the same with a forged handle");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reaching past the store through SQL
// ---------------------------------------------------------------------------------------

/// Attach another database file (or an in-memory one) to our connection.
fn attach(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "ATTACH DATABASE '/work/main/.silo/stores/users/main.db' AS u",
        "ATTACH DATABASE '.silo/stores/users/main.db' AS u",
        "ATTACH DATABASE '../users/main.db' AS u",
        "ATTACH 'file:x?mode=memory' AS m",
        "ATTACH ':memory:' AS m",
        "ATTACH '' AS t",
    ] {
        f.must_be_denied(statement, db.execute(statement, &[]));
    }
    Ok(())
}

/// Copy the whole store to a file of our choosing (the precheck only looks at the first
/// word, so also behind a comment).
fn vacuum_into(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "VACUUM INTO '/tmp/stolen.db'",
        "/* hidden */ VACUUM INTO '/tmp/stolen-2.db'",
        "-- hidden\nVACUUM INTO '/tmp/stolen-3.db'",
        "VACUUM main INTO 'file:/tmp/stolen-4.db'",
    ] {
        f.must_be_denied(statement, db.execute(statement, &[]));
    }
    f.must_be_denied(
        "VACUUM INTO via query",
        db.query("/**/VACUUM INTO '/tmp/stolen-5.db'", &[]),
    );
    Ok(())
}

/// Load native code into the host process. (`readfile`/`writefile` belong to the sqlite3
/// shell, not the library silo links, so there is nothing to probe there.)
fn load_extension(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "SELECT load_extension('/usr/lib/x')",
        "SELECT LOAD_EXTENSION('/usr/lib/x', 'sqlite3_x_init')",
        "SELECT length(load_extension('libc.so.6'))",
    ] {
        f.must_be_denied(statement, db.query(statement, &[]));
    }
    Ok(())
}

/// PRAGMAs that change the file, the schema rules or the limits.
fn pragmas(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "PRAGMA writable_schema=1",
        "PRAGMA journal_mode=OFF",
        "PRAGMA max_page_count=9999999",
        "PRAGMA trusted_schema=1",
        "PRAGMA query_only=0",
        "PRAGMA mmap_size=1000000",
        "PRAGMA main.journal_mode=DELETE",
        "PRAGMA temp_store_directory='/tmp'",
        "PRAGMA wal_checkpoint(TRUNCATE)",
    ] {
        f.must_be_denied(statement, db.query(statement, &[]));
    }
    Ok(())
}

/// A URI file name that points SQLite at an arbitrary file.
fn uri_filename(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "ATTACH 'file:/etc/passwd?immutable=1' AS p",
        "ATTACH 'file:///etc/passwd?mode=ro' AS p",
    ] {
        f.must_be_denied(statement, db.execute(statement, &[]));
    }
    Ok(())
}

/// The host's `_silo_*` tables in our own file: read or write them directly, in other
/// spellings, through a view, a CTE, a copy, or a trigger on one of our own tables.
fn host_tables(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    let existing = db.query(
        "SELECT name FROM sqlite_schema WHERE name LIKE '\\_silo\\_%' ESCAPE '\\'",
        &[],
    )?;
    let names: Vec<String> = existing
        .iter()
        .filter_map(|r| r.get::<String>("name").ok())
        .collect();
    f.note(format!("host tables in the file: {names:?}"));

    // Every one exists in the intruder's store (it publishes, subscribes and may start
    // sagas), so a probe fails only because it is refused, never for a missing table.
    let tables = [
        "_silo_migrations",
        "_silo_outbox",
        "_silo_deliveries",
        "_silo_subscriptions",
        "_silo_heads",
        "_silo_inbox",
        "_silo_dead_letters",
        "_silo_sagas",
        "_silo_saga_steps",
        "_silo_commands",
        "_SILO_migrations",
        "_Silo_Migrations",
        "\"_silo_migrations\"",
        "[_silo_migrations]",
        "main._silo_migrations",
    ];
    for t in tables {
        f.must_be_denied(
            &format!("SELECT * FROM {t}"),
            db.query(&format!("SELECT * FROM {t}"), &[]),
        );
        f.must_be_denied(
            &format!("SELECT count(*) FROM {t}"),
            db.query(&format!("SELECT count(*) FROM {t}"), &[]),
        );
    }
    for statement in [
        "WITH m AS (SELECT * FROM _silo_migrations) SELECT * FROM m",
        "SELECT (SELECT count(*) FROM _silo_migrations) AS n",
        "SELECT rowid FROM _SILO_MIGRATIONS",
    ] {
        f.must_be_denied(statement, db.query(statement, &[]));
    }
    for t in [
        "_silo_migrations",
        "_silo_outbox",
        "_silo_deliveries",
        "_silo_heads",
        "_silo_inbox",
        "_silo_dead_letters",
        "_silo_sagas",
        "_silo_saga_steps",
        "_silo_commands",
        "_SILO_migrations",
    ] {
        for statement in [
            format!("INSERT INTO {t} DEFAULT VALUES"),
            format!("UPDATE {t} SET rowid = rowid WHERE 0"),
            format!("DELETE FROM {t} WHERE 0"),
        ] {
            f.must_be_denied(&statement, db.execute(&statement, &[]));
        }
    }
    let copy = db.execute(
        "CREATE TABLE intruder_copy AS SELECT * FROM _silo_migrations",
        &[],
    );
    if copy.is_ok() {
        let _ = db.execute("DROP TABLE intruder_copy", &[]);
    }
    f.must_be_denied(
        "CREATE TABLE intruder_copy AS SELECT * FROM _silo_migrations",
        copy,
    );
    f.must_be_denied(
        "INSERT INTO loot (data) SELECT count(*) FROM _silo_migrations",
        db.execute(
            "INSERT INTO loot (data) SELECT count(*) FROM _silo_migrations",
            &[],
        ),
    );

    through_view(f, &db, "VIEW", "intruder_peek");
    through_view(f, &db, "TEMP VIEW", "intruder_temp_peek");
    through_trigger(
        f,
        &db,
        "reads",
        "INSERT INTO loot (data) SELECT count(*) FROM _silo_migrations;",
    );
    through_trigger(f, &db, "writes", "DELETE FROM _silo_migrations WHERE 0;");

    // Last, since on a broken host it would wreck our own migration records.
    for t in ["_silo_migrations", "_SILO_migrations"] {
        let statement = format!("DROP TABLE {t}");
        f.must_be_denied(&statement, db.execute(&statement, &[]));
    }
    Ok(())
}

/// `CREATE [TEMP] VIEW name AS SELECT * FROM _silo_migrations`, then read the view: the
/// read must fail (creating the view may succeed; it only names the table).
fn through_view(f: &mut Findings, db: &Db, kind: &str, name: &str) {
    let _ = db.execute(&format!("DROP VIEW IF EXISTS {name}"), &[]);
    match db.execute(
        &format!("CREATE {kind} {name} AS SELECT * FROM _silo_migrations"),
        &[],
    ) {
        Ok(_) => {
            // In a transaction, so the read runs on the connection that holds a TEMP view
            // (a plain read may go to another, pooled connection).
            let read = format!("SELECT * FROM {name}");
            f.must_be_denied(
                &format!("SELECT * FROM a {kind} over _silo_migrations"),
                db.transaction(|tx| tx.query(&read, &[])),
            );
            let _ = db.execute(&format!("DROP VIEW IF EXISTS {name}"), &[]);
        }
        Err(err) => {
            f.must_be_denied::<()>(&format!("CREATE {kind} over _silo_migrations"), Err(err))
        }
    }
}

/// A trigger on our own `bait` table whose body touches `_silo_migrations`, then an
/// insert into `bait`: the insert must fail (creating the trigger may succeed).
fn through_trigger(f: &mut Findings, db: &Db, what: &str, body: &str) {
    let _ = db.execute("DROP TRIGGER IF EXISTS intruder_spill", &[]);
    match db.execute(
        &format!("CREATE TRIGGER intruder_spill AFTER INSERT ON bait BEGIN {body} END"),
        &[],
    ) {
        Ok(_) => {
            f.must_be_denied(
                &format!("INSERT INTO bait with a trigger that {what} _silo_migrations"),
                db.execute("INSERT INTO bait (x) VALUES ('spill')", &[]),
            );
            let _ = db.execute("DROP TRIGGER IF EXISTS intruder_spill", &[]);
            let _ = db.execute("DELETE FROM bait WHERE x = 'spill'", &[]);
        }
        Err(err) => f.must_be_denied::<()>(
            &format!("CREATE TRIGGER that {what} _silo_migrations"),
            Err(err),
        ),
    }
}

/// Put a table of ours into the host's `_silo_` namespace: create one there, or rename
/// one there (`ALTER TABLE … RENAME TO`; the authorizer sees only the old name), in the
/// file or in the connection's TEMP schema. A planted `_silo_outbox` would be written by
/// the host, with our triggers firing under its privileges; a TEMP `_silo_migrations`
/// would shadow the real one for the host's unqualified statements on that connection.
/// The names used here are fresh, so a broken host keeps its real tables.
fn plant_host_table(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    let id = suffix();
    for statement in [
        format!("CREATE TABLE _silo_planted_{id} (x)"),
        format!("CREATE TEMP TABLE _silo_shadow_{id} (x)"),
        format!("CREATE VIEW _silo_view_{id} AS SELECT 1"),
    ] {
        f.must_be_denied(&statement, db.execute(&statement, &[]));
    }
    for (schema, temp) in [("main", ""), ("temp", "TEMP ")] {
        let scratch = format!("intruder_plant_{id}");
        let create = format!("CREATE {temp}TABLE {scratch} (x)");
        if !temp.is_empty() {
            // A TEMP table to rename would outlive the request on the host's connection:
            // being refused the TEMP table itself is the defence.
            let created = db.execute(&create, &[]);
            let refused = created.is_err();
            f.must_be_denied(&create, created);
            if refused {
                continue;
            }
        } else {
            db.execute(&create, &[])?;
        }
        let statement = format!("ALTER TABLE {schema}.{scratch} RENAME TO _silo_planted_{id}");
        let renamed = db.execute(&statement, &[]);
        if renamed.is_err() {
            let _ = db.execute(&format!("DROP TABLE {schema}.{scratch}"), &[]);
        } else {
            f.note(format!(
                "{schema}._silo_planted_{id} now exists and cannot be dropped by the guest"
            ));
        }
        f.must_be_denied(
            &format!("ALTER TABLE {schema}.<own table> RENAME TO _silo_planted_…"),
            renamed,
        );
    }
    Ok(())
}

/// Rewrite the schema table itself.
fn schema_tamper(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "UPDATE sqlite_master SET sql = 'CREATE TABLE loot (id INTEGER PRIMARY KEY, data BLOB, pwned)' WHERE name = 'loot'",
        "DELETE FROM sqlite_schema",
        "INSERT INTO sqlite_master VALUES ('table', 'ghost', 'ghost', 0, 'CREATE TABLE ghost (x)')",
    ] {
        // SQLITE_DBCONFIG_DEFENSIVE makes the schema table read-only.
        f.must_be_bad_query(statement, "may not be modified", db.execute(statement, &[]));
    }
    let statement = "UPDATE sqlite_temp_master SET sql = NULL";
    f.must_be_bad_query(statement, "may not be modified", db.execute(statement, &[]));
    let statement = "CREATE TABLE sqlite_ghost (x)";
    f.must_be_bad_query(statement, "reserved", db.execute(statement, &[]));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------

/// Services the manifest entry does not list, by name, by spelling and by path.
fn call_undeclared(f: &mut Findings) -> Result<(), SqlError> {
    for (service, path) in [
        ("users", "/users"),
        ("orders", "/orders"),
        ("products", "/products"),
        ("intruder", "/intruder/attacks"),
    ] {
        f.call_must_be_denied(
            &format!("GET {service} {path}"),
            Call::get(service, path).send(),
        );
    }
    for url in [
        "http://USERS.silo.internal/users",
        "http://users.silo.internal./users",
        "http://users.silo.internal:80/users",
        "http://reference.silo.internal@users.silo.internal/users",
    ] {
        f.call_must_be_denied(&format!("GET {url}"), Call::url(Method::Get, url).send());
    }
    // A declared service with another service's path: the host routes by authority, so
    // `reference` must answer it (404), never `users`.
    // Only reference's own 404 shows that: any other answer or error could come from a host
    // that routed it elsewhere.
    match Call::get("reference", "/users").send() {
        Ok(resp) if resp.status == 404 => {
            f.refused("GET reference /users", "answered 404 by reference")
        }
        Ok(resp) => f.got_through(
            "GET reference /users",
            format!("answered {}: {}", resp.status, resp.text()),
        ),
        Err(err) => f.got_through("GET reference /users", format!("not a 404 but {err}")),
    }
    Ok(())
}

/// The outside world, the host's own ports, and cloud metadata.
fn call_external(f: &mut Findings) -> Result<(), SqlError> {
    for url in [
        "http://example.com/",
        "http://127.0.0.1:8080/users",
        "http://[::1]:8081/admin/services",
        "http://localhost:5432/",
    ] {
        f.call_must_be_denied(&format!("GET {url}"), Call::url(Method::Get, url).send());
    }
    for url in [
        "https://example.com/",
        "http://169.254.169.254/latest/meta-data/",
        "http://reference.silo.internal.example.com/",
    ] {
        f.call_must_be_denied(&format!("GET {url}"), Call::url(Method::Get, url).send());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// WASI: files, sockets, environment
// ---------------------------------------------------------------------------------------

/// What wasi-libc says when no preopened directory holds a path: ENOENT (44 in WASI's
/// numbering). The paths probed exist on every host (`/etc/passwd`, `/`, `.`, `/tmp`), so a
/// preopen that reached them would read, list or create; a platform without files
/// ("unsupported") would not say this.
const NO_PREOPEN: &str = "No such file or directory (os error 44)";
/// What a socket operation the host does not allow fails with: `access-denied` (EACCES,
/// 2 in WASI's numbering). PostgreSQL listens on 5432, so a connect that was let through
/// would connect.
const NO_SOCKETS: &str = "Permission denied (os error 2)";
/// What a name lookup the host does not allow fails with: a permanent resolver failure
/// (EAI_FAIL). `localhost` resolves wherever lookups are allowed.
const NO_LOOKUP: &str = "Non-recoverable error";

fn wasi_files(f: &mut Findings) -> Result<(), SqlError> {
    f.io_must_fail(
        "read /etc/passwd",
        NO_PREOPEN,
        std::fs::read_to_string("/etc/passwd"),
        &|s| format!("read {} bytes", s.len()),
    );
    f.io_must_fail(
        "read the users store file",
        NO_PREOPEN,
        std::fs::read("/work/main/.silo/stores/users/main.db"),
        &|b| format!("read {} bytes", b.len()),
    );
    for dir in ["/", "."] {
        f.io_must_fail(
            &format!("list {dir}"),
            NO_PREOPEN,
            std::fs::read_dir(dir),
            &|entries| format!("{} entries", entries.count()),
        );
    }
    f.io_must_fail(
        "create /tmp/x",
        NO_PREOPEN,
        std::fs::File::create("/tmp/x"),
        &|_| "created".to_string(),
    );
    let preopens = silo_sdk::wasip2::filesystem::preopens::get_directories().len();
    if preopens == 0 {
        f.refused("preopened directories", "none");
    } else {
        f.got_through("preopened directories", format!("{preopens}"));
    }
    Ok(())
}

fn wasi_sockets(f: &mut Findings) -> Result<(), SqlError> {
    for addr in ["127.0.0.1:5432", "127.0.0.1:8081"] {
        f.io_must_fail(
            &format!("TCP connect {addr}"),
            NO_SOCKETS,
            TcpStream::connect(addr),
            &|_| "connected".to_string(),
        );
    }
    f.io_must_fail(
        "TCP listen 0.0.0.0:0",
        NO_SOCKETS,
        TcpListener::bind("0.0.0.0:0"),
        &|_| "listening".to_string(),
    );
    f.io_must_fail(
        "UDP bind 0.0.0.0:0",
        NO_SOCKETS,
        UdpSocket::bind("0.0.0.0:0"),
        &|_| "bound".to_string(),
    );
    f.io_must_fail(
        "resolve localhost:80",
        NO_LOOKUP,
        "localhost:80".to_socket_addrs(),
        &|addrs| format!("{} addresses", addrs.count()),
    );
    Ok(())
}

fn wasi_env(f: &mut Findings) -> Result<(), SqlError> {
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    if vars.is_empty() {
        f.refused("environment variables", "none");
    } else {
        f.got_through("environment variables", format!("{vars:?}"));
    }
    let args: Vec<String> = std::env::args().collect();
    if args.len() <= 1 {
        f.refused("arguments", format!("{args:?}"));
    } else {
        f.got_through("arguments", format!("{args:?}"));
    }
    match std::env::current_dir() {
        Err(err) => f.refused("working directory", format!("error: {err}")),
        Ok(dir) if dir.as_os_str() == "/" => f.refused("working directory", "/"),
        Ok(dir) => f.got_through("working directory", dir.display()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Size and time limits of the store
// ---------------------------------------------------------------------------------------

/// Ten million rows of 100 bytes (1 GB): must stop at the result size cap.
fn huge_result(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    f.must_hit_limit(
        "10 million rows of 100 bytes",
        "the result is larger than",
        patiently(|| {
            db.query(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) \
                 SELECT x, printf('%0100d', x) AS pad FROM c",
                &[],
            )
        }),
    );
    Ok(())
}

/// Values past SQLite's length limit, made by SQL or sent as a parameter.
fn huge_blob(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    for statement in [
        "INSERT INTO loot (data) VALUES (zeroblob(2000000000))",
        "INSERT INTO loot (data) VALUES (randomblob(1073741824))",
    ] {
        f.must_hit_limit(statement, "SQLITE_LIMIT_LENGTH", db.execute(statement, &[]));
    }
    // 17 MiB from the guest: moved, not cloned, so the instance stays in its memory limit.
    let blob = Value::Blob(vec![0u8; 17 << 20]);
    f.must_hit_limit(
        "INSERT a 17 MiB parameter",
        "SQLITE_LIMIT_LENGTH",
        db.raw()
            .execute("INSERT INTO loot (data) VALUES (?)", &[blob]),
    );
    let _ = db.execute("DELETE FROM loot", &[]);
    Ok(())
}

/// 512 KiB blobs until something refuses: must be `limit-exceeded` at the size cap. (Not
/// 1 MiB: a value that large is refused by the length limit, `result-kb`, before it is
/// written, and the cap is never reached.)
fn fill_disk(f: &mut Findings) -> Result<(), SqlError> {
    const MAX_INSERTS: usize = 2000;
    let db = own()?;
    db.execute("DELETE FROM loot", &[])?;
    let (mut inserted, mut slow) = (0, 0);
    let mut stop = None;
    while inserted < MAX_INSERTS {
        match db.execute("INSERT INTO loot (data) VALUES (randomblob(524288))", &[]) {
            Ok(_) => inserted += 1,
            // A statement past its time budget on a busy machine is not the cap: again.
            Err(SqlError::LimitExceeded(m)) if m.contains("time budget") && slow < 8 => slow += 1,
            Err(err) => {
                stop = Some(err);
                break;
            }
        }
    }
    let what = format!("insert 512 KiB blobs ({inserted} went in)");
    match stop {
        Some(err) => f.must_hit_limit::<()>(&what, "the store is full", Err(err)),
        None => f.got_through(&what, format!("no limit after {} MiB", MAX_INSERTS / 2)),
    }
    match db.execute("DELETE FROM loot", &[]) {
        Ok(r) => f.note(format!("cleaned up {} blobs", r.rows_affected)),
        Err(err) => f.note(format!("cleanup failed: {}", describe(&err))),
    }
    Ok(())
}

/// An endless recursive query: the host must interrupt it at the request's deadline.
fn runaway_sql(f: &mut Findings) -> Result<(), SqlError> {
    let db = own()?;
    f.must_hit_limit(
        "endless WITH RECURSIVE",
        TIME_BUDGET,
        db.query(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
             SELECT count(*) AS n FROM c",
            &[],
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Handles the instance does not own (unsafe on purpose: these should trap)
// ---------------------------------------------------------------------------------------

/// A 200 report for a trap endpoint that did not trap.
fn not_trapped(name: &str, f: Findings) -> Result<Response, ApiError> {
    Ok(f.report(name))
}

/// `GET /intruder/trap/forged-handle`: `Database` handles made from the numbers 0..64
/// (skipping our own), each asked for `SELECT 1`. The host must trap the instance on the
/// first one that is not a live database handle of ours, or refuse it.
#[allow(unsafe_code, reason = "forging resource handles is the attack")]
fn forged_handle(_req: Request) -> Result<Response, ApiError> {
    let db = own()?;
    let ours = db.raw().handle();
    let mut f = Findings::default();
    f.note(format!("our own database handle is {ours}"));
    for n in (1..64).chain([0]) {
        if n == ours {
            continue;
        }
        // SAFETY: none — the number is not a handle we own. That is the attack: the
        // canonical ABI and the host must refuse it.
        let forged = unsafe { Database::from_handle(n) };
        let result = forged.query("SELECT 1", &[]);
        // Never drop (and so close) a handle that is not ours.
        std::mem::forget(forged);
        match result {
            Ok(set) => f.got_through(
                &format!("handle {n}"),
                format!("ok, {} rows", set.rows.len()),
            ),
            Err(err) => f.refused(&format!("handle {n}"), describe(&err)),
        }
    }
    not_trapped("forged-handle", f)
}

/// `GET /intruder/trap/wrong-type-handle`: a live handle of another resource type (a
/// `wasi:http` `fields`) used as a `database`. The host must trap.
#[allow(unsafe_code, reason = "type-confusing a resource handle is the attack")]
fn wrong_type_handle(_req: Request) -> Result<Response, ApiError> {
    let fields = silo_sdk::wasip2::http::types::Fields::new();
    let mut f = Findings::default();
    // SAFETY: none — the handle is a `fields`, not a `database`. That is the attack.
    let forged = unsafe { Database::from_handle(fields.handle()) };
    let result = forged.query("SELECT 1", &[]);
    std::mem::forget(forged);
    match result {
        Ok(set) => f.got_through(
            "a fields handle as a database",
            format!("ok, {} rows", set.rows.len()),
        ),
        Err(err) => f.refused("a fields handle as a database", describe(&err)),
    }
    drop(fields);
    not_trapped("wrong-type-handle", f)
}

/// `GET /intruder/trap/stale-transaction`: a transaction's handle number kept across
/// `commit`, then turned back into a `Transaction`. The handle was given up by the commit,
/// so the host must trap, or answer `invalid-handle`.
#[allow(
    unsafe_code,
    reason = "reusing a consumed resource handle is the attack"
)]
fn stale_transaction(_req: Request) -> Result<Response, ApiError> {
    let db = own()?;
    let tx = db.raw().begin()?;
    let number = tx.handle();
    Transaction::commit(tx)?;
    let mut f = Findings::default();
    // SAFETY: none — the handle was moved into `commit`. That is the attack.
    let stale = unsafe { Transaction::from_handle(number) };
    let result = stale.execute("INSERT INTO bait (x) VALUES ('stale')", &[]);
    std::mem::forget(stale);
    match result {
        Err(err @ SqlError::InvalidHandle(_)) => f.refused("committed transaction", describe(&err)),
        Err(err) => f.got_through(
            "committed transaction",
            format!("not invalid-handle but {}", describe(&err)),
        ),
        Ok(r) => f.got_through("committed transaction", r.summary()),
    }
    not_trapped("stale-transaction", f)
}

/// `GET /intruder/trap/double-drop`: drops its own `database` handle, then rebuilds the
/// same handle number and drops it again. The second drop names a handle the instance no
/// longer has: the host must trap.
#[allow(unsafe_code, reason = "dropping a resource handle twice is the attack")]
fn double_drop(_req: Request) -> Result<Response, ApiError> {
    let db = Database::open("main").map_err(|e| ApiError::internal(describe(&e)))?;
    let number = db.handle();
    drop(db);
    // SAFETY: none — the handle was already dropped. That is the attack.
    let again = unsafe { Database::from_handle(number) };
    drop(again);
    let mut f = Findings::default();
    f.got_through(
        "drop a dropped database handle",
        "the second drop did not trap".to_string(),
    );
    not_trapped("double-drop", f)
}

// ---------------------------------------------------------------------------------------
// Exhaustion: these never answer on their own
// ---------------------------------------------------------------------------------------

/// A loop the optimizer cannot remove: `black_box` hides the counter's value.
fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Keeps 1 MiB blocks alive, touching every page, until an allocation fails (the
/// allocator then aborts: the instance traps).
fn allocate_forever() -> ! {
    const MIB: usize = 1 << 20;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; MIB];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        blocks.push(black_box(block));
    }
}

/// Recursion that is not a tail call and keeps a 4 KiB frame alive across the call, so it
/// is neither turned into a loop nor optimized away: the stack runs out and wasm traps.
#[inline(never)]
fn dig(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(depth % 4096) as usize] = depth.to_le_bytes()[0];
    let frame = black_box(frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    dig(depth + 1).wrapping_add(u64::from(frame[(depth % 4096) as usize]))
}
