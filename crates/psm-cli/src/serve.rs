//! `psm serve`: the HTTP API over the configured stores, until SIGINT or SIGTERM.
//!
//! Shutdown stops accepting connections, lets in-flight requests finish, then closes the stores
//! (the file store syncs its journal and releases its lock), so nothing acknowledged is lost.

use std::{net::SocketAddr, time::Duration};

use psm::{Page, PermissionRef, auth::AuthConfig, jwt::TokenConfig};
use psm_http::{ADMIN_PERMISSION, Api, HttpConfig, ServeOptions, Stopped};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    CliError, exit, keys,
    settings::{ServeSettings, Settings, StoreLocation},
    stores::Stores,
};

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), CliError>>,
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, waits for in-flight requests, closes the stores.
    ///
    /// # Errors
    /// An I/O error of the listener while serving.
    pub async fn stop(mut self) -> Result<(), CliError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    async fn wait(self) -> Result<(), CliError> {
        self.task
            .await
            .map_err(|e| CliError::new(exit::FAILURE, format!("the server task failed: {e}")))?
    }
}

/// The auth configuration `serve` settings describe.
fn auth_config(serve: &ServeSettings) -> AuthConfig {
    let mut config = AuthConfig::default();
    config.idle_timeout = serve.idle_timeout.duration();
    config.absolute_lifetime = serve.session_lifetime.duration();
    config.max_sessions_per_user = serve.max_sessions_per_user;
    config
}

fn token_config(serve: &ServeSettings) -> TokenConfig {
    let mut config = TokenConfig::new(serve.issuer.clone(), serve.issuer.clone());
    config.access_ttl = serve.access_ttl.duration();
    config.refresh_lifetime = serve.session_lifetime.duration();
    config
}

/// Opens the stores, binds the address and starts serving in the background.
///
/// # Errors
/// Configuration errors, unreachable stores, an address that cannot be bound.
pub async fn start(settings: &Settings, serve: &ServeSettings) -> Result<Server, CliError> {
    let stores = Stores::open(settings, Some(settings.default_ttl.0)).await?;
    start_on(stores, settings, serve).await
}

/// As [`start`], over stores opened (and perhaps filled) by the caller; the server closes them
/// when it stops.
///
/// # Errors
/// As [`start`].
pub async fn start_on(
    stores: Stores,
    settings: &Settings,
    serve: &ServeSettings,
) -> Result<Server, CliError> {
    match build(settings, serve, &stores).await {
        Ok((listener, router)) => {
            let addr = listener
                .local_addr()
                .map_err(|e| CliError::io("cannot read the listening address", &e))?;
            tracing::info!(
                address = %addr,
                store = %settings.store.describe(),
                users = stores.users_provider().unwrap_or("none"),
                "psm is listening on http://{addr}"
            );
            let options = ServeOptions {
                // In-flight requests end by their own timeout; a little more for the answer.
                shutdown_grace: serve.request_timeout.duration() + Duration::from_secs(5),
                ..ServeOptions::default()
            };
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let served = psm_http::serve_with(listener, router, options, async move {
                    let _ = stopped.await;
                })
                .await;
                let closed = stores.close().await;
                match &served {
                    Ok(Stopped::Gracefully) => {}
                    Ok(Stopped::Dropped(n)) => {
                        tracing::warn!(
                            connections = n,
                            "dropped connections still open after the grace period"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "serving failed"),
                }
                closed?;
                tracing::info!("psm stopped; the stores are closed");
                served
                    .map(drop)
                    .map_err(|e| CliError::io("serving failed", &e))
            });
            Ok(Server {
                addr,
                stop: Some(stop),
                task,
            })
        }
        Err(e) => {
            // The build error is the one to report; a close error after it is logged by close.
            let _ = stores.close().await;
            Err(e)
        }
    }
}

async fn build(
    settings: &Settings,
    serve: &ServeSettings,
    stores: &Stores,
) -> Result<(tokio::net::TcpListener, axum::Router), CliError> {
    let keys = keys::load_or_create(&settings.jwt_secret_file)?;
    let auth = stores.auth(keys, auth_config(serve), token_config(serve))?;
    auth.initialize().await?;
    admin_hint(settings, stores).await?;
    let config = HttpConfig {
        body_limit: serve.body_limit,
        request_timeout: serve.request_timeout.duration(),
        registration: serve.registration,
        trust_forwarded_for: serve.trust_forwarded_for,
        ..HttpConfig::default()
    };
    let mut builder = Api::builder(stores.manager.clone(), auth)
        .config(config)
        .token_state(stores.tokens.clone())
        .cache(stores.cache.clone());
    for (provider, source) in stores.pool_gauges() {
        builder = builder.pool_gauge(&provider, source);
    }
    let api = builder.build()?;
    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .map_err(|e| CliError::config(format!("cannot listen on {}: {e}", serve.listen)))?;
    Ok((listener, psm_http::router(api)))
}

/// Logs how to create the first administrator when no account holds `psm:admin`.
async fn admin_hint(settings: &Settings, stores: &Stores) -> Result<(), CliError> {
    let admin = PermissionRef::parse(ADMIN_PERMISSION)?;
    let admins = stores
        .users()?
        .list_users(Some(admin), Page::first(1)?)
        .await?;
    if admins.is_empty() {
        let stop_first = match &settings.store {
            StoreLocation::Dir(_) => " (stop the server first: it holds the embedded store's lock)",
            StoreLocation::Url(u) if u.starts_with("file:") => {
                " (stop the server first: it holds the file store's lock)"
            }
            StoreLocation::Url(_) => "",
        };
        tracing::warn!(
            "no account holds {ADMIN_PERMISSION} yet: create one with `psm users create --admin --email you@example.com`{stop_first}, with the same --store/--users/--data-dir settings"
        );
    }
    Ok(())
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully (in-flight requests finish, within
/// the request timeout plus 5 s); a second signal exits at once.
///
/// # Errors
/// As [`start`]; a failure to install the signal handlers; a store that fails to close; a
/// second signal (exit code 10, after logging which requests were cut).
pub async fn run(settings: &Settings, serve: &ServeSettings) -> Result<(), CliError> {
    let mut signals = Signals::install()?;
    let server = start(settings, serve).await?;
    signals.next().await;
    tracing::info!("shutting down: finishing in-flight requests (a second signal exits at once)");
    tokio::select! {
        stopped = server.stop() => stopped,
        () = signals.next() => Err(CliError::new(
            exit::FAILURE,
            "stopped by a second signal before in-flight requests finished",
        )),
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())
                .map_err(|e| CliError::io("cannot install the SIGTERM handler", &e))?,
            int: signal(SignalKind::interrupt())
                .map_err(|e| CliError::io("cannot install the SIGINT handler", &e))?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
