//! Driver errors of the PostgreSQL backend mapped to the `SqlError` a guest may see.

use crate::sql::SqlError;

pub(super) fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(format!("postgres: {e}"))
}

/// Maps a driver error to what the guest may see.
pub(super) fn map_err(e: tokio_postgres::Error) -> SqlError {
    let Some(db) = e.as_db_error() else {
        if e.is_closed() || e.to_string().contains("connection") {
            return unavailable(e);
        }
        // Client-side errors: binding a parameter, a closed connection, I/O.
        let msg = e.to_string();
        if msg.contains("error serializing parameter") || msg.contains("parameters but") {
            let detail = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or(msg);
            return SqlError::BadQuery(detail);
        }
        return unavailable(e);
    };
    let code = db.code().code();
    let m = db.message().to_string();
    match &code[..2] {
        "23" => SqlError::ConstraintViolation(m),
        "42" if code == "42501" => SqlError::AccessDenied(m),
        "42" | "22" | "0A" | "26" | "34" | "3F" | "2B" => SqlError::BadQuery(m),
        "25" => SqlError::BadQuery(format!(
            "{m} (an earlier statement failed: roll the transaction back)"
        )),
        "57" if code == "57014" => SqlError::LimitExceeded(
            "the statement ran past its time budget or the request's deadline".into(),
        ),
        "53" | "54" => SqlError::LimitExceeded(m),
        "08" | "57" | "40" | "55" => SqlError::Unavailable(m),
        _ => SqlError::Other(m),
    }
}
