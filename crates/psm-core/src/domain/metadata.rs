//! Session metadata: a JSON object of at most 64 KiB serialized and 32 levels deep.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Largest accepted serialized metadata, in bytes.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Deepest accepted nesting (the top-level object is depth 1).
pub const MAX_METADATA_DEPTH: usize = 32;

/// Validated session metadata. The manager stores exactly what it was given.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Metadata(Map<String, Value>);

impl Metadata {
    /// An empty object.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Validates a JSON value as metadata.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Validation`] when `value` is not an object, is nested deeper than 32 levels,
    /// or serializes to more than 64 KiB.
    pub fn from_value(value: Value) -> Result<Self> {
        match value {
            Value::Object(map) => Self::from_map(map),
            Value::Null => Ok(Self::empty()),
            _ => Err(Error::validation("metadata must be a json object")),
        }
    }

    /// Validates a JSON object as metadata.
    ///
    /// # Errors
    /// See [`Metadata::from_value`].
    pub fn from_map(map: Map<String, Value>) -> Result<Self> {
        // Depth is checked first and iteratively, so hostile nesting cannot exhaust the stack.
        let depth = max_depth(&map);
        if depth > MAX_METADATA_DEPTH {
            return Err(
                Error::validation("metadata is nested deeper than 32 levels")
                    .with_detail("max_depth", MAX_METADATA_DEPTH),
            );
        }
        let size = serialized_len(&map)?;
        if size > MAX_METADATA_BYTES {
            return Err(
                Error::validation("metadata is larger than 64 KiB when serialized")
                    .with_detail("bytes", size)
                    .with_detail("max_bytes", MAX_METADATA_BYTES),
            );
        }
        Ok(Self(map))
    }

    /// Parses and validates metadata from JSON text.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Validation`] for invalid JSON or metadata rules.
    pub fn from_json(text: &str) -> Result<Self> {
        if text.len() > MAX_METADATA_BYTES * 2 {
            return Err(Error::validation(
                "metadata is larger than 64 KiB when serialized",
            ));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::validation("metadata is not valid json").with_source(e))?;
        Self::from_value(value)
    }

    /// The underlying object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Whether the object has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The metadata as a JSON value (a copy).
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// Consumes into the underlying object.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| String::from("{}"))
    }
}

fn serialized_len(map: &Map<String, Value>) -> Result<usize> {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    serde_json::to_writer(&mut c, map)?;
    Ok(c.0)
}

fn max_depth(map: &Map<String, Value>) -> usize {
    let mut max = 1;
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 2)).collect();
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                max = max.max(d);
                if d > MAX_METADATA_DEPTH {
                    return d;
                }
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                max = max.max(d);
                if d > MAX_METADATA_DEPTH {
                    return d;
                }
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

impl TryFrom<Value> for Metadata {
    type Error = Error;
    fn try_from(v: Value) -> Result<Self> {
        Self::from_value(v)
    }
}

impl TryFrom<Map<String, Value>> for Metadata {
    type Error = Error;
    fn try_from(m: Map<String, Value>) -> Result<Self> {
        Self::from_map(m)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;

    fn nested(depth: usize) -> Value {
        let mut v = json!({});
        for _ in 1..depth {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn depth_and_size_bounds() {
        assert!(Metadata::from_value(nested(32)).is_ok());
        assert_eq!(
            Metadata::from_value(nested(33)).unwrap_err().kind(),
            ErrorKind::Validation
        );
        let big = "x".repeat(MAX_METADATA_BYTES);
        assert_eq!(
            Metadata::from_value(json!({ "k": big }))
                .unwrap_err()
                .kind(),
            ErrorKind::Validation
        );
        assert!(Metadata::from_value(json!({ "k": "x".repeat(60_000) })).is_ok());
        assert_eq!(
            Metadata::from_value(json!([1])).unwrap_err().kind(),
            ErrorKind::Validation
        );
        assert_eq!(
            Metadata::from_value(json!("s")).unwrap_err().kind(),
            ErrorKind::Validation
        );
        assert!(Metadata::from_value(Value::Null).unwrap().is_empty());
    }

    #[test]
    fn floats_read_back_exactly_from_json_text() {
        // A regression from `cargo xtask fuzz`: the last digit changed on the way back from text.
        let v = json!({ "": [-7.751022445273618e141, 0.1, 1e-300, f64::MAX] });
        let m = Metadata::from_value(v.clone()).unwrap();
        assert_eq!(Metadata::from_json(&m.to_json()).unwrap().to_value(), v);
    }

    #[test]
    fn keeps_exactly_what_it_was_given() {
        let v = json!({"ip": "192.168.1.1", "nested": {"list": [1, 2.5, null, "ü"]}});
        assert_eq!(Metadata::from_value(v.clone()).unwrap().to_value(), v);
    }
}
