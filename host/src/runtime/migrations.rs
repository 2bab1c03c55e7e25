//! Schema migrations a component ships in its `silo:service/migrations` export.
//!
//! On every load and deploy the host asks the component for its steps and applies, per
//! store, each step not yet recorded: in order, once, each with its record in the host-owned
//! `_silo_migrations` table. All pending steps of a store run in one transaction: a failing
//! step refuses the load and leaves the store as it was. A recorded step whose statements
//! have changed refuses the load too: history is not rewritten behind the database's back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sha2::Digest;
use wasmtime::bail;
use wasmtime::error::Context;

use super::service::Service;
use crate::bindings::exports::silo::service::migrations::{GuestIndices, Migration};
use crate::sql::host_tables::{self as tables, HostTables};
use crate::sql::{CallLimits, SqlStore};
use crate::telemetry::{Span, TraceContext};

const EXPORT: &str = "silo:service/migrations@0.1.0";

/// What applying a service's migrations did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// `(store, version)` of every step applied now.
    pub applied: Vec<(String, u32)>,
}

/// Asks the component for its migrations (if it exports any): an instance of its own, no
/// store touched. Start-up reads them before the data folder is created, so a component
/// whose steps target a store the manifest does not declare writes nothing.
pub async fn read_migrations(service: &Service) -> wasmtime::Result<Vec<Migration>> {
    let name = &service.name;
    if service.component.get_export_index(None, EXPORT).is_none() {
        return Ok(Vec::new());
    }
    let indices = GuestIndices::new(service.pre.instance_pre())
        .with_context(|| format!("service `{name}`: its `{EXPORT}` export has the wrong shape"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut store = service.new_store(deadline, &[]);
    let instance = service
        .pre
        .instance_pre()
        .instantiate_async(&mut store)
        .await
        .with_context(|| format!("service `{name}`: instantiating to read its migrations"))?;
    let guest = indices.load(&mut store, &instance)?;
    guest
        .call_migrations(&mut store)
        .await
        .with_context(|| format!("service `{name}`: its `migrations` function failed"))
}

/// `steps` by store, checked: each store declared (`declared(store)`), versions strictly
/// increasing from 1. Errors name the store.
pub fn by_store(
    name: &str,
    steps: Vec<Migration>,
    declared: impl Fn(&str) -> bool,
) -> wasmtime::Result<BTreeMap<String, Vec<Migration>>> {
    let mut by_store: BTreeMap<String, Vec<Migration>> = BTreeMap::new();
    for step in steps {
        by_store.entry(step.store.clone()).or_default().push(step);
    }
    for (store_name, steps) in &by_store {
        if !declared(store_name) {
            bail!(
                "service `{name}`: a migration targets store `{store_name}`, which the manifest does not declare"
            );
        }
        let mut last = 0;
        for s in steps {
            if s.version <= last {
                bail!(
                    "service `{name}`: migrations of store `{store_name}` must have strictly increasing versions from 1 (found {} after {last})",
                    s.version
                );
            }
            last = s.version;
        }
    }
    Ok(by_store)
}

/// Asks the component for its migrations (if it exports any) and applies pending ones.
pub async fn migrate(service: &Service) -> wasmtime::Result<MigrationReport> {
    migrate_in(service, None).await
}

/// [`migrate`] as a span (`migrate SERVICE`, a child of `parent`, a deploy's), each step
/// applied a child of it.
pub async fn migrate_in(
    service: &Service,
    parent: Option<TraceContext>,
) -> wasmtime::Result<MigrationReport> {
    let mut span = Span::start(format!("migrate {}", service.name), &service.name, parent);
    span.attr("silo.digest", service.digest.as_str());
    let result = migrate_traced(service, span.context()).await;
    match &result {
        Ok(report) => span.attr("silo.migrations_applied", report.applied.len() as i64),
        Err(e) => span.error(format!("{e:#}")),
    }
    span.end();
    result
}

async fn migrate_traced(
    service: &Service,
    trace: TraceContext,
) -> wasmtime::Result<MigrationReport> {
    let name = &service.name;
    let steps = read_migrations(service).await?;
    let by_store = by_store(name, steps, |s| service.grants.get(s).is_some())?;
    let mut report = MigrationReport::default();
    for (store_name, steps) in by_store {
        let Some(store) = service.grants.get(&store_name) else {
            bail!(
                "service `{name}`: a migration targets store `{store_name}`, which the manifest does not declare"
            );
        };
        for v in apply_steps(store.as_ref(), &steps, Some((name, &store_name, trace)))
            .await
            .with_context(|| format!("service `{name}`, store `{store_name}`"))?
        {
            report.applied.push((store_name.clone(), v));
        }
    }
    Ok(report)
}

fn checksum(statements: &str) -> String {
    hex::encode(sha2::Sha256::digest(statements.as_bytes()))
}

/// Applies the pending steps of one store, all in one transaction (a failing step leaves
/// the store exactly as it was); returns the versions applied.
pub async fn apply_store(store: &dyn SqlStore, steps: &[Migration]) -> wasmtime::Result<Vec<u32>> {
    apply_steps(store, steps, None).await
}

/// [`apply_store`], each step applied a span (`migration VERSION`) under `trace`'s context
/// when given (with the service and store names).
async fn apply_steps(
    store: &dyn SqlStore,
    steps: &[Migration],
    trace: Option<(&str, &str, TraceContext)>,
) -> wasmtime::Result<Vec<u32>> {
    let limits = CallLimits {
        deadline: Instant::now() + Duration::from_secs(300),
        statement_budget: Duration::from_secs(300),
        max_result_bytes: usize::MAX,
    };
    let tables = HostTables::of(store)?;
    let mut tx = store.begin(&limits).await?;
    tables
        .create(tx.as_mut(), &[&tables::MIGRATIONS], &[])
        .await?;
    let recorded: BTreeMap<i64, String> = tables
        .applied_migrations(tx.as_mut())
        .await?
        .into_iter()
        .collect();
    let mut applied = Vec::new();
    for step in steps {
        let sum = checksum(&step.statements);
        if let Some(previous) = recorded.get(&i64::from(step.version)) {
            if *previous != sum {
                bail!(
                    "migration {} ({}) was changed after it was applied",
                    step.version,
                    step.description
                );
            }
            continue;
        }
        let mut span = trace.map(|(service, store_name, parent)| {
            let mut span =
                Span::start(format!("migration {}", step.version), service, Some(parent));
            span.attr("db.name", store_name);
            span.attr("db.system", crate::telemetry::db_system(store.backend()));
            span.attr("silo.migration.version", i64::from(step.version));
            span.attr("silo.migration.description", step.description.as_str());
            span
        });
        let ran = tx
            .execute_batch(&limits, &step.statements)
            .await
            .with_context(|| format!("migration {} ({}) failed", step.version, step.description));
        if let (Err(e), Some(span)) = (&ran, span.as_mut()) {
            span.error(format!("{e:#}"));
        }
        ran?;
        drop(span);
        tables
            .record_migration(tx.as_mut(), step.version, &step.description, &sum)
            .await?;
        applied.push(step.version);
    }
    tx.commit().await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Value;
    use crate::sql::sqlite::{SqliteConfig, SqliteStore};

    fn step(version: u32, statements: &str) -> Migration {
        Migration {
            store: "main".into(),
            version,
            description: format!("step {version}"),
            statements: statements.into(),
        }
    }

    #[tokio::test]
    async fn steps_apply_once_in_order_and_failures_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("m.db"), SqliteConfig::default()).unwrap();
        let v1 = step(1, "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);");
        assert_eq!(
            apply_store(&s, std::slice::from_ref(&v1)).await.unwrap(),
            [1]
        );
        assert!(
            apply_store(&s, std::slice::from_ref(&v1))
                .await
                .unwrap()
                .is_empty()
        );

        // A failing step rolls back with every step of the same load.
        let good = step(2, "CREATE TABLE c (x);");
        let bad = step(3, "CREATE TABLE b (x); INSERT INTO nope VALUES (1);");
        assert!(apply_store(&s, &[v1.clone(), good, bad]).await.is_err());
        let l = CallLimits {
            deadline: Instant::now() + Duration::from_secs(5),
            statement_budget: Duration::from_secs(300),
            max_result_bytes: 1 << 20,
        };
        assert!(
            s.query(&l, "SELECT * FROM b", &[]).await.is_err(),
            "table b must not exist"
        );

        // A changed step that was already applied is refused.
        let changed = step(1, "CREATE TABLE a (x INTEGER, y);");
        let e = apply_store(&s, &[changed]).await.unwrap_err();
        assert!(e.to_string().contains("changed"), "{e}");

        // A step cannot touch the host's tables.
        let sneaky = step(4, "DELETE FROM _silo_migrations;");
        assert!(apply_store(&s, &[v1, sneaky]).await.is_err());
        let rows = s.query(&l, "SELECT count(*) FROM a", &[]).await.unwrap();
        assert!(matches!(rows.rows[0][0], Value::Integer(1)));
    }
}
