//! orders: the demo orders service — place and read orders in its own `main` store.
//!
//! Placing an order calls three other services ("API-Based Sync"): `users` and
//! `products` (concurrently) to check the ids and copy the user's name and email and
//! the product's name and price into the order, and `reference` to check the currency.
//! The copies are what `GET /orders/{id}` shows later. `GET /orders/{id}/details`
//! instead joins the order with the current user and product at read time ("Joins
//! Across Services"), and degrades to `null` parts when a callee cannot answer.
//!
//! The copies follow the originals by events: `users`' `UserCreated`/`UserUpdated` and
//! `products`' `ProductCreated`/`ProductUpdated` update `known_users` and
//! `known_products` (the newest copy of each user and product the service has seen) and
//! every order holding an older copy. A copy is versioned by its origin's `version`
//! and never replaced by an older one, whatever the order in which calls and events
//! arrive: placing an order stores the copies its calls returned the same way, then
//! puts the newest known copy into the order, all in one transaction.
//!
//! Placing an order is a saga ("Transactions Across Services"): the order is stored as
//! `PENDING` and, in the same transaction, a saga of kind `order` keyed by the order's
//! id is started, so the answer is a 202. The host then runs its steps:
//!
//! 1. `reserve-stock`: `products` command `reserve` `{"orderId","productId","quantity"}`,
//!    undone by `release`;
//! 2. `charge-payment`: `payments` command `charge` `{"orderId","userId","amount"}`,
//!    undone by `refund`.
//!
//! When the saga ends, [`Service::saga_finished`] settles the order: `APPROVED` when
//! every step succeeded, `REJECTED` when a step was refused and the ones before it were
//! undone (`statusReason` says why: out of stock, payment declined), `FAILED` when an
//! undo could not be applied (an operator must look). `GET /orders/{id}` shows the
//! saga's steps as they stand. Settling publishes `OrderApproved` or `OrderRejected`
//! (`{orderId,userId,productId,quantity,amount,currency}`, plus `reason` on rejected) in
//! the same transaction, so the event goes out if and only if the order moved.
//!
//! Calls need the manifest entry `calls = ["users", "products", "reference"]`, events
//! `subscribes` to `users`' `UserCreated`, `UserUpdated` and `products`'
//! `ProductCreated`, `ProductUpdated`, the saga `saga-participants = ["products",
//! "payments"]`, the events `publishes = ["OrderApproved", "OrderRejected"]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use silo_sdk::{
    ApiError, Call, CallError, CallResponse, Db, Event, Migration, Request, Response, Router, Row,
    SagaState, SagaStatus, Service, SqlError, Step, Subscriptions, Tx, encode_path_segment,
    saga_status, send_all,
};

struct Orders;

impl Service for Orders {
    fn router() -> Router {
        Router::new()
            .post("/orders", create)
            .get("/orders", list)
            .get("/orders/{id}", get)
            .get("/orders/{id}/details", details)
    }

    fn migrations() -> Vec<Migration> {
        vec![
            Migration::new(
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
            ),
            Migration::new(
                "main",
                2,
                "order currency",
                "ALTER TABLE orders ADD COLUMN currency TEXT NOT NULL DEFAULT 'USD'",
            ),
            Migration::new(
                "main",
                3,
                "versioned copies kept in sync by events",
                "ALTER TABLE orders ADD COLUMN user_version INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE orders ADD COLUMN product_version INTEGER NOT NULL DEFAULT 0;
                CREATE TABLE known_users (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    email TEXT NOT NULL,
                    version INTEGER NOT NULL
                );
                CREATE TABLE known_products (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    version INTEGER NOT NULL
                );
                CREATE INDEX orders_product_id ON orders (product_id)",
            ),
            Migration::new(
                "main",
                4,
                "order saga: the saga's id and why the order was rejected or failed",
                "ALTER TABLE orders ADD COLUMN saga_id TEXT;
                ALTER TABLE orders ADD COLUMN status_reason TEXT",
            ),
            Migration::new(
                "main",
                5,
                "creation order on a database server",
                // Kept as it was first applied (its checksum is recorded): every backend
                // now orders rows by creation with `rowid`, so this step does nothing.
                "-- nothing on SQLite: rowid is the creation order",
            ),
        ]
    }

    fn subscriptions() -> Subscriptions {
        Subscriptions::new()
            .on("users", "UserCreated", user_changed)
            .on("users", "UserUpdated", user_changed)
            .on("products", "ProductCreated", product_changed)
            .on("products", "ProductUpdated", product_changed)
    }

