//! reference: shared reference data — countries and currencies — that other services
//! look up over a call instead of keeping their own copy ("Reference Data", option 2).
//!
//! Read-only: the data is seeded by the migrations, and a change is a new migration.
//! Codes are ISO ones (`FR`, `EUR`) and are matched ignoring ASCII case.

use serde::Serialize;
use silo_sdk::{ApiError, Db, Migration, Request, Response, Router, Row, Service, SqlError};

struct Reference;

impl Service for Reference {
    fn router() -> Router {
        Router::new()
            .get("/reference/countries", list_countries)
            .get("/reference/countries/{code}", get_country)
            .get("/reference/currencies", list_currencies)
            .get("/reference/currencies/{code}", get_currency)
    }

    fn migrations() -> Vec<Migration> {
        vec![
            Migration::new(
                "main",
                1,
                "countries and currencies tables",
                "CREATE TABLE currencies (
                    code TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    minor_units INTEGER NOT NULL CHECK (minor_units >= 0)
                );
                CREATE TABLE countries (
                    code TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    currency TEXT NOT NULL REFERENCES currencies (code)
                )",
            ),
            Migration::new(
                "main",
                2,
                "seed countries and currencies",
                "INSERT INTO currencies (code, name, minor_units) VALUES
                    ('USD', 'US Dollar', 2),
                    ('EUR', 'Euro', 2),
                    ('GBP', 'Pound Sterling', 2),
                    ('JPY', 'Yen', 0),
                    ('CHF', 'Swiss Franc', 2),
                    ('CAD', 'Canadian Dollar', 2),
                    ('AUD', 'Australian Dollar', 2),
                    ('INR', 'Indian Rupee', 2),
                    ('BRL', 'Brazilian Real', 2),
                    ('KWD', 'Kuwaiti Dinar', 3);
                INSERT INTO countries (code, name, currency) VALUES
                    ('US', 'United States', 'USD'),
                    ('FR', 'France', 'EUR'),
                    ('DE', 'Germany', 'EUR'),
                    ('ES', 'Spain', 'EUR'),
                    ('GB', 'United Kingdom', 'GBP'),
                    ('JP', 'Japan', 'JPY'),
                    ('CH', 'Switzerland', 'CHF'),
                    ('CA', 'Canada', 'CAD'),
                    ('AU', 'Australia', 'AUD'),
                    ('IN', 'India', 'INR'),
                    ('BR', 'Brazil', 'BRL'),
                    ('KW', 'Kuwait', 'KWD')",
            ),
        ]
    }
}

silo_sdk::service!(Reference);

/// A country: `{"code":"FR","name":"France","currency":"EUR"}`.
#[derive(Serialize)]
struct Country {
    code: String,
    name: String,
    currency: String,
}

impl Country {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            code: row.get("code")?,
            name: row.get("name")?,
            currency: row.get("currency")?,
        })
    }
}

/// A currency: `{"code":"EUR","name":"Euro","minorUnits":2}` (digits after the point;
/// an amount in the currency's minor unit is `major * 10^minorUnits`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Currency {
    code: String,
    name: String,
    minor_units: i64,
}

impl Currency {
    fn from_row(row: &Row) -> Result<Self, SqlError> {
        Ok(Self {
            code: row.get("code")?,
            name: row.get("name")?,
            minor_units: row.get("minor_units")?,
        })
    }
}

fn list_countries(_req: Request) -> Result<Response, ApiError> {
    let rows = Db::open("main")?.query(
        "SELECT code, name, currency FROM countries ORDER BY code",
        &[],
    )?;
    let countries = rows
        .iter()
        .map(Country::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::ok(&countries))
}

fn get_country(req: Request) -> Result<Response, ApiError> {
    let code = req.param("code")?.to_ascii_uppercase();
    let row = Db::open("main")?
        .query_opt(
            "SELECT code, name, currency FROM countries WHERE code = ?",
            &[&code],
        )?
        .ok_or_else(|| ApiError::not_found(format!("no country with code {code:?}")))?;
    Ok(Response::ok(&Country::from_row(&row)?))
}

fn list_currencies(_req: Request) -> Result<Response, ApiError> {
    let rows = Db::open("main")?.query(
        "SELECT code, name, minor_units FROM currencies ORDER BY code",
        &[],
    )?;
    let currencies = rows
        .iter()
        .map(Currency::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::ok(&currencies))
}

fn get_currency(req: Request) -> Result<Response, ApiError> {
    let code = req.param("code")?.to_ascii_uppercase();
    let row = Db::open("main")?
        .query_opt(
            "SELECT code, name, minor_units FROM currencies WHERE code = ?",
            &[&code],
        )?
        .ok_or_else(|| ApiError::not_found(format!("no currency with code {code:?}")))?;
    Ok(Response::ok(&Currency::from_row(&row)?))
}
