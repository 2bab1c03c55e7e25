//! products: the demo product catalogue — create, list, search, read and update
//! products in its own `main` store. Prices are integer cents; stock is a count.

use serde::{Deserialize, Serialize};
use silo_sdk::{ApiError, Db, Migration, Request, Response, Router, Row, Service, SqlError};

struct Products;

impl Service for Products {
    fn router() -> Router {
        Router::new()
            .post("/products", create)
            .get("/products", list)
            .get("/products/{id}", get)
            .put("/products/{id}", update)
    }

    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "main",
            1,
            "products table",
            "CREATE TABLE products (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                price INTEGER NOT NULL CHECK (price >= 0),
                stock INTEGER NOT NULL CHECK (stock >= 0),
                version INTEGER NOT NULL DEFAULT 1
            )",
        )]
    }
}

silo_sdk::service!(Products);

/// A product as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Product {
    id: String,
    name: String,
    /// Cents.
    price: i64,
    stock: i64,
}

impl Product {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            price: row.get("price")?,
            stock: row.get("stock")?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProduct {
    name: String,
    price: i64,
    stock: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductChanges {
    name: Option<String>,
    price: Option<i64>,
    stock: Option<i64>,
}

const COLUMNS: &str = "id, name, price, stock";

fn create(req: Request) -> Result<Response, ApiError> {
    let new: NewProduct = req.json()?;
    validate_name(&new.name)?;
    validate_count("price", new.price)?;
    validate_count("stock", new.stock)?;
    let product = Product {
        id: silo_sdk::new_id("prd"),
        name: new.name,
        price: new.price,
        stock: new.stock,
    };
    Db::open("main")?.execute(
        "INSERT INTO products (id, name, price, stock) VALUES (?, ?, ?, ?)",
        &[&product.id, &product.name, &product.price, &product.stock],
    )?;
    Ok(Response::created(&product))
}

/// `GET /products` lists everything; `?q=TEXT` keeps names containing TEXT,
/// ignoring ASCII case (`%` and `_` in TEXT match themselves).
fn list(req: Request) -> Result<Response, ApiError> {
    let db = Db::open("main")?;
    let rows = match req.query("q") {
        Some(q) => db.query(
            &format!(
                "SELECT {COLUMNS} FROM products WHERE lower(name) LIKE lower(?) ESCAPE '\\' ORDER BY rowid"
            ),
            &[&format!("%{}%", escape_like(&q))],
        )?,
        None => db.query(&format!("SELECT {COLUMNS} FROM products ORDER BY rowid"), &[])?,
    };
    let products = rows
        .iter()
        .map(Product::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::ok(&products))
}

fn get(req: Request) -> Result<Response, ApiError> {
    let id = req.param("id")?;
    Ok(Response::ok(&find(&Db::open("main")?, id)?))
}

fn update(req: Request) -> Result<Response, ApiError> {
    let id = req.param("id")?;
    let changes: ProductChanges = req.json()?;
    if let Some(name) = &changes.name {
        validate_name(name)?;
    }
    if let Some(price) = changes.price {
        validate_count("price", price)?;
    }
    if let Some(stock) = changes.stock {
        validate_count("stock", stock)?;
    }
    let db = Db::open("main")?;
    let updated = db.execute(
        "UPDATE products SET name = coalesce(?, name), price = coalesce(?, price),
             stock = coalesce(?, stock), version = version + 1
         WHERE id = ?",
        &[&changes.name, &changes.price, &changes.stock, &id],
    )?;
    if updated.rows_affected == 0 {
        return Err(not_found(id));
    }
    Ok(Response::ok(&find(&db, id)?))
}

fn find(db: &Db, id: &str) -> Result<Product, ApiError> {
    let row = db
        .query_opt(
            &format!("SELECT {COLUMNS} FROM products WHERE id = ?"),
            &[&id],
        )?
        .ok_or_else(|| not_found(id))?;
    Ok(Product::from_row(&row)?)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no product with id {id:?}"))
}

/// Escapes `\`, `%` and `_` for a `LIKE … ESCAPE '\'` pattern.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("name must be a non-empty string"));
    }
    Ok(())
}

fn validate_count(field: &str, value: i64) -> Result<(), ApiError> {
    if value < 0 {
        return Err(ApiError::bad_request(format!(
            "{field} must be a non-negative integer, got {value}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"50%_off\"), r"50\%\_off\\");
        assert_eq!(escape_like("plain"), "plain");
    }
}
