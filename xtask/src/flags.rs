//! Command-line parsing: a hand-written parser, since the grammar is three subcommands and a few flags.

use crate::util::{Result, bail};

/// What the person asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Task {
    /// `cargo xtask ci [--skip STEP]...`
    Ci { skip: Vec<String> },
    /// `cargo xtask services up|down|env`
    Services(ServicesAction),
    /// `cargo xtask bench [--quick] [--no-python] [--no-criterion] [--http-only] [--report-only]`
    Bench(BenchFlags),
    /// `cargo xtask soak [--seconds N] [--providers LIST]`
    Soak(SoakFlags),
    /// `cargo xtask fuzz [--cases N]`
    Fuzz { cases: u32 },
    /// `cargo xtask audit`
    Audit,
    /// `cargo xtask help`, `-h`, `--help` or no argument at all.
    Help,
}

/// The `services` subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServicesAction {
    Up,
    Down,
    Env,
}

/// Options of `cargo xtask soak`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SoakFlags {
    /// The whole run, shared equally by the providers.
    pub(crate) seconds: u64,
    /// Comma-separated provider names; `None` is every provider.
    pub(crate) providers: Option<String>,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BenchFlags {
    /// Smaller data set, no Python, no criterion; writes under `target/xtask/` instead of `docs/`.
    pub(crate) quick: bool,
    pub(crate) no_python: bool,
    pub(crate) no_criterion: bool,
    /// Only the HTTP part (wrk), printed as JSON; no report is written.
    pub(crate) http_only: bool,
    /// Nothing measured: `docs/benchmarks.md` rendered again from `docs/benchmarks.json` (after a
    /// change to the report's wording).
    pub(crate) report_only: bool,
}

pub(crate) const HELP: &str = "\
cargo xtask <command>

Commands:
  ci [--skip STEP]...     the single gate: fmt, clippy, purity, doc, services, test, soak, fuzz,
                          api, machete
                          (--skip is for local iteration only; .ci/run never uses it)
  services up|down|env    find or start Redis, PostgreSQL and a private three-master Redis
                          Cluster; `env` prints export lines, `down` stops only what this
                          xtask started
  bench [--quick] [--no-python] [--no-criterion] [--http-only] [--report-only]
                          run the load driver, the baselines, wrk on the HTTP API and criterion,
                          write docs/benchmarks.md (--quick: 10,000 sessions, no Python, no
                          criterion, output under target/xtask/; --http-only: wrk alone, JSON out;
                          --report-only: docs/benchmarks.md again from docs/benchmarks.json)
  fuzz [--cases N]        the fuzz properties (tests under `fuzz::`) with N cases per cheap
                          parser (default 100,000; costlier properties get a fraction)
  audit                   cargo-deny (bans, licenses; deny.toml) and cargo-machete; installs
                          cargo-deny if missing (slow, so not part of ci)
  soak [--seconds N] [--providers LIST]
                          concurrent load with short ttls on every provider (memory, file,
                          redis, redis-cluster, postgres; N seconds in all, default 60) while
                          a checker verifies the invariants; exits non-zero on a violation
  help                    this text

Environment:
  PSM_REDIS_URL, PSM_POSTGRES_URL   use these servers (they must answer)
  PSM_REDIS_CLUSTER_URL             use this Redis Cluster seed node (`redis://h:p?cluster=true`)
  PSM_XTASK_FORCE_START=1           skip the environment and the conventional ports, start private servers
";

