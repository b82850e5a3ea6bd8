//! Embedded, versioned migrations (refinery), run inside the configured schema under an advisory
//! lock so any number of processes may migrate at once.

use psm_core::{Error, ErrorKind, Result};

use crate::{PROVIDER, error::pg_error, sql::quote_ident};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The name of refinery's history table (inside the configured schema).
pub const MIGRATION_TABLE: &str = "refinery_schema_history";

/// The newest schema version this build knows.
pub fn latest_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(refinery::Migration::version)
        .max()
        .unwrap_or(0)
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The versions applied by this run, in order (empty when the schema was current).
    pub applied: Vec<i32>,
    /// The schema version after the run.
    pub version: i32,
}

/// Migrates `schema` on `client`.
///
/// 1. `pg_advisory_lock` on a key derived from the schema name serializes migrators (of every
///    process) on one schema, while other schemas migrate in parallel;
/// 2. `CREATE SCHEMA IF NOT EXISTS`;
/// 3. `search_path` is set to the schema alone and refinery applies the missing versions, each in
///    its own transaction, recording them in `<schema>.refinery_schema_history`;
/// 4. the lock is released and `search_path` reset.
///
/// Fails with `ProviderConfiguration` when the schema's recorded version is newer than
/// [`latest_version`] (a newer psm migrated it).
///
/// The caller runs this on a connection taken out of the pool, so the connection closes on every
/// exit path (also when the future is cancelled), taking the session-level lock and settings
/// with it.
pub(crate) async fn run(
    client: &mut tokio_postgres::Client,
    schema: &str,
) -> Result<MigrationReport> {
    let quoted = quote_ident(schema);
    let key = format!("psm-migrate:{schema}");
    client
        .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
        .await
        .map_err(|e| pg_error("migration lock", e))?;
    let result = migrate_locked(client, &quoted, schema).await;
    let unlock = client
        .batch_execute("RESET search_path")
        .await
        .and(
            client
                .execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                    &[&key],
                )
                .await
                .map(drop),
        )
        .map_err(|e| pg_error("migration unlock", e));
    let report = result?;
    unlock?;
    Ok(report)
}

async fn migrate_locked(
    client: &mut tokio_postgres::Client,
    quoted: &str,
    schema: &str,
) -> Result<MigrationReport> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted}; SET search_path TO {quoted}"
        ))
        .await
        .map_err(|e| pg_error("create schema", e))?;
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(format!("{quoted}.{MIGRATION_TABLE}"));
    let pg = client;
    let report = runner.run_async(pg).await.map_err(|e| {
        Error::new(ErrorKind::Provider, "postgres migration failed")
            .with_detail("provider", PROVIDER)
            .with_source(e)
    })?;
    let applied: Vec<i32> = report
        .applied_migrations()
        .iter()
        .map(refinery::Migration::version)
        .collect();
    let current = runner
        .get_last_applied_migration_async(pg)
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Provider, "postgres migration history unreadable")
                .with_detail("provider", PROVIDER)
                .with_source(e)
        })?;
    let version = current.map_or(0, |m| m.version());
    let known = latest_version();
    if version > known {
        // A newer psm migrated this schema; this build cannot know what changed.
        return Err(Error::configuration(format!(
            "postgres schema `{schema}` is at version {version}, migrated by a newer psm; this build knows versions up to {known}: upgrade psm (or use another schema)"
        ))
        .with_detail("provider", PROVIDER)
        .with_detail("schema_version", version)
        .with_detail("known_version", known));
    }
    Ok(MigrationReport { applied, version })
}
