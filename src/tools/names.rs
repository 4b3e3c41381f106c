//! Schema and table names as callers pass them to the schema tools and resources.
//!
//! Every name that reaches the catalog goes through here first, so each tool refuses the
//! same things the same way: a NUL byte (PostgreSQL text cannot hold one), and a name
//! longer than PostgreSQL's 63-byte identifier limit (the server would never match it; it
//! truncates identifiers it parses, not the text we bind). Errors quote at most a short
//! prefix of the input, so a 100,000-character name does not come back whole.
//!
//! One folding rule for all tools: a name in double quotes (`"Mango"`, `"a.b"`, with `""`
//! for a quote inside) is matched exactly; a bare name is matched as stored first, then
//! folded to lower case the way PostgreSQL folds an unquoted identifier (ASCII only).

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// How much of a refused input an error message quotes.
const PREVIEW_CHARS: usize = 40;

/// A schema or table name, ready to bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// The name as stored when it matches exactly (quotes removed).
    pub exact: String,
    /// PostgreSQL's folding of a bare name; equal to `exact` for a quoted one.
    pub folded: String,
    /// It was given in double quotes: match `exact` only.
    pub quoted: bool,
}

impl Name {
    /// This schema name and `table` as the catalog reads take them.
    pub fn key(&self, table: &Name) -> crate::catalog::TableKey {
        crate::catalog::TableKey {
            schema: self.exact.clone(),
            table: table.exact.clone(),
            schema_folded: self.folded.clone(),
            table_folded: table.folded.clone(),
        }
    }

    /// A name read from the catalog (a resource URI): exact, never folded.
    pub fn stored(name: &str) -> Result<Name, String> {
        check(name, name, "name")?;
        Ok(Name {
            exact: name.to_owned(),
            folded: name.to_owned(),
            quoted: true,
        })
    }
}

/// At most `PREVIEW_CHARS` characters of `s`, marked when cut, for error messages.
pub fn preview(s: &str) -> String {
    match s.char_indices().nth(PREVIEW_CHARS) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

fn check(raw: &str, name: &str, what: &str) -> Result<(), String> {
    if name.contains('\0') {
        return Err(format!(
            "the {what} \"{}\" contains a NUL byte, which PostgreSQL names cannot contain",
            preview(&raw.replace('\0', "\\0"))
        ));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "the {what} \"{}\" is {} bytes long; PostgreSQL names are at most {MAX_IDENTIFIER_BYTES} bytes",
            preview(raw),
            name.len()
        ));
    }
    Ok(())
}

/// Reads one name (`what` is "table name" or "schema name", for messages).
pub fn parse(raw: &str, what: &str) -> Result<Name, String> {
    if let Some(inner) = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|_| raw.len() >= 2)
    {
        let exact = unquote(inner).ok_or_else(|| {
            format!(
                "the {what} {} has a stray double quote; inside quotes write \"\" for one",
                preview(raw)
            )
        })?;
        check(raw, &exact, what)?;
        return Ok(Name {
            folded: exact.clone(),
            exact,
            quoted: true,
        });
    }
    check(raw, raw, what)?;
    Ok(Name {
        exact: raw.to_owned(),
        folded: raw.to_ascii_lowercase(),
        quoted: false,
    })
}

/// `a""b` → `a"b`; `None` for a lone quote.
fn unquote(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' && chars.next() != Some('"') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// Splits `schema.table` on the first dot outside double quotes (the reference splits on
/// the first dot; quotes let a name hold one: `public."a.b"`). `None` schema for a bare table.
pub fn split_qualified(raw: &str) -> (Option<&str>, &str) {
    let mut quoted = false;
    for (i, c) in raw.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => return (Some(&raw[..i]), &raw[i + 1..]),
            _ => {}
        }
    }
    (None, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_fold_and_quoted_names_do_not() {
        assert_eq!(
            parse("Mango", "table name").unwrap(),
            Name {
                exact: "Mango".into(),
                folded: "mango".into(),
                quoted: false
            }
        );
        assert_eq!(
            parse("\"Mango\"", "table name").unwrap(),
            Name {
                exact: "Mango".into(),
                folded: "Mango".into(),
                quoted: true
            }
        );
        assert_eq!(parse("\"a\"\"b\"", "table name").unwrap().exact, "a\"b");
        assert_eq!(parse("\"a.b\"", "table name").unwrap().exact, "a.b");
        // PostgreSQL folds ASCII only.
        assert_eq!(parse("ÉTÉ", "table name").unwrap().folded, "ÉtÉ");
        assert_eq!(
            parse("\"a\"b\"", "table name").unwrap_err(),
            "the table name \"a\"b\" has a stray double quote; inside quotes write \"\" for one"
        );
        // A lone quote is a bare name, not an empty quoted one.
        assert_eq!(parse("\"", "table name").unwrap().exact, "\"");
    }

    #[test]
    fn nul_bytes_and_long_names_are_refused_with_a_short_quote() {
        assert_eq!(
            parse("a\0b", "table name").unwrap_err(),
            "the table name \"a\\0b\" contains a NUL byte, which PostgreSQL names cannot contain"
        );
        let long = "x".repeat(100_000);
        let e = parse(&long, "schema name").unwrap_err();
        assert_eq!(
            e,
            format!(
                "the schema name \"{}…\" is 100000 bytes long; PostgreSQL names are at most 63 bytes",
                "x".repeat(40)
            )
        );
        assert!(parse(&"x".repeat(63), "table name").is_ok());
        assert!(parse(&format!("\"{}\"", "x".repeat(63)), "table name").is_ok());
        assert!(parse(&format!("\"{}\"", "x".repeat(64)), "table name").is_err());
        // Bytes, not characters: 32 two-byte characters are 64 bytes.
        assert!(parse(&"é".repeat(32), "table name").is_err());
        assert!(Name::stored("a\0").is_err());
    }

    #[test]
    fn qualified_names_split_on_the_first_dot_outside_quotes() {
        assert_eq!(split_qualified("public.t"), (Some("public"), "t"));
        assert_eq!(split_qualified("t"), (None, "t"));
        assert_eq!(
            split_qualified("public.\"a.b\""),
            (Some("public"), "\"a.b\"")
        );
        assert_eq!(split_qualified("\"a.b\""), (None, "\"a.b\""));
        assert_eq!(split_qualified("\"s.x\".t"), (Some("\"s.x\""), "t"));
        // The reference's split: the first dot, the rest is the table.
        assert_eq!(split_qualified("a.b.c"), (Some("a"), "b.c"));
    }

    #[test]
    fn previews_cut_on_characters() {
        assert_eq!(preview("short"), "short");
        assert_eq!(preview(&"é".repeat(50)), format!("{}…", "é".repeat(40)));
    }
}