/// Parses the arguments after the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Task> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Ok(Task::Help);
    };
    match command.as_str() {
        "help" | "-h" | "--help" => Ok(Task::Help),
        "ci" => {
            let mut skip = Vec::new();
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--skip" => match args.next() {
                        Some(step) => skip.push(step),
                        None => bail!("--skip needs a step name"),
                    },
                    other => bail!("unknown argument to ci: {other}"),
                }
            }
            Ok(Task::Ci { skip })
        }
        "services" => {
            let action = match args.next().as_deref() {
                Some("up") => ServicesAction::Up,
                Some("down") => ServicesAction::Down,
                Some("env") => ServicesAction::Env,
                Some(other) => bail!("unknown services action: {other} (expected up, down or env)"),
                None => bail!("services needs an action: up, down or env"),
            };
            if let Some(extra) = args.next() {
                bail!("unexpected argument: {extra}");
            }
            Ok(Task::Services(action))
        }
        "soak" => {
            let mut flags = SoakFlags {
                seconds: crate::soak::DEFAULT_SECONDS,
                providers: None,
            };
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--seconds" => match args.next().and_then(|n| n.parse::<u64>().ok()) {
                        Some(n) if n > 0 => flags.seconds = n,
                        _ => bail!("--seconds needs a positive number"),
                    },
                    "--providers" => match args.next() {
                        Some(list) if !list.is_empty() => flags.providers = Some(list),
                        _ => bail!("--providers needs a comma-separated list"),
                    },
                    other => bail!("unknown argument to soak: {other}"),
                }
            }
            Ok(Task::Soak(flags))
        }
        "bench" => {
            let mut flags = BenchFlags::default();
            for arg in args {
                match arg.as_str() {
                    "--quick" => flags.quick = true,
                    "--no-python" => flags.no_python = true,
                    "--no-criterion" => flags.no_criterion = true,
                    "--http-only" => flags.http_only = true,
                    "--report-only" => flags.report_only = true,
                    other => bail!("unknown argument to bench: {other}"),
                }
            }
            Ok(Task::Bench(flags))
        }
        "fuzz" => {
            let mut cases = crate::fuzz::DEFAULT_CASES;
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--cases" => match args.next().and_then(|n| n.parse::<u32>().ok()) {
                        Some(n) if n > 0 => cases = n,
                        _ => bail!("--cases needs a positive number"),
                    },
                    other => bail!("unknown argument to fuzz: {other}"),
                }
            }
            Ok(Task::Fuzz { cases })
        }
        "audit" => match args.next() {
            Some(extra) => bail!("unexpected argument: {extra}"),
            None => Ok(Task::Audit),
        },
        other => bail!("unknown command: {other} (see `cargo xtask help`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Task> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse_str("").ok(), Some(Task::Help));
        assert_eq!(
            parse_str("ci --skip test --skip machete").ok(),
            Some(Task::Ci {
                skip: vec!["test".into(), "machete".into()]
            })
        );
        assert_eq!(
            parse_str("services env").ok(),
            Some(Task::Services(ServicesAction::Env))
        );
        assert_eq!(
            parse_str("fuzz --cases 500").ok(),
            Some(Task::Fuzz { cases: 500 })
        );
        assert_eq!(
            parse_str("fuzz").ok(),
            Some(Task::Fuzz {
                cases: crate::fuzz::DEFAULT_CASES
            })
        );
        assert_eq!(parse_str("audit").ok(), Some(Task::Audit));
        assert_eq!(
            parse_str("soak --seconds 600 --providers memory,redis").ok(),
            Some(Task::Soak(SoakFlags {
                seconds: 600,
                providers: Some("memory,redis".into())
            }))
        );
        assert_eq!(
            parse_str("bench --quick").ok(),
            Some(Task::Bench(BenchFlags {
                quick: true,
                ..BenchFlags::default()
            }))
        );
    }

    #[test]
    fn rejects_unknown_input() {
        for line in [
            "ci --fast",
            "ci --skip",
            "services",
            "services sideways",
            "bench --slow",
            "soak --seconds",
            "soak --seconds 0",
            "soak --providers",
            "fuzz --cases",
            "fuzz --cases 0",
            "fuzz --cases many",
            "audit now",
            "deploy",
        ] {
            assert!(parse_str(line).is_err(), "{line} should be rejected");
        }
    }
}
