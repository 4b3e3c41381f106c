//! Value conversion between PostgreSQL's wire format and JSON.
//!
//! Why this module exists: tokio-postgres always asks for results in *binary*
//! format, and an agent can select any expression, so every type it may see
//! needs a decoder from its binary form to JSON, one that is exact (no float
//! rounding of `numeric`, no lost scale), always valid JSON (the Python
//! reference prints `NaN`, which is not JSON) and never fails on a type it does
//! not know. Parameters go the other way: they are JSON values from the agent,
//! sent in *text* format so the server parses them with the type it inferred
//! for each placeholder ([`TextParam`]).
//!
//! # Value mapping
//!
//! | PostgreSQL type | JSON |
//! |---|---|
//! | NULL (any type) | `null` |
//! | `smallint`, `integer`, `bigint`, `oid`, `xid`, `cid`, `xid8`, `regclass`, `regtype`, `regproc` and the other `reg*` types | number (`bigint` stays an exact number even beyond 2^53, as in the reference; JavaScript clients may round it) |
//! | `real`, `double precision` | number; `real` with its shortest `f32` digits (`0.1`, not `0.10000000149011612`); NaN and ±infinity as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `numeric` | string, exact, with the value's own scale: `"12.50"`, `"0.00"`, `"-1.5"`; `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `boolean` | `true` / `false` |
//! | `text`, `character varying`, `character` (blank padding kept), `name`, `unknown`, `xml`, `refcursor`, `citext`, enum labels | string |
//! | `"char"` | one-character string (`""` for the zero byte, `\ooo` octal for bytes ≥ 128, as PostgreSQL prints them) |
//! | `uuid` | string, lowercase with hyphens |
//! | `date` | `"2024-01-02"` |
//! | `time` | `"10:11:12"`, `"10:11:12.5"` |
//! | `time with time zone` | `"10:11:12+05:30"` (offset `±HH:MM`, plus `:SS` when it has seconds) |
//! | `timestamp` | `"2024-01-02T03:04:05"`, `"2024-01-02T03:04:05.123456"` |
//! | `timestamp with time zone` | in UTC with `Z`: `"2024-01-02T03:04:05Z"` (as the reference) |
//! | all of the date/time types | fractional seconds with trailing zeros removed; `"infinity"` / `"-infinity"`; years before 1 AD as PostgreSQL's ISO style writes them, the BC year and a trailing `" BC"`: `"0044-03-15 BC"`, `"0044-03-15T12:00:00Z BC"` |
//! | `interval` | ISO-8601 duration as PostgreSQL's `intervalstyle = iso_8601` prints it: `"P1D"`, `"PT1H30M"`, `"P1Y2M3DT4H5M6.5S"`, each part with its own sign (`"P-1DT-2H"`, `"P1DT-2H"`, `"PT-1.5S"`), zero as `"PT0S"` |
//! | `json`, `jsonb` | the parsed document, nested (numbers beyond `f64` lose precision; a document serde_json cannot hold, e.g. `1e400`, is returned as its text) |
//! | `jsonpath` | string |
//! | `bytea` | string `"\x"` followed by lowercase hex (`"\x"` when empty); the reference fails on bytea |
//! | `inet` | `"192.168.0.1"`, `"10.1.2.3/8"` (`/n` only when not a full host mask), IPv6 as PostgreSQL prints it |
//! | `cidr` | `"10.0.0.0/8"` (always `/n`) |
//! | `macaddr`, `macaddr8` | `"08:00:2b:01:02:03"` |
//! | `bit`, `bit varying` | string of `0` and `1` |
//! | `tid` | `"(0,1)"` |
//! | `pg_lsn` | `"16/B374D848"` |
//! | arrays of any type | JSON arrays, elements decoded by their type; multi-dimensional arrays nest; NULL elements are `null`; lower bounds other than 1 are dropped; an empty array is `[]` |
//! | `record` (anonymous row, `SELECT (1, 'a')`) | JSON array of its fields, each decoded by the type oid it carries (a field of a non-built-in type as hex) |
//! | named composite (a table's row type, `SELECT t FROM t`) | JSON object keyed by field name |
//! | domain | as its base type |
//! | `hstore` | object of strings (or `null`) |
//! | `void` | `null` |
//! | range, multirange | string as PostgreSQL writes it, each bound in its text form from this table: `"[1,5)"`, `"(,2024-01-02]"`, `"empty"`, `"{[1,3),[5,7)}"` |
//! | anything else (`money`, `tsvector`, geometric, unknown extension types) | string `"\x"` + lowercase hex of the raw binary value |
//!
//! A value whose bytes do not match its (known) type's binary layout is a
//! [`DecodeError`]; an unknown type is never an error.

