//! `cargo xtask audit`: dependency and code hygiene. cargo-deny checks bans, licenses and sources
//! against `deny.toml`, then cargo-machete looks for unused dependencies.
//!
//! Advisories are not checked: their database cannot be fetched on these machines. cargo-deny is
//! installed with `cargo install cargo-deny --locked` when missing; that compiles for minutes,
//! which is why this is a command of its own and not a step of `cargo xtask ci` (machete, which
//! is cheap, is in both).

use std::process::Command;

use crate::{
    ci::{find_cargo_tool, run_machete},
    util::{Error, Result, cargo, header, run},
};

/// Entry point of `cargo xtask audit`.
pub(crate) fn main() -> Result<()> {
    header(1, 2, "deny");
    let deny = match find_cargo_tool("cargo-deny") {
        Some(binary) => binary,
        None => {
            println!(
                "cargo-deny is not installed; installing it with `cargo install cargo-deny --locked` (several minutes)"
            );
            run(cargo().args(["install", "cargo-deny", "--locked"])).map_err(|e| {
                Error::new(format!(
                    "cannot install cargo-deny (is crates.io reachable?): {e}"
                ))
            })?;
            find_cargo_tool("cargo-deny")
                .ok_or_else(|| Error::new("cargo-deny was installed but cannot be found"))?
        }
    };
    // Run as the cargo subcommand it is (`cargo-deny deny …`); it reads the root's deny.toml,
    // which also selects all features and the Linux targets. Duplicate versions are warnings;
    // their inclusion graphs would bury the verdict.
    run(Command::new(deny).args([
        "deny",
        "check",
        "--hide-inclusion-graph",
        "bans",
        "licenses",
        "sources",
    ]))?;
    header(2, 2, "machete");
    run_machete()
}
