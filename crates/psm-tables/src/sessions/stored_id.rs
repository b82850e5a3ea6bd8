//! A session id as stored: inline up to 30 bytes, boxed beyond.
//!
//! An id of up to 30 bytes, such as `generate_session_id`'s `session_` plus the 22 characters of 16
//! random bytes, lives inside the hot session record: comparing it on a lookup touches no other
//! memory (one cache and TLB miss fewer per check), and it costs 32 bytes instead of a 16-byte box
//! plus its 30-byte allocation. Longer ids are boxed, so a check on them pays one extra miss.

use std::cmp::Ordering;

use psm_core::{SessionId, SessionIdRef};

/// Ids up to this many bytes are stored inline.
const INLINE: usize = 30;

/// 32 bytes either way.
pub(crate) enum StoredId {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl StoredId {
    pub(crate) fn new(id: &SessionIdRef) -> Self {
        let s = id.as_str();
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            // len <= 30, so it fits in a byte.
            Self::Inline {
                len: u8::try_from(s.len()).unwrap_or(0),
                bytes,
            }
        } else {
            Self::Boxed(s.into())
        }
    }

    /// The id's bytes (ASCII: session ids are letters, digits, `-` and `_`).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Boxed(s) => s.as_bytes(),
        }
    }

    pub(crate) fn eq_str(&self, s: &str) -> bool {
        self.as_bytes() == s.as_bytes()
    }

    /// The id as an owned [`SessionId`]. It was a valid id when stored, so this never yields
    /// `None` in practice.
    pub(crate) fn to_session_id(&self) -> Option<SessionId> {
        let s = std::str::from_utf8(self.as_bytes()).ok()?;
        SessionIdRef::parse(s).ok().map(ToOwned::to_owned)
    }

    /// Byte order, which for ASCII ids is the order of the strings.
    pub(crate) fn cmp_id(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_inline_long_ones_boxed_and_both_round_trip() {
        assert_eq!(std::mem::size_of::<StoredId>(), 32);
        for len in [1, 29, 30, 31, 255] {
            let s = "x".repeat(len);
            let id = StoredId::new(SessionIdRef::parse(&s).unwrap());
            assert_eq!(matches!(id, StoredId::Inline { .. }), len <= INLINE);
            assert!(id.eq_str(&s) && !id.eq_str(&s[1..]));
            assert_eq!(id.to_session_id().unwrap(), s.as_str());
        }
        let a = StoredId::new(SessionIdRef::parse("a").unwrap());
        let b = StoredId::new(SessionIdRef::parse(&"b".repeat(40)).unwrap());
        assert_eq!(a.cmp_id(&b), Ordering::Less);
    }
}
