//! The seed's utility functions, with RULES.md semantics.
//!
//! All of them are pure: randomness comes from a [`RandomSource`](crate::RandomSource) and the
//! current time is passed in as a [`Timestamp`](crate::Timestamp), so nothing here reads a clock, the
//! environment or the file system.
//!
//! | seed function | here |
//! | --- | --- |
//! | `generate_session_id(prefix, length)` | [`generate_session_id`], [`generate_session_id_with`] |
//! | `is_valid_session_id` | [`is_valid_session_id`] |
//! | `normalize_session_id` | [`normalize_session_id`] |
//! | `normalize_permissions` | [`normalize_permissions`] |
//! | `merge_permissions(current, new, mode)` | [`merge_permissions`] with [`MergeMode`] |
//! | `has_any_permission`, `has_all_permissions` | [`has_any_permission`], [`has_all_permissions`] |
//! | `match_permission_pattern`, `filter_permissions_by_pattern` | [`match_permission_pattern`], [`filter_permissions_by_pattern`], [`PermissionPattern`] |
//! | `parse_ttl_string`, `format_ttl_remaining` | [`parse_ttl_string`], [`format_ttl_remaining`] |
//! | `calculate_expiry_time`, `is_expired` | [`calculate_expiry_time`], [`is_expired`], [`is_expired_str`] |
//! | `parse_provider_url` | [`parse_provider_url`] returning a [`ProviderUrl`] |
//! | `merge_configs` | [`merge_configs`], [`merge_configs_in_place`] |

mod config;
mod expiry;
mod pattern;
mod permissions;
mod session;
mod ttl;
mod url;

pub use self::{
    config::{merge_configs, merge_configs_in_place},
    expiry::{calculate_expiry_time, is_expired, is_expired_str},
    pattern::{PermissionPattern, filter_permissions_by_pattern, match_permission_pattern},
    permissions::{
        MergeMode, has_all_permissions, has_any_permission, merge_permissions,
        normalize_permissions,
    },
    session::{
        DEFAULT_SESSION_PREFIX, DEFAULT_SESSION_RANDOM_BYTES, MIN_SESSION_RANDOM_BYTES,
        generate_session_id, generate_session_id_with, normalize_session_id,
    },
    ttl::{format_ttl_remaining, parse_ttl_string},
    url::{ProviderScheme, ProviderUrl, parse_provider_url},
};
pub use crate::is_valid_session_id;
