//! The host's own tables (outbox, inbox, saga log, command inbox, migrations): their schema,
//! declared once as data, and the typed operations the host runs on them.
//!
//! No SQL text crosses this module's boundary: the outbox, the saga log, the inboxes and the
//! migrations runner pass values in and get typed rows out ([`HostTables`]). What differs
//! by engine lives in one file per backend (`sqlite.rs`, `postgres.rs`, `mysql.rs`), each a
//! [`Dialect`]: its DDL, rendered from [`SCHEMA`], and the native text of every statement
//! ([`Statements`]). Binding values and reading rows is written once, in `operations.rs`, so
//! the backends cannot disagree on what a row means; a backend differs only in how its
//! engine spells a statement.
//!
//! Architecture invariant: the on-disk names and types are those each backend has always
//! used (existing data folders keep working); `tests.rs` creates the tables on every backend
//! and checks each one's columns against [`SCHEMA`].

mod mysql;
mod operations;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;

pub use operations::{
    CommandReply, DeadLetterRow, DeliveryRow, HostTables, NewCommandReply, NewEvent, SagaHead,
    StepRow, StepUpdate, SubscriptionRow, host_limits,
};

/// The portable type of a column, as each backend renders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A 64-bit integer.
    Integer,
    /// The integer key a table's rows are numbered by as they are appended (the outbox's
    /// sequence): SQLite's `INTEGER PRIMARY KEY AUTOINCREMENT`, an identity column elsewhere.
    Sequence,
    /// Text of any length.
    Text,
    /// Text in a key or an index: an engine that cannot index unbounded text (MariaDB) gives
    /// it this many characters.
    KeyText(u16),
    /// Bytes.
    Blob,
    /// The time a row was written, as RFC 3339 text the engine fills in.
    WrittenAt,
}

impl ColumnType {
    /// The class of type a backend reports for the column (`integer`, `text`, `blob`), as
    /// the schema check compares them.
    pub fn class(self) -> &'static str {
        match self {
            Self::Integer | Self::Sequence => "integer",
            Self::Text | Self::KeyText(_) | Self::WrittenAt => "text",
            Self::Blob => "blob",
        }
    }
}

/// One column of a host table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    /// Starts at 0 when a row leaves it out.
    pub default_zero: bool,
    /// Added after the table's first shape (always nullable): a store whose table predates
    /// it gets it as the host opens the store ([`Dialect::add_column`]), so existing data
    /// folders and server stores keep working.
    pub added: bool,
}

/// A column's declaration in a CREATE TABLE: `NAME TYPE`, then `PRIMARY KEY` (the table's
/// only key column) or `NOT NULL`, then `DEFAULT 0`, as [`Column`] says. Every dialect spells
/// the name and type its own way; the rest is the same on every backend.
pub(super) fn column_ddl(name: &str, ty: &str, c: &Column, single_key: bool) -> String {
    let mut out = format!("{name} {ty}");
    if single_key {
        out.push_str(" PRIMARY KEY");
    } else if !c.nullable {
        out.push_str(" NOT NULL");
    }
    if c.default_zero {
        out.push_str(" DEFAULT 0");
    }
    out
}

/// The lines inside `table`'s CREATE TABLE: the dialect's own leading line if any (the
/// servers' insertion-order column), each column as `column` declares it (told whether it is
/// the table's only key column), and a composite primary key.
pub(super) fn table_lines(
    table: &Table,
    leading: Option<&str>,
    column: impl Fn(&Column, bool) -> String,
) -> Vec<String> {
    let single = table.primary_key.len() == 1;
    let mut lines: Vec<String> = leading.map(str::to_string).into_iter().collect();
    lines.extend(
        table
            .columns
            .iter()
            .map(|c| column(c, single && table.primary_key[0] == c.name)),
    );
    if !single {
        lines.push(format!("PRIMARY KEY ({})", table.primary_key.join(", ")));
    }
    lines
}

