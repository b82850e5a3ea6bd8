//! `psm bench`: load on the configured store through the manager, as an application would put it,
//! with a table of rates and latencies. Everything it stores belongs to users named
//! `psmbench_<pid>_<n>`, and is removed at the end.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use psm::PermissionStorageManager;

use crate::{
    CliError,
    cli::BenchArgs,
    commands::{out, with_stores},
    exit,
    settings::Settings,
};

/// Users the bench sessions are spread over.
const USERS: usize = 100;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Check,
    GetPermissions,
    Store,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Check => "check_permission",
            Self::GetPermissions => "get_permissions",
            Self::Store => "store_permissions",
        }
    }
}

struct Names {
    prefix: String,
}

impl Names {
    fn session(&self, i: usize) -> String {
        format!("{}_s{i}", self.prefix)
    }

    fn user(&self, i: usize) -> String {
        format!("{}_{}", self.prefix, i % USERS)
    }
}

async fn one(
    m: &PermissionStorageManager,
    names: &Names,
    kind: Kind,
    i: usize,
    sessions: usize,
) -> psm::Result<()> {
    let s = names.session(i % sessions);
    match kind {
        Kind::Check => m
            .check_permission(&s, if i.is_multiple_of(2) { "read" } else { "admin" })
            .await
            .map(drop),
        Kind::GetPermissions => m.get_permissions(&s).await.map(drop),
        Kind::Store => m
            .store_permissions(&s, &names.user(i), ["read", "write"], Some(3600), None)
            .await
            .map(drop),
    }
}

/// Runs `ops` operations of `kind` over `tasks` tasks; latencies in microseconds, and errors.
async fn measure(
    m: &PermissionStorageManager,
    names: &Arc<Names>,
    kind: Kind,
    ops: usize,
    tasks: usize,
    sessions: usize,
    progress: &ProgressBar,
) -> (Duration, Vec<u32>, u64) {
    let start = Instant::now();
    let per_task = ops.div_ceil(tasks);
    let runs = (0..tasks).map(|t| {
        let m = m.clone();
        let names = Arc::clone(names);
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            let mut errors = 0u64;
            for k in 0..per_task {
                let i = t * per_task + k;
                if i >= ops {
                    break;
                }
                let at = Instant::now();
                if one(&m, &names, kind, i, sessions).await.is_err() {
                    errors += 1;
                }
                latencies.push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX));
                progress.inc(1);
            }
            (latencies, errors)
        })
    });
    let mut all = Vec::with_capacity(ops);
    let mut errors = 0;
    for joined in join_all(runs).await {
        match joined {
            Ok((l, e)) => {
                all.extend(l);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    (start.elapsed(), all, errors)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// `psm bench`.
pub(crate) async fn run(settings: &Settings, args: &BenchArgs) -> Result<u8, CliError> {
    if args.sessions == 0 || args.ops == 0 || args.concurrency == 0 {
        return Err(CliError::invalid(
            "--sessions, --ops and --concurrency must be at least 1",
        ));
    }
    with_stores(settings, Some(3600), async |stores| {
        let m = stores.manager.clone();
        let names = Arc::new(Names {
            prefix: format!("psmbench_{}", std::process::id()),
        });
        let style = ProgressStyle::with_template("{msg:>18} [{bar:40}] {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let seed = ProgressBar::new(args.sessions as u64)
            .with_style(style.clone())
            .with_message("storing sessions");
        let (_, _, seed_errors) = measure(
            &m,
            &names,
            Kind::Store,
            args.sessions,
            args.concurrency,
            args.sessions,
            &seed,
        )
        .await;
        seed.finish_and_clear();
        let mut rows = Vec::new();
        for kind in [Kind::Check, Kind::GetPermissions, Kind::Store] {
            let progress = ProgressBar::new(args.ops as u64)
                .with_style(style.clone())
                .with_message(kind.name());
            let (elapsed, mut latencies, errors) = measure(
                &m,
                &names,
                kind,
                args.ops,
                args.concurrency,
                args.sessions,
                &progress,
            )
            .await;
            progress.finish_and_clear();
            latencies.sort_unstable();
            #[allow(clippy::cast_precision_loss)]
            let rate = latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9);
            rows.push((
                kind.name(),
                latencies.len(),
                rate,
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99),
                errors,
            ));
        }
        let mut removed = 0;
        for u in 0..USERS.min(args.sessions) {
            removed += m
                .invalidate_user_sessions(&names.user(u))
                .await
                .unwrap_or(0);
        }
        out(&format!(
            "psm bench: {} store, {} sessions, {} tasks",
            stores.sessions_provider(),
            args.sessions,
            args.concurrency
        ))?;
        out(&format!(
            "{:<18} {:>9} {:>12} {:>9} {:>9} {:>7}",
            "operation", "ops", "ops/s", "p50 µs", "p99 µs", "errors"
        ))?;
        let rows_errors: u64 = rows.iter().map(|r| r.5).sum();
        for (name, ops, rate, p50, p99, errors) in rows {
            out(&format!(
                "{name:<18} {ops:>9} {rate:>12.0} {p50:>9} {p99:>9} {errors:>7}"
            ))?;
        }
        out(&format!(
            "(seeding errors: {seed_errors}; bench sessions removed: {removed})"
        ))?;
        let errors: u64 = seed_errors + rows_errors;
        if errors > 0 {
            return Err(CliError::new(
                exit::FAILURE,
                format!("{errors} operations failed during the bench"),
            ));
        }
        Ok(exit::OK)
    })
    .await
}
