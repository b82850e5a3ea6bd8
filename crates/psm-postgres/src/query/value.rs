//! [`SqlValue`]: owned, hashable parameters (what cached queries take), bound to the types the
//! server inferred for the prepared statement.

use psm_core::{Error, Result, Timestamp};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::types::{ToSql, Type};

/// A query parameter as an owned value. Cached queries take these (their cache key is derived
/// from the exact values); every other call also accepts any `ToSql` value.
///
/// Binding follows the prepared statement's parameter types: an `Int` binds to `int2`, `int4`
/// (range-checked), `int8`, `float4`/`float8` or `numeric`-free columns as needed; a `Text` binds
/// to any text-like type.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SqlValue {
    /// SQL `NULL` (binds to any type).
    Null,
    /// `boolean`.
    Bool(bool),
    /// `int2`, `int4`, `int8` (range-checked), or `float4`/`float8`.
    Int(i64),
    /// `float4` or `float8`.
    Float(f64),
    /// `text`, `varchar`, `char`, `name`.
    Text(String),
    /// `json` or `jsonb`.
    Json(Value),
    /// `timestamptz`.
    Timestamp(Timestamp),
    /// `text[]` and friends.
    TextArray(Vec<String>),
    /// `bytea`.
    Bytes(Vec<u8>),
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<i32> for SqlValue {
    fn from(v: i32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<Value> for SqlValue {
    fn from(v: Value) -> Self {
        Self::Json(v)
    }
}

impl From<Timestamp> for SqlValue {
    fn from(v: Timestamp) -> Self {
        Self::Timestamp(v)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// A bound parameter.
pub(crate) type Bound = Box<dyn ToSql + Sync + Send>;

impl SqlValue {
    /// Converts to a driver value of type `ty`, or a `Validation` error naming parameter `index`
    /// (1-based).
    pub(crate) fn bind(&self, ty: &Type, index: usize) -> Result<Bound> {
        let mismatch = || {
            Error::validation("query parameter does not fit the column type")
                .with_detail("param", index)
                .with_detail("type", ty.name())
        };
        let range = || {
            Error::validation("query parameter is out of range for its type")
                .with_detail("param", index)
                .with_detail("type", ty.name())
        };
        let bound: Bound = match self {
            Self::Null => Box::new(Option::<String>::None),
            Self::Bool(b) => Box::new(*b),
            Self::Int(i) => match *ty {
                Type::INT2 => Box::new(i16::try_from(*i).map_err(|_| range())?),
                Type::INT4 => Box::new(i32::try_from(*i).map_err(|_| range())?),
                Type::OID => Box::new(u32::try_from(*i).map_err(|_| range())?),
                Type::FLOAT4 => Box::new(*i as f32),
                Type::FLOAT8 => Box::new(*i as f64),
                _ => Box::new(*i),
            },
            Self::Float(f) => match *ty {
                Type::FLOAT4 => Box::new(*f as f32),
                _ => Box::new(*f),
            },
            Self::Text(s) => Box::new(s.clone()),
            Self::Json(v) => Box::new(v.clone()),
            Self::Timestamp(t) => Box::new(t.to_offset_date_time()),
            Self::TextArray(v) => Box::new(v.clone()),
            Self::Bytes(b) => Box::new(b.clone()),
        };
        if matches!(self, Self::Null) || accepts(self, ty) {
            Ok(bound)
        } else {
            Err(mismatch())
        }
    }

    /// Feeds a canonical, unambiguous encoding of the value (cache key material) to `sink`.
    pub(crate) fn encode_key(&self, sink: &mut impl FnMut(&[u8])) {
        fn bytes(sink: &mut impl FnMut(&[u8]), tag: u8, b: &[u8]) {
            sink(&[tag]);
            sink(&(b.len() as u64).to_le_bytes());
            sink(b);
        }
        match self {
            Self::Null => sink(&[0]),
            Self::Bool(b) => bytes(sink, 1, &[u8::from(*b)]),
            Self::Int(i) => bytes(sink, 2, &i.to_le_bytes()),
            Self::Float(f) => bytes(sink, 3, &f.to_bits().to_le_bytes()),
            Self::Text(s) => bytes(sink, 4, s.as_bytes()),
            Self::Json(v) => bytes(sink, 5, v.to_string().as_bytes()),
            Self::Timestamp(t) => bytes(sink, 6, &t.as_unix_micros().to_le_bytes()),
            Self::TextArray(v) => {
                bytes(sink, 7, &(v.len() as u64).to_le_bytes());
                for s in v {
                    bytes(sink, 4, s.as_bytes());
                }
            }
            Self::Bytes(b) => bytes(sink, 8, b),
        }
    }

    /// A cheap word of the value for the memo's slot hash: every byte counts, but it is not
    /// unambiguous (the memo compares the parameters in full, [`Self::key_eq`]).
    #[inline]
    pub(crate) fn memo_word(&self) -> u64 {
        match self {
            Self::Null => 0x6e75_6c6c,
            Self::Bool(b) => 0x626f_6f6c ^ u64::from(*b),
            Self::Int(i) => i.cast_unsigned(),
            Self::Float(f) => f.to_bits().rotate_left(7),
            Self::Text(s) => fold_bytes(s.as_bytes()),
            Self::Json(v) => fold_bytes(v.to_string().as_bytes()).rotate_left(11),
            Self::Timestamp(t) => t.as_unix_micros().cast_unsigned().rotate_left(13),
            Self::TextArray(v) => v.iter().fold(v.len() as u64, |acc, s| {
                acc.rotate_left(17) ^ fold_bytes(s.as_bytes())
            }),
            Self::Bytes(b) => fold_bytes(b).rotate_left(19),
        }
    }

    /// Whether `self` and `other` are the same parameter for caching: equal values of one variant,
    /// floats compared bit for bit (so `0.0` and `-0.0` differ, and a NaN equals itself).
    #[inline]
    pub(crate) fn key_eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Text(a), Self::Text(b)) => a == b,
            (Self::Int(a), Self::Int(b)) => a == b,
            _ => self.key_eq_other(other),
        }
    }

    fn key_eq_other(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Float(a), Self::Float(b)) => a.to_bits() == b.to_bits(),
            (Self::Json(_), Self::Json(_)) => {
                // The serialized text, as the key material has it (`0.0` and `-0.0` differ).
                let (mut x, mut y) = (Vec::new(), Vec::new());
                self.encode_key(&mut |b| x.extend_from_slice(b));
                other.encode_key(&mut |b| y.extend_from_slice(b));
                x == y
            }
            (a, b) => a == b,
        }
    }
}

