//! The host's tables as MariaDB spells them: in the store's host database (`{h}` in the
//! DDL, filled in by provisioning, which creates them), reached only through the backend's
//! `silo_exec` procedure. A statement runs inside that procedure, whose database is the
//! host database: table names need no qualifier. `silo_exec` passes every parameter as
//! bytes, so a text parameter is converted back to text (`CONVERT(? USING utf8mb4)`).

use super::{Column, ColumnType, Dialect, Statements, Table, column_ddl, table_lines};

/// The MariaDB dialect.
pub struct MariaDb;

/// A column name, quoted where MariaDB reserves it.
fn name(n: &str) -> String {
    if n == "key" { "`key`".into() } else { n.into() }
}

fn column(c: &Column, single_key: bool) -> String {
    let n = name(c.name);
    let ty = match c.ty {
        ColumnType::Integer => "BIGINT".to_string(),
        ColumnType::Sequence => return format!("{n} BIGINT AUTO_INCREMENT PRIMARY KEY"),
        ColumnType::Text => "TEXT".to_string(),
        ColumnType::KeyText(len) => format!("VARCHAR({len})"),
        ColumnType::Blob => "LONGBLOB".to_string(),
        ColumnType::WrittenAt => {
            return format!(
                "{n} VARCHAR(40) NOT NULL DEFAULT (DATE_FORMAT(UTC_TIMESTAMP(3), '%Y-%m-%dT%H:%i:%s.%fZ'))"
            );
        }
    };
    column_ddl(&n, &ty, c, single_key)
}

impl Dialect for MariaDb {
    fn backend(&self) -> &'static str {
        "mysql"
    }

    fn create_table(&self, table: &Table) -> Vec<String> {
        let rid = table
            .insertion_order
            .then_some("rid BIGINT AUTO_INCREMENT UNIQUE");
        let mut lines = table_lines(table, rid, column);
        for i in table.indexes {
            lines.push(format!("INDEX {} ({})", i.name, i.columns.join(", ")));
        }
        vec![format!(
            "CREATE TABLE IF NOT EXISTS {{h}}.{} ({}) ENGINE=InnoDB",
            table.name,
            lines.join(", ")
        )]
    }

    fn add_column(&self, table: &Table, c: &Column) -> String {
        format!(
            "ALTER TABLE {{h}}.{} ADD COLUMN IF NOT EXISTS {}",
            table.name,
            column(c, false)
        )
    }

    fn creates_at_open(&self) -> bool {
        false
    }

    fn seed_heads(&self) -> String {
        "INSERT INTO {h}._silo_heads (log, n) VALUES ('outbox', 0), ('sagas', 0) ON DUPLICATE KEY UPDATE log = log".into()
    }

    fn statements(&self) -> &'static Statements {
        &STATEMENTS
    }
}

