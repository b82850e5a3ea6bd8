//! The `psm` binary.
#![forbid(unsafe_code)]

use std::{io::Write, process::ExitCode};

use clap::Parser;
use psm_cli::{CliError, cli::Cli, settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match start(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The one place the command talks to a human about a failure; a closed standard
            // error must not turn the exit code into a panic's.
            let _ = writeln!(std::io::stderr(), "psm: {e}");
            e.exit_code()
        }
    }
}

fn start(cli: Cli) -> Result<u8, CliError> {
    let (logging, _) = settings::resolve(&cli.store, None)?;
    psm_cli::init_logging(&logging.log_level, logging.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("cannot start the runtime", &e))?;
    runtime.block_on(psm_cli::run(cli))
}
