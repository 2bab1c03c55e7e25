//! The host's tables as SQLite spells them: created by the host as it opens them, in the
//! store's `main` schema, which only host statements may touch (the authorizer).

use super::{Column, ColumnType, Dialect, Statements, Table, column_ddl, table_lines};

/// The SQLite dialect.
pub struct Sqlite;

fn column(c: &Column, single_key: bool) -> String {
    let ty = match c.ty {
        ColumnType::Integer => "INTEGER",
        ColumnType::Sequence => return format!("{} INTEGER PRIMARY KEY AUTOINCREMENT", c.name),
        ColumnType::Text | ColumnType::KeyText(_) => "TEXT",
        ColumnType::Blob => "BLOB",
        ColumnType::WrittenAt => {
            return format!(
                "{} TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                c.name
            );
        }
    };
    column_ddl(c.name, ty, c, single_key)
}

impl Dialect for Sqlite {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn create_table(&self, table: &Table) -> Vec<String> {
        let lines = table_lines(table, None, column);
        let mut out = vec![format!(
            "CREATE TABLE IF NOT EXISTS main.{} ({})",
            table.name,
            lines.join(", ")
        )];
        for i in table.indexes {
            out.push(format!(
                "CREATE INDEX IF NOT EXISTS main.{} ON {} ({})",
                i.name,
                table.name,
                i.columns.join(", ")
            ));
        }
        out
    }

    fn add_column(&self, table: &Table, c: &Column) -> String {
        format!(
            "ALTER TABLE main.{} ADD COLUMN {}",
            table.name,
            column(c, false)
        )
    }

    fn creates_at_open(&self) -> bool {
        true
    }

    fn seed_heads(&self) -> String {
        "INSERT INTO main._silo_heads (log, n) VALUES ('outbox', 0), ('sagas', 0) ON CONFLICT DO NOTHING".into()
    }

    fn statements(&self) -> &'static Statements {
        &STATEMENTS
    }
}

static STATEMENTS: Statements = Statements {
    init_head: "INSERT INTO main._silo_heads (log, n) VALUES (?, 0) ON CONFLICT DO NOTHING",
    lock_log: "UPDATE main._silo_heads SET n = n + 1 WHERE log = ?",
    subscriptions: "SELECT subscription, subscriber, topic FROM main._silo_subscriptions ORDER BY subscription",
    add_subscription: "INSERT INTO main._silo_subscriptions (subscription, subscriber, topic, created_ms) VALUES (?, ?, ?, ?)",
    drop_subscription: "DELETE FROM main._silo_subscriptions WHERE subscription = ?",
    drop_deliveries_of: "DELETE FROM main._silo_deliveries WHERE subscription = ?",
    prune_outbox: "DELETE FROM main._silo_outbox WHERE seq NOT IN (SELECT seq FROM main._silo_deliveries)",
    append_event: "INSERT INTO main._silo_outbox (id, topic, key, time_ms, content_type, data, trace_parent) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    add_delivery: "INSERT INTO main._silo_deliveries (subscription, seq) VALUES (?, ?)",
    pending: "SELECT d.subscription, d.attempts, o.id, o.topic, o.key, o.seq, o.time_ms, o.content_type, o.data, o.trace_parent
              FROM main._silo_deliveries d JOIN main._silo_outbox o ON o.seq = d.seq
              WHERE d.seq > ? ORDER BY d.seq, d.subscription LIMIT ?",
    record_failure: "UPDATE main._silo_deliveries SET attempts = ?, last_error = ? WHERE subscription = ? AND seq = ?",
    dead_letter: "INSERT INTO main._silo_dead_letters
                    (id, subscription, subscriber, event_id, seq, topic, key, time_ms, content_type, data, attempts, last_error, dead_ms, trace_parent)
                  SELECT ?, ?, ?, id, seq, topic, key, time_ms, content_type, data, ?, ?, ?, trace_parent
                  FROM main._silo_outbox WHERE seq = ?",
    ack: "DELETE FROM main._silo_deliveries WHERE subscription = ? AND seq = ?",
    prune_event: "DELETE FROM main._silo_outbox WHERE seq = ? AND NOT EXISTS (SELECT 1 FROM main._silo_deliveries d WHERE d.seq = ?)",
    backlog: "SELECT d.subscription, count(*), min(o.time_ms)
              FROM main._silo_deliveries d JOIN main._silo_outbox o ON o.seq = d.seq
              GROUP BY d.subscription",
    dead_letter_counts: "SELECT subscription, count(*) FROM main._silo_dead_letters GROUP BY subscription",
    dead_letters: "SELECT id, subscription, subscriber, event_id, seq, topic, key, time_ms, attempts, last_error, dead_ms
                   FROM main._silo_dead_letters ORDER BY dead_ms, id",
    dead_letter_event: "SELECT subscription, event_id, topic, key, time_ms, content_type, data, trace_parent FROM main._silo_dead_letters WHERE id = ?",
    delete_dead_letter: "DELETE FROM main._silo_dead_letters WHERE id = ?",
    record_inbox: "INSERT INTO main._silo_inbox (subscription, event_id, received_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    savepoint: "SAVEPOINT silo_event",
    release: "RELEASE silo_event",
    rollback_to: "ROLLBACK TO silo_event",
    command_reply: "SELECT ok, data, reason, source FROM main._silo_commands WHERE command_id = ?",
    record_command: "INSERT INTO main._silo_commands (command_id, saga_id, source, ok, data, reason, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    insert_saga: "INSERT INTO main._silo_sagas (id, kind, key, state, created_ms, updated_ms, trace_parent) VALUES (?, ?, ?, 'running', ?, ?, ?)",
    insert_step: "INSERT INTO main._silo_saga_steps (saga_id, idx, name, service, command, payload, compensation, state)
                  VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
    load_saga: "SELECT id, kind, key, state, reason, handled, created_ms, trace_parent FROM main._silo_sagas WHERE id = ?",
    load_steps: "SELECT idx, name, service, command, payload, compensation, state, attempts, comp_attempts, result, detail
                 FROM main._silo_saga_steps WHERE saga_id = ? ORDER BY idx",
    open_sagas: "SELECT rowid, id FROM main._silo_sagas WHERE handled = 0 AND rowid > ? ORDER BY rowid",
    open_count: "SELECT count(*) FROM main._silo_sagas WHERE handled = 0",
    sagas_in_state: "SELECT id FROM main._silo_sagas WHERE state = ? ORDER BY created_ms DESC LIMIT ?",
    sagas_newest: "SELECT id FROM main._silo_sagas ORDER BY created_ms DESC LIMIT ?",
    saga_counts: "SELECT state, count(*) FROM main._silo_sagas GROUP BY state",
    update_step: "UPDATE main._silo_saga_steps SET
                    state = coalesce(?, state),
                    attempts = coalesce(?, attempts),
                    comp_attempts = coalesce(?, comp_attempts),
                    result = coalesce(?, result),
                    detail = coalesce(?, detail)
                  WHERE saga_id = ? AND idx = ?",
    update_saga: "UPDATE main._silo_sagas SET state = ?, reason = coalesce(?, reason), updated_ms = ? WHERE id = ?",
    touch_saga: "UPDATE main._silo_sagas SET updated_ms = ? WHERE id = ?",
    mark_handled: "UPDATE main._silo_sagas SET handled = 1, updated_ms = ? WHERE id = ?",
    applied_migrations: "SELECT version, checksum FROM main._silo_migrations",
    record_migration: "INSERT INTO main._silo_migrations (version, description, checksum) VALUES (?, ?, ?)",
};
