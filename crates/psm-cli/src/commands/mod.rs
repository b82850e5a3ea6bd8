//! The administration commands: each opens the stores, does its work, closes them.

pub(crate) mod bench;
pub(crate) mod sessions;
pub(crate) mod transfer;
pub(crate) mod users;

use std::io::Write;

use psm::{
    postgres::{PostgresConfig, PostgresStorage},
    util::{ProviderScheme, parse_provider_url},
};

use crate::{
    CliError, exit,
    settings::{Settings, StoreLocation},
    stores::Stores,
};

/// Writes `text` and a newline to standard output.
pub(crate) fn out(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").map_err(|e| CliError::io("cannot write to standard output", &e))
}

/// Writes `value` as pretty JSON to standard output.
pub(crate) fn out_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::new(exit::FAILURE, format!("cannot encode the output: {e}")))?;
    out(&text)
}

/// Opens the stores, runs `f`, closes the stores whatever `f` returned.
pub(crate) async fn with_stores<T>(
    settings: &Settings,
    default_ttl: Option<u64>,
    f: impl AsyncFnOnce(&Stores) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let stores = Stores::open(settings, default_ttl).await?;
    let result = f(&stores).await;
    let closed = stores.close().await;
    // The command's own error wins; a store that fails to close fails a command that succeeded.
    let value = result?;
    closed.map(|()| value)
}

/// `psm migrate`: runs the PostgreSQL migrations of the configured stores (before anything else
/// touches them, so the report names what this run applied).
pub(crate) async fn migrate(settings: &Settings) -> Result<u8, CliError> {
    let mut urls: Vec<&str> = Vec::new();
    for location in std::iter::once(&settings.store).chain(settings.users.as_ref()) {
        if let StoreLocation::Url(url) = location {
            let (scheme, _) = parse_provider_url(url)?.into_parts();
            if scheme == ProviderScheme::Postgres {
                urls.push(url);
            }
        }
    }
    if urls.is_empty() {
        out("nothing to migrate: no store is on PostgreSQL")?;
    }
    for url in urls {
        let storage = PostgresStorage::new(PostgresConfig::from_url(url)?)?;
        let report = storage.migrate().await;
        let _ = storage.close().await;
        let report = report?;
        out(&format!(
            "schema {}: version {} ({} applied by this run)",
            storage.schema(),
            report.version,
            report.applied.len()
        ))?;
    }
    Ok(exit::OK)
}
