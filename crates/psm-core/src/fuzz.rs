//! Fuzz properties for every parser and validator of psm-core, run by `cargo xtask fuzz`.
//!
//! Under a plain `cargo test` each property runs a few hundred cases; `cargo xtask fuzz` sets
//! `PSM_FUZZ_CASES` and runs exactly the tests under a `fuzz::` path with that many. Each property
//! checks the parser against its rule, a round trip where a formatter exists, and otherwise that
//! the input is refused with the documented [`ErrorKind`], never a panic.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::{
    CacheKey, CacheTag, Email, ErrorKind, FamilyId, LimitPolicy, MAX_CACHE_VALUE_BYTES,
    MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_PAGE_LIMIT, MAX_TTL_SECS, Metadata, Page,
    PasswordHash, Permission, PermissionList, SessionData, SessionId, SessionInfo, SessionLimit,
    Timestamp, TokenId, Ttl, UserId, Username, check_cache_value, is_valid_permission,
    is_valid_session_id, is_valid_user_id,
    util::{
        MergeMode, PermissionPattern, ProviderScheme, format_ttl_remaining, is_expired_str,
        match_permission_pattern, merge_configs, normalize_permissions, normalize_session_id,
        parse_provider_url, parse_ttl_string,
    },
};

/// The configuration of a property that costs `cost` times a cheap parser call: `PSM_FUZZ_CASES`
/// (set by `cargo xtask fuzz`) divided by `cost`, or 256 divided by `cost` under a plain `cargo test`.
fn config(cost: u32) -> ProptestConfig {
    let base = std::env::var("PSM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases: (base / cost).max(8),
        ..ProptestConfig::default()
    }
}

/// Text that is mostly near a rule's boundary: arbitrary Unicode, the identifier alphabet with
/// separators and controls, and lengths around the 255-byte limits.
fn near_ids() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,300}",
        "[A-Za-z0-9_ :.*?\\[\\]!\\-\t\n\u{0}\u{7f}\u{85}\u{a0}é]{0,40}",
        (250usize..=260, "[a-zé]").prop_map(|(n, c)| c.repeat(n)),
    ]
}

/// Arbitrary JSON, nested up to a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{0,2}|\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The nesting depth [`Metadata`] counts: the top-level object is 1, each array or object inside
/// one more.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// One token of a permission glob, built so its meaning is known without psm's parser.
#[derive(Debug, Clone)]
enum Glob {
    Literal(char),
    Any,
    Star,
    Class(bool, Vec<(char, char)>),
}

impl Glob {
    fn render(tokens: &[Glob]) -> String {
        let mut s = String::new();
        for t in tokens {
            match t {
                Glob::Literal(c) => s.push(*c),
                Glob::Any => s.push('?'),
                Glob::Star => s.push('*'),
                Glob::Class(negated, ranges) => {
                    s.push('[');
                    if *negated {
                        s.push('!');
                    }
                    for (lo, hi) in ranges {
                        s.push(*lo);
                        if lo != hi {
                            s.push('-');
                            s.push(*hi);
                        }
                    }
                    s.push(']');
                }
            }
        }
        s
    }