/// One index of a host table (besides its primary key).
#[derive(Debug, Clone, Copy)]
pub struct Index {
    pub name: &'static str,
    pub columns: &'static [&'static str],
}

/// One host table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub primary_key: &'static [&'static str],
    pub indexes: &'static [Index],
    /// Read in the order its rows were inserted (the saga log's scan): SQLite numbers every
    /// row anyway (`rowid`); a server backend adds an identity column `rid` for it.
    pub insertion_order: bool,
}

impl Table {
    /// The column `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        nullable: false,
        default_zero: false,
        added: false,
    }
}

const fn null(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        nullable: true,
        default_zero: false,
        added: false,
    }
}

const fn zero(name: &'static str) -> Column {
    Column {
        name,
        ty: ColumnType::Integer,
        nullable: false,
        default_zero: true,
        added: false,
    }
}

/// A nullable column added after its table's first shape (see [`Column::added`]).
const fn added(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        nullable: true,
        default_zero: false,
        added: true,
    }
}

/// The `traceparent` of the span an event or a saga was started in (W3C Trace Context):
/// what its delivery, or its commands, continue.
const TRACE_PARENT: Column = added("trace_parent", Text);

const fn table(
    name: &'static str,
    columns: &'static [Column],
    primary_key: &'static [&'static str],
) -> Table {
    Table {
        name,
        columns,
        primary_key,
        indexes: &[],
        insertion_order: false,
    }
}

use ColumnType::{Blob, Integer, KeyText, Sequence, Text, WrittenAt};

/// The applied migration steps of a store.
pub const MIGRATIONS: Table = table(
    "_silo_migrations",
    &[
        col("version", Integer),
        col("description", Text),
        col("checksum", Text),
        col("applied_at", WrittenAt),
    ],
    &["version"],
);

/// One row per append-only log of the store (`outbox`, `sagas`): a transaction appending to
/// a log first updates its row, so appends commit in the order of their sequence numbers
/// on every backend (SQLite has one writer anyway; on a server this is what lets a reader
/// take "everything after the last sequence seen" without missing a late commit).
pub const HEADS: Table = table(
    "_silo_heads",
    &[col("log", KeyText(64)), col("n", Integer)],
    &["log"],
);

/// One row per published event that some subscription still needs; `seq` is the source's
/// sequence number.
pub const OUTBOX: Table = table(
    "_silo_outbox",
    &[
        col("seq", Sequence),
        col("id", Text),
        col("topic", Text),
        col("key", Text),
        col("time_ms", Integer),
        col("content_type", Text),
        col("data", Blob),
        TRACE_PARENT,
    ],
    &["seq"],
);

/// The subscriptions registered for the source's topics.
pub const SUBSCRIPTIONS: Table = table(
    "_silo_subscriptions",
    &[
        col("subscription", KeyText(500)),
        col("subscriber", Text),
        col("topic", Text),
        col("created_ms", Integer),
    ],
    &["subscription"],
);

/// One row per (subscription, event) not yet delivered, with the attempts so far and the
/// last error.
pub const DELIVERIES: Table = Table {
    indexes: &[Index {
        name: "_silo_deliveries_seq",
        columns: &["seq"],
    }],
    ..table(
        "_silo_deliveries",
        &[
            col("subscription", KeyText(500)),
            col("seq", Integer),
            zero("attempts"),
            null("last_error", Text),
        ],
        &["subscription", "seq"],
    )
};

/// Events a subscription gave up on, each with a copy of the event.
pub const DEAD_LETTERS: Table = table(
    "_silo_dead_letters",
    &[
        col("id", KeyText(255)),
        col("subscription", Text),
        col("subscriber", Text),
        col("event_id", Text),
        col("seq", Integer),
        col("topic", Text),
        col("key", Text),
        col("time_ms", Integer),
        col("content_type", Text),
        col("data", Blob),
        col("attempts", Integer),
        col("last_error", Text),
        col("dead_ms", Integer),
        TRACE_PARENT,
    ],
    &["id"],
);

