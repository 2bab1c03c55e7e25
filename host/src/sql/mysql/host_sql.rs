//! The rewriting of the host's own statements (written in SQLite's dialect) for MariaDB,
//! run through the `silo_exec` procedure.

use super::*;

// ---------------------------------------------------------------------------------------
// Host statements.

/// Rewrites a host statement (portable form: `main._silo_x`, `?`, `rowid`, a `key` column,
/// `ON CONFLICT DO NOTHING`) for MariaDB and binds its parameters: integers, reals and
/// NULLs are written into the text, texts and blobs stay parameters (texts as
/// `CONVERT(? USING utf8mb4)`: `silo_exec` passes every parameter as bytes). Host DDL is
/// applied at provisioning, so it becomes `None`.
pub(super) fn host_sql(
    sql: &str,
    host_db: &str,
    params: &[Value],
) -> Result<Option<(String, Vec<Value>)>, SqlError> {
    let head = sql.trim_start();
    if head.starts_with("CREATE TABLE IF NOT EXISTS main._silo_")
        || head.starts_with("CREATE INDEX IF NOT EXISTS main._silo_")
    {
        return Ok(None);
    }
    let h = ident(host_db);
    let pieces = text::pieces(sql);
    let mut out = String::with_capacity(sql.len() + 32);
    let mut binds = Vec::new();
    let mut next = 0;
    let mut first_column: Option<String> = None;
    let mut after_table = false;
    let mut i = 0;
    while i < pieces.len() {
        let (p, text) = &pieces[i];
        match p {
            text::Piece::Word(w)
                if *w == "main" && pieces.get(i + 1).is_some_and(|(_, t)| *t == ".") =>
            {
                out.push_str(&h);
                out.push('.');
                i += 2;
                after_table = true;
                continue;
            }
            text::Piece::Word(w) if w.eq_ignore_ascii_case("rowid") => out.push_str("rid"),
            text::Piece::Word(w) if w.eq_ignore_ascii_case("key") => {
                if after_table && first_column.is_none() {
                    first_column = Some("`key`".into());
                }
                out.push_str("`key`");
            }
            text::Piece::Word(w)
                if w.eq_ignore_ascii_case("ON")
                    && text::leading_words(&sql_rest(&pieces[i..]), 4)
                        == ["ON", "CONFLICT", "DO", "NOTHING"] =>
            {
                let col = first_column.clone().ok_or_else(|| {
                    SqlError::Other("ON CONFLICT DO NOTHING needs a column list".into())
                })?;
                out.push_str(&format!("ON DUPLICATE KEY UPDATE {col} = {col}"));
                // Skip the four words and what lies between them.
                let mut words = 0;
                while i < pieces.len() && words < 4 {
                    if matches!(pieces[i].0, text::Piece::Word(_)) {
                        words += 1;
                    }
                    i += 1;
                }
                continue;
            }
            text::Piece::Word(w) => {
                if after_table && first_column.is_none() && out.trim_end().ends_with('(') {
                    first_column = Some((*w).to_string());
                }
                if w.eq_ignore_ascii_case("VALUES") || w.eq_ignore_ascii_case("SELECT") {
                    after_table = false;
                }
                out.push_str(text);
            }
            text::Piece::Placeholder => {
                let v = params.get(next).ok_or_else(|| {
                    SqlError::Other("a host statement has more placeholders than parameters".into())
                })?;
                next += 1;
                match v {
                    Value::Null => out.push_str("NULL"),
                    Value::Integer(n) => out.push_str(&n.to_string()),
                    Value::Real(f) if f.is_finite() => out.push_str(&format!("{f:e}")),
                    Value::Real(_) => {
                        return Err(SqlError::Other(
                            "a host statement bound a non-finite real".into(),
                        ));
                    }
                    Value::Text(_) => {
                        out.push_str("CONVERT(? USING utf8mb4)");
                        binds.push(v.clone());
                    }
                    Value::Blob(_) => {
                        out.push('?');
                        binds.push(v.clone());
                    }
                }
            }
            text::Piece::Semicolon => out.push(';'),
            text::Piece::Other(t) => out.push_str(t),
            text::Piece::Executable => out.push_str(text),
        }
        i += 1;
    }
    if next != params.len() {
        return Err(SqlError::Other(format!(
            "a host statement has {next} placeholders, {} parameters were given",
            params.len()
        )));
    }
    if binds.len() > HOST_PARAMS {
        return Err(SqlError::Other(format!(
            "a host statement binds more than {HOST_PARAMS} texts and blobs"
        )));
    }
    Ok(Some((out, binds)))
}

pub(super) fn sql_rest(pieces: &[(text::Piece<'_>, &str)]) -> String {
    pieces.iter().take(16).map(|(_, t)| *t).collect()
}

/// True for the host's own savepoint statements (no gate needed).
pub(super) fn is_host_savepoint(sql: &str) -> bool {
    let head = sql.trim_start();
    head.starts_with("SAVEPOINT ")
        || head.starts_with("RELEASE ")
        || head.starts_with("ROLLBACK TO ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str, params: &[Value]) -> String {
        host_sql(sql, "silo_s_m_host", params).unwrap().unwrap().0
    }

    #[test]
    fn host_statements_are_rewritten() {
        assert_eq!(
            rewrite(
                "SELECT rowid, id FROM main._silo_sagas WHERE rowid > ? AND x = ? LIMIT ?",
                &[
                    Value::Integer(5),
                    Value::Text("a".into()),
                    Value::Integer(10)
                ]
            ),
            "SELECT rid, id FROM `silo_s_m_host`._silo_sagas WHERE rid > 5 AND x = CONVERT(? USING utf8mb4) LIMIT 10"
        );
        assert_eq!(
            rewrite(
                "INSERT INTO main._silo_inbox (subscription, event_id, received_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                &[
                    Value::Text("s".into()),
                    Value::Text("e".into()),
                    Value::Integer(1)
                ]
            ),
            "INSERT INTO `silo_s_m_host`._silo_inbox (subscription, event_id, received_ms) VALUES (CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), 1) ON DUPLICATE KEY UPDATE subscription = subscription"
        );
        let (q, binds) = host_sql(
            "INSERT INTO main._silo_outbox (id, topic, key, time_ms, content_type, data) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
            "h",
            &[
                Value::Text("i".into()),
                Value::Text("t".into()),
                Value::Text("k".into()),
                Value::Integer(-3),
                Value::Null,
                Value::Blob(vec![1]),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            q,
            "INSERT INTO `h`._silo_outbox (id, topic, `key`, time_ms, content_type, data) VALUES (CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), CONVERT(? USING utf8mb4), -3, NULL, ?) RETURNING seq"
        );
        assert_eq!(binds.len(), 4);
        assert!(
            host_sql("CREATE TABLE IF NOT EXISTS main._silo_inbox (x)", "h", &[])
                .unwrap()
                .is_none()
        );
        assert!(host_sql("SELECT ?", "h", &[]).is_err());
    }
}