mod datetime;
mod net;
mod numeric;
pub mod render;
#[cfg(test)]
mod tests;

use std::fmt::Write;

use postgres_types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use serde_json::{Map, Number, Value};
use tokio_postgres::Row;

/// Error raised while decoding one column value.
pub type DecodeError = Box<dyn std::error::Error + Sync + Send>;

/// Deepest nesting of arrays / records decoded; beyond it the value is hex.
const MAX_DEPTH: usize = 32;

/// Decodes one binary-format value of type `ty` into JSON (see the module's
/// mapping table). Never panics; unknown types come back as `"\x<hex>"`.
pub fn decode(ty: &Type, raw: &[u8]) -> Result<Value, DecodeError> {
    decode_at(ty, raw, 0).map(Cell::into_value)
}

/// One decoded value on its way to JSON, before it is a [`Value`].
///
/// Why: the row tools write each value straight into their answer's bytes
/// (`value::render`); a scalar held as a `Value` would cost an allocation per
/// text cell and a tree walk per row for nothing. Text borrows the row's bytes.
/// Whatever path a cell takes, it is written as serde_json writes the `Value`
/// that [`Cell::into_value`] makes of it (the unit tests compare the two for
/// every type).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    /// Always finite (non-finite floats are the strings `"NaN"`, `"Infinity"`).
    Float(f64),
    Text(&'a str),
    String(String),
    /// A nested document (json, arrays, records, composites, hstore).
    Json(Value),
}

impl Cell<'_> {
    pub fn into_value(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(b),
            Cell::Int(i) => i.into(),
            Cell::UInt(u) => u.into(),
            Cell::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Cell::Text(s) => Value::String(s.to_owned()),
            Cell::String(s) => Value::String(s),
            Cell::Json(v) => v,
        }
    }

    /// Appends the compact JSON text of the value to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = match self {
            Cell::Null => serde_json::to_writer(&mut *out, &()),
            Cell::Bool(b) => serde_json::to_writer(&mut *out, b),
            Cell::Int(i) => serde_json::to_writer(&mut *out, i),
            Cell::UInt(u) => serde_json::to_writer(&mut *out, u),
            Cell::Float(f) => serde_json::to_writer(&mut *out, f),
            Cell::Text(s) => serde_json::to_writer(&mut *out, s),
            Cell::String(s) => serde_json::to_writer(&mut *out, s),
            Cell::Json(v) => serde_json::to_writer(&mut *out, v),
        };
    }

    /// The value when its pretty-printed text differs from its compact text: a
    /// non-empty array or object.
    pub fn nested(&self) -> Option<&Value> {
        match self {
            Cell::Json(v @ Value::Array(items)) if !items.is_empty() => Some(v),
            Cell::Json(v @ Value::Object(map)) if !map.is_empty() => Some(v),
            _ => None,
        }
    }
}