static STATEMENTS: Statements = Statements {
    init_head: "INSERT INTO _silo_heads (log, n) VALUES (CONVERT(? USING utf8mb4), 0) ON DUPLICATE KEY UPDATE log = log",
    lock_log: "UPDATE _silo_heads SET n = n + 1 WHERE log = CONVERT(? USING utf8mb4)",
    subscriptions: "SELECT subscription, subscriber, topic FROM _silo_subscriptions ORDER BY subscription",
    add_subscription: "INSERT INTO _silo_subscriptions (subscription, subscriber, topic, created_ms)
                       VALUES (CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), ?)",
    drop_subscription: "DELETE FROM _silo_subscriptions WHERE subscription = CONVERT(? USING utf8mb4)",
    drop_deliveries_of: "DELETE FROM _silo_deliveries WHERE subscription = CONVERT(? USING utf8mb4)",
    prune_outbox: "DELETE FROM _silo_outbox WHERE seq NOT IN (SELECT seq FROM _silo_deliveries)",
    append_event: "INSERT INTO _silo_outbox (id, topic, `key`, time_ms, content_type, data, trace_parent)
                   VALUES (CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), ?, CONVERT(? USING utf8mb4), ?,
                     CONVERT(? USING utf8mb4)) RETURNING seq",
    add_delivery: "INSERT INTO _silo_deliveries (subscription, seq) VALUES (CONVERT(? USING utf8mb4), ?)",
    pending: "SELECT d.subscription, d.attempts, o.id, o.topic, o.`key`, o.seq, o.time_ms, o.content_type, o.data, o.trace_parent
              FROM _silo_deliveries d JOIN _silo_outbox o ON o.seq = d.seq
              WHERE d.seq > ? ORDER BY d.seq, d.subscription LIMIT ?",
    record_failure: "UPDATE _silo_deliveries SET attempts = ?, last_error = CONVERT(? USING utf8mb4)
                     WHERE subscription = CONVERT(? USING utf8mb4) AND seq = ?",
    dead_letter: "INSERT INTO _silo_dead_letters
                    (id, subscription, subscriber, event_id, seq, topic, `key`, time_ms, content_type, data, attempts, last_error, dead_ms, trace_parent)
                  SELECT CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4),
                    id, seq, topic, `key`, time_ms, content_type, data, ?, CONVERT(? USING utf8mb4), ?, trace_parent
                  FROM _silo_outbox WHERE seq = ?",
    ack: "DELETE FROM _silo_deliveries WHERE subscription = CONVERT(? USING utf8mb4) AND seq = ?",
    prune_event: "DELETE FROM _silo_outbox WHERE seq = ? AND NOT EXISTS (SELECT 1 FROM _silo_deliveries d WHERE d.seq = ?)",
    backlog: "SELECT d.subscription, count(*), min(o.time_ms)
              FROM _silo_deliveries d JOIN _silo_outbox o ON o.seq = d.seq
              GROUP BY d.subscription",
    dead_letter_counts: "SELECT subscription, count(*) FROM _silo_dead_letters GROUP BY subscription",
    dead_letters: "SELECT id, subscription, subscriber, event_id, seq, topic, `key`, time_ms, attempts, last_error, dead_ms
                   FROM _silo_dead_letters ORDER BY dead_ms, id",
    dead_letter_event: "SELECT subscription, event_id, topic, `key`, time_ms, content_type, data, trace_parent FROM _silo_dead_letters
                        WHERE id = CONVERT(? USING utf8mb4)",
    delete_dead_letter: "DELETE FROM _silo_dead_letters WHERE id = CONVERT(? USING utf8mb4)",
    record_inbox: "INSERT INTO _silo_inbox (subscription, event_id, received_ms)
                   VALUES (CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), ?)
                   ON DUPLICATE KEY UPDATE subscription = subscription",
    savepoint: "SAVEPOINT silo_event",
    release: "RELEASE SAVEPOINT silo_event",
    rollback_to: "ROLLBACK TO silo_event",
    command_reply: "SELECT ok, data, reason, source FROM _silo_commands WHERE command_id = CONVERT(? USING utf8mb4)",
    record_command: "INSERT INTO _silo_commands (command_id, saga_id, source, ok, data, reason, received_ms)
                     VALUES (CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), ?, ?, CONVERT(? USING utf8mb4), ?)",
    insert_saga: "INSERT INTO _silo_sagas (id, kind, `key`, state, created_ms, updated_ms, trace_parent)
                  VALUES (CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), 'running', ?, ?,
                    CONVERT(? USING utf8mb4))",
    insert_step: "INSERT INTO _silo_saga_steps (saga_id, idx, name, service, command, payload, compensation, state)
                  VALUES (CONVERT(? USING utf8mb4), ?, CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4),
                    CONVERT(? USING utf8mb4), ?, CONVERT(? USING utf8mb4), 'pending')",
    load_saga: "SELECT id, kind, `key`, state, reason, handled, created_ms, trace_parent FROM _silo_sagas WHERE id = CONVERT(? USING utf8mb4)",
    load_steps: "SELECT idx, name, service, command, payload, compensation, state, attempts, comp_attempts, result, detail
                 FROM _silo_saga_steps WHERE saga_id = CONVERT(? USING utf8mb4) ORDER BY idx",
    open_sagas: "SELECT rid, id FROM _silo_sagas WHERE handled = 0 AND rid > ? ORDER BY rid",
    open_count: "SELECT count(*) FROM _silo_sagas WHERE handled = 0",
    sagas_in_state: "SELECT id FROM _silo_sagas WHERE state = CONVERT(? USING utf8mb4) ORDER BY created_ms DESC LIMIT ?",
    sagas_newest: "SELECT id FROM _silo_sagas ORDER BY created_ms DESC LIMIT ?",
    saga_counts: "SELECT state, count(*) FROM _silo_sagas GROUP BY state",
    update_step: "UPDATE _silo_saga_steps SET
                    state = coalesce(CONVERT(? USING utf8mb4), state),
                    attempts = coalesce(?, attempts),
                    comp_attempts = coalesce(?, comp_attempts),
                    result = coalesce(?, result),
                    detail = coalesce(CONVERT(? USING utf8mb4), detail)
                  WHERE saga_id = CONVERT(? USING utf8mb4) AND idx = ?",
    update_saga: "UPDATE _silo_sagas SET state = CONVERT(? USING utf8mb4), reason = coalesce(CONVERT(? USING utf8mb4), reason),
                  updated_ms = ? WHERE id = CONVERT(? USING utf8mb4)",
    touch_saga: "UPDATE _silo_sagas SET updated_ms = ? WHERE id = CONVERT(? USING utf8mb4)",
    mark_handled: "UPDATE _silo_sagas SET handled = 1, updated_ms = ? WHERE id = CONVERT(? USING utf8mb4)",
    applied_migrations: "SELECT version, checksum FROM _silo_migrations",
    record_migration: "INSERT INTO _silo_migrations (version, description, checksum)
                       VALUES (?, CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4))",
};
