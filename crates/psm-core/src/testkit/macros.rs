//! Macros expanding the suite into one `#[tokio::test]` per case, so failures are reported by name.
//!
//! Each port macro lists every case of its port, theme by theme; the unit test at the bottom checks
//! these lists against the `pub async fn`s in `cases/`, so a case can never be forgotten.

/// Expands to a module `$theme` with one test per case, each calling
/// `psm_core::testkit::cases::$theme::$case(&fixture)` on a fresh fixture.
#[doc(hidden)]
#[macro_export]
macro_rules! __psm_cases {
    ($fixture:expr, $theme:ident, [$($case:ident),* $(,)?]) => {
        mod $theme {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = $fixture;
                    $crate::testkit::cases::$theme::$case(&fixture).await;
                }
            )*
        }
    };
}

/// Runs every `PermissionStore` conformance case against `$fixture`, an expression building a
/// [`PermissionStoreFixture`](crate::testkit::PermissionStoreFixture) (evaluated once per test).
///
/// Expands to a module `permission_store_conformance`, or `$module` with the `mod $module, $fixture`
/// form.
#[macro_export]
macro_rules! permission_store_tests {
    (mod $module:ident, $fixture:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::__psm_cases!($fixture, store, [
                initialize_and_close_are_idempotent,
                provider_name_and_capabilities_agree,
                store_then_get_returns_the_session,
                permissions_come_back_in_stored_order,
                session_without_ttl_never_expires,
                store_replaces_the_whole_session_and_resets_created_at,
                store_moves_a_replaced_session_to_the_new_users_index,
                unknown_session_reads_as_missing,
                invalidate_session_removes_the_session_and_its_index_entry,
                update_replaces_permissions_and_keeps_the_rest,
                returned_data_is_a_copy,
                metadata_is_stored_exactly_as_given,
                session_ids_are_case_sensitive,
                invalidate_user_sessions_counts_and_leaves_others,
                concurrent_stores_all_land,
            ]);
            $crate::__psm_cases!($fixture, ttl, [
                ttl_remaining_is_whole_seconds_rounded_up,
                session_expires_when_its_ttl_has_passed,
                update_without_ttl_keeps_the_expiry,
                update_with_ttl_sets_now_plus_ttl,
                extend_sets_the_expiry_to_now_plus_ttl,
                extend_gives_an_expiry_to_a_session_without_one,
            ]);
            $crate::__psm_cases!($fixture, expiry, [
                expired_check_permission_is_false,
                expired_check_permissions_is_all_false,
                expired_get_permissions_is_none,
                expired_get_session_info_is_none,
                expired_update_returns_false_and_changes_nothing,
                expired_extend_returns_false_and_never_revives,
                expired_invalidate_returns_false,
                expired_sessions_are_never_listed,
                expired_sessions_do_not_count_towards_the_limit,
                expired_sessions_are_not_counted_by_invalidate_user_sessions,
            ]);
            $crate::__psm_cases!($fixture, check, [
                check_permission_is_exact_and_case_sensitive,
                stored_wildcards_are_literal,
                unicode_permissions_compare_exactly,
                check_permissions_answers_in_the_order_asked,
                checks_follow_updates_and_stay_per_session,
                largest_permission_list_checks_every_entry,
            ]);
            $crate::__psm_cases!($fixture, list, [
                user_sessions_are_listed_by_created_at_then_id,
                global_listing_holds_every_session_once_in_a_stable_order,
                paging_yields_every_session_exactly_once,
                limit_and_offset_are_respected,
                unknown_user_lists_nothing,
                look_alike_user_ids_have_separate_indexes,
            ]);
            $crate::__psm_cases!($fixture, limits, [
                create_session_stores_a_new_session,
                create_session_never_overwrites,
                create_session_replaces_an_expired_session_with_the_same_id,
                create_session_with_reject_refuses_at_the_limit,
                create_session_with_evict_oldest_makes_room,
                evicted_ids_are_returned_oldest_first,
                concurrent_create_session_with_reject_leaves_the_limit,
                concurrent_create_session_with_evict_oldest_leaves_the_limit,
                concurrent_create_session_with_one_id_has_one_winner,
            ]);
            $crate::__psm_cases!($fixture, cleanup, [
                cleanup_with_nothing_expired_returns_zero,
                cleanup_counts_the_expired_sessions_it_removes,
                cleanup_leaves_no_stale_index_entries,
                reused_expired_id_belongs_only_to_its_new_user,
            ]);
            $crate::__psm_cases!($fixture, validation, [
                bad_session_ids_are_rejected_and_change_nothing,
                bad_user_ids_are_rejected_and_change_nothing,
                bad_permissions_are_rejected_and_change_nothing,
                bad_permission_list_sizes_are_rejected_and_change_nothing,
                bad_ttls_are_rejected_and_change_nothing,
                bad_metadata_is_rejected_and_changes_nothing,
                bad_pages_and_limits_are_rejected_and_change_nothing,
                largest_valid_values_round_trip,
            ]);
            $crate::__psm_cases!($fixture, isolation, [
                permission_stores_are_isolated,
            ]);
        }
    };
    ($fixture:expr $(,)?) => {
        $crate::permission_store_tests!(mod permission_store_conformance, $fixture);
    };
}

