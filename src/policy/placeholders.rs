//! Placeholder handling: the reference tools' psycopg-style `%s` and the power
//! tools' `$n`.
//!
//! psycopg rewrites a query only when parameters are supplied, and it scans the
//! raw text without regard to quoting: a `%s` inside a string literal or a
//! comment is a placeholder too, `%%` is a literal `%`, any other `%x` is an
//! error, and a `%` that ends the text (or precedes a line break) is left as is.
//! Reproducing that exactly keeps the server a drop-in: the same calls succeed
//! and fail. The guard then checks the translated statement, which is what runs.

/// The result of translating psycopg placeholders.
pub(crate) struct Translated {
    pub sql: String,
    /// How many `%s`/`%b`/`%t` placeholders the text held.
    pub count: usize,
}

/// Translates `%s`, `%b`, `%t` to `$1..$n` and `%%` to `%`, as psycopg does.
pub(crate) fn translate_psycopg(sql: &str) -> Result<Translated, String> {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut count = 0usize;
    let mut rest = sql;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut it = after.chars();
        match it.next() {
            // A trailing `%`, or one before a line break: psycopg's pattern needs
            // a following character other than a newline, so it leaves this alone.
            None | Some('\n') => {
                out.push('%');
                rest = after;
            }
            Some('%') => {
                out.push('%');
                rest = &after[1..];
            }
            Some('s' | 'b' | 't') => {
                count += 1;
                out.push('$');
                out.push_str(&count.to_string());
                rest = &after[1..];
            }
            Some('(') => {
                return Err(
                    "Invalid placeholder syntax: named placeholders like %(name)s need a mapping of parameters; use %s".into(),
                );
            }
            Some(other) => {
                return Err(format!(
                    "Invalid placeholder syntax: only %s, %b and %t are placeholders (write %% for a literal %), got {:?}",
                    format!("%{other}")
                ));
            }
        }
    }
    out.push_str(rest);
    Ok(Translated { sql: out, count })
}

/// The placeholder-count message shared by both styles.
pub(crate) fn count_mismatch(placeholders: usize, supplied: usize) -> String {
    format!("Query has {placeholders} placeholders but {supplied} parameters were supplied")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(s: &str) -> Result<(String, usize), String> {
        translate_psycopg(s).map(|t| (t.sql, t.count))
    }

    #[test]
    fn translates_like_psycopg() {
        assert_eq!(
            tr("SELECT * FROM t WHERE tenant_id = %s").unwrap(),
            ("SELECT * FROM t WHERE tenant_id = $1".into(), 1)
        );
        assert_eq!(
            tr("SELECT %b, %t, %s").unwrap(),
            ("SELECT $1, $2, $3".into(), 3)
        );
        assert_eq!(tr("SELECT 10 %% 3").unwrap(), ("SELECT 10 % 3".into(), 0));
        assert_eq!(
            tr("SELECT %s -- progress 100%").unwrap(),
            ("SELECT $1 -- progress 100%".into(), 1)
        );
        assert_eq!(tr("SELECT '%s'").unwrap(), ("SELECT '$1'".into(), 1));
        assert_eq!(
            tr("SELECT 1 -- 5%\n").unwrap(),
            ("SELECT 1 -- 5%\n".into(), 0)
        );
        assert_eq!(tr("SELECT 'é%s'").unwrap(), ("SELECT 'é$1'".into(), 1));
    }

    #[test]
    fn rejects_other_percent_sequences() {
        for s in [
            "SELECT 1 % q",
            "SELECT 1 %d",
            "SELECT %(name)s",
            "SELECT '%é'",
        ] {
            let e = tr(s).unwrap_err();
            assert!(e.starts_with("Invalid placeholder syntax"), "{s}: {e}");
        }
    }
}
