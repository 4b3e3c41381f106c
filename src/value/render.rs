//! The row tools' answer, written once while the rows arrive.
//!
//! Why: `readonly_query`, `transact` and `get_schema` answer with every row twice, as one
//! pretty JSON text per row and again as objects in `structuredContent` (the reference's
//! shape). Built through JSON values, each row of a 1,000-row answer was decoded into a
//! map, printed for its size, printed again as its text, then serialized by the transport
//! with the text escaped once more; a 100,000-row answer held the rows, their texts and the
//! serialized response at once. Here each row goes straight into its two final forms, the
//! text block already escaped for the JSON-RPC line and the compact object, so the
//! transport can write those bytes as they are (`stdio::Splices`) and nothing else holds
//! the rows.
//!
//! The bytes are exactly what serde_json and rmcp would produce for the same values (a
//! unit test keeps them equal), so the answer does not depend on which path wrote it.

use rmcp::model::ContentBlock;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use tokio_postgres::Row;

use super::JsonCell;
use crate::config::TextFormat;

/// `{"type":"text","text":"` … `"}`: how rmcp writes a text content block.
const BLOCK_OPEN: &[u8] = br#"{"type":"text","text":""#;
const BLOCK_CLOSE: &[u8] = br#""}"#;

/// Rows rendered for the answer: comma-separated text blocks and comma-separated objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderedRows {
    /// `{"type":"text","text":"<the row, pretty-printed, escaped>"}`, comma-separated.
    pub blocks: Vec<u8>,
    /// The rows as compact JSON objects, comma-separated.
    pub objects: Vec<u8>,
    /// How many rows.
    pub count: usize,
}

impl RenderedRows {
    /// The text blocks and the row objects as values, for a transport that serializes the
    /// answer itself.
    pub fn to_values(&self) -> (Vec<ContentBlock>, Vec<Value>) {
        (list(&self.blocks), list(&self.objects))
    }
}

/// Comma-separated JSON items, parsed as a list.
fn list<T: serde::de::DeserializeOwned>(items: &[u8]) -> Vec<T> {
    let mut list = Vec::with_capacity(items.len() + 2);
    list.push(b'[');
    list.extend_from_slice(items);
    list.push(b']');
    // Written by this module from JSON values: always valid.
    serde_json::from_slice(&list).unwrap_or_default()
}

/// Where a row's bytes start, to take the row back when it does not fit.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    blocks: usize,
    objects: usize,
    count: usize,
}

/// Renders the rows of one result (its columns are fixed at the first row).
pub struct RowRenderer {
    /// For each key in output order: its name and the column whose value it takes. A
    /// repeated column name keeps its first position and takes the last value, as a JSON
    /// map built column by column does (`value::row_to_object`).
    plan: Vec<(String, usize)>,
    values: Vec<Value>,
    /// How each row's text copy is printed (`--text-format`).
    format: TextFormat,
    pub rows: RenderedRows,
}

impl RowRenderer {
    pub fn new(row: &Row, format: TextFormat) -> RowRenderer {
        RowRenderer::with_columns(row.columns().iter().map(|c| c.name())).format(format)
    }

    /// The same renderer, printing each row's text as `format` says (default: pretty).
    pub fn format(mut self, format: TextFormat) -> RowRenderer {
        self.format = format;
        self
    }

