//! Rows as JSON objects (the seed's `as_dict`).

use psm_core::{Error, ErrorKind, Result, Timestamp};
use serde_json::{Map, Number, Value};
use time::{Date, OffsetDateTime, PrimitiveDateTime};
use tokio_postgres::{
    Row,
    types::{FromSql, Type},
};

/// A row as a JSON object keyed by column name.
///
/// | PostgreSQL | JSON |
/// | --- | --- |
/// | `boolean` | boolean |
/// | `int2`, `int4`, `int8`, `oid`, `float4`, `float8` | number (non-finite floats as strings) |
/// | `text`, `varchar`, `char`, `name` | string |
/// | `json`, `jsonb` | the value |
/// | `timestamptz` | RFC 3339 UTC string with microseconds and `Z` |
/// | `timestamp` | ISO 8601 string without offset |
/// | `date` | `YYYY-MM-DD` |
/// | `bytea` | `\x`-prefixed hex string |
/// | arrays of the above | arrays |
/// | `NULL` | null |
///
/// Other types (numeric, uuid, inet, …): cast them in SQL (`col::text`).
pub(crate) fn row_to_object(row: &Row) -> Result<Map<String, Value>> {
    let mut map = Map::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = cell(row, i, col.type_()).map_err(|e| {
            e.with_detail("column", col.name().chars().take(64).collect::<String>())
        })?;
        map.insert(col.name().to_owned(), v);
    }
    Ok(map)
}

fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<Option<T>> {
    row.try_get::<_, Option<T>>(i)
        .map_err(|e| Error::new(ErrorKind::Serialization, "cannot decode a column").with_source(e))
}

fn cell(row: &Row, i: usize, ty: &Type) -> Result<Value> {
    let v = match *ty {
        Type::BOOL => get::<bool>(row, i)?.map(Value::Bool),
        Type::INT2 => get::<i16>(row, i)?.map(Value::from),
        Type::INT4 => get::<i32>(row, i)?.map(Value::from),
        Type::INT8 => get::<i64>(row, i)?.map(Value::from),
        Type::OID => get::<u32>(row, i)?.map(Value::from),
        Type::FLOAT4 => get::<f32>(row, i)?.map(|f| float(f64::from(f))),
        Type::FLOAT8 => get::<f64>(row, i)?.map(float),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get::<String>(row, i)?.map(Value::String)
        }
        Type::JSON | Type::JSONB => get::<Value>(row, i)?,
        Type::TIMESTAMPTZ => get::<OffsetDateTime>(row, i)?
            .map(|t| Value::String(Timestamp::from_offset_date_time(t).to_rfc3339())),
        Type::TIMESTAMP => get::<PrimitiveDateTime>(row, i)?.map(|t| {
            Value::String(format!(
                "{}T{:02}:{:02}:{:02}.{:06}",
                date(t.date()),
                t.hour(),
                t.minute(),
                t.second(),
                t.microsecond()
            ))
        }),
        Type::DATE => get::<Date>(row, i)?.map(|d| Value::String(date(d))),
        Type::BYTEA => get::<Vec<u8>>(row, i)?.map(|b| {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            Value::String(s)
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY | Type::NAME_ARRAY => {
            get::<Vec<Option<String>>>(row, i)?.map(array)
        }
        Type::INT2_ARRAY => get::<Vec<Option<i16>>>(row, i)?.map(array),
        Type::INT4_ARRAY => get::<Vec<Option<i32>>>(row, i)?.map(array),
        Type::INT8_ARRAY => get::<Vec<Option<i64>>>(row, i)?.map(array),
        Type::BOOL_ARRAY => get::<Vec<Option<bool>>>(row, i)?.map(array),
        Type::FLOAT8_ARRAY => get::<Vec<Option<f64>>>(row, i)?.map(|v| {
            Value::Array(
                v.into_iter()
                    .map(|f| f.map_or(Value::Null, float))
                    .collect(),
            )
        }),
        Type::JSONB_ARRAY | Type::JSON_ARRAY => get::<Vec<Option<Value>>>(row, i)?.map(array),
        _ => {
            return Err(Error::new(
                ErrorKind::Serialization,
                "column type has no json mapping; cast it in sql (for example col::text)",
            )
            .with_detail("type", ty.name()));
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

fn array<T: Into<Value>>(items: Vec<Option<T>>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|v| v.map_or(Value::Null, Into::into))
            .collect(),
    )
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

fn date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