    fn matches_char(&self, c: char) -> bool {
        match self {
            Glob::Literal(l) => *l == c,
            Glob::Any => true,
            Glob::Star => false,
            Glob::Class(negated, ranges) => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }

    /// The reference matcher: plain backtracking, exponential in the worst case, fine for the
    /// short inputs generated here.
    fn reference(tokens: &[Glob], text: &[char]) -> bool {
        match tokens.split_first() {
            None => text.is_empty(),
            Some((Glob::Star, rest)) => {
                (0..=text.len()).any(|skip| Glob::reference(rest, &text[skip..]))
            }
            Some((t, rest)) => text
                .split_first()
                .is_some_and(|(c, tail)| t.matches_char(*c) && Glob::reference(rest, tail)),
        }
    }
}

fn glob_tokens() -> impl Strategy<Value = Vec<Glob>> {
    // Literal and class members avoid the glob's own syntax characters, so rendering is exact.
    let plain = prop::sample::select(vec!['a', 'b', 'c', ':', 'é', '.']);
    let range =
        (plain.clone(), plain.clone()).prop_map(|(a, b)| if a <= b { (a, b) } else { (b, a) });
    let token = prop_oneof![
        4 => plain.prop_map(Glob::Literal),
        1 => Just(Glob::Any),
        2 => Just(Glob::Star),
        1 => (any::<bool>(), prop::collection::vec(range, 1..3)).prop_map(|(n, r)| Glob::Class(n, r)),
    ];
    prop::collection::vec(token, 1..10)
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn session_ids(s in near_ids()) {
        let rule = !s.is_empty()
            && s.len() <= 255
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        prop_assert_eq!(is_valid_session_id(&s), rule);
        match SessionId::parse(&s) {
            Ok(id) => {
                prop_assert!(rule);
                prop_assert_eq!(id.as_str(), s.as_str());
                let back: SessionId = serde_json::from_value(serde_json::to_value(&id).unwrap()).unwrap();
                prop_assert_eq!(back, id);
            }
            Err(e) => {
                prop_assert!(!rule);
                prop_assert_eq!(e.kind(), ErrorKind::InvalidSessionId);
                // The id itself is never echoed (DESIGN §2: no full session ids in errors).
                if s.len() >= 16 {
                    prop_assert!(!e.to_string().contains(&s));
                }
            }
        }
        prop_assert_eq!(serde_json::from_value::<SessionId>(Value::from(s.as_str())).is_ok(), rule);
    }

    #[test]
    fn normalized_session_ids_are_valid_and_stable(s in near_ids()) {
        match normalize_session_id(&s) {
            Ok(id) => {
                prop_assert!(is_valid_session_id(id.as_str()));
                prop_assert_eq!(normalize_session_id(id.as_str()).unwrap(), id.clone());
                if is_valid_session_id(&s) {
                    prop_assert_eq!(id.as_str(), s.as_str());
                }
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidSessionId);
                prop_assert!(!s.bytes().any(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }
    }

    #[test]
    fn user_ids(s in near_ids()) {
        let rule = !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control);
        prop_assert_eq!(is_valid_user_id(&s), rule);
        match UserId::parse(&s) {
            Ok(id) => {
                prop_assert!(rule);
                let back: UserId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
                prop_assert_eq!(back.as_str(), s.as_str());
            }
            Err(e) => {
                prop_assert!(!rule);
                prop_assert_eq!(e.kind(), ErrorKind::InvalidUserId);
            }
        }
    }

    #[test]
    fn usernames_emails_and_password_hashes(s in near_ids()) {
        match Username::parse(&s) {
            Ok(u) => {
                prop_assert!((3..=64).contains(&s.len()));
                prop_assert_eq!(u.as_str(), s.as_str());
                prop_assert_eq!(u.normalized(), s.to_ascii_lowercase());
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Validation),
        }
        let email = format!("{s}@example.com");
        for candidate in [s.as_str(), email.as_str()] {
            match Email::parse(candidate) {
                Ok(e) => {
                    prop_assert_eq!(e.as_str(), candidate);
                    prop_assert_eq!(candidate.matches('@').count(), 1);
                    prop_assert!(candidate.len() <= 254);
                }
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Validation),
            }
        }
        let phc = format!("${s}");
        for candidate in [s.as_str(), phc.as_str()] {
            match PasswordHash::new(candidate) {
                Ok(h) => {
                    prop_assert!(candidate.starts_with('$'));
                    prop_assert_eq!(h.as_str(), candidate);
                }
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Validation),
            }
        }
    }

    #[test]
    fn permissions(s in near_ids()) {
        let rule = !s.is_empty()
            && s.len() <= 255
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        prop_assert_eq!(is_valid_permission(&s), rule);
        match Permission::parse(&s) {
            Ok(p) => {
                prop_assert!(rule);
                prop_assert_eq!(p.as_str(), s.as_str());
                prop_assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
            }
            Err(e) => {
                prop_assert!(!rule);
                prop_assert_eq!(e.kind(), ErrorKind::InvalidPermission);
            }
        }
        match PermissionPattern::parse(&s) {
            Ok(p) => {
                prop_assert!(rule);
                prop_assert_eq!(p.as_str(), s.as_str());
                // A pattern matches what the free function says it matches, itself included when
                // it is literal.
                prop_assert_eq!(p.matches(&s), match_permission_pattern(&s, &s));
                if p.is_literal() {
                    prop_assert!(p.matches(&s));
                }
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidPermission),
        }
    }

