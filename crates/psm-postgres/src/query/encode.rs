//! The stored form of a cached result: a small binary encoding of JSON rows that decodes without
//! parsing text (no escapes, no number parsing), checked byte by byte since it comes back from a
//! cache another process may have written.
//!
//! ```text
//! rows   = u32 count, row*
//! row    = u32 count, (str key, value)*
//! value  = 0 null | 1 false | 2 true | 3 u64 | 4 i64 | 5 f64 | 6 str | 7 u32 count, value* (array)
//!        | 8 u32 count, (str key, value)* (object)
//! str    = u32 length, UTF-8 bytes
//! ```
//! Integers are little-endian. Nesting is limited to [`MAX_DEPTH`] levels on decode.

use serde_json::{Map, Number, Value};

use super::JsonRow;

/// Deepest nesting accepted when decoding (serde_json's own default limit).
pub(crate) const MAX_DEPTH: usize = 128;

/// Appends `rows` to `out`.
pub(crate) fn rows(rows: &[JsonRow], out: &mut Vec<u8>) {
    len(rows.len(), out);
    for row in rows {
        object(row, out);
    }
}

fn len(n: usize, out: &mut Vec<u8>) {
    // Every length is bounded by the 4 MiB cache value limit long before u32::MAX.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn string(s: &str, out: &mut Vec<u8>) {
    len(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

fn object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    len(map.len(), out);
    for (k, v) in map {
        string(k, out);
        value(v, out);
    }
}

fn value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(3);
                out.extend_from_slice(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                out.push(4);
                out.extend_from_slice(&i.to_le_bytes());
            } else {
                out.push(5);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(6);
            string(s, out);
        }
        Value::Array(items) => {
            out.push(7);
            len(items.len(), out);
            for item in items {
                value(item, out);
            }
        }
        Value::Object(map) => {
            out.push(8);
            object(map, out);
        }
    }
}

/// A reader over stored bytes; every read is bounds-checked. `None` means malformed.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<usize> {
        self.array()
            .map(u32::from_le_bytes)
            .and_then(|n| usize::try_from(n).ok())
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()?;
        std::str::from_utf8(self.take(n)?).ok()
    }

    /// Whether every byte was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A count, refused when it cannot fit the remaining bytes (each item takes at least one),
    /// so a damaged count never reserves memory it cannot fill.
    fn count(&mut self) -> Option<usize> {
        self.u32().filter(|n| *n <= self.bytes.len())
    }

    /// The rows, which must use up the bytes exactly.
    pub(crate) fn rows(mut self) -> Option<Vec<JsonRow>> {
        let n = self.count()?;
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            rows.push(self.object(0)?);
        }
        self.is_empty().then_some(rows)
    }

    fn object(&mut self, depth: usize) -> Option<Map<String, Value>> {
        let n = self.count()?;
        let mut map = Map::new();
        for _ in 0..n {
            let k = self.str()?.to_owned();
            let v = self.value(depth + 1)?;
            map.insert(k, v);
        }
        Some(map)
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::from(self.u64()?),
            4 => Value::from(i64::from_le_bytes(self.array()?)),
            5 => Value::Number(Number::from_f64(f64::from_bits(self.u64()?))?),
            6 => Value::String(self.str()?.to_owned()),
            7 => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            8 => Value::Object(self.object(depth)?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn round_trip(v: &[JsonRow]) -> Option<Vec<JsonRow>> {
        let mut out = Vec::new();
        rows(v, &mut out);
        Reader::new(&out).rows()
    }

    #[test]
    fn rows_round_trip_exactly() {
        let Value::Object(a) = json!({
            "id": "s'1\"\\\u{0}✓", "n": -3, "u": u64::MAX, "f": 0.5, "neg0": -0.0, "t": true,
            "nil": null, "arr": ["x", 1, [2, {"deep": [false]}]], "obj": {"k": {"": ""}},
        }) else {
            unreachable!()
        };
        let rows = vec![a.clone(), Map::new(), a];
        assert_eq!(round_trip(&rows).unwrap(), rows);
        assert_eq!(round_trip(&[]).unwrap(), Vec::<JsonRow>::new());
    }

    #[test]
    fn malformed_bytes_are_refused_never_panic() {
        let Value::Object(a) = json!({"id": "abc", "p": ["r", "w"], "x": 1.5}) else {
            unreachable!()
        };
        let mut good = Vec::new();
        rows(&[a], &mut good);
        // Every truncation, every single-byte change, and trailing garbage.
        for cut in 0..good.len() {
            assert!(Reader::new(&good[..cut]).rows().is_none(), "cut {cut}");
        }
        for i in 0..good.len() {
            for b in [0u8, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = Reader::new(&bad).rows();
            }
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(Reader::new(&extra).rows().is_none());
        // A huge count in a short value.
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0x7f]).rows().is_none());
        // Invalid UTF-8 and non-finite floats.
        let mut bad = vec![
            1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'k', 6, 1, 0, 0, 0, 0xff,
        ];
        assert!(Reader::new(&bad).rows().is_none());
        bad.truncate(13);
        bad.push(5);
        bad.extend_from_slice(&f64::NAN.to_bits().to_le_bytes());
        assert!(Reader::new(&bad).rows().is_none());
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused() {
        let mut deep = Value::Null;
        for _ in 0..MAX_DEPTH + 5 {
            deep = Value::Array(vec![deep]);
        }
        let mut row = Map::new();
        row.insert("d".into(), deep);
        assert!(round_trip(&[row]).is_none());
    }
}
