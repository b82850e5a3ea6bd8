//! Turning the plain values callers pass into validated psm-core types, before any I/O.

use psm_core::{Metadata, PermissionList, Result, Ttl};
use serde_json::Value;

/// An optional ttl in seconds; `None` stays `None` (the caller decides what absence means).
pub(crate) fn ttl(secs: Option<u64>) -> Result<Option<Ttl>> {
    secs.map(Ttl::from_secs).transpose()
}

/// Caller metadata: absent or JSON `null` is empty; anything else must be a bounded JSON object.
pub(crate) fn metadata(value: Option<Value>) -> Result<Metadata> {
    value.map_or_else(|| Ok(Metadata::empty()), Metadata::from_value)
}

/// A permission list (1 to 4,096 valid permissions; duplicates dropped, first kept).
pub(crate) fn permissions<I>(items: I) -> Result<PermissionList>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    PermissionList::parse(items)
}
