//! The key layout (see the crate docs): every key starts with the key prefix; the keys of one
//! session share the hash tag of its id, the keys of one user share the hash tag of the escaped
//! user id.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but ASCII letters, digits, `-`, `_` and `.` is percent-encoded, so an escaped value
/// never holds `{`, `}`, `*`, `?`, `[`, `]`, `:` or whitespace, and escaping is injective
/// (`%` itself is encoded).
const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Percent-encodes an arbitrary UTF-8 value for use inside a key and its hash tag.
pub(crate) fn escape(s: &str) -> String {
    utf8_percent_encode(s, ESCAPE).to_string()
}

/// Builds keys under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    /// `<prefix>s:{`, the start of every session key.
    session_start: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            session_start: format!("{prefix}s:{{"),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>s:{<sid>}`: the session hash. Session ids are `[A-Za-z0-9_-]`, so they sit raw.
    pub(crate) fn session(&self, sid: &str) -> String {
        let mut k = String::with_capacity(self.session_start.len() + sid.len() + 1);
        k.push_str(&self.session_start);
        k.push_str(sid);
        k.push('}');
        k
    }

    /// The session id of a session key, if `key` is one of this prefix (a key of a longer,
    /// nested prefix never is: prefixes hold no `{`).
    pub(crate) fn session_id_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        let sid = key
            .strip_prefix(self.session_start.as_str())?
            .strip_suffix('}')?;
        (!sid.is_empty() && sid.bytes().all(is_id_byte)).then_some(sid)
    }

    /// Whether `key` is exactly `<prefix><tag>{<inner>}<suffix>` for one of `suffixes`, with an
    /// inner part that an id or an escaped value can be.
    pub(crate) fn has_shape(&self, key: &str, tag: &str, suffixes: &[&str]) -> bool {
        let Some(rest) = key
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix(tag))
            .and_then(|r| r.strip_prefix('{'))
        else {
            return false;
        };
        let Some(close) = rest.find('}') else {
            return false;
        };
        let (inner, suffix) = (&rest[..close], &rest[close + 1..]);
        !inner.is_empty()
            && inner
                .bytes()
                .all(|b| is_id_byte(b) || b == b'.' || b == b'%')
            && suffixes.contains(&suffix)
    }

    /// Whether `key` is a session hash or a per-user session index of this prefix.
    pub(crate) fn is_session_family_key(&self, key: &str) -> bool {
        self.session_id_of(key).is_some()
            || self.has_shape(key, "u:", &[":c", ":x", ":r", ":v", ":q"])
    }

    /// Whether `key` is a token-family key of this prefix (families, their consumed ids, the
    /// per-user family indexes, the expiry index); token epochs are not.
    pub(crate) fn is_token_key(&self, key: &str) -> bool {
        self.has_shape(key, "f:", &["", ":used"])
            || self.has_shape(key, "fam:", &[""])
            || key == self.family_expiry()
    }

    /// Whether `key` is a cache entry or a cache tag of this prefix.
    pub(crate) fn is_cache_key(&self, key: &str) -> bool {
        self.has_shape(key, "c:", &[""]) || self.has_shape(key, "t:", &[""])
    }

    /// The `SCAN MATCH` pattern of every per-user index key (`c`, `x`, `r`, `v`, `q`).
    pub(crate) fn user_index_pattern(&self) -> String {
        format!("{}u:{{*}}:[cxrvq]", self.prefix)
    }

    /// The `SCAN MATCH` patterns of the token-family keys.
    pub(crate) fn token_patterns(&self) -> [String; 3] {
        [
            format!("{}f:{{*}}*", self.prefix),
            format!("{}fam:{{*}}", self.prefix),
            self.family_expiry(),
        ]
    }

    /// The `SCAN MATCH` patterns of the cache keys.
    pub(crate) fn cache_patterns(&self) -> [String; 2] {
        [
            format!("{}c:{{*}}", self.prefix),
            format!("{}t:{{*}}", self.prefix),
        ]
    }

    /// The `SCAN MATCH` pattern of every session key.
    pub(crate) fn session_pattern(&self) -> String {
        format!("{}*}}", self.session_start)
    }

    /// The per-user index keys (same hash tag): by created_at, by expiry, pending reservations,
    /// evictions in progress.
    pub(crate) fn user_index(&self, user: &str) -> UserKeys {
        self.user_index_escaped(&escape(user))
    }

    /// [`user_index`](Self::user_index) of an already escaped user id.
    pub(crate) fn user_index_escaped(&self, uenc: &str) -> UserKeys {
        let base = format!("{}u:{{{uenc}}}:", self.prefix);
        UserKeys {
            created: format!("{base}c"),
            expiry: format!("{base}x"),
            pending: format!("{base}r"),
            evicting: format!("{base}v"),
            inflight: format!("{base}q"),
        }
    }

    /// The `SCAN MATCH` pattern of every per-user created_at index.
    pub(crate) fn user_created_pattern(&self) -> String {
        format!("{}u:{{*}}:c", self.prefix)
    }

    /// The token family hash and its consumed-ids set.
    pub(crate) fn family(&self, fid: &str) -> (String, String) {
        let k = format!("{}f:{{{fid}}}", self.prefix);
        let used = format!("{k}:used");
        (k, used)
    }

    /// The sorted set of a user's family ids, scored by their expiry (unix µs).
    pub(crate) fn user_families(&self, user: &str) -> String {
        format!("{}fam:{{{}}}", self.prefix, escape(user))
    }

    /// A user's token epoch.
    pub(crate) fn user_epoch(&self, user: &str) -> String {
        format!("{}ue:{{{}}}", self.prefix, escape(user))
    }

    /// The sorted set of every family by expiry (one slot; used by cleanup).
    pub(crate) fn family_expiry(&self) -> String {
        format!("{}fx", self.prefix)
    }

    /// A cache entry's hash.
    pub(crate) fn cache_entry(&self, key: &str) -> String {
        format!("{}c:{{{}}}", self.prefix, escape(key))
    }

    /// A cache tag's set of (escaped) cache keys.
    pub(crate) fn cache_tag(&self, tag: &str) -> String {
        format!("{}t:{{{}}}", self.prefix, escape(tag))
    }
}

/// A byte of a session, family or token id.
fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The index keys of one user.
#[derive(Debug, Clone)]
pub(crate) struct UserKeys {
    pub(crate) created: String,
    pub(crate) expiry: String,
    pub(crate) pending: String,
    pub(crate) evicting: String,
    /// How many reservations of each id are in flight (cluster mode).
    pub(crate) inflight: String,
}

impl UserKeys {
    pub(crate) fn all(&self) -> [&str; 5] {
        [
            &self.created,
            &self.expiry,
            &self.pending,
            &self.evicting,
            &self.inflight,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_injective_and_brace_free() {
        let odd = ["{a}", "a b", "%7Ba%7D", "é", "x:y", "*", "a.b-c_d"];
        let mut seen = std::collections::HashSet::new();
        for u in odd {
            let e = escape(u);
            assert!(!e.contains(['{', '}', '*', '?', '[', ']', ':', ' ']), "{e}");
            assert!(seen.insert(e), "collision for {u}");
        }
        assert_eq!(escape("a.b-c_d"), "a.b-c_d");
        assert_eq!(escape("{a}"), "%7Ba%7D");
        assert_ne!(escape("{a}"), escape("%7Ba%7D"));
    }

    #[test]
    fn keys_share_hash_tags() {
        let k = Keys::new("p:");
        assert_eq!(k.session("abc"), "p:s:{abc}");
        assert_eq!(k.session_id_of("p:s:{abc}"), Some("abc"));
        assert_eq!(k.session_id_of("p:u:{abc}:c"), None);
        let u = k.user_index("a{b}");
        assert_eq!(u.created, "p:u:{a%7Bb%7D}:c");
        assert_eq!(u.expiry, "p:u:{a%7Bb%7D}:x");
        assert_eq!(k.family("f1").1, "p:f:{f1}:used");
        assert_eq!(k.cache_entry("k*"), "p:c:{k%2A}");
        assert!(k.session_pattern().starts_with("p:s:{"));
        assert_eq!(k.user_families("a b"), "p:fam:{a%20b}");
    }

    #[test]
    fn key_shapes_never_claim_a_nested_prefix_or_a_foreign_key() {
        let k = Keys::new("a:");
        let nested = Keys::new("a:b:");
        for key in [
            nested.session("x"),
            nested.user_index("u").created,
            nested.family("f").0,
            nested.cache_entry("c"),
            nested.family_expiry(),
            "a:s:{x}:extra".to_owned(),
            "a:s:{a b}".to_owned(),
            "a:u:{u}:cc".to_owned(),
            "a:ue:{u}".to_owned(),
            "a:other".to_owned(),
        ] {
            assert!(!k.is_session_family_key(&key), "{key}");
            assert!(!k.is_token_key(&key), "{key}");
            assert!(!k.is_cache_key(&key), "{key}");
        }
        assert!(k.is_session_family_key(&k.session("x")));
        for uk in k.user_index("a{b}").all() {
            assert!(k.is_session_family_key(uk), "{uk}");
        }
        assert!(k.is_token_key(&k.family("f1").0));
        assert!(k.is_token_key(&k.family("f1").1));
        assert!(k.is_token_key(&k.user_families("u")));
        assert!(k.is_token_key(&k.family_expiry()));
        assert!(
            !k.is_token_key(&k.user_epoch("u")),
            "epochs are not flushed"
        );
        assert!(k.is_cache_key(&k.cache_entry("k*")));
        assert!(k.is_cache_key(&k.cache_tag("t")));
    }
}