    #[test]
    fn permission_lists(items in prop::collection::vec(near_ids(), 0..12)) {
        match PermissionList::parse(&items) {
            Ok(list) => {
                prop_assert!(items.iter().all(|i| is_valid_permission(i)));
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
            Err(e) => {
                prop_assert!(items.is_empty() || items.iter().any(|i| !is_valid_permission(i)));
                prop_assert!(matches!(e.kind(), ErrorKind::InvalidPermission | ErrorKind::Validation));
            }
        }
        match normalize_permissions(&items) {
            Ok(perms) => {
                prop_assert!(perms.iter().all(|p| p.as_str() == p.as_str().trim()));
                let again = normalize_permissions(perms.iter().map(|p| p.as_str())).unwrap();
                prop_assert_eq!(again, perms);
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidPermission),
        }
    }

    #[test]
    fn permission_globs_match_like_the_reference(
        tokens in glob_tokens(),
        text in "[abc:.é]{0,12}",
    ) {
        let pattern = Glob::render(&tokens);
        let chars: Vec<char> = text.chars().collect();
        let expected = Glob::reference(&tokens, &chars);
        prop_assert_eq!(match_permission_pattern(&text, &pattern), expected, "{} on {}", pattern, text);
        let compiled = PermissionPattern::parse(&pattern).unwrap();
        prop_assert_eq!(compiled.matches(&text), expected);
        let back: PermissionPattern = serde_json::from_value(json!(pattern)).unwrap();
        prop_assert_eq!(back.as_str(), pattern.as_str());
    }

    #[test]
    fn glob_matching_never_panics(pattern in near_ids(), text in near_ids()) {
        let free = match_permission_pattern(&text, &pattern);
        if let Ok(p) = PermissionPattern::parse(&pattern) {
            prop_assert_eq!(p.matches(&text), free);
        }
    }

    #[test]
    fn merge_modes(s in "\\PC{0,10}|(add|remove|replace|ADD|Add )") {
        match s.parse::<MergeMode>() {
            Ok(m) => prop_assert_eq!(m.as_str().parse::<MergeMode>().unwrap(), m),
            Err(e) => prop_assert!(e.kind().is_validation(), "{:?}", e.kind()),
        }
    }

    #[test]
    fn ttl_strings(s in prop_oneof![
        any::<String>(),
        "[0-9smhdwSMH+. \t-]{0,24}",
        "([0-9]{1,8}[wdhms]){1,6}",
    ]) {
        match parse_ttl_string(&s) {
            Ok(t) => {
                prop_assert!((1..=MAX_TTL_SECS).contains(&t.as_secs()));
                // The canonical spelling of the same ttl parses to the same value.
                let compact = format_ttl_remaining(t.as_secs()).replace(' ', "");
                prop_assert_eq!(parse_ttl_string(&compact).unwrap(), t);
                prop_assert_eq!(parse_ttl_string(&t.as_secs().to_string()).unwrap(), t);
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Ttl),
        }
    }

    #[test]
    fn ttl_values(secs in prop_oneof![any::<u64>(), 0..=MAX_TTL_SECS + 2], signed in any::<i64>()) {
        match Ttl::from_secs(secs) {
            Ok(t) => {
                prop_assert_eq!(t.as_secs(), secs);
                prop_assert_eq!(parse_ttl_string(&format_ttl_remaining(secs).replace(' ', "")).unwrap(), t);
                let back: Ttl = serde_json::from_value(serde_json::to_value(t).unwrap()).unwrap();
                prop_assert_eq!(back, t);
            }
            Err(e) => {
                prop_assert!(secs == 0 || secs > MAX_TTL_SECS);
                prop_assert_eq!(e.kind(), ErrorKind::Ttl);
            }
        }
        match Ttl::from_secs_i64(signed) {
            Ok(t) => prop_assert_eq!(i64::try_from(t.as_secs()).ok(), Some(signed)),
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Ttl),
        }
        prop_assert_eq!(serde_json::from_value::<Ttl>(json!(signed)).is_ok(), Ttl::from_secs_i64(signed).is_ok());
    }

