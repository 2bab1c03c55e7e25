//! Mapping of MariaDB driver and server errors to the `SqlError` a guest may see.

use crate::sql::SqlError;

pub(super) fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(format!("mariadb: {e}"))
}

/// Maps a driver error to what the guest may see.
pub(super) fn map_err(e: mysql_async::Error) -> SqlError {
    use mysql_async::Error as E;
    match e {
        E::Server(s) => map_server(s.code, &s.state, s.message),
        E::Driver(d) => {
            let m = d.to_string();
            if matches!(d, mysql_async::DriverError::StmtParamsMismatch { .. }) {
                SqlError::BadQuery(m)
            } else if matches!(d, mysql_async::DriverError::PoolDisconnected) {
                unavailable(m)
            } else {
                SqlError::Other(format!("mariadb: {m}"))
            }
        }
        E::Io(e) => unavailable(e),
        E::Url(e) => SqlError::Other(format!("mariadb url: {e}")),
        E::Other(e) => SqlError::Other(format!("mariadb: {e}")),
    }
}

fn map_server(code: u16, state: &str, m: String) -> SqlError {
    match code {
        1062 | 1022 | 1169 | 1451 | 1452 | 1216 | 1217 | 1048 | 1364 | 4025 | 3819 | 1557
        | 1761 | 1762 | 1859 => SqlError::ConstraintViolation(m),
        1142 | 1143 | 1044 | 1045 | 1227 | 1370 | 1211 | 1410 | 1698 | 1356 | 1449 => {
            SqlError::AccessDenied(m)
        }
        1644 if m.starts_with("silo: access denied") => SqlError::AccessDenied(m),
        1644 if m.starts_with("silo: host statement outside") => SqlError::BadQuery(format!(
            "{m} (a schema change committed the transaction early)"
        )),
        1969 | 3024 | 1317 | 1028 => SqlError::LimitExceeded(
            "the statement ran past its time budget or the request's deadline".into(),
        ),
        1205 | 1213 | 1040 | 1203 | 1226 | 1053 | 1927 | 2006 | 2013 => SqlError::Unavailable(m),
        1114 | 1041 | 1037 | 1038 | 1135 => SqlError::LimitExceeded(m),
        1210 => SqlError::BadQuery(m),
        _ => match state.get(..2).unwrap_or("") {
            "23" => SqlError::ConstraintViolation(m),
            "42" | "22" | "21" | "0A" | "3D" | "3F" | "25" | "HY" if code < 2000 => {
                SqlError::BadQuery(m)
            }
            "08" | "40" => SqlError::Unavailable(m),
            "70" => SqlError::LimitExceeded(m),
            _ => SqlError::Other(m),
        },
    }
}
