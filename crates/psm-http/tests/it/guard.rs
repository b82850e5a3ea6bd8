//! `RequirePermission` (extractor) and `RequirePermissionLayer` guarding another app's routes.

use axum::{Router, http::HeaderName, routing::get};
use psm::PermissionStorageManager;
use psm_http::{PermissionGuard, Principal, RequirePermission, RequirePermissionLayer};

use crate::support::{auth, problem, serve_with};

psm_http::permission!(DocsRead = "docs:read");

async fn docs(RequirePermission(caller, ..): RequirePermission<DocsRead>) -> String {
    format!("docs for {}", caller.user_id)
}

async fn report(caller: Principal) -> String {
    format!("report for {}", caller.session_id.redacted())
}

fn app(guard: PermissionGuard) -> Router {
    let reports = Router::new()
        .route("/reports/{name}", get(report))
        .route_layer(RequirePermissionLayer::new(guard.clone(), "reports:*").unwrap());
    Router::new()
        .route("/docs", get(docs))
        .merge(reports)
        .with_state(guard)
}

async fn serve_app(router: Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(psm_http::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

#[tokio::test]
async fn bearer_tokens_are_checked_against_the_route_requirement() {
    // The psm server only issues the tokens here; the guarded app is a separate router.
    let psm = serve_with(auth(), psm_http::HttpConfig::default()).await;
    let reader = crate::support::user_token(&psm, "reader@example.com", &["docs:read"]).await;
    let analyst = crate::support::user_token(&psm, "analyst@example.com", &["reports:view"]).await;
    let guard = psm.api.guard().clone();
    let (base, stop) = serve_app(app(guard)).await;
    let client = reqwest::Client::new();

    let r = client.get(format!("{base}/docs")).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"psm\"");
    problem(r, 401, "unauthorized").await;

    let r = client
        .get(format!("{base}/docs"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("docs for user_"));

    let r = client
        .get(format!("{base}/docs"))
        .bearer_auth(&analyst)
        .send()
        .await
        .unwrap();
    let body = problem(r, 403, "forbidden").await;
    assert_eq!(body["required"], "docs:read");

    // The layer's pattern: `reports:view` matches `reports:*`, `docs:read` does not.
    let r = client
        .get(format!("{base}/reports/q3"))
        .bearer_auth(&analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{base}/reports/q3"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;

    for bad in ["not-a-jwt", "a.b.c", &format!("{reader}x")] {
        let r = client
            .get(format!("{base}/docs"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        problem(r, 401, "token_invalid").await;
    }

    // Once the session ends, its still-unexpired token no longer passes.
    let claims = psm
        .api
        .auth()
        .token_service()
        .verify_access(&reader)
        .unwrap();
    assert!(
        psm.api
            .manager()
            .invalidate_session(&claims.sid)
            .await
            .unwrap()
    );
    let r = client
        .get(format!("{base}/docs"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    problem(r, 401, "token_revoked").await;
    let _ = stop.send(());
    psm.stop().await;
}

#[tokio::test]
async fn a_session_id_header_guard_reads_the_session_from_the_store() {
    let manager = PermissionStorageManager::new("memory", serde_json::json!({}))
        .await
        .unwrap();
    manager
        .store_permissions("sess_docs", "carol", ["docs:read"], Some(60), None)
        .await
        .unwrap();
    manager
        .store_permissions("sess_reports", "dave", ["reports:edit"], Some(60), None)
        .await
        .unwrap();
    let guard = PermissionGuard::with_session_header(
        manager.clone(),
        HeaderName::from_static("x-session-id"),
    );
    let (base, stop) = serve_app(app(guard)).await;
    let client = reqwest::Client::new();
    let get = |path: &str, sid: Option<&str>| {
        let mut r = client.get(format!("{base}{path}"));
        if let Some(s) = sid {
            r = r.header("x-session-id", s);
        }
        r.send()
    };
    let r = get("/docs", Some("sess_docs")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "docs for carol");
    problem(
        get("/docs", Some("sess_reports")).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        get("/reports/x", Some("sess_reports"))
            .await
            .unwrap()
            .status(),
        200
    );
    problem(get("/docs", None).await.unwrap(), 401, "unauthorized").await;
    problem(
        get("/docs", Some("bad id!")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    problem(
        get("/docs", Some("sess_unknown")).await.unwrap(),
        401,
        "token_revoked",
    )
    .await;
    manager.invalidate_session("sess_docs").await.unwrap();
    problem(
        get("/docs", Some("sess_docs")).await.unwrap(),
        401,
        "token_revoked",
    )
    .await;
    let _ = stop.send(());
}

#[test]
fn a_bad_requirement_is_refused_when_the_layer_is_built() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let manager = rt
        .block_on(PermissionStorageManager::new(
            "memory",
            serde_json::json!({}),
        ))
        .unwrap();
    let guard = PermissionGuard::with_session_header(manager, HeaderName::from_static("x-s"));
    assert!(RequirePermissionLayer::new(guard.clone(), "two words").is_err());
    assert!(RequirePermissionLayer::new(guard, "").is_err());
}