    /// A renderer for rows with these column names, in order.
    pub fn with_columns<'a>(names: impl IntoIterator<Item = &'a str>) -> RowRenderer {
        let mut plan: Vec<(String, usize)> = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            match plan.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = i,
                None => plan.push((name.to_owned(), i)),
            }
        }
        RowRenderer {
            values: Vec::with_capacity(plan.len()),
            format: TextFormat::Pretty,
            plan,
            rows: RenderedRows::default(),
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            blocks: self.rows.blocks.len(),
            objects: self.rows.objects.len(),
            count: self.rows.count,
        }
    }

    /// Takes back everything rendered since `mark`.
    pub fn rewind(&mut self, mark: Mark) {
        self.rows.blocks.truncate(mark.blocks);
        self.rows.objects.truncate(mark.objects);
        self.rows.count = mark.count;
    }

    /// Renders one row; returns the bytes it adds to the answer, counted as
    /// `executor::response_size` counts a row built as a map, so both paths cut a result
    /// at the same row.
    pub fn push(&mut self, row: &Row) -> Result<usize, tokio_postgres::Error> {
        self.values.clear();
        for &(_, i) in &self.plan {
            let JsonCell(v) = row.try_get(i)?;
            self.values.push(v);
        }
        Ok(self.write())
    }

    /// Renders one row given as every column's value, in column order.
    pub fn push_values(&mut self, row: &[Value]) -> usize {
        self.values.clear();
        for &(_, i) in &self.plan {
            self.values.push(row.get(i).cloned().unwrap_or(Value::Null));
        }
        self.write()
    }

    /// Writes the row in `self.values`; returns its bytes as `push` counts them.
    fn write(&mut self) -> usize {
        let view = RowView {
            plan: &self.plan,
            values: &self.values,
        };
        let rows = &mut self.rows;
        if rows.count > 0 {
            rows.blocks.push(b',');
            rows.objects.push(b',');
        }
        rows.blocks.extend_from_slice(BLOCK_OPEN);
        let mut text = Escaping {
            out: &mut rows.blocks,
            bytes: 0,
            lines: 1,
        };
        // Serializing JSON values into memory cannot fail.
        let _ = match self.format {
            TextFormat::Pretty => view.serialize(&mut serde_json::Serializer::pretty(&mut text)),
            TextFormat::Compact => view.serialize(&mut serde_json::Serializer::new(&mut text)),
        };
        let (text_bytes, lines) = (text.bytes, text.lines);
        rows.blocks.extend_from_slice(BLOCK_CLOSE);
        let before = rows.objects.len();
        let _ = serde_json::to_writer(&mut rows.objects, &view);
        let json_bytes = rows.objects.len() - before;
        rows.count += 1;
        json_bytes + text_bytes + 4 * lines + BLOCK_OPEN.len() + BLOCK_CLOSE.len() + 1
    }
}

/// One row as a JSON object, keys in the plan's order.
struct RowView<'a> {
    plan: &'a [(String, usize)],
    values: &'a [Value],
}

impl Serialize for RowView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.plan.len()))?;
        for ((name, _), value) in self.plan.iter().zip(self.values) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Writes text into `out` escaped as the inside of a JSON string, as serde_json escapes
/// (short escapes for `"` `\` and `\b \f \n \r \t`, `\u00xx` for other control bytes,
/// everything else as it is); counts the escaped bytes and the lines.
pub struct Escaping<'a> {
    pub out: &'a mut Vec<u8>,
    pub bytes: usize,
    pub lines: usize,
}