    #[test]
    fn cache_keys_and_tags(s in prop_oneof![near_ids(), (500usize..=520).prop_map(|n| "k".repeat(n))]) {
        let rule = !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control);
        match CacheKey::parse(&s) {
            Ok(k) => {
                prop_assert!(rule);
                prop_assert_eq!(k.to_string(), s.clone());
                prop_assert_eq!(CacheKey::parse(k.as_str()).unwrap(), k);
            }
            Err(e) => {
                prop_assert!(!rule);
                prop_assert_eq!(e.kind(), ErrorKind::Validation);
            }
        }
        match CacheTag::parse(&s) {
            Ok(t) => prop_assert_eq!(t.to_string(), s),
            Err(e) => {
                prop_assert!(!rule);
                prop_assert_eq!(e.kind(), ErrorKind::Validation);
            }
        }
    }

    #[test]
    fn token_and_family_ids(s in near_ids()) {
        let rule = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        for ok in [TokenId::parse(&s).map(|t| t.as_str().to_owned()), FamilyId::parse(&s).map(|f| f.as_str().to_owned())] {
            match ok {
                Ok(v) => {
                    prop_assert!(rule);
                    prop_assert_eq!(v, s.clone());
                }
                Err(e) => {
                    prop_assert!(!rule);
                    prop_assert_eq!(e.kind(), ErrorKind::Validation);
                }
            }
        }
        prop_assert_eq!(serde_json::from_value::<TokenId>(json!(s)).is_ok(), rule);
    }

    #[test]
    fn pages_and_limits(
        limit in prop_oneof![any::<i64>(), -3_i64..(i64::from(MAX_PAGE_LIMIT) + 3)],
        offset in prop_oneof![any::<i64>(), -3_i64..3],
        ulimit in any::<u64>(),
        uoffset in any::<u64>(),
        max in prop_oneof![any::<u32>(), 0_u32..3],
    ) {
        let ok = (1..=i64::from(MAX_PAGE_LIMIT)).contains(&limit) && offset >= 0;
        match Page::from_i64(limit, offset) {
            Ok(p) => {
                prop_assert!(ok);
                prop_assert_eq!(i64::try_from(p.limit()).ok(), Some(limit));
                prop_assert_eq!(i64::try_from(p.offset()).ok(), Some(offset));
                // The next page starts where this one ends, without overflow.
                prop_assert_eq!(p.next().limit(), p.limit());
                prop_assert!(p.next().offset() >= p.offset());
            }
            Err(e) => {
                prop_assert!(!ok);
                prop_assert_eq!(e.kind(), ErrorKind::Validation);
            }
        }
        match Page::new(ulimit, uoffset) {
            Ok(p) => {
                prop_assert!((1..=u64::from(MAX_PAGE_LIMIT)).contains(&ulimit));
                prop_assert_eq!(p.offset(), uoffset);
                prop_assert!(p.next().offset() >= p.offset());
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Validation),
        }
        match SessionLimit::new(max, LimitPolicy::EvictOldest) {
            Ok(l) => prop_assert_eq!(l.max_usize(), max as usize),
            Err(e) => {
                prop_assert_eq!(max, 0);
                prop_assert_eq!(e.kind(), ErrorKind::Validation);
            }
        }
    }

    #[test]
    fn limit_policies(s in "\\PC{0,16}|(reject|evict_oldest|Reject|evictOldest)") {
        if let Ok(p) = serde_json::from_value::<LimitPolicy>(json!(s)) {
            prop_assert_eq!(serde_json::to_value(p).unwrap(), json!(s));
        }
    }

    #[test]
    fn cache_values(len in prop_oneof![0..64usize, (MAX_CACHE_VALUE_BYTES - 2)..(MAX_CACHE_VALUE_BYTES + 2)]) {
        // One buffer sliced to each length: the check looks at the length only.
        static BUFFER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let buffer = BUFFER.get_or_init(|| vec![0u8; MAX_CACHE_VALUE_BYTES + 2]);
        prop_assert_eq!(check_cache_value(&buffer[..len]).is_ok(), len <= MAX_CACHE_VALUE_BYTES);
    }
}

