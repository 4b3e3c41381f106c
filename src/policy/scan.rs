//! A small lexical pre-pass over caller SQL, run before the real parser.
//!
//! sqlparser-dsql does not know PostgreSQL's Unicode-escaped identifiers
//! (`U&"pg_sl\0065ep"` reads to it as `U & "pg_sl\0065ep"`, an AND with a
//! harmless-looking call), nor the `UESCAPE` clause. This pass decodes both
//! `U&"…"` and `U&'…'` (with `UESCAPE`) into plain quoted forms, so that the
//! guard checks, and the server then sends, text whose names are spelled out.
//! It also refuses non-ASCII whitespace outside quotes (PostgreSQL reads it as
//! part of an identifier, sqlparser as a separator) and shortens long runs of
//! whitespace, which keeps pathological inputs cheap for the parser.
//!
//! The scan is a single linear pass; everything it cannot decode is an error
//! (the guard fails closed on it).

/// Whitespace runs at least this long are shortened (keeping their line breaks).
const COLLAPSE_RUN: usize = 64;

/// Receives the pieces of SQL text the lexer walks over.
pub(crate) trait Sink {
    /// Text outside code: string literals, quoted names, comments, dollar quotes.
    fn opaque(&mut self, text: &str);
    /// Code: one character, or a parameter like `$1`.
    fn code(&mut self, text: &str);
    /// A run of ASCII whitespace between tokens.
    fn space(&mut self, run: &str);
    /// A `U&'…'` / `U&"…"` literal (with its `UESCAPE` clause), decoded.
    fn unicode(&mut self, original: &str, decoded: &str, quote: u8);
}

/// Rewrites `sql` as described in the module docs.
pub(crate) fn normalize(sql: &str) -> Result<String, String> {
    struct Normal(String);
    impl Sink for Normal {
        fn opaque(&mut self, text: &str) {
            self.0.push_str(text);
        }
        fn code(&mut self, text: &str) {
            self.0.push_str(text);
        }
        fn space(&mut self, run: &str) {
            if run.len() < COLLAPSE_RUN {
                self.0.push_str(run);
            } else {
                let newlines = run.bytes().filter(|&x| x == b'\n').count();
                if newlines == 0 {
                    self.0.push(' ');
                } else {
                    self.0.extend(std::iter::repeat_n('\n', newlines));
                }
            }
        }
        fn unicode(&mut self, _original: &str, decoded: &str, quote: u8) {
            let q = quote as char;
            self.0.push(q);
            self.0.push_str(&decoded.replace(q, &format!("{q}{q}")));
            self.0.push(q);
        }
    }
    let mut sink = Normal(String::with_capacity(sql.len()));
    walk(sql, &mut sink)?;
    Ok(sink.0)
}

/// Breaks lines longer than `max` bytes at token boundaries in code (a space
/// becomes a line break, or a break follows `,` `(` `)` `;`), never inside a
/// literal, a name or a comment. Returns the new text and, for each of its
/// lines, the 1-based line of `sql` it came from.
///
/// dsql-lint converts every token's column to a byte offset by walking from
/// the start of its line, which is quadratic on one long line (a 3,000-row
/// INSERT written on one line takes tens of seconds); short lines keep it linear.
pub(crate) fn reflow(sql: &str, max: usize) -> Result<(String, Vec<usize>), String> {
    struct Reflow {
        out: String,
        lines: Vec<usize>,
        orig_line: usize,
        col: usize,
        max: usize,
    }
    impl Reflow {
        fn push(&mut self, text: &str) {
            for (k, part) in text.split('\n').enumerate() {
                if k > 0 {
                    self.out.push('\n');
                    self.orig_line += 1;
                    self.lines.push(self.orig_line);
                    self.col = 0;
                }
                self.out.push_str(part);
                self.col += part.len();
            }
        }
        fn brk(&mut self) {
            self.out.push('\n');
            self.lines.push(self.orig_line);
            self.col = 0;
        }
    }
    impl Sink for Reflow {
        fn opaque(&mut self, text: &str) {
            self.push(text);
        }
        fn code(&mut self, text: &str) {
            self.push(text);
            if self.col > self.max && matches!(text, "," | "(" | ")" | ";") {
                self.brk();
            }
        }
        fn space(&mut self, run: &str) {
            if self.col > self.max && !run.contains('\n') {
                self.brk();
            } else {
                self.push(run);
            }
        }
        fn unicode(&mut self, original: &str, _decoded: &str, _quote: u8) {
            self.push(original);
        }
    }
    let mut sink = Reflow {
        out: String::with_capacity(sql.len() + sql.len() / max.max(1) + 1),
        lines: vec![1],
        orig_line: 1,
        col: 0,
        max,
    };
    walk(sql, &mut sink)?;
    Ok((sink.out, sink.lines))
}

