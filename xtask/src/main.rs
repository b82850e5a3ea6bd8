//! psm's automation: `cargo xtask ci | services | bench | fuzz | audit` (see STYLE.md, "How xtask
//! is used").
//!
//! One binary, plain `std::process::Command`s with explicit arguments, cargo through `$CARGO`, and
//! every path relative to the workspace root, which it changes into first.

// A terminal tool: printing is its job.
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

mod api;
mod audit;
mod bench;
mod ci;
mod flags;
mod fuzz;
mod python;
mod services;
mod soak;
#[cfg(test)]
mod tidy;
mod util;

use std::process::ExitCode;

use flags::Task;

fn main() -> ExitCode {
    let root = util::workspace_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!(
            "error: cannot enter the workspace root {}: {e}",
            root.display()
        );
        return ExitCode::FAILURE;
    }
    let result = flags::parse(std::env::args().skip(1)).and_then(|task| match task {
        Task::Ci { skip } => ci::main(&skip),
        Task::Services(action) => services::main(action),
        Task::Bench(flags) => bench::main(flags),
        Task::Soak(flags) => soak::main(flags),
        Task::Fuzz { cases } => fuzz::main(cases),
        Task::Audit => audit::main(),
        Task::Help => {
            print!("{}", flags::HELP);
            Ok(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
