//! The `psm` command: `psm serve` runs the HTTP API; the other commands administer the stores
//! directly (sessions, users, migrations, export and import, load).
//!
//! The library half exists for the binary and for end-to-end tests that run the server in-process:
//!
//! ```no_run
//! use psm_cli::settings::{ServeFlags, StoreFlags, resolve};
//!
//! # async fn demo() -> Result<(), psm_cli::CliError> {
//! let (settings, serve) = resolve(&StoreFlags::default(), Some(&ServeFlags::default()))?;
//! let server = psm_cli::serve::start(&settings, &serve).await?;
//! println!("listening on {}", server.addr());
//! server.stop().await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod cli;
mod commands;
mod error;
pub mod keys;
pub mod serve;
pub mod settings;
pub mod stores;

pub use error::{CliError, code_of, exit};

use cli::{Cli, Command};
use settings::resolve;

/// Runs a parsed command line; returns the exit code.
///
/// # Errors
/// A [`CliError`] with the message for standard error and the exit code.
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    let serve_flags = match &cli.command {
        Command::Serve(flags) => Some(flags),
        _ => None,
    };
    let (settings, serve) = resolve(&cli.store, serve_flags)?;
    match cli.command {
        Command::Serve(_) => serve::run(&settings, &serve).await.map(|()| exit::OK),
        Command::Sessions(c) => commands::sessions::run(&settings, c).await,
        Command::Check(args) => commands::sessions::check(&settings, &args).await,
        Command::Users(c) => commands::users::run(&settings, c).await,
        Command::Migrate => commands::migrate(&settings).await,
        Command::Export(args) => commands::transfer::export(&settings, &args).await,
        Command::Import(args) => commands::transfer::import(&settings, &args).await,
        Command::Bench(args) => commands::bench::run(&settings, &args).await,
    }
}

/// Starts logging to standard error with `filter` (an `EnvFilter` directive) in `format`.
///
/// # Errors
/// A configuration error when the filter does not parse.
pub fn init_logging(filter: &str, format: settings::LogFormat) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| CliError::config(format!("the log filter {filter:?} is invalid: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed standard error (`psm serve 2>&1 | head`) must not take the server down: the
        // subscriber would report its write failure with `eprintln!`, which panics.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let result = match format {
        settings::LogFormat::Text => builder.try_init(),
        settings::LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| CliError::config(format!("logging could not start: {e}")))
}
