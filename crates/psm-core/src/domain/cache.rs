//! Cache keys and tags.

use std::fmt;

use crate::{Error, Result};

/// Largest accepted cache value, in bytes.
pub const MAX_CACHE_VALUE_BYTES: usize = 4 * 1024 * 1024;

macro_rules! cache_name {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Box<str>);

        impl $name {
            /// Validates `s`: 1 to 512 bytes of UTF-8 without control characters.
            ///
            /// # Errors
            /// [`crate::ErrorKind::Validation`] otherwise.
            pub fn parse(s: &str) -> Result<Self> {
                if !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control) {
                    Ok(Self(s.into()))
                } else {
                    Err(Error::validation(concat!($what, " must be 1 to 512 bytes without control characters")))
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

cache_name!(
    /// A cache key.
    CacheKey,
    "cache key"
);
cache_name!(
    /// A tag grouping cache entries for invalidation (for example `user:42`).
    CacheTag,
    "cache tag"
);

/// Rejects a cache value over [`MAX_CACHE_VALUE_BYTES`].
///
/// # Errors
/// [`crate::ErrorKind::Validation`] when `value` is too large.
pub fn check_cache_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_CACHE_VALUE_BYTES {
        return Err(
            Error::validation("cache value is larger than 4 MiB").with_detail("bytes", value.len())
        );
    }
    Ok(())
}