/// A subscriber's record of the events it applied, per subscription.
pub const INBOX: Table = table(
    "_silo_inbox",
    &[
        col("subscription", KeyText(500)),
        col("event_id", KeyText(255)),
        col("received_ms", Integer),
    ],
    &["subscription", "event_id"],
);

/// A saga participant's record of the commands it applied, with the reply it gave.
pub const COMMANDS: Table = table(
    "_silo_commands",
    &[
        col("command_id", KeyText(255)),
        col("saga_id", Text),
        col("source", Text),
        col("ok", Integer),
        null("data", Blob),
        null("reason", Text),
        col("received_ms", Integer),
    ],
    &["command_id"],
);

/// One row per saga of an orchestrator.
pub const SAGAS: Table = Table {
    indexes: &[Index {
        name: "_silo_sagas_open",
        columns: &["handled", "state"],
    }],
    insertion_order: true,
    ..table(
        "_silo_sagas",
        &[
            col("id", KeyText(255)),
            col("kind", Text),
            col("key", Text),
            col("state", KeyText(64)),
            null("reason", Text),
            zero("handled"),
            col("created_ms", Integer),
            col("updated_ms", Integer),
            TRACE_PARENT,
        ],
        &["id"],
    )
};

/// A saga's steps, in order.
pub const SAGA_STEPS: Table = table(
    "_silo_saga_steps",
    &[
        col("saga_id", KeyText(255)),
        col("idx", Integer),
        col("name", Text),
        col("service", Text),
        col("command", Text),
        col("payload", Blob),
        null("compensation", Text),
        col("state", Text),
        zero("attempts"),
        zero("comp_attempts"),
        null("result", Blob),
        null("detail", Text),
    ],
    &["saga_id", "idx"],
);

/// Every host table, in the order a server backend creates them.
pub const SCHEMA: &[Table] = &[
    MIGRATIONS,
    HEADS,
    OUTBOX,
    SUBSCRIPTIONS,
    DELIVERIES,
    DEAD_LETTERS,
    INBOX,
    COMMANDS,
    SAGAS,
    SAGA_STEPS,
];

/// The names of every host table (for a server backend's grants and policies).
pub fn table_names() -> impl Iterator<Item = &'static str> {
    SCHEMA.iter().map(|t| t.name)
}

/// The append-only logs that have a row in [`HEADS`].
pub const LOGS: &[&str] = &["outbox", "sagas"];

/// How one backend speaks to its host tables: the DDL it renders from [`SCHEMA`] and the
/// native text of each statement. One per backend, registered in [`dialect`].
pub trait Dialect: Send + Sync + 'static {
    /// The backend's name, as [`crate::sql::SqlStore::backend`] gives it.
    fn backend(&self) -> &'static str;
    /// The statements that create `table` (and its indexes) if it does not exist.
    fn create_table(&self, table: &Table) -> Vec<String>;
    /// The statement that adds column `column` (one [`Column::added`]) to `table`: a
    /// server's skips a column that exists; SQLite's is run only when the column is missing.
    fn add_column(&self, table: &Table, column: &Column) -> String;
    /// Whether the host creates its tables as it opens them (SQLite), rather than the
    /// backend at provisioning, with rights the store's own connections lack (servers).
    fn creates_at_open(&self) -> bool;
    /// The statement that gives every log of [`LOGS`] its row in [`HEADS`] if it has none.
    fn seed_heads(&self) -> String;
    /// Its native statements.
    fn statements(&self) -> &'static Statements;
}