    /// Settles the order of an `order` saga that ended; see the crate docs.
    fn saga_finished(saga: &SagaStatus, tx: &Tx) -> Result<(), ApiError> {
        if saga.kind != ORDER_SAGA {
            return Ok(());
        }
        let status = match saga.state {
            SagaState::Completed => APPROVED,
            SagaState::Compensated => REJECTED,
            SagaState::Failed => FAILED,
            SagaState::Running | SagaState::Compensating => {
                return Err(ApiError::internal(format!(
                    "saga {} was reported finished but is {}",
                    saga.id, saga.state
                )));
            }
        };
        // Only a pending order moves: a second call (after a lost commit) changes nothing.
        let settled = tx.execute(
            "UPDATE orders SET status = ?, status_reason = ?
             WHERE id = ? AND saga_id = ? AND status = ?",
            &[&status, &saga.reason, &saga.key, &saga.id, &PENDING],
        )?;
        // The event is part of the settling transaction: published if and only if the
        // order moved, once.
        let topic = match status {
            APPROVED => ORDER_APPROVED,
            REJECTED => ORDER_REJECTED,
            _ => return Ok(()),
        };
        if settled.rows_affected == 1 {
            let row = tx.query_one(
                "SELECT user_id, product_id, quantity, amount, currency FROM orders WHERE id = ?",
                &[&saga.key],
            )?;
            let event = OrderSettled {
                order_id: saga.key.clone(),
                user_id: row.get("user_id")?,
                product_id: row.get("product_id")?,
                quantity: row.get("quantity")?,
                amount: row.get("amount")?,
                currency: row.get("currency")?,
                reason: if topic == ORDER_REJECTED {
                    Some(saga.reason.clone().unwrap_or_default())
                } else {
                    None
                },
            };
            tx.publish(topic, &saga.key, &event)?;
        }
        Ok(())
    }
}

silo_sdk::service!(Orders);

/// The currency of an order placed without one.
const DEFAULT_CURRENCY: &str = "USD";

/// The kind of the saga that places an order; its key is the order's id.
const ORDER_SAGA: &str = "order";

/// An order's `status`: placed, its saga running.
const PENDING: &str = "PENDING";
/// Stock reserved and payment charged.
const APPROVED: &str = "APPROVED";
/// A step was refused and the steps before it undone; `statusReason` says why.
const REJECTED: &str = "REJECTED";
/// A step was refused and an undo could not be applied; `statusReason` says why.
const FAILED: &str = "FAILED";

/// Published when an order is approved, in the transaction that settles it.
const ORDER_APPROVED: &str = "OrderApproved";
/// Published when an order is rejected, in the transaction that settles it.
const ORDER_REJECTED: &str = "OrderRejected";

/// The data of `OrderApproved` and `OrderRejected` (keyed by the order's id); `reason`
/// only on `OrderRejected`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderSettled {
    order_id: String,
    user_id: String,
    product_id: String,
    quantity: i64,
    /// In the currency's minor unit (cents).
    amount: Option<i64>,
    currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// An order as the API shows it. `amount` is the price when the order was placed;
/// `userName`, `userEmail` and `productName` are copies kept up to date by events, at
/// `userVersion` and `productVersion` of their origin. The copies are `null` on orders
/// placed before orders called other services, the versions 0 on orders placed before
/// copies were versioned (the next event updates both). `status` is `PENDING`,
/// `APPROVED`, `REJECTED` or `FAILED`; `sagaId` is `null` on orders placed before
/// orders ran sagas (they stay `PENDING`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    id: String,
    user_id: String,
    product_id: String,
    quantity: i64,
    /// In the currency's minor unit (cents).
    amount: Option<i64>,
    currency: String,
    user_name: Option<String>,
    user_email: Option<String>,
    product_name: Option<String>,
    status: String,
    /// Why the order was rejected or failed, from its saga; `null` otherwise.
    status_reason: Option<String>,
    saga_id: Option<String>,
    user_version: i64,
    product_version: i64,
}

