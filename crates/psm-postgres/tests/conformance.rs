//! The one integration-test binary of psm-postgres (`PSM_POSTGRES_URL` must be set; `cargo xtask
//! services` provides it): the psm-core conformance suite (every store in a fresh schema of its own,
//! migrated on creation, reading the suite's manual clock), plus the crate's own cases as modules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "conformance/faults.rs"]
mod faults;
#[path = "conformance/injection.rs"]
mod injection;
#[path = "conformance/migrations.rs"]
mod migrations;
#[path = "conformance/query.rs"]
mod query;

use std::sync::Arc;

use psm_core::{
    DynPermissionStore, DynTokenStateStore, DynUserStore, ManualClock, async_trait,
    testkit::{PermissionStoreFixture, TokenStateFixture, UserStoreFixture},
};

struct Sessions;

#[async_trait]
impl PermissionStoreFixture for Sessions {
    async fn create(&self, clock: ManualClock) -> DynPermissionStore {
        Arc::new(common::storage_with_clock(Arc::new(clock)).await.sessions())
    }
}

struct Users;

#[async_trait]
impl UserStoreFixture for Users {
    async fn create(&self, clock: ManualClock) -> DynUserStore {
        Arc::new(common::storage_with_clock(Arc::new(clock)).await.users())
    }
    fn honours_clock(&self) -> bool {
        true
    }
}

struct Tokens;

#[async_trait]
impl TokenStateFixture for Tokens {
    async fn create(&self, clock: ManualClock) -> DynTokenStateStore {
        Arc::new(common::storage_with_clock(Arc::new(clock)).await.tokens())
    }
    fn honours_clock(&self) -> bool {
        true
    }
}

psm_core::permission_store_tests!(Sessions);
psm_core::user_store_tests!(Users);
psm_core::token_state_tests!(Tokens);
