//! Property tests for every validator and parser of the domain types: no panic on arbitrary input,
//! acceptance exactly per RULES.md, and round trips where they exist.

use proptest::prelude::*;

use crate::{
    MAX_TTL_SECS, Metadata, Page, Permission, PermissionList, SessionData, SessionId, SessionIdRef,
    Timestamp, Ttl, UserId, is_valid_permission, is_valid_session_id, is_valid_user_id,
};

proptest! {
    #[test]
    fn session_id_accepts_exactly_the_rule(s in "\\PC{0,300}|[A-Za-z0-9_-]{0,300}") {
        let rule = !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        prop_assert_eq!(is_valid_session_id(&s), rule);
        match SessionIdRef::parse(&s) {
            Ok(id) => {
                prop_assert!(rule);
                prop_assert_eq!(id.as_str(), s.as_str());
                let owned: SessionId = serde_json::from_str(&serde_json::to_string(&id.to_owned()).unwrap()).unwrap();
                prop_assert_eq!(owned.as_str(), s.as_str());
            }
            Err(e) => {
                prop_assert!(!rule);
                prop_assert_eq!(e.kind(), crate::ErrorKind::InvalidSessionId);
            }
        }
    }

    #[test]
    fn user_id_accepts_exactly_the_rule(s in "\\PC{0,300}|[\\x00-\\x1f a-z]{0,20}") {
        let rule = !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control);
        prop_assert_eq!(is_valid_user_id(&s), rule);
        match UserId::parse(&s) {
            Ok(id) => prop_assert_eq!(id.as_str(), s.as_str()),
            Err(e) => {
                prop_assert!(!rule);
                prop_assert_eq!(e.kind(), crate::ErrorKind::InvalidUserId);
            }
        }
    }

    #[test]
    fn permission_accepts_exactly_the_rule(s in "\\PC{0,300}|[\\s\\x00-\\x1f:a-z*?]{0,20}") {
        let rule = !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        prop_assert_eq!(is_valid_permission(&s), rule);
        match Permission::parse(&s) {
            Ok(p) => prop_assert_eq!(p.as_str(), s.as_str()),
            Err(e) => prop_assert_eq!(e.kind(), crate::ErrorKind::InvalidPermission),
        }
    }

    #[test]
    fn permission_list_dedups_keeping_first(items in prop::collection::vec("[a-d]{1,2}", 1..40)) {
        let list = PermissionList::parse(&items).unwrap();
        let mut expected: Vec<&str> = Vec::new();
        for i in &items {
            if !expected.contains(&i.as_str()) {
                expected.push(i);
            }
        }
        prop_assert_eq!(list.to_strings(), expected);
        let back: PermissionList = serde_json::from_str(&serde_json::to_string(&list).unwrap()).unwrap();
        prop_assert_eq!(back, list);
    }

    #[test]
    fn ttl_accepts_exactly_one_second_to_one_year(secs in any::<u64>(), small in 0_u64..40_000_000) {
        for v in [secs, small] {
            match Ttl::from_secs(v) {
                Ok(t) => {
                    prop_assert!((1..=MAX_TTL_SECS).contains(&v));
                    prop_assert_eq!(t.as_secs(), v);
                }
                Err(e) => {
                    prop_assert!(!(1..=MAX_TTL_SECS).contains(&v));
                    prop_assert_eq!(e.kind(), crate::ErrorKind::Ttl);
                }
            }
        }
    }

    #[test]
    fn page_accepts_exactly_its_bounds(limit in -5_i64..20_000, offset in -5_i64..1_000_000) {
        let ok = (1..=10_000).contains(&limit) && offset >= 0;
        match Page::from_i64(limit, offset) {
            Ok(p) => {
                prop_assert!(ok);
                prop_assert_eq!(p.limit() as i64, limit);
                prop_assert_eq!(p.offset() as i64, offset);
            }
            Err(e) => {
                prop_assert!(!ok);
                prop_assert_eq!(e.kind(), crate::ErrorKind::Validation);
            }
        }
    }

    #[test]
    fn metadata_parser_never_panics(text in "\\PC{0,200}") {
        if let Ok(m) = Metadata::from_json(&text) {
            prop_assert_eq!(Metadata::from_json(&m.to_json()).unwrap(), m);
        }
    }

    #[test]
    fn metadata_round_trips(keys in prop::collection::btree_map("\\PC{0,8}", prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        "\\PC{0,16}".prop_map(serde_json::Value::from),
    ], 0..8)) {
        let value = serde_json::Value::Object(keys.into_iter().collect());
        let m = Metadata::from_value(value.clone()).unwrap();
        prop_assert_eq!(m.to_value(), value);
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339(micros in -62_135_596_800_000_000_i64..253_402_300_799_999_999) {
        let t = Timestamp::from_unix_micros(micros);
        let text = t.to_rfc3339();
        prop_assert!(text.ends_with('Z'));
        prop_assert_eq!(text.len(), 27);
        prop_assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), t);
    }

    #[test]
    fn timestamp_parser_never_panics(text in "\\PC{0,40}|[0-9TZ:.+-]{0,40}") {
        let _ = Timestamp::parse_rfc3339(&text);
    }

    #[test]
    fn session_data_round_trips_through_json(secs in 0_i64..4_000_000_000, perms in prop::collection::vec("[a-z:]{1,10}", 1..6)) {
        let t = Timestamp::from_unix_secs(secs);
        let data = SessionData {
            user_id: UserId::parse("user").unwrap(),
            permissions: PermissionList::parse(&perms).unwrap(),
            created_at: t,
            updated_at: t.plus_secs(1),
            metadata: Metadata::empty(),
        };
        let back: SessionData = serde_json::from_str(&serde_json::to_string(&data).unwrap()).unwrap();
        prop_assert_eq!(back, data);
    }
}