impl Order {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            id: row.get("id")?,
            user_id: row.get("user_id")?,
            product_id: row.get("product_id")?,
            quantity: row.get("quantity")?,
            amount: row.get("amount")?,
            currency: row.get("currency")?,
            user_name: row.get("user_name")?,
            user_email: row.get("user_email")?,
            product_name: row.get("product_name")?,
            status: row.get("status")?,
            status_reason: row.get("status_reason")?,
            saga_id: row.get("saga_id")?,
            user_version: row.get("user_version")?,
            product_version: row.get("product_version")?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewOrder {
    user_id: String,
    product_id: String,
    quantity: i64,
    currency: Option<String>,
}

/// The part of a user an order copies: from `users`' answer to `GET /users/{id}`, from
/// the data of its `UserCreated` and `UserUpdated` events, or from `known_users`.
#[derive(Deserialize)]
struct UserCopy {
    id: String,
    name: String,
    email: String,
    version: i64,
}

/// The part of a product an order copies: from `products`' answer to
/// `GET /products/{id}` or the data of its `ProductCreated` and `ProductUpdated` events.
#[derive(Deserialize)]
struct ProductCopy {
    id: String,
    name: String,
    /// Cents; an order's amount is fixed when it is placed, so it is not kept.
    price: i64,
    version: i64,
}

/// The newest copy of a product the service knows (`known_products`).
struct KnownProduct {
    id: String,
    name: String,
    version: i64,
}

/// The part of `reference`'s answer an order checks.
#[derive(Deserialize)]
struct CurrencyCopy {
    code: String,
}

/// `GET /orders/{id}`: the order and its saga as it stands (`null` for an order placed
/// before orders ran sagas).
#[derive(Serialize)]
struct OrderWithSaga {
    #[serde(flatten)]
    order: Order,
    saga: Option<SagaStatus>,
}

/// The payload of the `reserve-stock` step's `reserve` and `release` commands.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReserveStock<'a> {
    order_id: &'a str,
    product_id: &'a str,
    quantity: i64,
}

/// The payload of the `charge-payment` step's `charge` and `refund` commands.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChargePayment<'a> {
    order_id: &'a str,
    user_id: &'a str,
    /// In the currency's minor unit (cents).
    amount: i64,
}

const COLUMNS: &str = "id, user_id, product_id, quantity, amount, currency, user_name, \
                       user_email, product_name, status, status_reason, saga_id, user_version, \
                       product_version";

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
    let currency = match &new.currency {
        None => DEFAULT_CURRENCY.to_string(),
        Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
            code.to_ascii_uppercase()
        }
        Some(code) => {
            return Err(ApiError::bad_request(format!(
                "currency must be a three-letter ISO code such as \"EUR\", got {code:?}"
            )));
        }
    };

    // The three look-ups do not depend on each other: send them together.
    let mut answers = send_all(vec![
        Call::get(
            "users",
            &format!("/users/{}", encode_path_segment(&new.user_id)),
        ),
        Call::get(
            "products",
            &format!("/products/{}", encode_path_segment(&new.product_id)),
        ),
        Call::get(
            "reference",
            &format!("/reference/currencies/{}", encode_path_segment(&currency)),
        ),
    ])
    .into_iter();
    let (Some(user), Some(product), Some(currency_answer)) =
        (answers.next(), answers.next(), answers.next())
    else {
        return Err(ApiError::internal("send_all lost an answer"));
    };
    let looked_up = [
        Lookup::of(user, "user", &new.user_id),
        Lookup::of(product, "product", &new.product_id),
        Lookup::of(currency_answer, "currency", &currency),
    ];
    // An unknown id is the client's mistake whatever else failed: say so first.
    let unknown: Vec<String> = looked_up
        .iter()
        .filter_map(|l| match l {
            Lookup::Unknown(what) => Some(what.clone()),
            _ => None,
        })
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(unknown.join("; ")));
    }
    let [user, product, currency_answer] = looked_up.map(Lookup::into_found);
    let user: UserCopy = user?.json().map_err(unavailable)?;
    let product: ProductCopy = product?.json().map_err(unavailable)?;
    let currency = currency_answer?
        .json::<CurrencyCopy>()
        .map_err(unavailable)?
        .code;

    let amount = product.price.checked_mul(new.quantity).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "the amount ({} × {} cents) is too large",
            new.quantity, product.price
        ))
    })?;
    let id = silo_sdk::new_id("ord");
    let steps = order_saga(&id, &new, amount)?;
    // An event may have brought a newer copy between the calls and now (or bring one
    // before this commits: then it waits for this transaction and updates the order).
    // The saga starts if and only if the order is stored.
    let order = Db::open("main")?.transaction(|tx| {
        let user = remember_user(tx, &user)?;
        let product = remember_product(tx, &product)?;
        let saga_id = tx.start_saga(ORDER_SAGA, &id, &steps)?;
        let order = Order {
            id,
            user_id: new.user_id,
            product_id: new.product_id,
            quantity: new.quantity,
            amount: Some(amount),
            currency,
            user_name: Some(user.name),
            user_email: Some(user.email),
            product_name: Some(product.name),
            status: PENDING.to_string(),
            status_reason: None,
            saga_id: Some(saga_id),
            user_version: user.version,
            product_version: product.version,
        };
        tx.execute(
            &format!(
                "INSERT INTO orders ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                &order.id,
                &order.user_id,
                &order.product_id,
                &order.quantity,
                &order.amount,
                &order.currency,
                &order.user_name,
                &order.user_email,
                &order.product_name,
                &order.status,
                &order.status_reason,
                &order.saga_id,
                &order.user_version,
                &order.product_version,
            ],
        )?;
        Ok::<_, ApiError>(order)
    })?;
    Ok(Response::accepted(&order))
}

