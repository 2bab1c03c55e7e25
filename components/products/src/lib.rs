//! products: the demo product catalogue — create, list, search, read and update
//! products in its own `main` store. Prices are integer cents; stock is a count; every
//! update bumps `version`.
//!
//! Every write publishes an event in the same transaction (the manifest entry declares
//! `publishes = ["ProductCreated", "ProductUpdated"]`): `ProductCreated` on
//! `POST /products`, `ProductUpdated` on `PUT /products/{id}`, both keyed by the
//! product's id, with the product as the API shows it as JSON data:
//! `{"id","name","price","stock","version"}`.
//!
//! In the order saga, products is a participant: it reserves stock for an order and
//! releases it again (the compensation), one `reservations` row per order. Both
//! commands change a product's stock, so both publish `ProductUpdated` like a
//! `PUT` does, in the command's transaction.
//!
//! | command | payload | success data | refusals |
//! | --- | --- | --- | --- |
//! | `reserve` | `{"orderId","productId","quantity"}` | `{"reserved": quantity}` | `unknown product X`; `out of stock: product X has N, Q requested`; `invalid quantity Q: must be positive`; `the reservation for order X was already released` |
//! | `release` | the same | `{"released": quantity}` (0 when nothing was reserved) | none |
//!
//! Both are idempotent by order id, on top of the host's inbox: a second `reserve` for
//! an order succeeds again without taking more stock, a second `release` gives nothing
//! back.

use serde::{Deserialize, Serialize};
use silo_sdk::{
    ApiError, Command, Commands, Db, Migration, Reply, Request, Response, Router, Row, Service,
    SqlError, Tx,
};

struct Products;

impl Service for Products {
    fn router() -> Router {
        Router::new()
            .post("/products", create)
            .get("/products", list)
            .get("/products/{id}", get)
            .put("/products/{id}", update)
    }

    /// `version` is in the table since step 1, so the events that carry it need no new
    /// step (an `ADD COLUMN version` would fail on every store).
    fn migrations() -> Vec<Migration> {
        vec![
            Migration::new(
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
            ),
            Migration::new(
                "main",
                2,
                "stock reservations of the order saga",
                "CREATE TABLE reservations (
                    order_id TEXT PRIMARY KEY,
                    product_id TEXT NOT NULL,
                    quantity INTEGER NOT NULL CHECK (quantity > 0),
                    state TEXT NOT NULL CHECK (state IN ('reserved', 'released'))
                )",
            ),
        ]
    }

    fn commands() -> Commands {
        Commands::new()
            .on("reserve", reserve)
            .on("release", release)
    }
}

silo_sdk::service!(Products);

/// A product as the API shows it, and the data of `ProductCreated` and
/// `ProductUpdated`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Product {
    id: String,
    name: String,
    /// Cents.
    price: i64,
    stock: i64,
    /// 1 when created, plus one per update.
    version: i64,
}

