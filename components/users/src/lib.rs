//! users: the demo users service — create, list, read and update users in its own
//! `main` store. Emails are unique; every update bumps `version`.
//!
//! Every write publishes an event in the same transaction (the manifest entry declares
//! `publishes = ["UserCreated", "UserUpdated"]`): `UserCreated` on `POST /users`,
//! `UserUpdated` on `PUT /users/{id}`, both keyed by the user's id, with the user as the
//! API shows it as JSON data: `{"id","email","name","version"}`.

use serde::{Deserialize, Serialize};
use silo_sdk::{ApiError, Db, Migration, Request, Response, Router, Row, Service, SqlError, Tx};

struct Users;

impl Service for Users {
    fn router() -> Router {
        Router::new()
            .post("/users", create)
            .get("/users", list)
            .get("/users/{id}", get)
            .put("/users/{id}", update)
    }

    fn migrations() -> Vec<Migration> {
        vec![
            Migration::new(
                "main",
                1,
                "users table",
                "CREATE TABLE users (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                version INTEGER NOT NULL DEFAULT 1
            )",
            ),
            Migration::new(
                "main",
                2,
                "creation order on a database server",
                // Kept as it was first applied (its checksum is recorded): every backend
                // now orders rows by creation with `rowid`, so this step does nothing.
                "-- nothing on SQLite: rowid is the creation order",
            ),
        ]
    }
}

silo_sdk::service!(Users);

/// A user as the API shows it, and the data of `UserCreated` and `UserUpdated`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    email: String,
    name: String,
    version: i64,
}

impl User {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            id: row.get("id")?,
            email: row.get("email")?,
            name: row.get("name")?,
            version: row.get("version")?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChanges {
    email: Option<String>,
    name: Option<String>,
}

const COLUMNS: &str = "id, email, name, version";

/// The query for one user by id; read its answer with [`found`].
fn select_by_id() -> String {
    format!("SELECT {COLUMNS} FROM users WHERE id = ?")
}

fn create(req: Request) -> Result<Response, ApiError> {
    let new: NewUser = req.json()?;
    validate_email(&new.email)?;
    validate_name(&new.name)?;
    let user = User {
        id: silo_sdk::new_id("usr"),
        email: new.email,
        name: new.name,
        version: 1,
    };
    Db::open("main")?.transaction(|tx| {
        tx.execute(
            "INSERT INTO users (id, email, name, version) VALUES (?, ?, ?, ?)",
            &[&user.id, &user.email, &user.name, &user.version],
        )
        .map_err(|err| email_taken(err, &user.email))?;
        tx.publish("UserCreated", &user.id, &user)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(Response::created(&user))
}

fn list(_req: Request) -> Result<Response, ApiError> {
    let rows =
        Db::open("main")?.query(&format!("SELECT {COLUMNS} FROM users ORDER BY rowid"), &[])?;
    let users = rows
        .iter()
        .map(User::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::ok(&users))
}

fn get(req: Request) -> Result<Response, ApiError> {
    let id = req.param("id")?;
    let user = found(Db::open("main")?.query_opt(&select_by_id(), &[&id])?, id)?;
    Ok(Response::ok(&user))
}

fn update(req: Request) -> Result<Response, ApiError> {
    let id = req.param("id")?;
    let changes: UserChanges = req.json()?;
    if let Some(email) = &changes.email {
        validate_email(email)?;
    }
    if let Some(name) = &changes.name {
        validate_name(name)?;
    }
    let user = Db::open("main")?.transaction(|tx| apply(tx, id, &changes))?;
    Ok(Response::ok(&user))
}

/// Updates user `id` in `tx`, bumping its version, and publishes `UserUpdated` with the
/// row as it now reads.
fn apply(tx: &Tx, id: &str, changes: &UserChanges) -> Result<User, ApiError> {
    let updated = tx
        .execute(
            "UPDATE users SET email = coalesce(?, email), name = coalesce(?, name),
                 version = version + 1
             WHERE id = ?",
            &[&changes.email, &changes.name, &id],
        )
        .map_err(|err| email_taken(err, changes.email.as_deref().unwrap_or_default()))?;
    if updated.rows_affected == 0 {
        return Err(not_found(id));
    }
    let user = found(tx.query_opt(&select_by_id(), &[&id])?, id)?;
    tx.publish("UserUpdated", &user.id, &user)?;
    Ok(user)
}

/// The user read by [`select_by_id`], or 404.
fn found(row: Option<Row>, id: &str) -> Result<User, ApiError> {
    let row = row.ok_or_else(|| not_found(id))?;
    Ok(User::from_row(&row)?)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no user with id {id:?}"))
}

/// The only constraint a user write can break is the unique email.
fn email_taken(err: SqlError, email: &str) -> ApiError {
    match err {
        SqlError::ConstraintViolation(_) => {
            ApiError::conflict(format!("a user with email {email:?} already exists"))
        }
        other => other.into(),
    }
}

fn validate_email(email: &str) -> Result<(), ApiError> {
    if email.trim().is_empty() || !email.contains('@') {
        return Err(ApiError::bad_request(format!(
            "email must be a non-empty string containing '@', got {email:?}"
        )));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("name must be a non-empty string"));
    }
    Ok(())
}