/// The steps of order `id`'s saga: reserve the stock, then charge the payment; each
/// undone by its compensation if a later step is refused.
fn order_saga(id: &str, new: &NewOrder, amount: i64) -> Result<[Step; 2], SqlError> {
    let reserve = ReserveStock {
        order_id: id,
        product_id: &new.product_id,
        quantity: new.quantity,
    };
    let charge = ChargePayment {
        order_id: id,
        user_id: &new.user_id,
        amount,
    };
    Ok([
        Step::new("reserve-stock", "products", "reserve", &reserve)?.compensate_with("release"),
        Step::new("charge-payment", "payments", "charge", &charge)?.compensate_with("refund"),
    ])
}

/// Stores `user` in `known_users` unless that already holds the same or a newer
/// version, and returns the newest copy it now holds.
fn remember_user(tx: &Tx, user: &UserCopy) -> Result<UserCopy, SqlError> {
    tx.execute(
        "INSERT INTO known_users (id, name, email, version) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE
             SET name = excluded.name, email = excluded.email, version = excluded.version
             WHERE excluded.version > known_users.version",
        &[&user.id, &user.name, &user.email, &user.version],
    )?;
    let row = tx.query_one(
        "SELECT id, name, email, version FROM known_users WHERE id = ?",
        &[&user.id],
    )?;
    Ok(UserCopy {
        id: row.get("id")?,
        name: row.get("name")?,
        email: row.get("email")?,
        version: row.get("version")?,
    })
}

/// Stores `product` in `known_products` unless that already holds the same or a newer
/// version, and returns the newest copy it now holds.
fn remember_product(tx: &Tx, product: &ProductCopy) -> Result<KnownProduct, SqlError> {
    tx.execute(
        "INSERT INTO known_products (id, name, version) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version
             WHERE excluded.version > known_products.version",
        &[&product.id, &product.name, &product.version],
    )?;
    let row = tx.query_one(
        "SELECT id, name, version FROM known_products WHERE id = ?",
        &[&product.id],
    )?;
    Ok(KnownProduct {
        id: row.get("id")?,
        name: row.get("name")?,
        version: row.get("version")?,
    })
}

/// `users/UserCreated`, `users/UserUpdated`: keeps the newest copy of the user and puts
/// it into every order holding an older one.
fn user_changed(event: &Event, tx: &Tx) -> Result<(), ApiError> {
    let user = remember_user(tx, &event.json()?)?;
    tx.execute(
        "UPDATE orders SET user_name = ?, user_email = ?, user_version = ?
         WHERE user_id = ? AND user_version < ?",
        &[
            &user.name,
            &user.email,
            &user.version,
            &user.id,
            &user.version,
        ],
    )?;
    Ok(())
}

/// `products/ProductCreated`, `products/ProductUpdated`: keeps the newest copy of the
/// product and puts its name into every order holding an older, different one. Most
/// product updates change only the stock (every reservation is one), so an order whose
/// copied name is already right is left alone: its `productVersion` is the version its
/// name was copied from, and a busy product does not rewrite all its orders each time.
fn product_changed(event: &Event, tx: &Tx) -> Result<(), ApiError> {
    let product = remember_product(tx, &event.json()?)?;
    tx.execute(
        "UPDATE orders SET product_name = ?, product_version = ?
         WHERE product_id = ? AND product_version < ? AND product_name IS DISTINCT FROM ?",
        &[
            &product.name,
            &product.version,
            &product.id,
            &product.version,
            &product.name,
        ],
    )?;
    Ok(())
}

