//! Values between silo and PostgreSQL: parameters bound as the type the server inferred,
//! and columns decoded from the binary format.

use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type};

use crate::sql::{SqlError, Value};

/// A value bound as a parameter of whatever type the server inferred for it.
#[derive(Debug)]
pub(super) struct Param<'a>(pub(super) &'a Value);

pub(super) fn is_text_type(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext"
}

impl Param<'_> {
    /// The text form, for types bound in text format (the server parses it).
    pub(super) fn text(&self) -> Option<String> {
        match self.0 {
            Value::Integer(i) => Some(i.to_string()),
            Value::Real(f) => Some(f.to_string()),
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub(super) fn binary(&self, ty: &Type) -> bool {
        match (self.0, ty) {
            (Value::Null, _) => true,
            (Value::Blob(_), _) => true,
            (
                Value::Integer(_),
                &Type::INT2
                | &Type::INT4
                | &Type::INT8
                | &Type::FLOAT4
                | &Type::FLOAT8
                | &Type::BOOL,
            ) => true,
            (Value::Real(_), &Type::FLOAT4 | &Type::FLOAT8) => true,
            (Value::Text(_), t) => is_text_type(t),
            _ => false,
        }
    }
}

pub(super) type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        if !self.binary(ty) {
            let Some(t) = self.text() else {
                return Err(format!("a {} cannot bind to a {ty} parameter", kind(self.0)).into());
            };
            out.extend_from_slice(t.as_bytes());
            return Ok(IsNull::No);
        }
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (Value::Blob(_), _) => Err(format!("a blob binds only to bytea, not {ty}").into()),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT4) => (*i as f32).to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Real(f), _) => f.to_sql(ty, out),
            (Value::Text(s), _) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            _ => Err(format!("a {} cannot bind to a {ty} parameter", kind(self.0)).into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if self.binary(ty) {
            Format::Binary
        } else {
            Format::Text
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Integer(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Blob(_) => "blob",
    }
}

/// A column value as the server sent it (binary format), decoded by [`decode`].
pub(super) struct Raw<'a>(pub(super) Option<&'a [u8]>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

pub(super) fn decode(ty: &Type, raw: Option<&[u8]>, column: &str) -> Result<Value, SqlError> {
    use tokio_postgres::types::FromSql;
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    let bad = |e: BoxError| SqlError::Other(format!("column `{column}`: {e}"));
    Ok(match *ty {
        Type::BOOL => Value::Integer(bool::from_sql(ty, raw).map_err(bad)? as i64),
        Type::INT2 => Value::Integer(i16::from_sql(ty, raw).map_err(bad)?.into()),
        Type::INT4 => Value::Integer(i32::from_sql(ty, raw).map_err(bad)?.into()),
        Type::INT8 => Value::Integer(i64::from_sql(ty, raw).map_err(bad)?),
        Type::OID => Value::Integer(u32::from_sql(ty, raw).map_err(bad)?.into()),
        Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw).map_err(bad)?.into()),
        Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw).map_err(bad)?),
        Type::BYTEA => Value::Blob(raw.to_vec()),
        Type::NUMERIC => Value::Text(numeric_text(raw).ok_or_else(|| bad("bad numeric".into()))?),
        Type::JSONB => Value::Text(String::from_utf8_lossy(raw.get(1..).unwrap_or(&[])).into()),
        Type::JSON | Type::XML => Value::Text(String::from_utf8_lossy(raw).into()),
        Type::UUID => {
            let h = hex::encode(raw);
            if h.len() != 32 {
                return Err(bad("bad uuid".into()));
            }
            Value::Text(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        Type::DATE => Value::Text(date_text(i32::from_sql(ty, raw).map_err(bad)?.into())),
        Type::TIMESTAMP => Value::Text(timestamp_text(i64::from_sql(ty, raw).map_err(bad)?, "")),
        Type::TIMESTAMPTZ => Value::Text(timestamp_text(i64::from_sql(ty, raw).map_err(bad)?, "Z")),
        Type::TIME => Value::Text(time_text(i64::from_sql(ty, raw).map_err(bad)?)),
        ref t if is_text_type(t) || matches!(t.kind(), Kind::Enum(_)) => {
            Value::Text(String::from_utf8_lossy(raw).into())
        }
        ref t => {
            return Err(SqlError::BadQuery(format!(
                "column `{column}` is of type {t}, which silo does not map to a value: cast it (`::text`)"
            )));
        }
    })
}

/// PostgreSQL's binary `numeric` as decimal text.
pub(super) fn numeric_text(raw: &[u8]) -> Option<String> {
    let word =
        |i: usize| -> Option<i16> { Some(i16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?])) };
    let ndigits = word(0)? as i32;
    let weight = word(2)? as i32;
    let sign = word(4)? as u16;
    let dscale = word(6)? as i32;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i32> = (0..ndigits)
        .map(|k| word(8 + 2 * k as usize).map(i32::from))
        .collect::<Option<_>>()?;
    let digit = |k: i32| {
        if k >= 0 && k < ndigits {
            digits[k as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while (frac.len() as i32) < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale as usize);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

/// Days since 2000-01-01 as `YYYY-MM-DD` (proleptic Gregorian).
pub(super) fn date_text(days_2000: i64) -> String {
    // Howard Hinnant's civil_from_days, on days since 1970-01-01.
    let z = days_2000 + 10_957 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", if m <= 2 { y + 1 } else { y })
}

pub(super) fn time_text(micros: i64) -> String {
    let s = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000);
    let mut t = format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
    if us != 0 {
        t.push_str(&format!(".{us:06}"));
    }
    t
}

pub(super) fn timestamp_text(micros_2000: i64, zone: &str) -> String {
    let day = micros_2000.div_euclid(86_400_000_000);
    let rest = micros_2000.rem_euclid(86_400_000_000);
    format!("{}T{}{zone}", date_text(day), time_text(rest))
}
