//! `Db` and `Tx`: the `silo:service/sql` handles with typed parameters and rows.
//!
//! Parameters are anything that implements [`ToValue`] (integers, floats, strings,
//! bytes, `Option<T>`), passed as `&[&dyn ToValue]`:
//!
//! ```ignore
//! let rows = db.query("SELECT id, price FROM products WHERE price < ?", &[&limit])?;
//! let price: i64 = rows[0].get("price")?;
//! ```
//!
//! Every call returns `Result<_, SqlError>`; in a handler `?` turns it into an
//! [`ApiError`](crate::ApiError).

use std::fmt;
use std::rc::Rc;

use crate::bindings::silo::service::sql::{Database, Transaction};
pub use crate::bindings::silo::service::types::{Error as SqlError, ExecResult, Value};

/// `kind: message`, with the WIT variant name as `kind` (e.g. `access-denied: …`).
pub fn describe(err: &SqlError) -> String {
    format!("{}: {}", variant_name(err), message(err))
}

/// The WIT name of the error's variant, e.g. `constraint-violation`.
pub fn variant_name(err: &SqlError) -> &'static str {
    match err {
        SqlError::AccessDenied(_) => "access-denied",
        SqlError::ConstraintViolation(_) => "constraint-violation",
        SqlError::BadQuery(_) => "bad-query",
        SqlError::LimitExceeded(_) => "limit-exceeded",
        SqlError::Unavailable(_) => "unavailable",
        SqlError::InvalidHandle(_) => "invalid-handle",
        SqlError::Other(_) => "other",
    }
}

fn message(err: &SqlError) -> &str {
    match err {
        SqlError::AccessDenied(m)
        | SqlError::ConstraintViolation(m)
        | SqlError::BadQuery(m)
        | SqlError::LimitExceeded(m)
        | SqlError::Unavailable(m)
        | SqlError::InvalidHandle(m)
        | SqlError::Other(m) => m,
    }
}

/// A Rust value that binds as a SQL parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Integer(*self)
    }
}
impl ToValue for i32 {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// A Rust type a SQL value reads into. `Err` says what was found instead.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

fn found(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Integer(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Blob(_) => "blob",
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}
impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(i) => Ok(*i),
            other => Err(format!("expected integer, found {}", found(other))),
        }
    }
}
impl FromValue for i32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let i = i64::from_value(value)?;
        i32::try_from(i).map_err(|_| format!("integer {i} does not fit in i32"))
    }
}
impl FromValue for u32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let i = i64::from_value(value)?;
        u32::try_from(i).map_err(|_| format!("integer {i} does not fit in u32"))
    }
}
impl FromValue for u64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let i = i64::from_value(value)?;
        u64::try_from(i).map_err(|_| format!("integer {i} does not fit in u64"))
    }
}
impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(i64::from_value(value)? != 0)
    }
}
impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(r) => Ok(*r),
            // SQLite stores whole REAL values as integers when it can.
            #[allow(
                clippy::cast_precision_loss,
                reason = "SQL integers read as REAL lose precision only beyond 2^53, as in SQLite itself"
            )]
            Value::Integer(i) => Ok(*i as f64),
            other => Err(format!("expected real, found {}", found(other))),
        }
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {}", found(other))),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(format!("expected blob, found {}", found(other))),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One row of a query result, read by column name.
#[derive(Clone)]
pub struct Row {
    columns: Rc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// Builds a row by hand (for tests).
    pub fn new(columns: &[&str], values: Vec<Value>) -> Self {
        Self {
            columns: columns.iter().map(|c| (*c).to_string()).collect(),
            values,
        }
    }

    /// The value of column `name` as `T`. A missing column is `bad-query`; a value of
    /// another type (or `null` read as a non-`Option`) is `other`; both name the column.
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T, SqlError> {
        let index = self.columns.iter().position(|c| c == name).ok_or_else(|| {
            SqlError::BadQuery(format!(
                "no column `{name}` in the result (columns: {})",
                self.columns.join(", ")
            ))
        })?;
        let value = self.values.get(index).unwrap_or(&Value::Null);
        T::from_value(value).map_err(|why| SqlError::Other(format!("column `{name}`: {why}")))
    }

    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.columns.iter().zip(&self.values))
            .finish()
    }
}

