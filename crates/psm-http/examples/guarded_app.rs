//! Another axum application guarding its routes with psm.
//!
//! `/docs` needs the permission `docs:read` (the [`RequirePermission`] extractor); everything under
//! `/reports` needs some permission matching `reports:*` (the [`RequirePermissionLayer`]). Callers
//! send an access token psm issued.
//!
//! `cargo run -p psm-http --example guarded_app` starts the app on a free loopback port, logs a demo
//! user in, calls each route with and without the token, prints what came back, and exits.

#![allow(clippy::print_stdout, clippy::expect_used)]

use axum::{Router, routing::get};
use psm::{
    PermissionList, PermissionStorageManager,
    auth::{AuthConfig, AuthService, ClientInfo, LoginRequest, RegisterRequest},
    jwt::{Algorithm, KeySet, SigningKey},
};
use psm_http::{PermissionGuard, Principal, RequirePermission, RequirePermissionLayer};

psm_http::permission!(DocsRead = "docs:read");

async fn docs(RequirePermission(caller, ..): RequirePermission<DocsRead>) -> String {
    format!("the docs, for {}", caller.user_id)
}

async fn report(caller: Principal) -> String {
    format!("quarterly numbers, for {}", caller.user_id)
}

/// The application: its own routes, guarded by psm.
fn app(guard: PermissionGuard) -> psm::Result<Router> {
    let reports = Router::new()
        .route("/reports/quarterly", get(report))
        .route_layer(RequirePermissionLayer::new(guard.clone(), "reports:*")?);
    Ok(Router::new()
        .route("/docs", get(docs))
        .merge(reports)
        .with_state(guard))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = KeySet::new(SigningKey::hmac("demo", Algorithm::HS256, &[42u8; 32])?)?;
    let auth = AuthService::memory(keys, AuthConfig::default())?;
    let manager = PermissionStorageManager::from_store(auth.sessions().clone()).await?;

    auth.register(RegisterRequest {
        username: "ada".into(),
        email: "ada@example.com".into(),
        password: "correct horse battery".into(),
        permissions: PermissionList::parse(["docs:read", "reports:view"])?,
    })
    .await?;
    let login = auth
        .login(LoginRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
            client: ClientInfo::default(),
        })
        .await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = app(PermissionGuard::with_tokens(manager, auth))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(psm_http::serve(listener, router, async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    for path in ["/docs", "/reports/quarterly"] {
        let anonymous = client.get(format!("{base}{path}")).send().await?;
        println!("GET {path} without a token: {}", anonymous.status());
        let authorized = client
            .get(format!("{base}{path}"))
            .bearer_auth(&login.tokens.access_token)
            .send()
            .await?;
        println!(
            "GET {path} with the token: {} {}",
            authorized.status(),
            authorized.text().await?
        );
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}
