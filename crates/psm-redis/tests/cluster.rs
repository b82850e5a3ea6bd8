//! The psm-core conformance suite against a real three-master Redis Cluster
//! (`PSM_REDIS_CLUSTER_URL`, e.g. `redis://127.0.0.1:7301?cluster=true`). Fails when unset.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Caches, Sessions, Target, Tokens};

psm_core::permission_store_tests!(Sessions {
    target: Target::Cluster,
    client_cache: false
});
psm_core::token_state_tests!(Tokens(Target::Cluster));
psm_core::cache_tests!(Caches(Target::Cluster));
psm_core::permission_store_tests!(mod with_client_cache, Sessions {
    target: Target::Cluster,
    client_cache: true
});
