//! The psm-core conformance suite against a real standalone Redis (`PSM_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), each store on a fresh random key prefix; the session suite runs a
//! second time with client-side caching on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Caches, Sessions, Target, Tokens};

psm_core::permission_store_tests!(Sessions {
    target: Target::Standalone,
    client_cache: false
});
psm_core::permission_store_tests!(mod with_client_cache, Sessions {
    target: Target::Standalone,
    client_cache: true
});
psm_core::token_state_tests!(Tokens(Target::Standalone));
psm_core::cache_tests!(Caches(Target::Standalone));