/// The native text of every statement the host runs on its tables, one field per typed
/// operation of [`HostTables`]; parameters in the order given in each field's comment.
pub struct Statements {
    /// The head row of log (log).
    pub init_head: &'static str,
    /// (log)
    pub lock_log: &'static str,
    /// () -> subscription, subscriber, topic
    pub subscriptions: &'static str,
    /// (subscription, subscriber, topic, created_ms)
    pub add_subscription: &'static str,
    /// (subscription)
    pub drop_subscription: &'static str,
    /// (subscription)
    pub drop_deliveries_of: &'static str,
    /// ()
    pub prune_outbox: &'static str,
    /// (id, topic, key, time_ms, content_type, data, trace_parent) -> seq
    pub append_event: &'static str,
    /// (subscription, seq)
    pub add_delivery: &'static str,
    /// (after, limit) -> subscription, attempts, id, topic, key, seq, time_ms, content_type, data,
    /// trace_parent
    pub pending: &'static str,
    /// (attempts, last_error, subscription, seq)
    pub record_failure: &'static str,
    /// (id, subscription, subscriber, attempts, last_error, dead_ms, seq)
    pub dead_letter: &'static str,
    /// (subscription, seq)
    pub ack: &'static str,
    /// (seq, seq)
    pub prune_event: &'static str,
    /// () -> subscription, count, oldest time_ms
    pub backlog: &'static str,
    /// () -> subscription, count
    pub dead_letter_counts: &'static str,
    /// () -> id, subscription, subscriber, event_id, seq, topic, key, time_ms, attempts,
    /// last_error, dead_ms
    pub dead_letters: &'static str,
    /// (id) -> subscription, event_id, topic, key, time_ms, content_type, data, trace_parent
    pub dead_letter_event: &'static str,
    /// (id)
    pub delete_dead_letter: &'static str,
    /// (subscription, event_id, received_ms); affects no row for a duplicate
    pub record_inbox: &'static str,
    pub savepoint: &'static str,
    pub release: &'static str,
    pub rollback_to: &'static str,
    /// (command_id) -> ok, data, reason, source
    pub command_reply: &'static str,
    /// (command_id, saga_id, source, ok, data, reason, received_ms)
    pub record_command: &'static str,
    /// (id, kind, key, created_ms, updated_ms, trace_parent)
    pub insert_saga: &'static str,
    /// (saga_id, idx, name, service, command, payload, compensation)
    pub insert_step: &'static str,
    /// (id) -> id, kind, key, state, reason, handled, created_ms, trace_parent
    pub load_saga: &'static str,
    /// (saga_id) -> idx, name, service, command, payload, compensation, state, attempts,
    /// comp_attempts, result, detail
    pub load_steps: &'static str,
    /// (after) -> position, id
    pub open_sagas: &'static str,
    /// () -> count
    pub open_count: &'static str,
    /// (state, limit) -> id
    pub sagas_in_state: &'static str,
    /// (limit) -> id
    pub sagas_newest: &'static str,
    /// () -> state, count
    pub saga_counts: &'static str,
    /// (state, attempts, comp_attempts, result, detail, saga_id, idx); NULL keeps a value
    pub update_step: &'static str,
    /// (state, reason, updated_ms, id); a NULL reason keeps it
    pub update_saga: &'static str,
    /// (updated_ms, id)
    pub touch_saga: &'static str,
    /// (updated_ms, id)
    pub mark_handled: &'static str,
    /// () -> version, checksum
    pub applied_migrations: &'static str,
    /// (version, description, checksum)
    pub record_migration: &'static str,
}

/// The dialect of the backend serving `store`: the one place backends are registered.
pub fn dialect(backend: &str) -> Option<&'static dyn Dialect> {
    match backend {
        "sqlite" => Some(&sqlite::Sqlite),
        "postgres" => Some(&postgres::Postgres),
        "mysql" => Some(&mysql::MariaDb),
        _ => None,
    }
}

/// The DDL of the host tables as `backend` renders it (for a server backend's
/// provisioning script).
pub fn create_statements(backend: &str) -> Vec<String> {
    let Some(d) = dialect(backend) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in SCHEMA {
        out.extend(d.create_table(t));
        // A table made before a column was added gets it here (provisioning runs at every
        // open of a server store).
        out.extend(
            t.columns
                .iter()
                .filter(|c| c.added)
                .map(|c| d.add_column(t, c)),
        );
    }
    out.push(d.seed_heads());
    out
}