/// What one look-up for a new order found.
enum Lookup {
    /// The callee answered 2xx.
    Found(CallResponse),
    /// The callee answered 404: the client named something that does not exist.
    Unknown(String),
    /// The callee could not answer (failed call, 5xx, anything unexpected): a 503.
    Unavailable(ApiError),
}

impl Lookup {
    fn of(answer: Result<CallResponse, CallError>, what: &str, id: &str) -> Self {
        match answer {
            Ok(resp) if resp.is_success() => Self::Found(resp),
            Ok(resp) if resp.status == 404 => Self::Unknown(format!("unknown {what} {id:?}")),
            Ok(resp) => Self::Unavailable(ApiError::unavailable(format!(
                "cannot check the {what}: {} answered {}: {}",
                resp.service(),
                resp.status,
                resp.error_message()
            ))),
            // Denied included: the order cannot be placed now, and it is never a 500.
            Err(err) => Self::Unavailable(ApiError::unavailable(format!(
                "cannot check the {what}: call to {} failed: {err}",
                err.service()
            ))),
        }
    }

    fn into_found(self) -> Result<CallResponse, ApiError> {
        match self {
            Self::Found(resp) => Ok(resp),
            Self::Unknown(what) => Err(ApiError::unprocessable(what)),
            Self::Unavailable(err) => Err(err),
        }
    }
}

/// A callee answered 2xx with a body that is not what its contract says.
fn unavailable(err: CallError) -> ApiError {
    ApiError::unavailable(format!("{err}"))
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

/// The order with its saga as it stands.
fn get(req: Request) -> Result<Response, ApiError> {
    let order = find(req.param("id")?)?;
    let saga = match &order.saga_id {
        Some(saga_id) => saga_status(saga_id)?,
        None => None,
    };
    Ok(Response::ok(&OrderWithSaga { order, saga }))
}

fn find(id: &str) -> Result<Order, ApiError> {
    let row = Db::open("main")?
        .query_opt(
            &format!("SELECT {COLUMNS} FROM orders WHERE id = ?"),
            &[&id],
        )?
        .ok_or_else(|| ApiError::not_found(format!("no order with id {id:?}")))?;
    Ok(Order::from_row(&row)?)
}

/// `GET /orders/{id}/details`: the order joined with the current user and product.
#[derive(Serialize)]
struct Details {
    order: Order,
    /// `null` when `users` could not say (listed in `missing`, explained in `errors`).
    /// The callee's body exactly as it answered.
    user: Option<Box<RawValue>>,
    product: Option<Box<RawValue>>,
    /// The parts that are `null`: `"user"`, `"product"`.
    missing: Vec<&'static str>,
    /// Why each missing part is missing.
    errors: BTreeMap<&'static str, String>,
}

/// Always 200 for a known order: a callee that is down, slow, trapping or answering
/// non-2xx makes its part `null` rather than failing the whole read.
fn details(req: Request) -> Result<Response, ApiError> {
    let order = find(req.param("id")?)?;
    let answers = send_all(vec![
        Call::get(
            "users",
            &format!("/users/{}", encode_path_segment(&order.user_id)),
        ),
        Call::get(
            "products",
            &format!("/products/{}", encode_path_segment(&order.product_id)),
        ),
    ]);
    let mut parts = [None, None];
    let mut missing = Vec::new();
    let mut errors = BTreeMap::new();
    for ((answer, part), name) in answers.into_iter().zip(&mut parts).zip(["user", "product"]) {
        match part_of(answer) {
            Ok(value) => *part = Some(value),
            Err(why) => {
                missing.push(name);
                errors.insert(name, why);
            }
        }
    }
    let [user, product] = parts;
    Ok(Response::ok(&Details {
        order,
        user,
        product,
        missing,
        errors,
    }))
}

/// The callee's JSON body, or why there is none.
fn part_of(answer: Result<CallResponse, CallError>) -> Result<Box<RawValue>, String> {
    let resp = answer.map_err(|err| format!("call to {} failed: {err}", err.service()))?;
    if !resp.is_success() {
        return Err(format!(
            "{} answered {}: {}",
            resp.service(),
            resp.status,
            resp.error_message()
        ));
    }
    resp.json().map_err(|err| err.to_string())
}
