//! orders: the demo orders service — place and read orders in its own `main` store.
//!
//! For now an order is only recorded (`status` `PENDING`); `amount`, `userName`,
//! `userEmail` and `productName` stay `null` until later capabilities (calls to the
//! users and products services, events, a saga) fill them in.

use serde::{Deserialize, Serialize};
use silo_sdk::{ApiError, Db, Migration, Request, Response, Router, Row, Service, SqlError};

struct Orders;

impl Service for Orders {
    fn router() -> Router {
        Router::new()
            .post("/orders", create)
            .get("/orders", list)
            .get("/orders/{id}", get)
    }

    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "main",
            1,
            "orders table",
            "CREATE TABLE orders (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                product_id TEXT NOT NULL,
                quantity INTEGER NOT NULL CHECK (quantity > 0),
                amount INTEGER,
                user_name TEXT,
                user_email TEXT,
                product_name TEXT,
                status TEXT NOT NULL
            );
            CREATE INDEX orders_user_id ON orders (user_id)",
        )]
    }
}

silo_sdk::service!(Orders);

/// An order as the API shows it; the optional fields are `null` until known.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    id: String,
    user_id: String,
    product_id: String,
    quantity: i64,
    /// Cents.
    amount: Option<i64>,
    user_name: Option<String>,
    user_email: Option<String>,
    product_name: Option<String>,
    status: String,
}

impl Order {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            id: row.get("id")?,
            user_id: row.get("user_id")?,
            product_id: row.get("product_id")?,
            quantity: row.get("quantity")?,
            amount: row.get("amount")?,
            user_name: row.get("user_name")?,
            user_email: row.get("user_email")?,
            product_name: row.get("product_name")?,
            status: row.get("status")?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewOrder {
    user_id: String,
    product_id: String,
    quantity: i64,
}

const COLUMNS: &str =
    "id, user_id, product_id, quantity, amount, user_name, user_email, product_name, status";

fn create(req: Request) -> Result<Response, ApiError> {
    let new: NewOrder = req.json()?;
    if new.user_id.trim().is_empty() {
        return Err(ApiError::bad_request("userId must be a non-empty string"));
    }
    if new.product_id.trim().is_empty() {
        return Err(ApiError::bad_request(
            "productId must be a non-empty string",
        ));
    }
    if new.quantity <= 0 {
        return Err(ApiError::bad_request(format!(
            "quantity must be a positive integer, got {}",
            new.quantity
        )));
    }
    let order = Order {
        id: silo_sdk::new_id("ord"),
        user_id: new.user_id,
        product_id: new.product_id,
        quantity: new.quantity,
        amount: None,
        user_name: None,
        user_email: None,
        product_name: None,
        status: "PENDING".to_string(),
    };
    Db::open("main")?.execute(
        "INSERT INTO orders (id, user_id, product_id, quantity, status) VALUES (?, ?, ?, ?, ?)",
        &[
            &order.id,
            &order.user_id,
            &order.product_id,
            &order.quantity,
            &order.status,
        ],
    )?;
    Ok(Response::created(&order))
}

/// `GET /orders?userId=ID` lists that user's orders; without `userId`, every order.
fn list(req: Request) -> Result<Response, ApiError> {
    let db = Db::open("main")?;
    let rows = match req.query("userId") {
        Some(user_id) => db.query(
            &format!("SELECT {COLUMNS} FROM orders WHERE user_id = ? ORDER BY rowid"),
            &[&user_id],
        )?,
        None => db.query(&format!("SELECT {COLUMNS} FROM orders ORDER BY rowid"), &[])?,
    };
    let orders = rows
        .iter()
        .map(Order::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::ok(&orders))
}

fn get(req: Request) -> Result<Response, ApiError> {
    let id = req.param("id")?;
    let row = Db::open("main")?
        .query_opt(
            &format!("SELECT {COLUMNS} FROM orders WHERE id = ?"),
            &[&id],
        )?
        .ok_or_else(|| ApiError::not_found(format!("no order with id {id:?}")))?;
    Ok(Response::ok(&Order::from_row(&row)?))
}
