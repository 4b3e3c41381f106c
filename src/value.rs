//! Value conversion between PostgreSQL's wire format and JSON.
//!
//! tokio-postgres always asks for results in binary format, so every column type
//! an agent can see needs a decoder here (see README "Value mapping"). Parameters
//! go the other way: they are JSON values from the agent, sent in *text* format so
//! the server parses them with the type it inferred for each placeholder.

use postgres_types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use serde_json::{Map, Value};
use tokio_postgres::Row;

/// Error raised while decoding one column value.
pub type DecodeError = Box<dyn std::error::Error + Sync + Send>;

/// Decodes one binary-format value of type `ty` into JSON. (stub)
pub fn decode(ty: &Type, raw: &[u8]) -> Result<Value, DecodeError> {
    let _ = (ty, raw);
    Err("not implemented".into())
}

/// One cell of a result row, decoded to JSON whatever its PostgreSQL type.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonCell(pub Value);

impl<'a> FromSql<'a> for JsonCell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        decode(ty, raw).map(JsonCell)
    }
    fn from_sql_null(_: &Type) -> Result<Self, DecodeError> {
        Ok(JsonCell(Value::Null))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Converts a row to a JSON object, keys in column order; a repeated column name
/// keeps its first position and takes the last value (as the reference does).
pub fn row_to_object(row: &Row) -> Result<Map<String, Value>, tokio_postgres::Error> {
    let mut map = Map::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let JsonCell(v) = row.try_get(i)?;
        map.insert(col.name().to_owned(), v);
    }
    Ok(map)
}

/// The SQL name of a column type as an agent should read it (`integer`, `text[]`, ...). (stub)
pub fn type_name(ty: &Type) -> String {
    ty.name().to_owned()
}

/// A parameter sent in text format; `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq)]
pub struct TextParam(pub Option<String>);

impl TextParam {
    /// Converts an agent's JSON value to the text PostgreSQL parses for a
    /// placeholder whose inferred type is `ty`. (stub)
    pub fn from_json(v: &Value, ty: &Type) -> TextParam {
        let _ = ty;
        match v {
            Value::Null => TextParam(None),
            Value::String(s) => TextParam(Some(s.clone())),
            other => TextParam(Some(other.to_string())),
        }
    }
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    fn encode_format(&self, _ty: &Type) -> postgres_types::Format {
        postgres_types::Format::Text
    }
    to_sql_checked!();
}