/// Runs every `UserStore` conformance case against `$fixture`, an expression building a
/// [`UserStoreFixture`](crate::testkit::UserStoreFixture) (evaluated once per test).
///
/// Expands to a module `user_store_conformance`, or `$module` with the `mod $module, $fixture` form.
#[macro_export]
macro_rules! user_store_tests {
    (mod $module:ident, $fixture:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::__psm_cases!($fixture, users, [
                create_user_then_get_returns_it,
                email_lookup_is_case_insensitive,
                duplicate_id_email_or_username_fails_with_user_exists,
                duplicate_user_permissions_are_dropped,
                unknown_user_reads_as_missing,
                update_user_changes_only_the_given_fields,
                update_user_to_a_taken_email_or_username_fails,
                delete_user_frees_email_and_username,
                concurrent_create_user_with_one_email_leaves_one,
                concurrent_create_user_with_one_username_leaves_one,
                users_are_listed_by_created_at_then_id,
                paging_users_yields_everyone_exactly_once,
                user_permission_filter_is_exact_and_case_sensitive,
                empty_user_store_lists_nothing,
                user_listing_respects_limit_and_offset,
            ]);
            $crate::__psm_cases!($fixture, isolation, [
                user_stores_are_isolated,
            ]);
        }
    };
    ($fixture:expr $(,)?) => {
        $crate::user_store_tests!(mod user_store_conformance, $fixture);
    };
}

/// Runs every `TokenStateStore` conformance case against `$fixture`, an expression building a
/// [`TokenStateFixture`](crate::testkit::TokenStateFixture) (evaluated once per test).
///
/// Expands to a module `token_state_conformance`, or `$module` with the `mod $module, $fixture` form.
#[macro_export]
macro_rules! token_state_tests {
    (mod $module:ident, $fixture:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::__psm_cases!($fixture, tokens, [
                create_family_then_get_returns_it,
                create_existing_family_fails_with_concurrency,
                consume_current_token_rotates,
                reused_token_revokes_the_family,
                concurrent_consumes_of_one_token_rotate_exactly_once,
                revoked_family_answers_revoked,
                expired_family_answers_expired_and_rotation_never_extends_it,
                unknown_family_or_token_is_unknown,
                revoke_user_families_counts_newly_revoked,
                user_epochs_start_at_zero_and_bump_by_one,
                concurrent_epoch_bumps_never_lose_one,
                cleanup_expired_families_counts_removed,
            ]);
            $crate::__psm_cases!($fixture, isolation, [
                token_states_are_isolated,
            ]);
        }
    };
    ($fixture:expr $(,)?) => {
        $crate::token_state_tests!(mod token_state_conformance, $fixture);
    };
}

/// Runs every `Cache` conformance case against `$fixture`, an expression building a
/// [`CacheFixture`](crate::testkit::CacheFixture) (evaluated once per test).
///
/// Expands to a module `cache_conformance`, or `$module` with the `mod $module, $fixture` form.
#[macro_export]
macro_rules! cache_tests {
    (mod $module:ident, $fixture:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::__psm_cases!($fixture, cache, [
                set_then_get_returns_the_exact_bytes,
                set_overwrites_the_value_and_its_tags,
                values_expire_after_their_ttl,
                delete_reports_whether_a_live_value_was_removed,
                delete_tag_removes_only_tagged_values,
                values_over_the_size_limit_are_rejected,
                returned_values_are_copies,
                keys_are_compared_exactly,
            ]);
            $crate::__psm_cases!($fixture, isolation, [
                caches_are_isolated,
            ]);
        }
    };
    ($fixture:expr $(,)?) => {
        $crate::cache_tests!(mod cache_conformance, $fixture);
    };
}

/// Runs the whole suite of all four ports: `conformance_tests!(permission_store_fixture,
/// user_store_fixture, token_state_fixture, cache_fixture)`.
///
/// Adapters implementing only some ports call the port macros they need instead.
#[macro_export]
macro_rules! conformance_tests {
    ($permission_store:expr, $user_store:expr, $token_state:expr, $cache:expr $(,)?) => {
        $crate::permission_store_tests!($permission_store);
        $crate::user_store_tests!($user_store);
        $crate::token_state_tests!($token_state);
        $crate::cache_tests!($cache);
    };
}

