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

/// The placeholder-count message shared by both styles. It starts with the reference's
/// words (agents and the reference's tests match on them; the reference files this under
/// "risky injection patterns"), then says plainly what is wrong, since a miscount is not an
/// injection.
pub(crate) fn count_mismatch(placeholders: usize, supplied: usize) -> String {
    format!(
        "Query has {placeholders} placeholders but {supplied} parameters were supplied. \
This is not an injection: {}; pass one parameter per placeholder",
        plain_count(placeholders, supplied)
    )
}

/// "the statement has 2 placeholders but 1 parameter was given", with singulars right.
pub(crate) fn plain_count(placeholders: usize, supplied: usize) -> String {
    let p = if placeholders == 1 { "" } else { "s" };
    let (s, verb) = if supplied == 1 {
        ("", "was")
    } else {
        ("s", "were")
    };
    format!(
        "the statement has {placeholders} placeholder{p} but {supplied} parameter{s} {verb} given"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_message_keeps_the_reference_words_and_says_what_is_wrong() {
        assert_eq!(
            count_mismatch(2, 1),
            "Query has 2 placeholders but 1 parameters were supplied. This is not an injection: \
the statement has 2 placeholders but 1 parameter was given; pass one parameter per placeholder"
        );
        assert_eq!(
            plain_count(1, 0),
            "the statement has 1 placeholder but 0 parameters were given"
        );
        assert_eq!(
            plain_count(0, 2),
            "the statement has 0 placeholders but 2 parameters were given"
        );
    }

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