/// Every byte of `b` folded into a word, each 8-byte word rotated by its position (cheap, for
/// spreading memo slots; not a hash to rely on).
#[inline]
pub(crate) fn fold_bytes(b: &[u8]) -> u64 {
    let n = b.len();
    let word = |i: usize| {
        b.get(i..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map_or(0, |w| u64::from_le_bytes(*w))
    };
    let mut acc = n as u64;
    if n >= 8 {
        let (mut i, mut r) = (0, 0_u32);
        while i + 8 <= n {
            acc ^= word(i).rotate_left(r);
            r = (r + 23) & 63;
            i += 8;
        }
        // The last word, overlapping the one before when `n` is not a multiple of 8.
        acc ^= word(n - 8).rotate_left(r);
    } else if n > 0 {
        let tail = b.iter().fold(0_u64, |w, &x| (w << 8) | u64::from(x));
        acc ^= tail << 8;
    }
    acc
}

fn accepts(v: &SqlValue, ty: &Type) -> bool {
    match v {
        SqlValue::Null => true,
        SqlValue::Bool(_) => <bool as ToSql>::accepts(ty),
        SqlValue::Int(_) => matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::OID | Type::FLOAT4 | Type::FLOAT8
        ),
        SqlValue::Float(_) => matches!(*ty, Type::FLOAT4 | Type::FLOAT8),
        SqlValue::Text(_) => <String as ToSql>::accepts(ty),
        SqlValue::Json(_) => <Value as ToSql>::accepts(ty),
        SqlValue::Timestamp(_) => <OffsetDateTime as ToSql>::accepts(ty),
        SqlValue::TextArray(_) => <Vec<String> as ToSql>::accepts(ty),
        SqlValue::Bytes(_) => <Vec<u8> as ToSql>::accepts(ty),
    }
}
