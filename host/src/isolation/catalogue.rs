//! The attack catalogue: each attack the intruder makes, what should happen, and how the
//! runner judges it ([`Judge`]).

/// How an attack is carried out and judged.
#[derive(Debug, Clone, Copy)]
pub enum Judge {
    /// `GET /intruder/attack/NAME` answers `{"outcome":"blocked"|"succeeded","detail":…}`.
    Report,
    /// `GET PATH` must end in a 503 from the host (the instance was stopped) with error
    /// `code` and a message that contains `says` (what stopped it).
    HostStops {
        path: &'static str,
        code: &'static str,
        says: &'static str,
    },
    /// `N` concurrent `GET PATH` against a service limited to a few instances: all must be
    /// 503, most of them `busy`.
    Flood(&'static str, usize),
    /// Like `Report`, while the runner measures the intruder's store `store` on disk
    /// (database and write-ahead log) every few milliseconds: it must stay within `cap_mb`.
    ReportWithinCap { store: &'static str, cap_mb: u64 },
    /// `clients` concurrent loops of `GET path` for `millis`: each request works within its
    /// limits (answers 200, or 503 when the host stops it); what is judged is the victim.
    Load {
        path: &'static str,
        clients: usize,
        millis: u64,
    },
    /// Two loops of `GET path` (the intruder using a callee) for `millis` while outside
    /// clients keep asking the callee `callee`: at most 1% of the outside requests may be
    /// refused `busy` (unprotected, most of them are).
    CalleeStaysOpen {
        path: &'static str,
        callee: &'static str,
        millis: u64,
    },
    /// `clients` connections from outside send the headers and the start of a body to
    /// `POST path` and never finish it, for `millis`, while other clients keep asking
    /// `GET path`: none of those may be refused `busy`.
    SlowBodies {
        path: &'static str,
        clients: usize,
        millis: u64,
    },
    /// A subscriber's event lag (the `probe` service's copy of new users) quiet and while
    /// the intruder's handler spends 900 ms on each of `slow` new users named `slow…`: its
    /// p99 must stay within [`lag_bound`](super::lag_bound) of the quiet one.
    EventLag { slow: usize },
    /// The runner sends every host statement text the host has run (recorded through
    /// `SILO_RECORD_HOST_SQL`) to `POST /intruder/attack/host-statements`; the intruder sends
    /// each back as guest SQL, which must be `access-denied`.
    HostStatements,
    /// `GET PATH` floods the guest's stdout and stderr and answers 200 `{"written": bytes}`
    /// (at least 32 MiB); the host's log file ([`Target::host_log`](super::Target::host_log)) may grow by at most
    /// the service's log budget for the time it took (burst + rate × seconds, see
    /// [`crate::runtime::stdio`]) plus [`LOG_SLACK`] for the host's own lines.
    HostLog(&'static str),
    /// `GET PATH` makes the host hold memory for the instance; the host's resident memory
    /// (`VmRSS` of [`Target::host_pid`](super::Target::host_pid)), polled while it runs, may grow by at most
    /// `max_mib`, and the answer must be a 503 with error `code` whose message contains
    /// `says` (the cap that stopped it).
    HostMemory {
        path: &'static str,
        max_mib: u64,
        code: &'static str,
        says: &'static str,
    },
}

/// What the host's log may grow by during a log flood beyond the flooding service's budget:
/// its own lines (the notice of what was dropped, other services').
pub const LOG_SLACK: u64 = 64 << 10;

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Attack {
    pub name: &'static str,
    pub expected: &'static str,
    pub judge: Judge,
}

/// The catalogue, in the order the demo runs it.
pub const CATALOGUE: &[Attack] = &[
    Attack {
        name: "open-other-store",
        expected: "access-denied for other services' store names",
        judge: Judge::Report,
    },
    Attack {
        name: "guess-store-names",
        expected: "access-denied for every guessed name",
        judge: Judge::Report,
    },
    Attack {
        name: "stale-handle",
        expected: "a finished transaction cannot be used",
        judge: Judge::Report,
    },
    Attack {
        name: "forged-handle",
        expected: "a forged resource handle traps the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/trap/forged-handle",
            code: "service_trapped",
            says: "handle index",
        },
    },
    Attack {
        name: "wrong-type-handle",
        expected: "a handle of another resource type traps the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/trap/wrong-type-handle",
            code: "service_trapped",
            says: "used with the wrong type",
        },
    },
    Attack {
        name: "stale-transaction",
        expected: "a transaction handle kept across commit traps the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/trap/stale-transaction",
            code: "service_trapped",
            says: "unknown handle index",
        },
    },
    Attack {
        name: "double-drop",
        expected: "dropping an already dropped handle traps the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/trap/double-drop",
            code: "service_trapped",
            says: "unknown handle index",
        },
    },
    Attack {
        name: "attach",
        expected: "ATTACH is denied",
        judge: Judge::Report,
    },
    Attack {
        name: "vacuum-into",
        expected: "VACUUM INTO is denied",
        judge: Judge::Report,
    },
    Attack {
        name: "load-extension",
        expected: "extension loading is denied",
        judge: Judge::Report,
    },
    Attack {
        name: "pragmas",
        expected: "file- and schema-changing PRAGMAs are denied",
        judge: Judge::Report,
    },
    Attack {
        name: "uri-filename",
        expected: "URI filenames are not interpreted",
        judge: Judge::Report,
    },
    Attack {
        name: "host-tables",
        expected: "the host's _silo_* tables are unreachable, also via views and triggers",
        judge: Judge::Report,
    },
    Attack {
        name: "plant-host-table",
        expected: "nothing renamed into the host's _silo_ namespace; no TEMP objects",
        judge: Judge::Report,
    },
    Attack {
        name: "schema-tamper",
        expected: "sqlite_schema cannot be written",
        judge: Judge::Report,
    },
    Attack {
        name: "call-undeclared",
        expected: "calls to undeclared services are denied",
        judge: Judge::Report,
    },
    Attack {
        name: "call-external",
        expected: "outbound HTTP to any host is denied",
        judge: Judge::Report,
    },
    Attack {
        name: "wasi-files",
        expected: "no file system: every open fails",
        judge: Judge::Report,
    },
    Attack {
        name: "wasi-sockets",
        expected: "no sockets: connect, bind and lookups fail",
        judge: Judge::Report,
    },
    Attack {
        name: "wasi-env",
        expected: "no environment, arguments or working directory",
        judge: Judge::Report,
    },
    Attack {
        name: "huge-result",
        expected: "limit-exceeded past the result size cap",
        judge: Judge::Report,
    },
    Attack {
        name: "huge-blob",
        expected: "blobs past the length limit are refused",
        judge: Judge::Report,
    },
    Attack {
        name: "fill-disk",
        expected: "limit-exceeded at the store's size cap",
        judge: Judge::Report,
    },
    Attack {
        name: "runaway-sql",
        expected: "a runaway recursive query is interrupted at the deadline",
        judge: Judge::Report,
    },
    Attack {
        name: "infinite-loop",
        expected: "the CPU deadline stops the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/exhaust/loop",
            code: "deadline_exceeded",
            says: "did not answer within 1000 ms",
        },
    },
    Attack {
        name: "memory-growth",
        expected: "the memory limit stops the instance (503)",
        judge: Judge::HostStops {
            path: "/intruder/exhaust/memory",
            code: "service_trapped",
            says: "reached its memory limit of 32 MiB",
        },
    },
    Attack {
        name: "deep-recursion",
        expected: "its stack runs off its own linear memory: trap (503)",
        judge: Judge::HostStops {
            path: "/intruder/exhaust/recursion",
            code: "service_trapped",
            says: "out of bounds memory access",
        },
    },
    Attack {
        name: "request-flood",
        expected: "503 busy beyond the intruder's concurrency limit",
        judge: Judge::Flood("/intruder/exhaust/loop", 64),
    },
    Attack {
        name: "publish-undeclared",
        expected: "access-denied for topics not in `publishes` (another service's too)",
        judge: Judge::Report,
    },
    Attack {
        name: "saga-undeclared",
        expected: "access-denied for saga steps on services not in `saga-participants`",
        judge: Judge::Report,
    },
    Attack {
        name: "kv-other-store",
        expected: "access-denied for key-value stores it did not declare",
        judge: Judge::Report,
    },
    Attack {
        name: "host-statements",
        expected: "every host statement's text, sent as guest SQL, is access-denied",
        judge: Judge::HostStatements,
    },
    Attack {
        name: "temp-objects",
        expected: "TEMP tables, views, triggers, indexes refused in every spelling",
        judge: Judge::Report,
    },
    Attack {
        name: "file-views",
        expected: "dbstat (page sizes of every table, the host's too) is access-denied",
        judge: Judge::Report,
    },
    Attack {
        name: "fill-wal",
        expected: "database + write-ahead log stay within max-size-mb (1 MiB)",
        judge: Judge::ReportWithinCap {
            store: "tiny",
            cap_mb: 1,
        },
    },
    Attack {
        name: "slow-statements",
        expected: "statements of the whole budget back to back slow only the intruder",
        judge: Judge::Load {
            path: "/intruder/exhaust/sql",
            clients: 8,
            millis: 3000,
        },
    },
    Attack {
        name: "slow-handler",
        expected: "a slow event handler delays no other subscriber",
        judge: Judge::EventLag { slow: 6 },
    },
    Attack {
        name: "slow-call-bodies",
        expected: "calls whose bodies never end hold none of the callee's instances",
        judge: Judge::CalleeStaysOpen {
            path: "/intruder/exhaust/slow-call-bodies?n=64",
            callee: "/reference/countries",
            millis: 3000,
        },
    },
    Attack {
        name: "call-fanout",
        expected: "a caller gets its share of the callee's instances, no more",
        judge: Judge::CalleeStaysOpen {
            path: "/intruder/exhaust/fanout?n=64",
            callee: "/reference/countries",
            millis: 3000,
        },
    },
    Attack {
        name: "slow-bodies",
        expected: "unfinished request bodies from outside hold no instance",
        judge: Judge::SlowBodies {
            path: "/reference/countries",
            clients: 300,
            millis: 3000,
        },
    },
    // Fair sharing: work that would cost the host more than the intruder's limits say.
    Attack {
        name: "costly-function",
        expected: "costly SQL (huge values, LIKE, instr, sorts) stops near statement-ms",
        judge: Judge::Report,
    },
    Attack {
        name: "log-flood",
        expected: "32 MiB to stdout/stderr: the host log grows by the service's log budget",
        judge: Judge::HostLog("/intruder/flood/log"),
    },
    Attack {
        name: "host-fields",
        expected: "wasi:http fields in a loop: trap at the resource cap, host memory bounded",
        judge: Judge::HostMemory {
            path: "/intruder/flood/fields",
            max_mib: 96,
            code: "service_trapped",
            says: "host resources",
        },
    },
];

