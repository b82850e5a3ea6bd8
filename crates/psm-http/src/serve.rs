//! Serving the router on a listener: HTTP/1.1 with a header read timeout, a cap on open
//! connections, the peer address for each request, and a graceful shutdown with a deadline.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tower::ServiceExt;

/// How a listener is served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// A client must send a request's headers within this time (default 10 s): a connection
    /// that trickles them is closed, so it can hold neither a slot nor a shutdown.
    pub header_read_timeout: Duration,
    /// Most connections open at once (default 10,000); beyond it, new connections wait in the
    /// listen backlog.
    pub max_connections: usize,
    /// After `shutdown` completes, in-flight requests get this long to finish (default 35 s: the
    /// default request timeout plus 5 s); connections still open then are dropped.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(35),
        }
    }
}

/// What [`serve_with`] reports when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Gracefully,
    /// The grace period ran out; this many connections were dropped.
    Dropped(usize),
}

/// [`serve_with`] with the default options.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeOptions::default(), shutdown)
        .await
        .map(drop)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish within [`ServeOptions::shutdown_grace`].
///
/// Each request carries the peer address as `ConnectInfo<SocketAddr>` (login throttling counts
/// failures per client).
///
/// # Errors
/// I/O errors of the listener other than a transient accept failure.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Stopped> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        // Finished connections are reaped as new ones come, so the set stays as small as the load.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, a connection reset before accept: keep serving.
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .map_err(|e: Infallible| match e {});
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            // A client that goes away mid-request is its own business, not the server's.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let open = options.max_connections.max(1) - slots.available_permits();
    match tokio::time::timeout(options.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => Ok(Stopped::Gracefully),
        Err(_) => {
            let still_open = options.max_connections.max(1) - slots.available_permits();
            connections.abort_all();
            while connections.join_next().await.is_some() {}
            tracing::warn!(
                open_at_shutdown = open,
                dropped = still_open,
                "shutdown grace period over: dropping the remaining connections"
            );
            Ok(Stopped::Dropped(still_open))
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24)
}