fn bind(params: &[&dyn ToValue]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

fn rows(set: crate::bindings::silo::service::types::RowSet) -> Vec<Row> {
    let columns: Rc<[String]> = set.columns.into();
    set.rows
        .into_iter()
        .map(|values| Row {
            columns: Rc::clone(&columns),
            values,
        })
        .collect()
}

fn one(mut rows: Vec<Row>) -> Result<Row, SqlError> {
    if rows.is_empty() {
        return Err(SqlError::Other("the query returned no rows".to_string()));
    }
    Ok(rows.swap_remove(0))
}

fn first(rows: Vec<Row>) -> Option<Row> {
    rows.into_iter().next()
}

/// A handle to one of the service's own stores.
#[derive(Debug)]
pub struct Db {
    inner: Database,
}

impl Db {
    /// Opens the store `name` as declared in the manifest (usually `main`). A name the
    /// service was not granted is `access-denied`.
    pub fn open(name: &str) -> Result<Self, SqlError> {
        Database::open(name).map(|inner| Self { inner })
    }

    /// The engine serving this store, as the manifest names it (`sqlite`, `postgres`, …).
    /// A service need not ask: the portable SQL every backend accepts (README, "SQL")
    /// covers schemas too.
    pub fn backend(&self) -> String {
        self.inner.backend()
    }

    /// Runs a statement that returns rows.
    pub fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, SqlError> {
        self.inner.query(sql, &bind(params)).map(rows)
    }

    /// The first row; no row at all is an `other` error.
    pub fn query_one(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Row, SqlError> {
        one(self.query(sql, params)?)
    }

    /// The first row, if any.
    pub fn query_opt(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Option<Row>, SqlError> {
        Ok(first(self.query(sql, params)?))
    }

    /// Runs a statement that changes data.
    pub fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<ExecResult, SqlError> {
        self.inner.execute(sql, &bind(params))
    }

    /// Runs several `;`-separated statements, without parameters, in one transaction.
    pub fn execute_batch(&self, sql: &str) -> Result<(), SqlError> {
        self.inner.execute_batch(sql)
    }

    /// Runs `f` in a transaction: commits if it returns `Ok`, rolls back if it returns
    /// `Err` (a failed rollback is ignored; the store rolls back on its own when the
    /// handle drops). A failed commit is returned as the error.
    pub fn transaction<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let owned = self.inner.begin()?;
        let result = f(&Tx::new(&owned));
        match result {
            Ok(value) => {
                Transaction::commit(owned)?;
                Ok(value)
            }
            Err(err) => {
                let _ = Transaction::rollback(owned);
                Err(err)
            }
        }
    }

    /// The raw generated handle.
    pub fn raw(&self) -> &Database {
        &self.inner
    }
}

/// An open transaction, lent out for as long as it is open: to the closure of
/// [`Db::transaction`] (which owns it and commits or rolls it back afterwards), or to an
/// event handler (where the host owns it: see [`crate::Subscriptions`]).
///
/// A `Tx` only borrows the transaction, so whoever is handed one can read, write and
/// publish events in it, but never commit or roll it back.
#[derive(Debug)]
pub struct Tx<'a> {
    inner: &'a Transaction,
}

impl<'a> Tx<'a> {
    /// Lends `inner` out: the caller keeps the right to end it.
    pub(crate) fn new(inner: &'a Transaction) -> Self {
        Self { inner }
    }

    /// Runs a statement that returns rows.
    pub fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, SqlError> {
        self.inner.query(sql, &bind(params)).map(rows)
    }

    /// The first row; no row at all is an `other` error.
    pub fn query_one(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Row, SqlError> {
        one(self.query(sql, params)?)
    }

    /// The first row, if any.
    pub fn query_opt(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Option<Row>, SqlError> {
        Ok(first(self.query(sql, params)?))
    }

    /// Runs a statement that changes data.
    pub fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<ExecResult, SqlError> {
        self.inner.execute(sql, &bind(params))
    }

    /// The raw generated handle, borrowed (as `silo:service/events` takes it).
    pub fn raw(&self) -> &'a Transaction {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_convert() {
        let name = String::from("n");
        let s: &str = "s";
        let none: Option<i64> = None;
        let vals = bind(&[
            &1i64,
            &2i32,
            &3u32,
            &1.5f64,
            &s,
            &name,
            &Some(4i64),
            &none,
            &vec![1u8],
        ]);
        assert!(matches!(vals[0], Value::Integer(1)));
        assert!(matches!(vals[2], Value::Integer(3)));
        assert!(matches!(vals[3], Value::Real(r) if r == 1.5));
        assert!(matches!(&vals[4], Value::Text(t) if t == "s"));
        assert!(matches!(&vals[5], Value::Text(t) if t == "n"));
        assert!(matches!(vals[6], Value::Integer(4)));
        assert!(matches!(vals[7], Value::Null));
        assert!(matches!(&vals[8], Value::Blob(b) if b == &[1]));
    }

    #[test]
    fn rows_read_by_name_with_clear_errors() {
        let row = Row::new(
            &["id", "price", "note"],
            vec![Value::Text("p1".into()), Value::Integer(250), Value::Null],
        );
        assert_eq!(row.get::<String>("id").unwrap(), "p1");
        assert_eq!(row.get::<i64>("price").unwrap(), 250);
        assert_eq!(row.get::<Option<String>>("note").unwrap(), None);

        let err = row.get::<i64>("nope").unwrap_err();
        assert!(describe(&err).contains("no column `nope`"), "{err:?}");
        assert!(describe(&err).contains("id, price, note"), "{err:?}");

        let err = row.get::<String>("price").unwrap_err();
        assert_eq!(
            describe(&err),
            "other: column `price`: expected text, found integer"
        );

        let err = row.get::<String>("note").unwrap_err();
        assert!(describe(&err).contains("found null"), "{err:?}");
    }
}
