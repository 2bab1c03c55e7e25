//! The mapping of SQLite's errors to what the guest may see.

use crate::sql::SqlError;

/// What SQLite says when the authorizer denies a function: it reports it as a plain
/// SQLITE_ERROR, not SQLITE_AUTH.
const FUNCTION_DENIED: &str = "not authorized to use function";

/// Maps a rusqlite error to what the guest may see.
pub(super) fn map_err(e: rusqlite::Error) -> SqlError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(_, Some(msg))
        | rusqlite::Error::SqlInputError { msg, .. }
            if msg.starts_with(FUNCTION_DENIED) =>
        {
            SqlError::AccessDenied(msg.clone())
        }
        rusqlite::Error::SqliteFailure(f, msg) => {
            let m = msg.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                C::ConstraintViolation => SqlError::ConstraintViolation(m),
                C::AuthorizationForStatementDenied | C::PermissionDenied => {
                    SqlError::AccessDenied(m)
                }
                C::DatabaseBusy | C::DatabaseLocked => SqlError::Unavailable(m),
                C::OperationInterrupted => SqlError::LimitExceeded(
                    "the statement ran past its time budget or the request's deadline".into(),
                ),
                C::DiskFull => SqlError::LimitExceeded(format!("the store is full: {m}")),
                C::TooBig => SqlError::LimitExceeded(m),
                C::SystemIoFailure | C::CannotOpen | C::NotADatabase | C::DatabaseCorrupt => {
                    SqlError::Unavailable(m)
                }
                C::Unknown | C::ApiMisuse | C::TypeMismatch => SqlError::BadQuery(m),
                _ => SqlError::Other(m),
            }
        }
        // A statement refused while it is prepared: by the authorizer (SQLITE_AUTH), or
        // because it does not parse or names what does not exist.
        rusqlite::Error::SqlInputError { error, msg, .. } => match error.code {
            C::AuthorizationForStatementDenied | C::PermissionDenied => {
                SqlError::AccessDenied(msg.clone())
            }
            _ => SqlError::BadQuery(msg.clone()),
        },
        rusqlite::Error::ExecuteReturnedResults => {
            SqlError::BadQuery("the statement returns rows: use `query`".into())
        }
        rusqlite::Error::MultipleStatement => {
            SqlError::BadQuery("one statement per call (use `execute-batch` for several)".into())
        }
        rusqlite::Error::InvalidParameterCount(got, want) => SqlError::BadQuery(format!(
            "the statement has {want} parameters, {got} were given"
        )),
        rusqlite::Error::InvalidParameterName(_) | rusqlite::Error::InvalidColumnType(..) => {
            SqlError::BadQuery(e.to_string())
        }
        _ => SqlError::Other(e.to_string()),
    }
}