/// Byte ranges of the literals, quoted names and comments in `sql`, as this
/// lexer (which follows PostgreSQL's rules) reads them. The guard compares them
/// with sqlparser's tokens and refuses the statement when the two disagree.
pub(crate) fn opaque_spans(sql: &str) -> Result<Vec<(usize, usize)>, String> {
    struct Spans<'a> {
        base: &'a str,
        spans: Vec<(usize, usize)>,
    }
    impl Spans<'_> {
        fn add(&mut self, text: &str) {
            let start = text.as_ptr() as usize - self.base.as_ptr() as usize;
            self.spans.push((start, start + text.len()));
        }
    }
    impl Sink for Spans<'_> {
        fn opaque(&mut self, text: &str) {
            self.add(text);
        }
        fn code(&mut self, _text: &str) {}
        fn space(&mut self, _run: &str) {}
        fn unicode(&mut self, original: &str, _decoded: &str, _quote: u8) {
            self.add(original);
        }
    }
    let mut sink = Spans {
        base: sql,
        spans: Vec::new(),
    };
    walk(sql, &mut sink)?;
    Ok(sink.spans)
}

/// The lexer: one linear pass that tells code from literals, names and comments.
pub(crate) fn walk(sql: &str, sink: &mut impl Sink) -> Result<(), String> {
    let b = sql.as_bytes();
    let n = b.len();
    let mut i = 0;
    // What the previous significant character was, for "start of a token" decisions.
    let mut prev = Prev::Other;
    while i < n {
        let c = b[i];
        match c {
            b'\'' => {
                let end = skip_standard_string(b, i + 1);
                sink.opaque(&sql[i..end]);
                i = end;
                prev = Prev::Other;
            }
            b'"' => {
                let end = skip_quoted_ident(b, i + 1);
                sink.opaque(&sql[i..end]);
                i = end;
                prev = Prev::Word;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find(['\n', '\r']).map_or(n, |p| i + p);
                sink.opaque(&sql[i..end]);
                i = end;
                prev = Prev::Other;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = skip_block_comment(b, i + 2);
                sink.opaque(&sql[i..end]);
                i = end;
                prev = Prev::Other;
            }
            b'$' if prev != Prev::Word && prev != Prev::Number => {
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    // A parameter: `$` and its digits.
                    let mut j = i + 1;
                    while j < n && b[j].is_ascii_digit() {
                        j += 1;
                    }
                    sink.code(&sql[i..j]);
                    i = j;
                    prev = Prev::Number;
                } else if let Some(tag_end) = dollar_tag_end(b, i) {
                    let tag = &sql[i..=tag_end];
                    let body = tag_end + 1;
                    let end = sql[body..].find(tag).map_or(n, |p| body + p + tag.len());
                    sink.opaque(&sql[i..end]);
                    i = end;
                    prev = Prev::Other;
                } else {
                    sink.code("$");
                    i += 1;
                    prev = Prev::Other;
                }
            }
            b'e' | b'E' if prev != Prev::Word && b.get(i + 1) == Some(&b'\'') => {
                let end = skip_escape_string(b, i + 2);
                sink.opaque(&sql[i..end]);
                i = end;
                prev = Prev::Other;
            }
            b'u' | b'U'
                if prev != Prev::Word
                    && b.get(i + 1) == Some(&b'&')
                    && matches!(b.get(i + 2), Some(b'\'') | Some(b'"')) =>
            {
                let quote = b[i + 2];
                let (raw, after) = read_unicode_body(sql, i + 3, quote)?;
                let (escape, end) = read_uescape(sql, after)?;
                let decoded =
                    decode_unicode_escapes(&raw, escape).map_err(|e| format!("{e} at byte {i}"))?;
                if quote == b'"' && decoded.is_empty() {
                    return Err(format!("zero-length delimited identifier at byte {i}"));
                }
                sink.unicode(&sql[i..end], &decoded, quote);
                prev = if quote == b'"' {
                    Prev::Word
                } else {
                    Prev::Other
                };
                i = end;
            }
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                let mut j = i;
                while j < n && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                    j += 1;
                }
                sink.space(&sql[i..j]);
                i = j;
                prev = Prev::Other;
            }
            b'0'..=b'9' => {
                sink.code(&sql[i..i + 1]);
                i += 1;
                if prev != Prev::Word {
                    prev = Prev::Number;
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                sink.code(&sql[i..i + 1]);
                // An exponent marker continues a number; any other letter after
                // a number starts a new word (PostgreSQL 15 lexes `1e'x'` as `1`, `e'x'`).
                let exponent =
                    prev == Prev::Number && (c == b'e' || c == b'E') && exponent_follows(b, i + 1);
                if !exponent {
                    prev = Prev::Word;
                }
                i += 1;
            }
            _ if c < 0x80 => {
                sink.code(&sql[i..i + 1]);
                i += 1;
                let keeps =
                    (c == b'.' && prev == Prev::Number) || (c == b'$' && prev == Prev::Word);
                if !keeps {
                    prev = Prev::Other;
                }
            }
            _ => {
                let ch = sql[i..].chars().next().unwrap_or('\u{fffd}');
                if ch.is_whitespace() {
                    return Err(format!(
                        "non-ASCII whitespace U+{:04X} outside a string or quoted name at byte {i}",
                        ch as u32
                    ));
                }
                // PostgreSQL reads every non-ASCII character as part of an identifier.
                sink.code(&sql[i..i + ch.len_utf8()]);
                i += ch.len_utf8();
                prev = Prev::Word;
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    Word,
    Number,
    Other,
}

fn exponent_follows(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        Some(d) if d.is_ascii_digit() => true,
        Some(b'+') | Some(b'-') => b.get(i + 1).is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

/// End (exclusive) of a `'…'` string whose opening quote is just before `i`.
fn skip_standard_string(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// End (exclusive) of an `E'…'` string (backslash escapes) whose opening quote is just before `i`.
fn skip_escape_string(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_quoted_ident(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        if b[i] == b'"' {
            if b.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// End (exclusive) of a nested `/* … */` comment whose opener ends just before `i`.
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 1usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// If a dollar-quote tag (`$$` or `$tag$`) starts at `i`, the index of its closing `$`.
fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if j < b.len() && b[j] != b'$' && (b[j].is_ascii_digit() || !is_tag_char(b[j])) {
        return None;
    }
    while j < b.len() && b[j] != b'$' {
        if !is_tag_char(b[j]) {
            return None;
        }
        j += 1;
    }
    (j < b.len()).then_some(j)
}

fn is_tag_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Reads the body of a `U&'…'` or `U&"…"` starting at `i` (after the quote), with
/// doubled quotes undone. Returns the raw (still escaped) body and the index after
/// the closing quote.
fn read_unicode_body(sql: &str, mut i: usize, quote: u8) -> Result<(String, usize), String> {
    let b = sql.as_bytes();
    let start = i;
    let mut raw = String::new();
    let mut seg = i;
    while i < b.len() {
        if b[i] == quote {
            raw.push_str(&sql[seg..i]);
            if b.get(i + 1) == Some(&quote) {
                raw.push(quote as char);
                i += 2;
                seg = i;
                continue;
            }
            return Ok((raw, i + 1));
        }
        i += 1;
    }
    Err(format!(
        "unterminated Unicode-escaped {} starting at byte {}",
        if quote == b'"' {
            "identifier"
        } else {
            "string"
        },
        start.saturating_sub(3)
    ))
}

/// Looks for an optional `UESCAPE 'c'` after a Unicode literal ending at `i`.
/// Returns the escape character and the index after the clause (or `i`).
fn read_uescape(sql: &str, i: usize) -> Result<(char, usize), String> {
    let b = sql.as_bytes();
    let mut j = i;
    while j < b.len() && b[j].is_ascii_whitespace() {
        j += 1;
    }
    let word = b"uescape";
    let is_word = b.len() >= j + word.len()
        && b[j..j + word.len()].eq_ignore_ascii_case(word)
        && !b
            .get(j + word.len())
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80);
    if !is_word {
        return Ok(('\\', i));
    }
    j += word.len();
    while j < b.len() && b[j].is_ascii_whitespace() {
        j += 1;
    }
    let rest = &sql[j..];
    let mut chars = rest.chars();
    let (Some('\''), Some(esc), Some('\'')) = (chars.next(), chars.next(), chars.next()) else {
        return Err("UESCAPE must be followed by a one-character string literal".into());
    };
    if esc.is_ascii_hexdigit() || matches!(esc, '+' | '\'' | '"') || esc.is_whitespace() {
        return Err(format!("invalid Unicode escape character {esc:?}"));
    }
    Ok((esc, j + 2 + esc.len_utf8()))
}

/// Decodes PostgreSQL Unicode escapes (`\XXXX`, `\+XXXXXX`, doubled escape) in `raw`.
pub(crate) fn decode_unicode_escapes(raw: &str, esc: char) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut pending_high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != esc {
            if pending_high.is_some() {
                return Err("invalid Unicode surrogate pair".into());
            }
            out.push(c);
            continue;
        }
        let code = match chars.peek() {
            Some(&n) if n == esc => {
                chars.next();
                if pending_high.is_some() {
                    return Err("invalid Unicode surrogate pair".into());
                }
                out.push(esc);
                continue;
            }
            Some('+') => {
                chars.next();
                take_hex(&mut chars, 6)?
            }
            _ => take_hex(&mut chars, 4)?,
        };
        match (pending_high.take(), code) {
            (None, 0xD800..=0xDBFF) => pending_high = Some(code),
            (None, 0xDC00..=0xDFFF) => return Err("invalid Unicode surrogate pair".into()),
            (Some(hi), 0xDC00..=0xDFFF) => {
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (code - 0xDC00);
                out.push(char::from_u32(cp).ok_or("invalid Unicode escape value")?);
            }
            (Some(_), _) => return Err("invalid Unicode surrogate pair".into()),
            (None, 0) => return Err("invalid Unicode escape value: NUL is not allowed".into()),
            (None, cp) => out.push(char::from_u32(cp).ok_or("invalid Unicode escape value")?),
        }
    }
    if pending_high.is_some() {
        return Err("invalid Unicode surrogate pair".into());
    }
    Ok(out)
}

fn take_hex(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize) -> Result<u32, String> {
    let mut v = 0u32;
    for _ in 0..n {
        let d = chars
            .next()
            .and_then(|c| c.to_digit(16))
            .ok_or("invalid Unicode escape: expected hexadecimal digits")?;
        v = v * 16 + d;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_identifiers_and_strings() {
        assert_eq!(
            normalize(r#"SELECT U&"pg_sl\0065ep"(10)"#).unwrap(),
            r#"SELECT "pg_sleep"(10)"#
        );
        assert_eq!(
            normalize(r#"SELECT u&"d\0061t\+000061" "#).unwrap(),
            r#"SELECT "data" "#
        );
        assert_eq!(
            normalize(r"SELECT U&'d!0061t!+000061' UESCAPE '!', 1").unwrap(),
            "SELECT 'data', 1"
        );
        assert_eq!(
            normalize(r#"SELECT U&"a""b\0022" "#).unwrap(),
            r#"SELECT "a""b""" "#
        );
        assert_eq!(
            normalize(r"SELECT U&'it''s \\'").unwrap(),
            r"SELECT 'it''s \'"
        );
        // surrogate pair
        assert_eq!(
            normalize(r"SELECT U&'\D83D\DE00'").unwrap(),
            "SELECT '\u{1F600}'"
        );
    }

    #[test]
    fn leaves_quoted_and_commented_text_alone() {
        for s in [
            r#"SELECT 'U&"x\0041"'"#,
            r#"SELECT $$U&"x\0041"$$"#,
            r#"SELECT $t$ U&"x" $t$"#,
            r#"SELECT E'\'U&"x\0041"'"#,
            r#"-- U&"x\0041"
SELECT 1"#,
            r#"/* /* U&"x" */ U&"y" */ SELECT 1"#,
            r#"SELECT "U&""x""" "#,
            r#"SELECT xu&'a'"#,
            r#"SELECT a$u&'a'"#,
        ] {
            assert_eq!(normalize(s).unwrap(), s, "{s}");
        }
    }

    #[test]
    fn fails_closed() {
        for s in [
            r#"SELECT U&"pg_sl\00"#,
            r#"SELECT U&"x\zzzz""#,
            r#"SELECT U&"\0000""#,
            r#"SELECT U&"""#,
            r"SELECT U&'\D83D'",
            r"SELECT U&'a' UESCAPE 'ab'",
            r"SELECT U&'a' UESCAPE '+'",
            r"SELECT U&'a' UESCAPE x",
            "SELECT\u{00A0}1",
            "SELECT 1\u{2003}",
        ] {
            assert!(normalize(s).is_err(), "{s}");
        }
    }

    #[test]
    fn line_comments_end_at_carriage_returns_too() {
        // PostgreSQL ends a `--` comment at \n or \r.
        assert_eq!(
            normalize("SELECT 1 -- x\rU&\"pg_sl\\0065ep\"(1)").unwrap(),
            "SELECT 1 -- x\r\"pg_sleep\"(1)"
        );
    }

    #[test]
    fn e_string_after_number_is_an_escape_string() {
        // PostgreSQL 15 lexes `1e'…'` as `1` followed by an E string.
        let s = r#"SELECT 1e'\' U&"x" '"#;
        assert_eq!(normalize(s).unwrap(), s);
        assert_eq!(
            normalize("SELECT 1e5, 1.5E+3").unwrap(),
            "SELECT 1e5, 1.5E+3"
        );
    }

    #[test]
    fn reflow_breaks_long_lines_only_in_code() {
        let sql = "SELECT 'a b c d e f', \"x y z\", 1, 2 -- c d e f\nFROM t";
        let (text, lines) = reflow(sql, 3).unwrap();
        assert_eq!(
            text,
            "SELECT\n'a b c d e f',\n \"x y z\",\n 1, 2\n-- c d e f\nFROM\nt"
        );
        assert_eq!(lines, vec![1, 1, 1, 1, 1, 2, 2]);
        let (same, lines) = reflow("SELECT 1\nFROM t", 1000).unwrap();
        assert_eq!(same, "SELECT 1\nFROM t");
        assert_eq!(lines, vec![1, 2]);
    }

    #[test]
    fn collapses_long_whitespace_runs() {
        let s = format!("SELECT{}1{}", " ".repeat(5000), "\n".repeat(100));
        assert_eq!(
            normalize(&s).unwrap(),
            format!("SELECT 1{}", "\n".repeat(100))
        );
        assert_eq!(normalize("SELECT  1").unwrap(), "SELECT  1");
    }
}

/// How big a statement list is, measured by the lexer before any parser sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Measure {
    /// Non-empty statements (`;`-separated, comments alone do not count).
    pub statements: usize,
    /// Tokens, roughly: each name or number, each operator character, each literal.
    pub tokens: usize,
}

/// Counts statements and tokens in one linear pass with no allocation per token, so the
/// guard can refuse a huge or many-statement input before it builds tokens and a tree
/// (whose memory is a hundred times the text's).
pub(crate) fn measure(sql: &str) -> Result<Measure, String> {
    #[derive(Default)]
    struct Count {
        m: Measure,
        pending: bool,
        in_word: bool,
    }
    impl Sink for Count {
        fn opaque(&mut self, text: &str) {
            self.in_word = false;
            if !(text.starts_with("--") || text.starts_with("/*")) {
                self.pending = true;
                self.m.tokens += 1;
            }
        }
        fn code(&mut self, text: &str) {
            let word = text
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.');
            if text == ";" {
                if self.pending {
                    self.m.statements += 1;
                }
                self.pending = false;
                self.in_word = false;
                return;
            }
            self.pending = true;
            if !(word && self.in_word) {
                self.m.tokens += 1;
            }
            self.in_word = word;
        }
        fn space(&mut self, _run: &str) {
            self.in_word = false;
        }
        fn unicode(&mut self, _original: &str, _decoded: &str, _quote: u8) {
            self.in_word = false;
            self.pending = true;
            self.m.tokens += 1;
        }
    }
    let mut sink = Count::default();
    walk(sql, &mut sink)?;
    if sink.pending {
        sink.m.statements += 1;
    }
    Ok(sink.m)
}

/// Byte offsets just past each statement-ending `;` in code (not in literals or comments).
pub(crate) fn statement_ends(sql: &str) -> Result<Vec<usize>, String> {
    struct Ends<'a> {
        base: &'a str,
        ends: Vec<usize>,
    }
    impl Sink for Ends<'_> {
        fn opaque(&mut self, _text: &str) {}
        fn code(&mut self, text: &str) {
            if text == ";" {
                let at = text.as_ptr() as usize - self.base.as_ptr() as usize;
                self.ends.push(at + 1);
            }
        }
        fn space(&mut self, _run: &str) {}
        fn unicode(&mut self, _original: &str, _decoded: &str, _quote: u8) {}
    }
    let mut sink = Ends {
        base: sql,
        ends: Vec::new(),
    };
    walk(sql, &mut sink)?;
    Ok(sink.ends)
}

#[cfg(test)]
mod measure_tests {
    use super::*;

    #[test]
    fn statements_and_tokens_are_counted_without_parsing() {
        let m = |s: &str| measure(s).unwrap();
        assert_eq!(
            m("SELECT 1"),
            Measure {
                statements: 1,
                tokens: 2
            }
        );
        assert_eq!(
            m("SELECT 1; -- trailing"),
            Measure {
                statements: 1,
                tokens: 2
            }
        );
        assert_eq!(m("SELECT ';'; SELECT 2;;").statements, 2);
        assert_eq!(m("/* only */ ; ;").statements, 0);
        assert_eq!(m("SELECT a.b, f(x) FROM t").tokens, 9);
        assert_eq!(m(&"SELECT 1;".repeat(1000)).statements, 1000);
        assert_eq!(
            statement_ends("SELECT ';'; SELECT 2;").unwrap(),
            vec![11, 21]
        );
    }
}

/// One statement of a script, as `split` cut it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The statement's text, without its `;` and the comments before it.
    pub sql: String,
    /// The `--` comments between the previous statement and this one, without `--`, trimmed.
    pub comments: Vec<String>,
    /// 1-based line of the statement's first character of code.
    pub line: usize,
}

/// Cuts a script into statements at the `;`s this lexer sees in code (never inside a
/// literal, a quoted name, a dollar quote or a comment), keeping the line comments that
/// precede each statement (where the migration layer's directives live).
pub fn split(sql: &str) -> Result<Vec<Piece>, String> {
    struct Cut<'a> {
        base: &'a str,
        pieces: Vec<Piece>,
        comments: Vec<String>,
        start: Option<usize>,
    }
    impl Cut<'_> {
        fn at(&self, text: &str) -> usize {
            text.as_ptr() as usize - self.base.as_ptr() as usize
        }
        fn close(&mut self, end: usize) {
            if let Some(start) = self.start.take() {
                let line = 1 + self.base[..start].bytes().filter(|&b| b == b'\n').count();
                self.pieces.push(Piece {
                    sql: self.base[start..end].trim_end().to_owned(),
                    comments: std::mem::take(&mut self.comments),
                    line,
                });
            }
        }
        fn mark(&mut self, text: &str) {
            if self.start.is_none() {
                self.start = Some(self.at(text));
            }
        }
    }
    impl Sink for Cut<'_> {
        fn opaque(&mut self, text: &str) {
            if self.start.is_none() {
                if let Some(c) = text.strip_prefix("--") {
                    self.comments.push(c.trim().to_owned());
                    return;
                }
                if text.starts_with("/*") {
                    return;
                }
            }
            self.mark(text);
        }
        fn code(&mut self, text: &str) {
            if text == ";" {
                let end = self.at(text);
                self.close(end);
                // Comments after the last `;` of a statement belong to the next one.
                return;
            }
            self.mark(text);
        }
        fn space(&mut self, _run: &str) {}
        fn unicode(&mut self, original: &str, _decoded: &str, _quote: u8) {
            self.mark(original);
        }
    }
    let mut sink = Cut {
        base: sql,
        pieces: Vec::new(),
        comments: Vec::new(),
        start: None,
    };
    walk(sql, &mut sink)?;
    sink.close(sql.len());
    Ok(sink.pieces)
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn statements_are_cut_in_code_only() {
        let script = "-- first\nCREATE TABLE t (a text DEFAULT ';');\n\
                      /* block; */ -- dsql:batched 500\nUPDATE t SET a = $$x;y$$ WHERE a IS NULL;\n\
                      SELECT E'\\';' ; -- trailing\n";
        let p = split(script).unwrap();
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].sql, "CREATE TABLE t (a text DEFAULT ';')");
        assert_eq!(p[0].comments, ["first"]);
        assert_eq!(p[0].line, 2);
        assert_eq!(p[1].sql, "UPDATE t SET a = $$x;y$$ WHERE a IS NULL");
        assert_eq!(p[1].comments, ["dsql:batched 500"]);
        assert_eq!(p[1].line, 4);
        assert_eq!(p[2].sql, "SELECT E'\\';'");
        assert!(split("-- only a comment\n").unwrap().is_empty());
    }
}
