//! Values between silo and MariaDB: parameters, and columns decoded by their type and
//! character set.

use mysql_async::Params;
use mysql_async::consts::ColumnType;

use crate::sql::Value;

pub(super) fn to_my(v: &Value) -> mysql_async::Value {
    match v {
        Value::Null => mysql_async::Value::NULL,
        Value::Integer(i) => mysql_async::Value::Int(*i),
        Value::Real(f) => mysql_async::Value::Double(*f),
        Value::Text(s) => mysql_async::Value::Bytes(s.as_bytes().to_vec()),
        Value::Blob(b) => mysql_async::Value::Bytes(b.clone()),
    }
}

pub(super) fn params_of(values: &[Value]) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values.iter().map(to_my).collect())
    }
}

pub(super) fn is_string_type(t: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        t,
        MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_STRING
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_ENUM
            | MYSQL_TYPE_SET
            | MYSQL_TYPE_JSON
            | MYSQL_TYPE_GEOMETRY
            | MYSQL_TYPE_BIT
    )
}

/// A column value as silo's value: integers and floats as such, strings by their
/// character set (63 is binary: a blob), everything else (DECIMAL, dates) as text.
pub(super) fn decode(col: &mysql_async::Column, v: mysql_async::Value) -> Value {
    use mysql_async::Value as M;
    match v {
        M::NULL => Value::Null,
        M::Int(i) => Value::Integer(i),
        M::UInt(u) => match i64::try_from(u) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Text(u.to_string()),
        },
        M::Float(f) => Value::Real(f.into()),
        M::Double(f) => Value::Real(f),
        M::Bytes(b) => {
            let t = col.column_type();
            let binary = col.character_set() == 63
                && (is_string_type(t) && !matches!(t, ColumnType::MYSQL_TYPE_JSON));
            if binary
                || matches!(
                    t,
                    ColumnType::MYSQL_TYPE_GEOMETRY | ColumnType::MYSQL_TYPE_BIT
                )
            {
                Value::Blob(b)
            } else {
                match String::from_utf8(b) {
                    Ok(s) => Value::Text(s),
                    Err(e) => Value::Blob(e.into_bytes()),
                }
            }
        }
        M::Date(y, mo, d, h, mi, s, us) => {
            if col.column_type() == ColumnType::MYSQL_TYPE_DATE {
                Value::Text(format!("{y:04}-{mo:02}-{d:02}"))
            } else {
                let mut t = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
                if us != 0 {
                    t.push_str(&format!(".{us:06}"));
                }
                Value::Text(t)
            }
        }
        M::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let mut t = format!("{}{hours:02}:{mi:02}:{s:02}", if neg { "-" } else { "" });
            if us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            Value::Text(t)
        }
    }
}