/// RFC 3339-shaped text with its fields biased to their edges (years 0, 1 and 9999, the last day
/// of a month, the largest offsets), where conversions overflow.
fn rfc3339_text() -> impl Strategy<Value = String> {
    let year = prop_oneof![Just(0_u32), Just(1), Just(9999), 0_u32..=9999];
    let month = prop_oneof![Just(1_u32), Just(12), 1_u32..=13];
    let day = prop_oneof![Just(1_u32), Just(31), 0_u32..=32];
    let clock = (0_u32..=24, 0_u32..=60, 0_u32..=60);
    let frac = prop::option::of("[0-9]{1,12}");
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("z".to_owned()),
        (prop::sample::select(vec!['+', '-']), 0_u32..=24, 0_u32..=60)
            .prop_map(|(sign, h, m)| format!("{sign}{h:02}:{m:02}")),
    ];
    (year, month, day, clock, frac, offset).prop_map(|(y, mo, d, (h, mi, s), frac, off)| {
        let frac = frac.map_or(String::new(), |f| format!(".{f}"));
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
    })
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn metadata_from_text(text in prop_oneof![
        "\\PC{0,200}",
        "[\\[\\]{}\":,0-9a ]{0,200}",
        (1usize..200).prop_map(|n| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n))),
    ]) {
        match Metadata::from_json(&text) {
            Ok(m) => {
                prop_assert_eq!(Metadata::from_json(&m.to_json()).unwrap(), m.clone());
                prop_assert!(m.to_json().len() <= MAX_METADATA_BYTES);
                prop_assert!(depth(&m.to_value()) <= MAX_METADATA_DEPTH);
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Validation),
        }
    }

    #[test]
    fn metadata_from_values(value in json_value()) {
        let is_object = value.is_object() || value.is_null();
        match Metadata::from_value(value.clone()) {
            Ok(m) => {
                prop_assert!(is_object);
                if value.is_object() {
                    prop_assert_eq!(m.to_value(), value);
                } else {
                    prop_assert!(m.is_empty());
                }
                let back: Metadata = serde_json::from_str(&m.to_json()).unwrap();
                prop_assert_eq!(back, m);
            }
            Err(e) => {
                prop_assert!(!is_object || depth(&value) > MAX_METADATA_DEPTH);
                prop_assert_eq!(e.kind(), ErrorKind::Validation);
            }
        }
    }

    #[test]
    fn merged_configs_keep_the_override(base in json_value(), over in json_value()) {
        let merged = merge_configs(&base, &over);
        prop_assert_eq!(merge_configs(&base, &Value::Object(Map::new())), match &base {
            Value::Object(_) => base.clone(),
            _ => Value::Object(Map::new()),
        });
        match (&merged, &over) {
            (Value::Object(m), Value::Object(o)) => {
                for (k, v) in o {
                    if !v.is_object() {
                        prop_assert_eq!(m.get(k), Some(v));
                    }
                }
            }
            _ => prop_assert_eq!(&merged, &over),
        }
        // Merging the same override again changes nothing.
        prop_assert_eq!(merge_configs(&merged, &over), merged);
    }

    #[test]
    fn timestamps(
        text in prop_oneof![
            "\\PC{0,40}",
            rfc3339_text(),
            "[0-9TZ:.+ -]{0,40}",
        ],
        micros in any::<i64>(),
    ) {
        let now = Timestamp::from_unix_micros(micros);
        match Timestamp::parse_rfc3339(&text) {
            Ok(t) => {
                prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
                prop_assert_eq!(is_expired_str(&text, now).unwrap(), now >= t);
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::Validation);
                prop_assert!(is_expired_str(&text, now).is_err());
            }
        }
        let rendered = now.to_rfc3339();
        prop_assert_eq!(Timestamp::parse_rfc3339(&rendered).unwrap(), now);
        let back: Timestamp = serde_json::from_value(json!(rendered)).unwrap();
        prop_assert_eq!(back, now);
    }

    #[test]
    fn wire_records_decode_or_refuse(value in json_value(), text in "\\PC{0,120}") {
        // The API's records are decoded from untrusted JSON: anything is refused with a serde
        // error, never a panic, and whatever decodes re-encodes to something that decodes the same.
        if let Ok(d) = serde_json::from_value::<SessionData>(value.clone()) {
            let again: SessionData = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
            prop_assert_eq!(again, d);
        }
        if let Ok(i) = serde_json::from_value::<SessionInfo>(value) {
            let again: SessionInfo = serde_json::from_value(serde_json::to_value(&i).unwrap()).unwrap();
            prop_assert_eq!(again, i);
        }
        let _ = serde_json::from_str::<SessionData>(&text);
    }
}

