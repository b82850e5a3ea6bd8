//! The psm HTTP API on axum, and [`RequirePermission`] for guarding other axum applications.
//!
//! [`router`] serves DESIGN §6's routes over a [`psm::PermissionStorageManager`] (sessions) and a
//! [`psm::auth::AuthService`] (accounts and tokens): `/v1/auth/{register,login,refresh,logout,
//! revoke-all}`, `/v1/me` and `/v1/me/sessions`, the admin routes `/v1/sessions...` and
//! `/v1/users...` (permission `psm:admin`), `/healthz`, `/readyz`, `/metrics` (Prometheus) and
//! `/openapi.json`. Every error is an RFC 9457 problem document with a stable `code` (see
//! [`problem`]); bad input is answered before any store is touched.
//!
//! ```no_run
//! use psm::{PermissionStorageManager, auth::{AuthConfig, AuthService}, jwt::{Algorithm, KeySet, SigningKey}};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = AuthService::memory(
//!     KeySet::new(SigningKey::hmac("k1", Algorithm::HS256, &[7u8; 32])?)?,
//!     AuthConfig::default(),
//! )?;
//! let manager = PermissionStorageManager::from_store(auth.sessions().clone()).await?;
//! let api = psm_http::Api::builder(manager, auth).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! psm_http::serve(listener, psm_http::router(api), std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

pub mod dto;
mod extract;
mod guard;
mod limiter;
mod metrics;
mod openapi;
pub mod problem;
mod routes;
mod serve;
mod state;

pub use extract::{ApiJson, ApiQuery, SessionPath, UserPath, bearer_token};
pub use guard::{
    PermissionGuard, Principal, RequirePermission, RequirePermissionLayer,
    RequirePermissionService, RequiredPermission, Requirement,
};
pub use metrics::{PoolGauge, PoolSource};
pub use openapi::{ApiDoc, openapi};
pub use problem::Problem;
pub use routes::router;
pub use serve::{ServeOptions, Stopped, serve, serve_with};
pub use state::{ADMIN_PERMISSION, Api, ApiBuilder, DEFAULT_USER_PERMISSION, HttpConfig};