impl<'a> FromSql<'a> for Cell<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        decode_at(ty, raw, 0)
    }
    fn from_sql_null(_: &Type) -> Result<Self, DecodeError> {
        Ok(Cell::Null)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn decode_at<'a>(ty: &Type, raw: &'a [u8], depth: usize) -> Result<Cell<'a>, DecodeError> {
    if depth > MAX_DEPTH {
        return Ok(hex(raw));
    }
    // Built-in types first, by oid: user-defined types all have oids above
    // 16383, so they cannot collide with these.
    let text = |raw: &'a [u8]| -> Result<Cell<'a>, DecodeError> {
        Ok(Cell::Text(postgres_protocol::types::text_from_sql(raw)?))
    };
    let string = |s: String| Ok(Cell::String(s));
    let int = |i: i64| Ok(Cell::Int(i));
    match ty.oid() {
        16 => return Ok(Cell::Bool(postgres_protocol::types::bool_from_sql(raw)?)),
        17 => return Ok(hex(postgres_protocol::types::bytea_from_sql(raw))),
        18 => return string(pg_char(postgres_protocol::types::char_from_sql(raw)?)),
        // name, text, unknown, xml, bpchar, varchar, refcursor, cstring
        19 | 25 | 705 | 142 | 1042 | 1043 | 1790 | 2275 => return text(raw),
        20 => return int(postgres_protocol::types::int8_from_sql(raw)?),
        21 => return int(postgres_protocol::types::int2_from_sql(raw)?.into()),
        23 => return int(postgres_protocol::types::int4_from_sql(raw)?.into()),
        // oid, regproc, xid, cid, regprocedure, regoper, regoperator, regclass,
        // regtype, regconfig, regdictionary, regnamespace, regrole, regcollation
        26 | 24 | 28 | 29 | 2202 | 2203 | 2204 | 2205 | 2206 | 3734 | 3769 | 4089 | 4096 | 4191 => {
            return int(postgres_protocol::types::oid_from_sql(raw)?.into());
        }
        5069 => {
            return Ok(Cell::UInt(
                postgres_protocol::types::int8_from_sql(raw)?.cast_unsigned(),
            ));
        }
        27 => return string(tid(raw)?),
        114 => return json(raw),
        3802 | 4072 => {
            // jsonb and jsonpath: a version byte (1), then the text.
            let body = match raw.split_first() {
                Some((1, body)) => body,
                _ => return Err("unsupported jsonb/jsonpath version".into()),
            };
            return if ty.oid() == 3802 {
                json(body)
            } else {
                text(body)
            };
        }
        700 => return Ok(float4(postgres_protocol::types::float4_from_sql(raw)?)),
        701 => return Ok(float8(postgres_protocol::types::float8_from_sql(raw)?)),
        1700 => return string(numeric::to_text(raw)?),
        2950 => return string(uuid(postgres_protocol::types::uuid_from_sql(raw)?)),
        1082 => return string(datetime::date(raw)?),
        1083 => return string(datetime::time(raw)?),
        1266 => return string(datetime::timetz(raw)?),
        1114 => return string(datetime::timestamp(raw, false)?),
        1184 => return string(datetime::timestamp(raw, true)?),
        1186 => return string(datetime::interval(raw)?),
        869 => return string(net::inet(raw, false)?),
        650 => return string(net::inet(raw, true)?),
        829 => return string(net::mac(raw, 6)?),
        774 => return string(net::mac(raw, 8)?),
        1560 | 1562 => return string(bits(raw)?),
        3220 => {
            let lsn = postgres_protocol::types::lsn_from_sql(raw)?;
            return string(format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF));
        }
        2278 => return Ok(Cell::Null),
        2249 => return record(raw, depth).map(Cell::Json),
        _ => {}
    }
    match ty.kind() {
        Kind::Array(elem) => array(elem, raw, depth).map(Cell::Json),
        Kind::Domain(base) => decode_at(base, raw, depth + 1),
        Kind::Enum(_) => text(raw),
        Kind::Composite(fields) => composite(fields, raw, depth).map(Cell::Json),
        Kind::Range(sub) => range(sub, raw, depth).map(Cell::String),
        Kind::Multirange(sub) => multirange(sub, raw, depth).map(Cell::String),
        _ => match ty.name() {
            "citext" => text(raw),
            // ltree and friends: a version byte (1), then the text.
            "ltree" | "lquery" | "ltxtquery" => match raw.split_first() {
                Some((1, body)) => text(body),
                _ => Ok(hex(raw)),
            },
            "hstore" => Ok(hstore(raw).map_or_else(|_| hex(raw), Cell::Json)),
            _ => Ok(hex(raw)),
        },
    }
}

/// A nested element's value.
fn element(ty: &Type, raw: &[u8], depth: usize) -> Result<Value, DecodeError> {
    decode_at(ty, raw, depth).map(Cell::into_value)
}

/// Converts a row to a JSON object, keys in column order; a repeated column name
/// keeps its first position and takes the last value (as the reference does).
pub fn row_to_object(row: &Row) -> Result<Map<String, Value>, tokio_postgres::Error> {
    let mut map = Map::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let cell: Cell<'_> = row.try_get(i)?;
        map.insert(col.name().to_owned(), cell.into_value());
    }
    Ok(map)
}

