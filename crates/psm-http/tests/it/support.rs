//! A psm API on memory stores, served on a free loopback port.

use psm::{
    PermissionList, PermissionStorageManager,
    auth::{Argon2Params, AuthConfig, AuthService, ClientInfo, LoginRequest, RegisterRequest},
    jwt::{Algorithm, KeySet, SigningKey},
};
use psm_http::{Api, HttpConfig};
use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

/// A running server and the handles a test needs.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) api: Api,
    pub(crate) client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Argon2 cheap enough for a fast suite (never in production).
pub(crate) fn cheap_config() -> AuthConfig {
    let mut c = AuthConfig::default();
    c.argon2 = Argon2Params {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
        allow_below_owasp_minimum: true,
    };
    c
}

pub(crate) fn keys() -> KeySet {
    KeySet::new(SigningKey::hmac("test", Algorithm::HS256, &[9u8; 32]).unwrap()).unwrap()
}

pub(crate) fn auth() -> AuthService {
    AuthService::memory(keys(), cheap_config()).unwrap()
}

/// Serves an API over `auth`'s stores with `config`.
pub(crate) async fn serve_with(auth: AuthService, config: HttpConfig) -> Server {
    let manager = PermissionStorageManager::from_store(auth.sessions().clone())
        .await
        .unwrap();
    let api = Api::builder(manager, auth).config(config).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(psm_http::serve(
        listener,
        psm_http::router(api.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        base,
        api,
        client: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
    }
}

pub(crate) async fn serve() -> Server {
    serve_with(auth(), HttpConfig::default()).await
}

/// Registers `email` with `permissions` and logs in; returns the access token.
pub(crate) async fn user_token(server: &Server, email: &str, permissions: &[&str]) -> String {
    let auth = server.api.auth();
    let name: String = email
        .chars()
        .take_while(|c| *c != '@')
        .filter(char::is_ascii_alphanumeric)
        .collect();
    auth.register(RegisterRequest {
        username: format!("{name}_user"),
        email: email.to_owned(),
        password: "a long enough password".to_owned(),
        permissions: PermissionList::parse(permissions).unwrap(),
    })
    .await
    .unwrap();
    auth.login(LoginRequest {
        email: email.to_owned(),
        password: "a long enough password".to_owned(),
        client: ClientInfo::default(),
    })
    .await
    .unwrap()
    .tokens
    .access_token
}

pub(crate) async fn admin_token(server: &Server) -> String {
    user_token(server, "admin@example.com", &["psm:admin"]).await
}

/// Asserts `response` is a problem document with `status` and `code`; returns its body.
pub(crate) async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "content type"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["type"], format!("urn:psm:problem:{code}"));
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}
