//! The row tools' answer, written once while the rows arrive.
//!
//! Why: `readonly_query`, `transact` and `get_schema` answer with every row twice, as one
//! pretty JSON text per row and again as objects in `structuredContent` (the reference's
//! shape). Built through JSON values, each row of a 1,000-row answer was decoded into a
//! map, printed for its size, printed again as its text, then serialized by the transport
//! with the text escaped once more; a 100,000-row answer held the rows, their texts and the
//! serialized response at once. Here each value is decoded once, without becoming a JSON
//! value unless it is a nested document ([`Cell`]), and written once as compact JSON into
//! the row object; the row's pretty text reuses those bytes and is escaped into its text
//! block, already in its final form for the JSON-RPC line. The transport writes both
//! buffers as they are (`stdio::Splices`), and nothing else holds the rows.
//!
//! The bytes are exactly what serde_json and rmcp would produce for the same values (a
//! unit test keeps them equal), so the answer does not depend on which path wrote it.

use rmcp::model::ContentBlock;
use serde_json::Value;
use tokio_postgres::Row;

use super::Cell;
use crate::config::TextFormat;

/// `{"type":"text","text":` … `}`: how rmcp writes a text content block, around the
/// text's JSON string.
const BLOCK_OPEN: &[u8] = br#"{"type":"text","text":"#;
const BLOCK_CLOSE: &[u8] = b"}";

/// How many bytes a [`Pieces`] buffer fills before it starts the next piece.
const PIECE: usize = 1 << 20;

/// Bytes appended in pieces of about [`PIECE`] bytes that never move once full.
///
/// Why not one `Vec`: a 100,000-row answer is tens of megabytes, and a vector grown by
/// doubling copies itself at every step. Where the allocator cannot grow it in place (glibc
/// serves such sizes from its heap once a large block has been freed) the old and the new
/// copy are both resident, and the freed copies stay with the process: measured, peak RSS
/// rose from 2.0× to 2.8× the answer over five such calls. In pieces, what is resident is
/// the answer plus one piece, whatever the allocator does. The transport writes the pieces
/// one after the other (`splice::Placed::pieces`).
#[derive(Clone, Debug)]
pub struct Pieces {
    /// Pieces that are full, in order.
    full: Vec<Vec<u8>>,
    /// Their bytes in all.
    full_len: usize,
    /// The piece being written.
    tail: Vec<u8>,
    /// When the tail counts as full.
    piece: usize,
}

impl Pieces {
    /// An empty buffer whose pieces hold about `piece` bytes each (at least one).
    pub fn new(piece: usize) -> Pieces {
        Pieces {
            full: Vec::new(),
            full_len: 0,
            tail: Vec::new(),
            piece: piece.max(1),
        }
    }

    /// Every byte written so far.
    pub fn len(&self) -> usize {
        self.full_len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The piece to append to: the tail, or a new one when the tail is full. Whatever one
    /// row writes goes into one piece, so offsets within a row are offsets in it.
    fn tail(&mut self) -> &mut Vec<u8> {
        if self.tail.len() >= self.piece {
            let next = Vec::with_capacity(self.piece + self.piece / 8);
            let full = std::mem::replace(&mut self.tail, next);
            self.full_len += full.len();
            self.full.push(full);
        }
        &mut self.tail
    }

    /// Keeps the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        while len < self.full_len {
            let Some(last) = self.full.pop() else { break };
            self.full_len -= last.len();
            self.tail = last;
        }
        self.tail.truncate(len.saturating_sub(self.full_len));
    }

    /// The bytes, piece by piece, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.full
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(self.tail.as_slice()))
    }

    /// The bytes in one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len());
        self.pieces().for_each(|p| all.extend_from_slice(p));
        all
    }
}

impl Default for Pieces {
    fn default() -> Pieces {
        Pieces::new(PIECE)
    }
}

/// Equal when the bytes are, however they are cut into pieces.
impl PartialEq for Pieces {
    fn eq(&self, other: &Pieces) -> bool {
        self.len() == other.len() && self.to_vec() == other.to_vec()
    }
}