/// The SQL name of a column type as an agent should read it (`integer`,
/// `timestamp with time zone`, `text[]`, ...): the spelling of PostgreSQL's
/// `format_type` without modifiers. Types it does not know keep `ty.name()`.
pub fn type_name(ty: &Type) -> String {
    let name = match ty.oid() {
        16 => "boolean",
        18 => "\"char\"",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        700 => "real",
        701 => "double precision",
        1042 => "character",
        1043 => "character varying",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1266 => "time with time zone",
        1562 => "bit varying",
        // int2vector and oidvector are arrays on the wire but keep their names.
        22 | 30 => ty.name(),
        _ => match ty.kind() {
            Kind::Array(elem) => return format!("{}[]", type_name(elem)),
            _ => ty.name(),
        },
    };
    name.to_owned()
}

/// A parameter sent in text format; `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq)]
pub struct TextParam(pub Option<String>);

impl TextParam {
    /// Converts an agent's JSON value to the text PostgreSQL parses for a
    /// placeholder whose inferred type is `ty`:
    ///
    /// - `null` → SQL NULL; a string → itself; a number → its JSON text;
    ///   a boolean → `true` / `false`;
    /// - a JSON array for an array-typed placeholder (or a domain over one) →
    ///   an array literal, `{1,2,"a b",NULL}`: strings always double-quoted with
    ///   `"` and `\` escaped, nested arrays as nested braces; for `json[]` /
    ///   `jsonb[]` every non-string element is its quoted JSON text;
    /// - any other array or object → its JSON text (so a `json`, `jsonb` or
    ///   `text` placeholder receives JSON).
    pub fn from_json(v: &Value, ty: &Type) -> TextParam {
        match v {
            Value::Null => TextParam(None),
            Value::String(s) => TextParam(Some(s.clone())),
            Value::Bool(b) => TextParam(Some(b.to_string())),
            Value::Number(n) => TextParam(Some(n.to_string())),
            Value::Array(items) => match array_element_type(ty) {
                Some(elem) => {
                    let mut out = String::new();
                    let json_elems = matches!(elem.oid(), 114 | 3802);
                    array_literal(items, json_elems, &mut out);
                    TextParam(Some(out))
                }
                None => TextParam(Some(v.to_string())),
            },
            Value::Object(_) => TextParam(Some(v.to_string())),
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

// ---------------------------------------------------------------------------
// Parameters

/// The element type when `ty` is an array type (looking through domains).
fn array_element_type(ty: &Type) -> Option<&Type> {
    let mut ty = ty;
    for _ in 0..MAX_DEPTH {
        match ty.kind() {
            Kind::Array(elem) => return Some(elem),
            Kind::Domain(base) => ty = base,
            _ => return None,
        }
    }
    None
}

/// Writes a PostgreSQL array literal for `items`.
fn array_literal(items: &[Value], json_elems: bool, out: &mut String) {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::String(s) => quote_element(s, out),
            Value::Array(inner) if !json_elems => array_literal(inner, json_elems, out),
            Value::Bool(_) | Value::Number(_) if !json_elems => out.push_str(&item.to_string()),
            other => quote_element(&other.to_string(), out),
        }
    }
    out.push('}');
}

/// A double-quoted array element with `"` and `\` escaped by a backslash.
fn quote_element(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

// ---------------------------------------------------------------------------
// Decoders

/// A big-endian reader over a value's bytes that errors instead of panicking.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.0.split_at_checked(n) {
            Some((head, rest)) => {
                self.0 = rest;
                Ok(head)
            }
            None => Err("invalid message length: value too short".into()),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    /// A length-prefixed value: `None` for length -1 (NULL).
    fn value(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.i32()? {
            -1 => Ok(None),
            n if n < 0 => Err("invalid value length".into()),
            n => self.take(n as usize).map(Some),
        }
    }
    pub(crate) fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("invalid message length: {what} not drained").into())
        }
    }
}

/// `"\x"` followed by the bytes in lowercase hex (PostgreSQL's bytea output).
fn hex(raw: &[u8]) -> Cell<'static> {
    let mut s = String::with_capacity(2 + raw.len() * 2);
    s.push_str("\\x");
    for b in raw {
        let _ = write!(s, "{b:02x}");
    }
    Cell::String(s)
}

/// `"char"` as PostgreSQL prints it: the byte, nothing for 0, `\ooo` when ≥ 128.
fn pg_char(c: i8) -> String {
    let b = c.cast_unsigned();
    match b {
        0 => String::new(),
        1..=127 => char::from(b).to_string(),
        _ => format!("\\{b:03o}"),
    }
}