#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeMap, BTreeSet},
        fs,
        path::Path,
    };

    /// (port macro, theme) → case names.
    type Listed = BTreeMap<(String, String), Vec<String>>;

    /// The fixture traits and the port macro listing the cases that take each.
    const PORTS: [(&str, &str); 4] = [
        ("PermissionStoreFixture", "permission_store_tests"),
        ("UserStoreFixture", "user_store_tests"),
        ("TokenStateFixture", "token_state_tests"),
        ("CacheFixture", "cache_tests"),
    ];

    /// The port macro of a case whose generic parameters are `generics` (however rustfmt wrapped
    /// them).
    fn port_of(name: &str, generics: &str) -> &'static str {
        let ports: Vec<_> = PORTS.iter().filter(|(t, _)| generics.contains(t)).collect();
        match ports.as_slice() {
            [(_, port)] => port,
            _ => panic!("case {name} must take exactly one fixture trait, found {generics:?}"),
        }
    }

    /// The case lists of every port macro in this file.
    fn listed() -> Listed {
        let src = include_str!("macros.rs");
        let mut out = Listed::new();
        for port in [
            "permission_store_tests",
            "user_store_tests",
            "token_state_tests",
            "cache_tests",
        ] {
            let start = src
                .find(&format!("macro_rules! {port} {{"))
                .unwrap_or_else(|| panic!("no macro {port}"));
            let body = &src[start..];
            let end = body[1..].find("macro_rules!").map_or(body.len(), |i| i + 1);
            let mut rest = &body[..end];
            while let Some(at) = rest.find("__psm_cases!($fixture, ") {
                rest = &rest[at + "__psm_cases!($fixture, ".len()..];
                let (theme, after) = rest
                    .split_once(", [")
                    .unwrap_or_else(|| panic!("malformed list in {port}"));
                let (names, after) = after
                    .split_once(']')
                    .unwrap_or_else(|| panic!("unclosed list in {port}"));
                let names: Vec<String> = names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                let previous = out.insert((port.to_owned(), theme.trim().to_owned()), names);
                assert!(previous.is_none(), "{port} lists theme {theme} twice");
                rest = after;
            }
        }
        out
    }

    /// Every `pub async fn` case in `cases/`: (port macro, theme) → case names, in file order.
    fn defined() -> Listed {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testkit/cases");
        let declared = include_str!("cases/mod.rs");
        let mut out = Listed::new();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let theme = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if theme == "mod" || theme == "support" {
                continue;
            }
            assert!(
                declared.contains(&format!("pub mod {theme};")),
                "cases/{theme}.rs is not declared in cases/mod.rs"
            );
            let src = fs::read_to_string(&path).unwrap();
            for chunk in src.split("pub async fn ").skip(1) {
                let signature = &chunk[..chunk.find('(').unwrap()];
                let (name, generics) = signature
                    .split_once('<')
                    .unwrap_or_else(|| panic!("{theme}: {signature}"));
                let name = name.trim();
                let key = (port_of(name, generics).to_owned(), theme.clone());
                out.entry(key).or_default().push(name.to_owned());
            }
        }
        out
    }

    #[test]
    fn every_case_is_listed_in_its_port_macro_and_every_listed_case_exists() {
        let (listed, defined) = (listed(), defined());
        for (key, names) in &defined {
            let in_macro: BTreeSet<_> = listed.get(key).into_iter().flatten().collect();
            for name in names {
                assert!(
                    in_macro.contains(name),
                    "case {}::{name} is missing from {}!",
                    key.1,
                    key.0
                );
            }
        }
        for (key, names) in &listed {
            let in_file: BTreeSet<_> = defined.get(key).into_iter().flatten().collect();
            for name in names {
                assert!(
                    in_file.contains(name),
                    "{}! lists {}::{name}, which is not a case of its port",
                    key.0,
                    key.1
                );
            }
            let unique: BTreeSet<_> = names.iter().collect();
            assert_eq!(
                unique.len(),
                names.len(),
                "{}! lists a case of {} twice",
                key.0,
                key.1
            );
        }
        let total: usize = defined.values().map(Vec::len).sum();
        assert!(total >= 90, "the suite shrank to {total} cases");
    }

    #[test]
    fn the_coverage_check_sees_every_port() {
        let ports: BTreeSet<_> = listed().into_keys().map(|(port, _)| port).collect();
        assert_eq!(
            ports.len(),
            4,
            "all four port macros must list cases: {ports:?}"
        );
    }
}