impl std::io::Write for Escaping<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let start = self.out.len();
        let mut plain = 0;
        for (i, &b) in buf.iter().enumerate() {
            let short = match b {
                b'"' => b'"',
                b'\\' => b'\\',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0x08 => b'b',
                0x0c => b'f',
                0..=0x1f => 0,
                _ => continue,
            };
            self.out.extend_from_slice(&buf[plain..i]);
            plain = i + 1;
            if short == 0 {
                self.out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
            } else {
                self.out.extend_from_slice(&[b'\\', short]);
            }
            self.lines += usize::from(b == b'\n');
        }
        self.out.extend_from_slice(&buf[plain..]);
        self.bytes += self.out.len() - start;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> (String, usize) {
        let mut out = Vec::new();
        let mut e = Escaping {
            out: &mut out,
            bytes: 0,
            lines: 1,
        };
        std::io::Write::write_all(&mut e, text.as_bytes()).unwrap();
        let lines = e.lines;
        (String::from_utf8(out).unwrap(), lines)
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for text in [
            "plain",
            "",
            "quote \" and backslash \\",
            "lines\nand\r\ttabs",
            "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f}",
            "unicode é 日本 🦀 \u{2028}",
            "{\n  \"a\": \"b\\n\"\n}",
        ] {
            let (ours, lines) = escaped(text);
            let theirs = serde_json::to_string(text).unwrap();
            assert_eq!(format!("\"{ours}\""), theirs, "{text:?}");
            assert_eq!(lines, 1 + text.matches('\n').count());
        }
    }

    #[test]
    fn a_text_block_is_written_as_rmcp_writes_it() {
        let block = ContentBlock::text("x\n\"y\"");
        let mut ours = BLOCK_OPEN.to_vec();
        let (inner, _) = escaped("x\n\"y\"");
        ours.extend_from_slice(inner.as_bytes());
        ours.extend_from_slice(BLOCK_CLOSE);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&block).unwrap()
        );
    }

    #[test]
    fn a_row_view_keeps_the_plans_order() {
        let plan = vec![("b".to_owned(), 0), ("a".to_owned(), 1)];
        let values = vec![Value::from(1), serde_json::json!({"x": [1, "y"]})];
        let view = RowView {
            plan: &plan,
            values: &values,
        };
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            r#"{"b":1,"a":{"x":[1,"y"]}}"#
        );
        let mut map = serde_json::Map::new();
        map.insert("b".into(), values[0].clone());
        map.insert("a".into(), values[1].clone());
        assert_eq!(
            serde_json::to_string_pretty(&view).unwrap(),
            serde_json::to_string_pretty(&map).unwrap()
        );
    }

    /// Rows as maps, built the way `value::row_to_object` builds them.
    fn maps(names: &[&str], rows: &[Vec<Value>]) -> Vec<serde_json::Map<String, Value>> {
        rows.iter()
            .map(|row| {
                let mut map = serde_json::Map::new();
                for (name, v) in names.iter().zip(row) {
                    map.insert((*name).to_owned(), v.clone());
                }
                map
            })
            .collect()
    }

    #[test]
    fn rendered_rows_equal_the_rows_built_as_values() {
        let names = ["id", "doc", "id", "note"];
        let rows = vec![
            vec![
                Value::from(1),
                serde_json::json!({"k": ["a", 1.5, null], "e": {}}),
                Value::from(2),
                Value::from("line\nbreak \"q\" \u{1} é 🦀"),
            ],
            vec![
                Value::Null,
                serde_json::json!([]),
                Value::from(3),
                Value::from(""),
            ],
        ];
        let mut r = RowRenderer::with_columns(names);
        let sizes: Vec<usize> = rows.iter().map(|row| r.push_values(row)).collect();
        let expected = maps(&names, &rows);
        let (blocks, objects) = r.rows.to_values();
        assert_eq!(r.rows.count, 2);
        assert_eq!(
            objects,
            expected
                .iter()
                .cloned()
                .map(Value::Object)
                .collect::<Vec<_>>()
        );
        let texts: Vec<ContentBlock> = expected
            .iter()
            .map(|m| ContentBlock::text(serde_json::to_string_pretty(m).unwrap()))
            .collect();
        assert_eq!(blocks, texts);
        // Byte for byte what serde_json writes for the same lists.
        assert_eq!(
            [b"[".as_slice(), &r.rows.objects, b"]"].concat(),
            serde_json::to_vec(&expected).unwrap()
        );
        assert_eq!(
            [b"[".as_slice(), &r.rows.blocks, b"]"].concat(),
            serde_json::to_vec(&texts).unwrap()
        );
        // Sizes as the executor counts a row built as a map.
        for (size, map) in sizes.iter().zip(&expected) {
            assert_eq!(*size, crate::executor::response_size(map));
        }
    }

    #[test]
    fn a_rewound_row_leaves_no_trace() {
        let mut r = RowRenderer::with_columns(["a"]);
        r.push_values(&[Value::from(1)]);
        let before = r.rows.clone();
        let mark = r.mark();
        r.push_values(&[Value::from("too big")]);
        r.rewind(mark);
        assert_eq!(r.rows, before);
        r.push_values(&[Value::from(2)]);
        assert_eq!(r.rows.objects, br#"{"a":1},{"a":2}"#);
    }

    #[test]
    fn compact_text_is_the_compact_json_of_the_row() {
        let mut r = RowRenderer::with_columns(["a", "b"]).format(TextFormat::Compact);
        r.push_values(&[Value::from(1), serde_json::json!({"x": "y"})]);
        let (blocks, _) = r.rows.to_values();
        assert_eq!(blocks, vec![ContentBlock::text(r#"{"a":1,"b":{"x":"y"}}"#)]);
    }
}
