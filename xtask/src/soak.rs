//! `cargo xtask soak [--seconds N] [--providers LIST]`: the soak driver (`psm-bench`'s `psm-soak`)
//! against every provider, on the servers `services` finds or starts (stopped again by PID, also
//! when the soak fails). The step `soak` of `cargo xtask ci` runs it for [`CI_SECONDS`] on the
//! servers the `services` step exported.
//!
//! `N` is the whole run, shared equally by the providers; the driver prints a progress line every
//! five seconds and a markdown report per provider, and exits non-zero on any invariant violation.

use crate::{
    flags::SoakFlags,
    services,
    util::{Result, cargo, run, target_dir, xtask_dir},
};

/// Every provider, in the order the driver visits them.
pub(crate) const ALL_PROVIDERS: &str = "memory,file,redis,redis-cluster,postgres";
/// The length of the soak inside `cargo xtask ci` (about twelve seconds per provider).
pub(crate) const CI_SECONDS: u64 = 60;
/// The default of `--seconds`.
pub(crate) const DEFAULT_SECONDS: u64 = 60;

/// Entry point of `cargo xtask soak`.
pub(crate) fn main(flags: SoakFlags) -> Result<()> {
    let providers = flags.providers.as_deref().unwrap_or(ALL_PROVIDERS);
    let in_process = |p: &str| p == "memory" || p == "file";
    if providers.split(',').all(in_process) {
        return run_soak(&[], flags.seconds, providers);
    }
    let services = services::discover()?;
    let result = run_soak(&services.env_vars(), flags.seconds, providers);
    services.stop_started();
    result
}

/// Builds the driver exactly as the test step builds the workspace (`cargo test` builds it for
/// `psm-bench`'s integration test; `cargo build` would resolve other features and rebuild much of
/// the workspace), which after that step is a no-op, then runs it with the servers of `env`
/// (`PSM_REDIS_URL`, `PSM_REDIS_CLUSTER_URL`, `PSM_POSTGRES_URL`).
pub(crate) fn run_soak(
    env: &[(&'static str, String)],
    seconds: u64,
    providers: &str,
) -> Result<()> {
    run(cargo().args(["test", "--workspace", "--all-features", "--no-run"]))?;
    let binary = target_dir().join("debug/psm-soak");
    // Under the clone's own target/, on its disk: a tmpfs would make the file store's fsyncs free.
    let file_dir = xtask_dir()?.join("soak");
    std::fs::create_dir_all(&file_dir)?;
    run(std::process::Command::new(binary)
        .args(["--seconds", &seconds.to_string(), "--providers", providers])
        .arg("--file-dir")
        .arg(&file_dir)
        .envs(env.iter().map(|(k, v)| (k, v))))
}