fn float8(v: f64) -> Cell<'static> {
    if v.is_finite() {
        Cell::Float(v)
    } else if v.is_nan() {
        Cell::Text("NaN")
    } else if v > 0.0 {
        Cell::Text("Infinity")
    } else {
        Cell::Text("-Infinity")
    }
}

/// `real` through its shortest decimal form, so `0.1::real` is `0.1`: the f64
/// nearest that decimal prints with the same digits.
fn float4(v: f32) -> Cell<'static> {
    if !v.is_finite() {
        return float8(f64::from(v));
    }
    float8(v.to_string().parse::<f64>().unwrap_or(f64::from(v)))
}

fn json(raw: &[u8]) -> Result<Cell<'_>, DecodeError> {
    match serde_json::from_slice(raw) {
        Ok(v) => Ok(Cell::Json(v)),
        // Valid for PostgreSQL but not for serde_json (e.g. 1e400): keep the text.
        Err(_) => Ok(Cell::Text(postgres_protocol::types::text_from_sql(raw)?)),
    }
}

fn uuid(b: [u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

fn tid(raw: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader(raw);
    let block = r.u32()?;
    let offset = r.u16()?;
    r.finish("tid")?;
    Ok(format!("({block},{offset})"))
}

fn bits(raw: &[u8]) -> Result<String, DecodeError> {
    let v = postgres_protocol::types::varbit_from_sql(raw)?;
    let bytes = v.bytes();
    let len = v.len();
    if bytes.len() * 8 < len {
        return Err("invalid bit string length".into());
    }
    Ok((0..len)
        .map(|i| {
            if bytes[i / 8] & (0x80 >> (i % 8)) != 0 {
                '1'
            } else {
                '0'
            }
        })
        .collect())
}

/// Array: `ndim: i32`, `flags: i32`, `element oid: u32`, `ndim × (len: i32,
/// lower bound: i32)`, then each element as a length-prefixed value.
fn array(elem: &Type, raw: &[u8], depth: usize) -> Result<Value, DecodeError> {
    let mut r = Reader(raw);
    let ndim = r.i32()?;
    let _has_nulls = r.i32()?;
    let elem_oid = r.u32()?;
    if !(0..=MAX_DEPTH as i32).contains(&ndim) {
        return Err("invalid array dimension count".into());
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut total: usize = 1;
    for _ in 0..ndim {
        let len = r.i32()?;
        let _lower_bound = r.i32()?;
        let len = usize::try_from(len).map_err(|_| "invalid array dimension size")?;
        total = total.checked_mul(len).ok_or("too many array elements")?;
        dims.push(len);
    }
    if ndim == 0 {
        r.finish("array")?;
        return Ok(Value::Array(Vec::new()));
    }
    // The element type the server sent wins over the one the column's type
    // names, if they ever differ.
    let from_oid;
    let elem = if elem.oid() == elem_oid {
        elem
    } else {
        match Type::from_oid(elem_oid) {
            Some(t) => {
                from_oid = t;
                &from_oid
            }
            None => elem,
        }
    };
    // Each element takes at least 4 bytes: do not trust `total` for capacity.
    let mut flat = Vec::with_capacity(total.min(r.0.len() / 4));
    for _ in 0..total {
        flat.push(match r.value()? {
            None => Value::Null,
            Some(v) => element(elem, v, depth + 1)?,
        });
    }
    r.finish("array")?;
    let mut it = flat.into_iter();
    Ok(nest(&mut it, &dims))
}

/// Splits row-major elements into nested arrays following `dims`.
fn nest(it: &mut std::vec::IntoIter<Value>, dims: &[usize]) -> Value {
    match dims.split_first() {
        None => it.next().unwrap_or(Value::Null),
        Some((&len, [])) => Value::Array(it.by_ref().take(len).collect()),
        Some((&len, rest)) => Value::Array((0..len).map(|_| nest(it, rest)).collect()),
    }
}

/// One field of a row value: its type oid and its bytes (`None` for NULL).
type RecordField<'a> = (u32, Option<&'a [u8]>);

/// The fields of a row value: `nfields: i32`, then per field its type oid and
/// a length-prefixed value.
fn record_fields(raw: &[u8]) -> Result<Vec<RecordField<'_>>, DecodeError> {
    let mut r = Reader(raw);
    let n = r.i32()?;
    let n = usize::try_from(n).map_err(|_| "invalid record field count")?;
    let mut fields = Vec::with_capacity(n.min(raw.len() / 8));
    for _ in 0..n {
        let oid = r.u32()?;
        fields.push((oid, r.value()?));
    }
    r.finish("record")?;
    Ok(fields)
}

/// Anonymous `record`: a JSON array of its fields, decoded by their oids
/// (fields of types without a built-in decoder come out as hex).
fn record(raw: &[u8], depth: usize) -> Result<Value, DecodeError> {
    let fields = record_fields(raw)?;
    let mut out = Vec::with_capacity(fields.len());
    for (oid, value) in fields {
        out.push(match value {
            None => Value::Null,
            Some(v) => match Type::from_oid(oid) {
                Some(t) => element(&t, v, depth + 1)?,
                None => hex(v).into_value(),
            },
        });
    }
    Ok(Value::Array(out))
}

/// Named composite: an object keyed by field name; falls back to the
/// anonymous form if the field list does not match the value.
fn composite(
    fields: &[postgres_types::Field],
    raw: &[u8],
    depth: usize,
) -> Result<Value, DecodeError> {
    let values = record_fields(raw)?;
    if values.len() != fields.len() {
        return record(raw, depth);
    }
    let mut out = Map::with_capacity(fields.len());
    for (field, (_, value)) in fields.iter().zip(values) {
        let v = match value {
            None => Value::Null,
            Some(v) => element(field.type_(), v, depth + 1)?,
        };
        out.insert(field.name().to_owned(), v);
    }
    Ok(Value::Object(out))
}

/// `hstore`: `count: i32`, then per entry a key and a (nullable) value.
fn hstore(raw: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader(raw);
    let n = r.i32()?;
    let mut out = Map::new();
    for _ in 0..n.max(0) {
        let key = r.value()?.ok_or("hstore key is NULL")?;
        let key = std::str::from_utf8(key)?.to_owned();
        let value = match r.value()? {
            None => Value::Null,
            Some(v) => Value::String(std::str::from_utf8(v)?.to_owned()),
        };
        out.insert(key, value);
    }
    r.finish("hstore")?;
    Ok(Value::Object(out))
}

/// Range: `"empty"` or `[lower,upper)` with PostgreSQL's brackets; each bound
/// is the text of its JSON form (strings bare), quoted when it has to be.
fn range(sub: &Type, raw: &[u8], depth: usize) -> Result<String, DecodeError> {
    use postgres_protocol::types::{Range, RangeBound};
    let (lower, upper) = match postgres_protocol::types::range_from_sql(raw)? {
        Range::Empty => return Ok("empty".to_owned()),
        Range::Nonempty(lower, upper) => (lower, upper),
    };
    let mut out = String::new();
    let bound = |out: &mut String, b: RangeBound<Option<&[u8]>>| -> Result<bool, DecodeError> {
        let (value, inclusive) = match b {
            RangeBound::Inclusive(v) => (v, true),
            RangeBound::Exclusive(v) => (v, false),
            RangeBound::Unbounded => (None, false),
        };
        if let Some(v) = value {
            let text = match element(sub, v, depth + 1)? {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            range_bound_text(&text, out);
        }
        Ok(inclusive)
    };
    let lower_pos = out.len();
    let lower_inclusive = bound(&mut out, lower)?;
    out.insert(lower_pos, if lower_inclusive { '[' } else { '(' });
    out.push(',');
    let upper_inclusive = bound(&mut out, upper)?;
    out.push(if upper_inclusive { ']' } else { ')' });
    Ok(out)
}

/// A range bound as `range_out` writes it: double-quoted (with `"` and `\`
/// doubled) when empty or holding a bracket, comma, quote, backslash or space.
fn range_bound_text(text: &str, out: &mut String) {
    let special =
        |c: char| matches!(c, '"' | '\\' | '(' | ')' | '[' | ']' | ',') || c.is_whitespace();
    if !text.is_empty() && !text.chars().any(special) {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('"');
}

/// Multirange: `count: i32`, then each range length-prefixed; `{r1,r2}`.
fn multirange(sub: &Type, raw: &[u8], depth: usize) -> Result<String, DecodeError> {
    let mut r = Reader(raw);
    let n = r.i32()?;
    let mut out = String::from("{");
    for i in 0..n.max(0) {
        if i > 0 {
            out.push(',');
        }
        let v = r.value()?.ok_or("NULL range in multirange")?;
        out.push_str(&range(sub, v, depth + 1)?);
    }
    r.finish("multirange")?;
    out.push('}');
    Ok(out)
}