/// The intruder's store cap in [`manifest`](super::manifest).
pub const INTRUDER_STORE_MB: u64 = 8;

/// Attacks on stores that live on the machine's shared database servers: the intruder's
/// `pg` (PostgreSQL) and `my` (MariaDB) stores, 2 MiB each, and its `rkv` key-value store
/// on Redis, 1 MiB. They run when the catalogue's host has those servers ([`Servers`](super::Servers)).
pub const SERVER_CATALOGUE: &[Attack] = &[
    Attack {
        name: "pg-trap-cancel",
        expected: "a DO block that catches its cancel is ended; the writer is free at once",
        judge: Judge::Report,
    },
    Attack {
        name: "pg-host-sequences",
        expected: "nextval/setval/last_value on the host's sequences: access-denied",
        judge: Judge::Report,
    },
    Attack {
        name: "pg-explain",
        expected: "EXPLAIN ANALYZE (counts rows RLS hides) in every spelling: access-denied",
        judge: Judge::Report,
    },
    Attack {
        name: "pg-fill",
        expected: "limit-exceeded \"the store is full\" at max-size-mb (2 MiB)",
        judge: Judge::Report,
    },
    Attack {
        name: "mariadb-named-locks",
        expected: "GET_LOCK and friends (the host's provisioning lock): access-denied",
        judge: Judge::Report,
    },
    Attack {
        name: "mariadb-fill",
        expected: "limit-exceeded \"the store is full\" at max-size-mb (2 MiB)",
        judge: Judge::Report,
    },
    Attack {
        name: "redis-fill",
        expected: "limit-exceeded \"the store is full\" at max-size-mb (1 MiB)",
        judge: Judge::Report,
    },
];