impl Product {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            price: row.get("price")?,
            stock: row.get("stock")?,
            version: row.get("version")?,
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

const COLUMNS: &str = "id, name, price, stock, version";

/// The query for one product by id; read its answer with [`found`].
fn select_by_id() -> String {
    format!("SELECT {COLUMNS} FROM products WHERE id = ?")
}

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
        version: 1,
    };
    Db::open("main")?.transaction(|tx| {
        tx.execute(
            &format!("INSERT INTO products ({COLUMNS}) VALUES (?, ?, ?, ?, ?)"),
            &[
                &product.id,
                &product.name,
                &product.price,
                &product.stock,
                &product.version,
            ],
        )?;
        tx.publish("ProductCreated", &product.id, &product)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(Response::created(&product))
}

/// The longest search text `GET /products?q=` takes. The search is a `LIKE` pattern, and
/// every backend bounds those (the host's SQLite stores at 1000 bytes): at most 200
/// characters, each at most 4 bytes, or 2 once escaped, always fit.
const MAX_QUERY_CHARS: usize = 200;

/// `GET /products` lists everything; `?q=TEXT` keeps names containing TEXT,
/// ignoring ASCII case (`%` and `_` in TEXT match themselves). A TEXT longer than
/// [`MAX_QUERY_CHARS`] is a 400.
fn list(req: Request) -> Result<Response, ApiError> {
    let q = req.query("q");
    if let Some(q) = &q {
        let chars = q.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(ApiError::bad_request(format!(
                "q is {chars} characters long: search with at most {MAX_QUERY_CHARS}"
            )));
        }
    }
    let db = Db::open("main")?;
    let rows = match q {
        Some(q) => db.query(
            &format!(
                "SELECT {COLUMNS} FROM products WHERE lower(name) LIKE lower(?) ESCAPE '!' ORDER BY rowid"
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
    let product = found(Db::open("main")?.query_opt(&select_by_id(), &[&id])?, id)?;
    Ok(Response::ok(&product))
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
    let product = Db::open("main")?.transaction(|tx| apply(tx, id, &changes))?;
    Ok(Response::ok(&product))
}

/// Updates product `id` in `tx`, bumping its version, and publishes `ProductUpdated`
/// with the row as it now reads.
fn apply(tx: &Tx, id: &str, changes: &ProductChanges) -> Result<Product, ApiError> {
    let updated = tx.execute(
        "UPDATE products SET name = coalesce(?, name), price = coalesce(?, price),
             stock = coalesce(?, stock), version = version + 1
         WHERE id = ?",
        &[&changes.name, &changes.price, &changes.stock, &id],
    )?;
    if updated.rows_affected == 0 {
        return Err(not_found(id));
    }
    publish_updated(tx, id)
}

/// Publishes `ProductUpdated` in `tx` with product `id` as it now reads there, and
/// returns it.
fn publish_updated(tx: &Tx, id: &str) -> Result<Product, ApiError> {
    let product = found(tx.query_opt(&select_by_id(), &[&id])?, id)?;
    tx.publish("ProductUpdated", &product.id, &product)?;
    Ok(product)
}

/// The payload of `reserve` and `release`, sent by the order saga.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reservation {
    order_id: String,
    product_id: String,
    quantity: i64,
}

/// The success data of `reserve`.
#[derive(Serialize)]
struct Reserved {
    reserved: i64,
}

/// The success data of `release`: 0 when there was nothing to give back.
#[derive(Serialize)]
struct Released {
    released: i64,
}

/// An order's row in `reservations`.
struct Held {
    product_id: String,
    quantity: i64,
    /// `reserved` or `released`.
    state: String,
}

/// The reservation of order `order_id`, if it has one.
fn held(tx: &Tx, order_id: &str) -> Result<Option<Held>, SqlError> {
    tx.query_opt(
        "SELECT product_id, quantity, state FROM reservations WHERE order_id = ?",
        &[&order_id],
    )?
    .map(|row| {
        Ok(Held {
            product_id: row.get("product_id")?,
            quantity: row.get("quantity")?,
            state: row.get("state")?,
        })
    })
    .transpose()
}

/// The saga command `reserve`: takes `quantity` off the product's stock for the order,
/// or refuses (unknown product, not enough stock). A reservation the order already
/// holds succeeds again without taking more.
fn reserve(command: &Command, tx: &Tx) -> Result<Reply, ApiError> {
    let wanted: Reservation = command.json()?;
    if wanted.quantity <= 0 {
        return Ok(Reply::refuse(format!(
            "invalid quantity {}: must be positive",
            wanted.quantity
        )));
    }
    match held(tx, &wanted.order_id)? {
        Some(held) if held.state == "reserved" => {
            return Reply::ok(&Reserved {
                reserved: held.quantity,
            });
        }
        Some(_) => {
            return Ok(Reply::refuse(format!(
                "the reservation for order {} was already released",
                wanted.order_id
            )));
        }
        None => {}
    }
    let taken = tx.execute(
        "UPDATE products SET stock = stock - ?, version = version + 1
         WHERE id = ? AND stock >= ?",
        &[&wanted.quantity, &wanted.product_id, &wanted.quantity],
    )?;
    if taken.rows_affected == 0 {
        let stock = tx.query_opt(
            "SELECT stock FROM products WHERE id = ?",
            &[&wanted.product_id],
        )?;
        return Ok(Reply::refuse(match stock {
            None => format!("unknown product {}", wanted.product_id),
            Some(row) => format!(
                "out of stock: product {} has {}, {} requested",
                wanted.product_id,
                row.get::<i64>("stock")?,
                wanted.quantity
            ),
        }));
    }
    tx.execute(
        "INSERT INTO reservations (order_id, product_id, quantity, state)
         VALUES (?, ?, ?, 'reserved')",
        &[&wanted.order_id, &wanted.product_id, &wanted.quantity],
    )?;
    publish_updated(tx, &wanted.product_id)?;
    Reply::ok(&Reserved {
        reserved: wanted.quantity,
    })
}

/// The saga command `release`, the compensation of `reserve`: gives the order's
/// reserved stock back (the quantity and product as reserved, whatever the payload
/// says). Nothing reserved, or already released, succeeds with `{"released": 0}`.
fn release(command: &Command, tx: &Tx) -> Result<Reply, ApiError> {
    let order: Reservation = command.json()?;
    let Some(held) = held(tx, &order.order_id)?.filter(|h| h.state == "reserved") else {
        return Reply::ok(&Released { released: 0 });
    };
    tx.execute(
        "UPDATE reservations SET state = 'released' WHERE order_id = ?",
        &[&order.order_id],
    )?;
    let restocked = tx.execute(
        "UPDATE products SET stock = stock + ?, version = version + 1 WHERE id = ?",
        &[&held.quantity, &held.product_id],
    )?;
    if restocked.rows_affected > 0 {
        publish_updated(tx, &held.product_id)?;
    }
    Reply::ok(&Released {
        released: held.quantity,
    })
}

/// The product read by [`select_by_id`], or 404.
fn found(row: Option<Row>, id: &str) -> Result<Product, ApiError> {
    let row = row.ok_or_else(|| not_found(id))?;
    Ok(Product::from_row(&row)?)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no product with id {id:?}"))
}

/// Escapes `!`, `%` and `_` for a `LIKE … ESCAPE '!'` pattern (not `\`, which MySQL's
/// string literals would read as an escape of their own).
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
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
        assert_eq!(escape_like(r"50%_off!\"), r"50!%!_off!!\");
        assert_eq!(escape_like("plain"), "plain");
    }
}