/// Rows rendered for the answer: comma-separated text blocks and comma-separated objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderedRows {
    /// `{"type":"text","text":"<the row, pretty-printed, escaped>"}`, comma-separated.
    pub blocks: Pieces,
    /// The rows as compact JSON objects, comma-separated.
    pub objects: Pieces,
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
fn list<T: serde::de::DeserializeOwned>(items: &Pieces) -> Vec<T> {
    let mut list = Vec::with_capacity(items.len() + 2);
    list.push(b'[');
    items.pieces().for_each(|p| list.extend_from_slice(p));
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

/// One key of the row object.
struct Key {
    /// The key as a JSON string, `"name"`.
    json: Vec<u8>,
    /// What the pretty text has before the key's value (`{` or `,`, a new line, the
    /// indent, the key and `": "`), already escaped for the text block: for the first
    /// key and for the others.
    first: Vec<u8>,
    next: Vec<u8>,
    /// The column whose value it takes.
    column: usize,
}

/// Renders the rows of one result (its columns are fixed at the first row).
pub struct RowRenderer {
    /// The keys in output order. A repeated column name keeps its first position and
    /// takes the last value, as a JSON map built column by column does
    /// (`value::row_to_object`).
    keys: Vec<Key>,
    /// How each row's text copy is printed (`--text-format`).
    format: TextFormat,
    /// One nested value's pretty text, before it is indented into the text block.
    nested: Vec<u8>,
    pub rows: RenderedRows,
}

/// How serde_json escapes one byte inside a JSON string: the one rule that both
/// [`escape_into`] and the executor's size count (`executor::response_size`) follow.
#[derive(Clone, Copy)]
enum Escape {
    /// Written as it is.
    Plain,
    /// A backslash and this letter (`\n`, `\"`, ...).
    Short(u8),
    /// `\u00` and two hex digits.
    Unicode,
}

impl Escape {
    fn of(b: u8) -> Escape {
        match b {
            b'"' => Escape::Short(b'"'),
            b'\\' => Escape::Short(b'\\'),
            b'\n' => Escape::Short(b'n'),
            b'\r' => Escape::Short(b'r'),
            b'\t' => Escape::Short(b't'),
            0x08 => Escape::Short(b'b'),
            0x0c => Escape::Short(b'f'),
            0..=0x1f => Escape::Unicode,
            _ => Escape::Plain,
        }
    }

    /// The bytes it takes once escaped.
    fn len(self) -> usize {
        match self {
            Escape::Plain => 1,
            Escape::Short(_) => 2,
            Escape::Unicode => 6,
        }
    }
}

/// What `text` takes once escaped into a JSON string, without writing it: its bytes and
/// how many line breaks it held.
pub(crate) fn escaped_size(text: &[u8]) -> (usize, usize) {
    text.iter().fold((0, 0), |(bytes, lines), &b| {
        (bytes + Escape::of(b).len(), lines + usize::from(b == b'\n'))
    })
}

/// The bytes a row's text block adds besides its escaped text: the block's frame, the
/// text's quotes and the comma between items.
pub(crate) const TEXT_BLOCK_FRAME: usize = BLOCK_OPEN.len() + BLOCK_CLOSE.len() + 3;

/// Appends JSON `text` to `out` escaped as the inside of a JSON string, exactly as
/// serde_json escapes a string (the unit tests compare them); returns how many line
/// breaks it held.
///
/// Why by hand: the text block of every row is the row's JSON escaped once more, and
/// escaping it piece by piece as it is written (a number needs no escape at all) costs a
/// fraction of building the text and handing it to serde_json's string writer.
fn escape_into(out: &mut Vec<u8>, text: &[u8]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut lines = 0;
    let mut plain = 0;
    for (i, &b) in text.iter().enumerate() {
        let escape = Escape::of(b);
        if let Escape::Plain = escape {
            continue;
        }
        out.extend_from_slice(&text[plain..i]);
        plain = i + 1;
        match escape {
            Escape::Short(letter) => {
                lines += usize::from(b == b'\n');
                out.extend_from_slice(&[b'\\', letter]);
            }
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
    }
    out.extend_from_slice(&text[plain..]);
    lines
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
        let mut plan: Vec<(&str, usize)> = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            match plan.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = i,
                None => plan.push((name, i)),
            }
        }
        let keys = plan
            .into_iter()
            .map(|(name, column)| {
                let json = serde_json::to_vec(name).unwrap_or_default();
                let before = |opening: &[u8]| {
                    let mut escaped = Vec::new();
                    escape_into(&mut escaped, &[opening, b"\n  ", &json, b": "].concat());
                    escaped
                };
                Key {
                    first: before(b"{"),
                    next: before(b","),
                    json,
                    column,
                }
            })
            .collect();
        RowRenderer {
            keys,
            format: TextFormat::Pretty,
            nested: Vec::new(),
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
    /// at the same row. A value that does not decode takes back what the row wrote.
    pub fn push(&mut self, row: &Row) -> Result<usize, tokio_postgres::Error> {
        let mark = self.mark();
        let written = self.write(|column| row.try_get::<_, Cell<'_>>(column));
        if written.is_err() {
            self.rewind(mark);
        }
        written
    }

    /// Renders one row given as every column's value, in column order.
    pub fn push_values(&mut self, row: &[Value]) -> usize {
        let cell = |column: usize| {
            Ok::<_, std::convert::Infallible>(Cell::Json(
                row.get(column).cloned().unwrap_or(Value::Null),
            ))
        };
        match self.write(cell) {
            Ok(size) => size,
            Err(never) => match never {},
        }
    }

    /// Writes one row whose cells `cell` gives by column; returns its bytes as `push`
    /// counts them.
    ///
    /// Each cell is written once, as compact JSON into the row object. The row's text is
    /// laid out as serde_json's pretty printer lays out a map (a nested value printed on
    /// its own, then indented one level) and escaped into its block while it is written,
    /// from the same bytes. The unit tests hold both byte for byte to serde_json's output
    /// for the same values.
    fn write<'r, E>(
        &mut self,
        mut cell: impl FnMut(usize) -> Result<Cell<'r>, E>,
    ) -> Result<usize, E> {
        let pretty = self.format == TextFormat::Pretty;
        let RenderedRows {
            blocks,
            objects,
            count,
        } = &mut self.rows;
        let (blocks, objects) = (blocks.tail(), objects.tail());
        if *count > 0 {
            blocks.push(b',');
            objects.push(b',');
        }
        blocks.extend_from_slice(BLOCK_OPEN);
        blocks.push(b'"');
        let text_start = blocks.len();
        let mut lines = 1;
        let row_start = objects.len();
        objects.push(b'{');
        for (k, key) in self.keys.iter().enumerate() {
            let value = cell(key.column)?;
            if k > 0 {
                objects.push(b',');
            }
            objects.extend_from_slice(&key.json);
            objects.push(b':');
            let value_start = objects.len();
            value.write_json(objects);
            if pretty {
                blocks.extend_from_slice(if k == 0 { &key.first } else { &key.next });
                lines += 1;
                match value.nested() {
                    None => lines += escape_into(blocks, &objects[value_start..]),
                    Some(nested) => {
                        self.nested.clear();
                        let _ = serde_json::to_writer_pretty(&mut self.nested, nested);
                        // One level deeper: every line after the first gains the
                        // indent (strings hold no raw newline).
                        for line in self.nested.split_inclusive(|&b| b == b'\n') {
                            lines += escape_into(blocks, line);
                            if line.ends_with(b"\n") {
                                blocks.extend_from_slice(b"  ");
                            }
                        }
                    }
                }
            }
        }
        objects.push(b'}');
        let json_bytes = objects.len() - row_start;
        if !pretty {
            lines += escape_into(blocks, &objects[row_start..]);
        } else if self.keys.is_empty() {
            blocks.extend_from_slice(b"{}");
        } else {
            blocks.extend_from_slice(b"\\n}");
            lines += 1;
        }
        let text_bytes = blocks.len() - text_start;
        blocks.push(b'"');
        blocks.extend_from_slice(BLOCK_CLOSE);
        *count += 1;
        Ok(json_bytes + text_bytes + 4 * lines + TEXT_BLOCK_FRAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            let mut ours = Vec::new();
            let lines = escape_into(&mut ours, text.as_bytes());
            let theirs = serde_json::to_string(text).unwrap();
            assert_eq!(
                format!("\"{}\"", String::from_utf8(ours.clone()).unwrap()),
                theirs
            );
            assert_eq!(lines, text.matches('\n').count());
            assert_eq!(escaped_size(text.as_bytes()), (ours.len(), lines));
        }
    }

    #[test]
    fn a_text_block_is_written_as_rmcp_writes_it() {
        let text = "x\n\"y\" \\ \u{1} é";
        let mut ours = BLOCK_OPEN.to_vec();
        serde_json::to_writer(&mut ours, text).unwrap();
        ours.extend_from_slice(BLOCK_CLOSE);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&ContentBlock::text(text)).unwrap()
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

    /// Renders `rows` and checks every byte against serde_json's output for the same rows
    /// built as maps: the objects, the text blocks (pretty or compact), and each row's size
    /// as the executor counts a map.
    fn renders_as_serde_json_does(names: &[&str], rows: &[Vec<Value>], format: TextFormat) {
        let mut r = RowRenderer::with_columns(names.iter().copied()).format(format);
        let sizes: Vec<usize> = rows.iter().map(|row| r.push_values(row)).collect();
        let expected = maps(names, rows);
        assert_eq!(r.rows.count, rows.len());
        assert_eq!(
            String::from_utf8([b"[".as_slice(), &r.rows.objects.to_vec(), b"]"].concat()).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        let texts: Vec<ContentBlock> = expected
            .iter()
            .map(|m| {
                ContentBlock::text(match format {
                    TextFormat::Pretty => serde_json::to_string_pretty(m).unwrap(),
                    TextFormat::Compact => serde_json::to_string(m).unwrap(),
                })
            })
            .collect();
        assert_eq!(
            String::from_utf8([b"[".as_slice(), &r.rows.blocks.to_vec(), b"]"].concat()).unwrap(),
            serde_json::to_string(&texts).unwrap()
        );
        let (blocks, objects) = r.rows.to_values();
        assert_eq!(blocks, texts);
        assert_eq!(objects.len(), rows.len());
        if format == TextFormat::Pretty {
            for (size, map) in sizes.iter().zip(&expected) {
                assert_eq!(*size, crate::executor::response_size(map));
            }
        }
    }

    #[test]
    fn rendered_rows_equal_the_rows_built_as_values() {
        // A repeated name keeps its first position and takes the last value.
        let names = ["id", "doc", "id", "note", "list", "empty"];
        let rows = vec![
            vec![
                Value::from(1),
                json!({"k": ["a", 1.5, null, {"deep": [[]]}], "e": {}, "s": "x\ny"}),
                Value::from(2),
                Value::from("line\nbreak \"q\" \u{1} \\ é 🦀 \u{2028}"),
                json!([1, [2, [3]], {"a": {}}]),
                json!({}),
            ],
            vec![
                Value::Null,
                json!([]),
                Value::from(-3),
                Value::from(""),
                json!([true]),
                json!([]),
            ],
            vec![
                Value::from(u64::MAX),
                json!(0.1),
                Value::from(i64::MIN),
                json!(1e300),
                json!("\u{7f}"),
                json!(false),
            ],
        ];
        for format in [TextFormat::Pretty, TextFormat::Compact] {
            renders_as_serde_json_does(&names, &rows, format);
            renders_as_serde_json_does(&[], &[vec![], vec![]], format);
            renders_as_serde_json_does(&["only"], &[], format);
            renders_as_serde_json_does(&["a \"quoted\"\nname"], &[vec![json!({"x": 1})]], format);
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
        assert_eq!(r.rows.objects.to_vec(), br#"{"a":1},{"a":2}"#);
    }

    /// Appends, marks and truncates through `Pieces` cut every way and through one
    /// vector: the bytes agree after every step.
    #[test]
    fn pieces_hold_the_bytes_however_they_are_cut() {
        for piece in [1, 3, 7, 64, PIECE] {
            let mut pieces = Pieces::new(piece);
            let mut plain: Vec<u8> = Vec::new();
            let mut marks = Vec::new();
            for step in 0..200usize {
                let bytes: Vec<u8> = (0..step % 11).map(|i| (step * 7 + i) as u8).collect();
                marks.push(plain.len());
                pieces.tail().extend_from_slice(&bytes);
                plain.extend_from_slice(&bytes);
                if step % 9 == 8 {
                    // Back to a mark a few appends ago, across pieces when they are small.
                    let mark = marks[marks.len() - 4];
                    pieces.truncate(mark);
                    plain.truncate(mark);
                    marks.retain(|m| *m <= mark);
                }
                assert_eq!(pieces.len(), plain.len(), "piece {piece}, step {step}");
                assert_eq!(pieces.to_vec(), plain, "piece {piece}, step {step}");
            }
            let cut: Vec<&[u8]> = pieces.pieces().collect();
            assert_eq!(cut.concat(), plain);
            if piece < 64 {
                assert!(cut.len() > 10, "piece {piece}: {} pieces", cut.len());
                assert!(cut.iter().rev().skip(1).all(|p| p.len() >= piece));
            }
            pieces.truncate(0);
            assert!(pieces.is_empty());
            assert_eq!(pieces.pieces().count(), 1);
        }
    }

    /// An answer of several megabytes spans pieces; its bytes are still serde_json's, and a
    /// row taken back just after it started a new piece leaves no trace.
    #[test]
    fn a_large_answer_spans_pieces() {
        let names = ["id", "note"];
        let note = "x\"y\n".repeat(40);
        let rows: Vec<Vec<Value>> = (0..8_000)
            .map(|i| vec![Value::from(i), Value::from(format!("{i} {note}"))])
            .collect();
        renders_as_serde_json_does(&names, &rows, TextFormat::Pretty);

        let mut r = RowRenderer::with_columns(names);
        let mut rewound_across = 0;
        for row in &rows {
            let before = r.rows.clone();
            let (full_blocks, full_objects) = (r.rows.blocks.full.len(), r.rows.objects.full.len());
            let mark = r.mark();
            r.push_values(row);
            if r.rows.blocks.full.len() > full_blocks || r.rows.objects.full.len() > full_objects {
                r.rewind(mark);
                assert_eq!(r.rows, before);
                rewound_across += 1;
                r.push_values(row);
            }
        }
        assert!(
            r.rows.blocks.full.len() >= 2,
            "{}",
            r.rows.blocks.full.len()
        );
        assert!(!r.rows.objects.full.is_empty());
        assert!(rewound_across >= 3, "{rewound_across}");
        let mut whole = RowRenderer::with_columns(names);
        for row in &rows {
            whole.push_values(row);
        }
        assert_eq!(r.rows.blocks.to_vec(), whole.rows.blocks.to_vec());
        assert_eq!(r.rows.objects.to_vec(), whole.rows.objects.to_vec());
    }

    #[test]
    fn compact_text_is_the_compact_json_of_the_row() {
        let mut r = RowRenderer::with_columns(["a", "b"]).format(TextFormat::Compact);
        r.push_values(&[Value::from(1), serde_json::json!({"x": "y"})]);
        let (blocks, _) = r.rows.to_values();
        assert_eq!(blocks, vec![ContentBlock::text(r#"{"a":1,"b":{"x":"y"}}"#)]);
    }
}
