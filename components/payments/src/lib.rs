//! payments: the demo payments service — one prepaid account per user and the charges
//! made on it, in its own `main` store. Money is integer cents; a balance never goes
//! below zero.
//!
//! Endpoints (JSON, camelCase):
//!
//! - `POST /payments/accounts {"userId","balance"}` → 201 `{"userId","balance",
//!   "charged","refunded"}`; 409 if the user already has an account, 400 if `balance`
//!   is negative or not an integer.
//! - `GET /payments/accounts/{userId}` → the account: `charged` is the sum of the user's
//!   charges that stand, `refunded` of those given back; 404 if there is none.
//! - `GET /payments/charges[?orderId=ID]` → `[{"orderId","userId","amount","state"}]`,
//!   `state` `charged` or `refunded`; every charge without `orderId`.
//! - `GET /payments/switches`, `PUT /payments/switches {"trapCharges": bool}` →
//!   `{"trapCharges": bool}`. **A switch for tests and demos**: while `trapCharges` is
//!   on, the `charge` command handler panics, which traps the instance, so the host
//!   retries the command; switched off, the next retry charges. It shows a saga
//!   participant trapping and then recovering, with nothing lost or applied twice.
//!
//! In the order saga, payments is a participant:
//!
//! | command | payload | success data | refusals |
//! | --- | --- | --- | --- |
//! | `charge` | `{"orderId","userId","amount"}` | `{"chargeId","amount"}` (`chargeId` is the order id) | `no payment account for user X`; `payment declined: insufficient funds`; `invalid amount N: must not be negative`; `the charge for order X was already refunded` |
//! | `refund` | the same; its success data is `charge`'s | `{"refunded": amount}` (0 when nothing was charged) | none |
//!
//! Both are idempotent by order id, on top of the host's inbox: one order is charged at
//! most once and refunded at most once.

use serde::{Deserialize, Serialize};
use silo_sdk::{
    ApiError, Command, Commands, Db, Migration, Reply, Request, Response, Router, Row, Service,
    SqlError, Tx,
};

struct Payments;

impl Service for Payments {
    fn router() -> Router {
        Router::new()
            .post("/payments/accounts", create_account)
            .get("/payments/accounts/{userId}", get_account)
            .get("/payments/charges", list_charges)
            .get("/payments/switches", get_switches)
            .put("/payments/switches", set_switches)
    }

    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "main",
            1,
            "accounts, charges and the test switches",
            "CREATE TABLE accounts (
                user_id TEXT PRIMARY KEY,
                balance INTEGER NOT NULL CHECK (balance >= 0),
                created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
                updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
            );
            CREATE TABLE charges (
                order_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                amount INTEGER NOT NULL CHECK (amount >= 0),
                state TEXT NOT NULL CHECK (state IN ('charged', 'refunded')),
                created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
                updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
            );
            CREATE INDEX charges_user_id ON charges (user_id);
            CREATE TABLE switches (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                trap_charges INTEGER NOT NULL DEFAULT 0
            );
            INSERT INTO switches (id) VALUES (1)",
        )]
    }

    fn commands() -> Commands {
        Commands::new().on("charge", charge).on("refund", refund)
    }
}

silo_sdk::service!(Payments);

/// An account as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    user_id: String,
    /// Cents.
    balance: i64,
    /// The sum of the user's charges that stand (state `charged`).
    charged: i64,
    /// The sum of the user's charges given back (state `refunded`).
    refunded: i64,
}

impl Account {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            user_id: row.get("user_id")?,
            balance: row.get("balance")?,
            charged: row.get("charged")?,
            refunded: row.get("refunded")?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewAccount {
    user_id: String,
    balance: i64,
}

/// A charge as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Charge {
    /// The order it pays for: one charge per order.
    order_id: String,
    user_id: String,
    /// Cents.
    amount: i64,
    /// `charged` or `refunded`.
    state: String,
}

impl Charge {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            order_id: row.get("order_id")?,
            user_id: row.get("user_id")?,
            amount: row.get("amount")?,
            state: row.get("state")?,
        })
    }
}

/// The test switches as the API shows them, and the body of `PUT /payments/switches`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Switches {
    /// While on, the `charge` command handler traps.
    trap_charges: bool,
}

const CHARGE_COLUMNS: &str = "order_id, user_id, amount, state";

fn create_account(req: Request) -> Result<Response, ApiError> {
    let new: NewAccount = req.json()?;
    if new.user_id.trim().is_empty() {
        return Err(ApiError::bad_request("userId must be a non-empty string"));
    }
    if new.balance < 0 {
        return Err(ApiError::bad_request(format!(
            "balance must be a non-negative integer (cents), got {}",
            new.balance
        )));
    }
    Db::open("main")?
        .execute(
            "INSERT INTO accounts (user_id, balance) VALUES (?, ?)",
            &[&new.user_id, &new.balance],
        )
        .map_err(|err| match err {
            SqlError::ConstraintViolation(_) => ApiError::conflict(format!(
                "user {:?} already has a payment account",
                new.user_id
            )),
            other => other.into(),
        })?;
    // Charges need an account and accounts are never deleted: a new one has none.
    Ok(Response::created(&Account {
        user_id: new.user_id,
        balance: new.balance,
        charged: 0,
        refunded: 0,
    }))
}

fn get_account(req: Request) -> Result<Response, ApiError> {
    let user_id = req.param("userId")?;
    let row = Db::open("main")?
        .query_opt(
            "SELECT a.user_id, a.balance,
                 coalesce(sum(CASE WHEN c.state = 'charged' THEN c.amount END), 0) AS charged,
                 coalesce(sum(CASE WHEN c.state = 'refunded' THEN c.amount END), 0) AS refunded
             FROM accounts a LEFT JOIN charges c ON c.user_id = a.user_id
             WHERE a.user_id = ?
             GROUP BY a.user_id, a.balance",
            &[&user_id],
        )?
        .ok_or_else(|| ApiError::not_found(format!("no payment account for user {user_id:?}")))?;
    Ok(Response::ok(&Account::from_row(&row)?))
}

