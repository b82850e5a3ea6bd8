//! The crate's one integration-test binary (STYLE rule 21): the psm-core conformance suite against
//! a real standalone Redis (`PSM_REDIS_URL`) and again against a real three-master Redis Cluster
//! (`PSM_REDIS_CLUSTER_URL`, started by `cargo xtask ci`), each store on a fresh random key prefix,
//! the session suite each time also with client-side caching on; plus isolation and fault tests.
//! A missing variable fails the tests that need it (STYLE rule 20).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "conformance/bounded.rs"]
mod bounded;
mod common;
#[path = "conformance/faults.rs"]
mod faults;
#[path = "conformance/isolation.rs"]
mod isolation;
#[path = "conformance/races.rs"]
mod races;
#[path = "conformance/tls.rs"]
mod tls;

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

/// The same suites on the Cluster code path.
mod cluster {
    use crate::common::{Caches, Sessions, Target, Tokens};

    psm_core::permission_store_tests!(mod sessions, Sessions {
        target: Target::Cluster,
        client_cache: false
    });
    psm_core::permission_store_tests!(mod sessions_with_client_cache, Sessions {
        target: Target::Cluster,
        client_cache: true
    });
    psm_core::token_state_tests!(mod tokens, Tokens(Target::Cluster));
    psm_core::cache_tests!(mod caches, Caches(Target::Cluster));
}
