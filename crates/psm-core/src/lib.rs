#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod capabilities;
mod clock;
mod domain;
mod error;
#[cfg(test)]
mod fuzz;
mod ports;
mod rng;
pub mod util;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use capabilities::Capabilities;
pub use clock::{Clock, DynClock, ManualClock, SystemClock};
pub use domain::{
    cache::{CacheKey, CacheTag, MAX_CACHE_VALUE_BYTES, check_cache_value},
    metadata::{MAX_METADATA_BYTES, MAX_METADATA_DEPTH, Metadata},
    permission::{
        MAX_PERMISSION_LEN, MAX_PERMISSIONS, Permission, PermissionList, PermissionRef,
        is_valid_permission,
    },
    records::{
        LimitPolicy, MAX_PAGE_LIMIT, NewSession, Page, PermissionCheck, SessionData, SessionInfo,
        SessionLimit,
    },
    session_id::{MAX_SESSION_ID_LEN, SessionId, SessionIdRef, is_valid_session_id},
    timestamp::Timestamp,
    token::{ConsumeOutcome, FamilyId, NewTokenFamily, TokenFamily, TokenId},
    ttl::{MAX_TTL_SECS, Ttl},
    user::{
        Email, NewUser, PasswordHash, User, UserUpdate, Username, check_user_permissions,
        dedup_permissions,
    },
    user_id::{MAX_USER_ID_LEN, UserId, is_valid_user_id},
};
pub use error::{Error, ErrorKind, Result, redact_id};
pub use ports::{
    cache::{Cache, DynCache},
    permission_store::{DynPermissionStore, PermissionStore},
    token_state::{DynTokenStateStore, TokenStateStore},
    user_store::{DynUserStore, UserStore},
};
pub use rng::{OsRandom, RandomSource};

/// `async_trait`, re-exported so adapters implement the ports with the same macro version.
pub use async_trait::async_trait;