/// `GET /payments/charges?orderId=ID` lists that order's charge (at most one); without
/// `orderId`, every charge.
fn list_charges(req: Request) -> Result<Response, ApiError> {
    let db = Db::open("main")?;
    let rows = match req.query("orderId") {
        Some(order_id) => db.query(
            &format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE order_id = ? ORDER BY rowid"),
            &[&order_id],
        )?,
        None => db.query(
            &format!("SELECT {CHARGE_COLUMNS} FROM charges ORDER BY rowid"),
            &[],
        )?,
    };
    let charges = rows
        .iter()
        .map(Charge::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::ok(&charges))
}

fn get_switches(_req: Request) -> Result<Response, ApiError> {
    let row = Db::open("main")?.query_one("SELECT trap_charges FROM switches WHERE id = 1", &[])?;
    Ok(Response::ok(&Switches {
        trap_charges: row.get("trap_charges")?,
    }))
}

fn set_switches(req: Request) -> Result<Response, ApiError> {
    let switches: Switches = req.json()?;
    Db::open("main")?.execute(
        "UPDATE switches SET trap_charges = ? WHERE id = 1",
        &[&switches.trap_charges],
    )?;
    Ok(Response::ok(&switches))
}

/// The payload of `charge` and `refund`, sent by the order saga.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChargeRequest {
    order_id: String,
    user_id: String,
    /// Cents.
    amount: i64,
}

/// The success data of `charge`, given back to `refund` as its `succeeded_with`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Charged {
    /// The charge's id: the order's id.
    charge_id: String,
    amount: i64,
}

/// The success data of `refund`: 0 when there was nothing to give back.
#[derive(Serialize)]
struct Refunded {
    refunded: i64,
}

/// The charge for order `order_id`, if there is one.
fn find_charge(tx: &Tx, order_id: &str) -> Result<Option<Charge>, SqlError> {
    tx.query_opt(
        &format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE order_id = ?"),
        &[&order_id],
    )?
    .as_ref()
    .map(Charge::from_row)
    .transpose()
}

/// The saga command `charge`: takes `amount` off the user's balance for the order, or
/// refuses (no account, not enough money). An order already charged succeeds again
/// with the same data, without charging twice. Traps while the `trapCharges` switch is
/// on.
fn charge(command: &Command, tx: &Tx) -> Result<Reply, ApiError> {
    let trap: bool = tx
        .query_one("SELECT trap_charges FROM switches WHERE id = 1", &[])?
        .get("trap_charges")?;
    if trap {
        panic!(
            "trapCharges is on: the charge handler traps on purpose \
             (PUT /payments/switches {{\"trapCharges\": false}} ends it)"
        );
    }
    let wanted: ChargeRequest = command.json()?;
    if wanted.amount < 0 {
        return Ok(Reply::refuse(format!(
            "invalid amount {}: must not be negative",
            wanted.amount
        )));
    }
    match find_charge(tx, &wanted.order_id)? {
        Some(done) if done.state == "charged" => {
            return Reply::ok(&Charged {
                charge_id: done.order_id,
                amount: done.amount,
            });
        }
        Some(_) => {
            return Ok(Reply::refuse(format!(
                "the charge for order {} was already refunded",
                wanted.order_id
            )));
        }
        None => {}
    }
    let debited = tx.execute(
        "UPDATE accounts SET balance = balance - ?, updated_at = CURRENT_TIMESTAMP
         WHERE user_id = ? AND balance >= ?",
        &[&wanted.amount, &wanted.user_id, &wanted.amount],
    )?;
    if debited.rows_affected == 0 {
        let account = tx.query_opt(
            "SELECT 1 AS found FROM accounts WHERE user_id = ?",
            &[&wanted.user_id],
        )?;
        return Ok(Reply::refuse(match account {
            None => format!("no payment account for user {}", wanted.user_id),
            Some(_) => "payment declined: insufficient funds".to_string(),
        }));
    }
    tx.execute(
        &format!("INSERT INTO charges ({CHARGE_COLUMNS}) VALUES (?, ?, ?, 'charged')"),
        &[&wanted.order_id, &wanted.user_id, &wanted.amount],
    )?;
    Reply::ok(&Charged {
        charge_id: wanted.order_id,
        amount: wanted.amount,
    })
}

/// The saga command `refund`, the compensation of `charge`: gives the charge named by
/// `charge`'s success data (the payload's order, failing that) back to its account.
/// Nothing charged, or already refunded, succeeds with `{"refunded": 0}`.
fn refund(command: &Command, tx: &Tx) -> Result<Reply, ApiError> {
    let charge_id = match command.succeeded_with_json::<Charged>()? {
        Some(charged) => charged.charge_id,
        None => command.json::<ChargeRequest>()?.order_id,
    };
    let Some(done) = find_charge(tx, &charge_id)?.filter(|c| c.state == "charged") else {
        return Reply::ok(&Refunded { refunded: 0 });
    };
    tx.execute(
        "UPDATE charges SET state = 'refunded', updated_at = CURRENT_TIMESTAMP
         WHERE order_id = ?",
        &[&done.order_id],
    )?;
    tx.execute(
        "UPDATE accounts SET balance = balance + ?, updated_at = CURRENT_TIMESTAMP
         WHERE user_id = ?",
        &[&done.amount, &done.user_id],
    )?;
    Reply::ok(&Refunded {
        refunded: done.amount,
    })
}
