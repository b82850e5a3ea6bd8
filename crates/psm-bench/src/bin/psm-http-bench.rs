//! `psm-http-bench`: the two servers `cargo xtask bench` points wrk at.
//!
//! ```text
//! psm-http-bench empty --listen ADDR
//! psm-http-bench psm --store URL --listen ADDR [--sessions N]
//! ```
//!
//! `empty` serves an empty axum handler at `GET /empty`: the ceiling of the HTTP stack on this
//! machine. `psm` serves the psm API exactly as `psm serve` builds it (`psm_cli::serve::start_on`),
//! over the store `URL` (accounts in memory when the store keeps none), with an administrator and
//! `N` sessions stored first. Both run on the same Tokio runtime (one worker per core) with the
//! logging `psm serve` starts by default (`info`, text, standard error). Each prints one JSON line once it
//! listens (`addr`, and for `psm` the admin `token` and the `session` to check) and serves until
//! its standard input closes; a Redis store's keys are removed at the end.

// The JSON line on standard output is this program's whole interface.
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use psm::{
    PermissionList,
    auth::{AuthConfig, ClientInfo, LoginRequest, RegisterRequest},
    jwt::TokenConfig,
    redis::{RedisConfig, RedisStorage},
};
use psm_cli::{
    keys,
    settings::{ServeFlags, StoreFlags, resolve},
    stores::Stores,
};
use serde_json::json;
use tokio::io::AsyncReadExt;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The session every check asks about.
const SESSION: &str = "sess_http_bench_0";
const ADMIN: (&str, &str) = ("bench-admin@example.com", "the bench admin's passphrase");

struct Args {
    mode: String,
    listen: SocketAddr,
    store: Option<String>,
    sessions: usize,
}

fn parse() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .ok_or("usage: psm-http-bench empty|psm --listen ADDR [--store URL] [--sessions N]")?;
    let (mut listen, mut store, mut sessions) = (None, None, 1000);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse()?),
            "--store" => store = Some(value),
            "--sessions" => sessions = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(Args {
        mode,
        listen: listen.ok_or("--listen is required")?,
        store,
        sessions,
    })
}

async fn until_stdin_closes() {
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

async fn empty(listen: SocketAddr) -> Result<()> {
    let router = axum::Router::new().route("/empty", axum::routing::get(|| async {}));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("{}", json!({"addr": listener.local_addr()?.to_string()}));
    axum::serve(listener, router)
        .with_graceful_shutdown(until_stdin_closes())
        .await?;
    Ok(())
}

async fn psm(args: &Args) -> Result<()> {
    let store = args.store.clone().ok_or("psm mode needs --store")?;
    let dir = tempfile::tempdir()?;
    let is_redis = store.starts_with("redis");
    let flags = StoreFlags {
        store: Some(store.clone()),
        users: is_redis.then(|| "memory://".to_owned()),
        data_dir: Some(dir.path().join("psm-data")),
        ..StoreFlags::default()
    };
    let serve_flags = ServeFlags {
        listen: Some(args.listen),
        ..ServeFlags::default()
    };
    let (settings, serve) = resolve(&flags, Some(&serve_flags))?;
    let stores = Stores::open(&settings, Some(3600)).await?;
    let key_set = keys::load_or_create(&settings.jwt_secret_file)?;
    let auth = stores.auth(
        key_set,
        AuthConfig::default(),
        TokenConfig::new("psm", "psm"),
    )?;
    auth.register(RegisterRequest {
        username: "bench_admin".into(),
        email: ADMIN.0.into(),
        password: ADMIN.1.into(),
        permissions: PermissionList::parse(["psm:admin"])?,
    })
    .await?;
    let token = auth
        .login(LoginRequest {
            email: ADMIN.0.into(),
            password: ADMIN.1.into(),
            client: ClientInfo::default(),
        })
        .await?
        .tokens
        .access_token;
    for i in 0..args.sessions {
        stores
            .manager
            .store_permissions(
                &format!("sess_http_bench_{i}"),
                &format!("user_{}", i % 100),
                ["read", "write"],
                Some(3600),
                None,
            )
            .await?;
    }
    let server = psm_cli::serve::start_on(stores, &settings, &serve).await?;
    println!(
        "{}",
        json!({"addr": server.addr().to_string(), "token": token, "session": SESSION})
    );
    until_stdin_closes().await;
    server.stop().await?;
    if is_redis {
        let redis = RedisStorage::connect(RedisConfig::from_url(&store)?).await?;
        redis.sessions().flush_all_sessions().await?;
        redis.close().await?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = parse()?;
    // The logging `psm serve` starts with by default; request lines are at debug, so none is written.
    psm_cli::init_logging("info", psm_cli::settings::LogFormat::Text)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.mode.as_str() {
            "empty" => empty(args.listen).await,
            "psm" => psm(&args).await,
            other => Err(format!("unknown mode {other}").into()),
        }
    })
}