/// URL text: arbitrary, then scheme-shaped with random authority, path and query parts.
fn url_text() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "memory",
        "file",
        "redis",
        "rediss",
        "postgres",
        "postgresql",
        "REDIS",
        "mysql",
        "",
        "1x",
    ]);
    let part = "[a-z0-9@:/?#&=%.\\[\\]_+ -]{0,24}|\\PC{0,12}";
    prop_oneof![
        any::<String>(),
        (
            scheme,
            prop::sample::select(vec![":", "://", ":///", "://./", "://../"]),
            part
        )
            .prop_map(|(s, sep, rest)| format!("{s}{sep}{rest}")),
    ]
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn provider_urls(url in url_text()) {
        match parse_provider_url(&url) {
            Ok(u) => {
                let scheme = url.trim_matches(|c: char| c <= ' ').split(':').next().unwrap_or("");
                prop_assert_eq!(ProviderScheme::from_scheme(scheme), Some(u.provider()));
                match u.provider() {
                    ProviderScheme::File => prop_assert!(u.config()["storage_dir"].is_string()),
                    // A memory URL's keys all come from its query.
                    ProviderScheme::Memory => {}
                    _ => prop_assert!(u.config()["url"].is_string()),
                }
            }
            Err(e) => prop_assert!(
                matches!(e.kind(), ErrorKind::ProviderConfiguration | ErrorKind::ProviderNotSupported),
                "{:?}", e.kind()
            ),
        }
    }

    /// A URL built from parts gives back exactly those parts, and its password shows in neither
    /// `Debug` nor any error.
    #[test]
    fn server_urls_round_trip(
        tls in any::<bool>(),
        postgres in any::<bool>(),
        user in "[a-z][a-z0-9]{0,8}",
        password in "[A-Za-z0-9]{12,20}",
        // No `-`: a label such as `xn--a` would be read as (invalid) punycode.
        host in "[a-z][a-z0-9]{0,12}(\\.[a-z]{2,5})?",
        port in 1_u16..,
        db in 0_u32..16,
        extra in prop::option::of("[a-z_]{1,8}"),
    ) {
        let scheme = match (postgres, tls) {
            (true, _) => "postgres",
            (false, true) => "rediss",
            (false, false) => "redis",
        };
        let path = if postgres { format!("db{db}") } else { db.to_string() };
        let query = extra.as_ref().map_or(String::new(), |k| format!("?x_{k}=7"));
        let url = format!("{scheme}://{user}:{password}@{host}:{port}/{path}{query}");
        let parsed = parse_provider_url(&url).unwrap();
        let c = parsed.config();
        prop_assert_eq!(&c["host"], &json!(host));
        prop_assert_eq!(&c["port"], &json!(port));
        prop_assert_eq!(&c["password"], &json!(password));
        if postgres {
            prop_assert_eq!(&c["user"], &json!(user));
            prop_assert_eq!(&c["dbname"], &json!(path));
        } else {
            prop_assert_eq!(&c["username"], &json!(user));
            prop_assert_eq!(&c["db"], &json!(db));
            prop_assert_eq!(c.get("ssl"), tls.then_some(&Value::Bool(true)));
        }
        if let Some(k) = &extra {
            prop_assert_eq!(&c[&format!("x_{k}")], &json!(7));
        }
        let debug = format!("{parsed:?}");
        prop_assert!(!debug.contains(&password));
        // The same URL with a broken tail is refused without quoting the password.
        let broken = format!("{url}#frag");
        let e = parse_provider_url(&broken).unwrap_err();
        prop_assert!(!e.to_string().contains(&password));
        let debug = format!("{e:?}");
        prop_assert!(!debug.contains(&password));
    }
}
