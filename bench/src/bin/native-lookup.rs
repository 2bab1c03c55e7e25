//! native-lookup: the native baseline for `GET /products/{id}` — hyper and rusqlite reading
//! the same SQLite file that silo's products service wrote, served the way silo serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hyper::{Method, StatusCode};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use silo_bench::{ServeArgs, error, json, serve};

/// The lookup the products service makes, by default.
const DEFAULT_SQL: &str = "SELECT id, name, price, stock, version FROM products WHERE id = ?1";

/// Serves `GET /products/{id}` from a SQLite file, one connection per worker thread.
#[derive(Debug, Parser)]
#[command(name = "native-lookup")]
struct Cli {
    /// The products database (a copy of silo's `stores/products/main.db`).
    #[arg(long)]
    db: PathBuf,
    /// The query: one `?1` parameter (the id), columns id, name, price, stock, version.
    #[arg(long, default_value = DEFAULT_SQL)]
    sql: String,
    #[command(flatten)]
    serve: ServeArgs,
}

/// A product as the products service returns it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Product {
    id: String,
    name: String,
    price: i64,
    stock: i64,
    /// 1 when created, plus one per update.
    version: i64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Cli {
        db,
        sql,
        serve: args,
    } = cli;
    anyhow::ensure!(db.is_file(), "no database at {}", db.display());
    serve(&args, move || {
        let conn = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", db.display()))?;
        conn.prepare_cached(&sql)
            .with_context(|| format!("preparing `{sql}`"))?;
        let sql = sql.clone();
        Ok(move |req: &hyper::Request<_>| {
            if req.method() != Method::GET {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "only GET",
                );
            }
            let Some(id) = req
                .uri()
                .path()
                .strip_prefix("/products/")
                .filter(|id| !id.is_empty() && !id.contains('/'))
            else {
                return error(StatusCode::NOT_FOUND, "no_route", "only GET /products/{id}");
            };
            match lookup(&conn, &sql, id) {
                Ok(Some(product)) => json(StatusCode::OK, &product),
                Ok(None) => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    &format!("no product `{id}`"),
                ),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    &e.to_string(),
                ),
            }
        })
    })
}

fn lookup(conn: &Connection, sql: &str, id: &str) -> rusqlite::Result<Option<Product>> {
    let mut stmt = conn.prepare_cached(sql)?;
    stmt.query_row([id], |row| {
        // Ids are strings in the API; the column may hold text or an integer.
        let id = match row.get_ref(0)? {
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            other => {
                return Err(rusqlite::Error::InvalidColumnType(
                    0,
                    "id".into(),
                    other.data_type(),
                ));
            }
        };
        Ok(Product {
            id,
            name: row.get(1)?,
            price: row.get(2)?,
            stock: row.get(3)?,
            version: row.get(4)?,
        })
    })
    .optional()
}
