//! Database errors as an agent should read them.
//!
//! tokio-postgres' `Display` for a server error is just "db error"; agents need the
//! SQLSTATE, message, detail, hint and position to fix their SQL, so this type keeps them
//! and formats them on a few lines. It also says whether the connection itself broke,
//! which decides whether a unit of work may be re-run on a fresh connection.

use std::fmt;

/// A database error with the fields an agent needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// SQLSTATE, when the server sent one.
    pub code: Option<String>,
    pub severity: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the statement.
    pub position: Option<u32>,
    /// The connection is gone (closed, reset, terminated by the server).
    pub broken: bool,
}

impl DbError {
    /// An error that did not come from the server.
    pub fn other(message: impl Into<String>, broken: bool) -> DbError {
        DbError {
            code: None,
            severity: None,
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
            broken,
        }
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl From<&tokio_postgres::Error> for DbError {
    fn from(e: &tokio_postgres::Error) -> DbError {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code().to_owned();
            // Class 08 (connection exception) and the 57P0x shutdowns end the session.
            let broken = e.is_closed() || code.starts_with("08") || code.starts_with("57P");
            return DbError {
                code: Some(code),
                severity: Some(db.severity().to_owned()),
                message: capped_at(db.message(), MAX_FIELD_BYTES),
                detail: db.detail().map(|d| capped_at(d, MAX_FIELD_BYTES)),
                hint: db.hint().map(|h| capped_at(h, MAX_FIELD_BYTES)),
                position: match db.position() {
                    Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
                    _ => None,
                },
                broken,
            };
        }
        // An I/O error means the socket failed, except for a message tokio-postgres refuses
        // to encode, before anything is sent: "value too large to transmit" (over 65535
        // parameters, or a value over the protocol's 32-bit lengths; tokio-postgres labels
        // it an encoding or, for a Parse message, a "parsing" error). The connection is
        // fine then, and re-running the unit would fail the same way. (tokio-postgres'
        // error kind is private; its text is not.)
        let mut encode = e.to_string() == "error encoding message to server";
        let mut too_large = false;
        let mut io = false;
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io_error) = s.downcast_ref::<std::io::Error>() {
                io = true;
                too_large |= io_error.kind() == std::io::ErrorKind::InvalidInput
                    && io_error.to_string() == "value too large to transmit";
            }
            source = s.source();
        }
        encode |= too_large;
        let message = if too_large {
            "the statement was not sent (value too large to transmit), nothing ran: the PostgreSQL protocol carries at most 65535 parameters per statement and values under 1 GB; split the work into smaller statements".to_owned()
        } else {
            capped_at(&error_chain(e), MAX_FIELD_BYTES)
        };
        let io = io && !encode;
        DbError::other(message, e.is_closed() || io)
    }
}

/// The longest error text passed on to an agent (a tool result, a log notification), in
/// bytes: a server message can carry a whole value (`invalid input syntax for type integer:
/// "xxx…"` with a 50 MB value), which must not become a 50 MB response or log line.
pub const MAX_ERROR_BYTES: usize = 16 << 10;

/// The longest message, detail or hint kept from a server error: half of
/// `MAX_ERROR_BYTES`, so that one cut field and the text around it fit in one error text
/// without being cut twice.
pub const MAX_FIELD_BYTES: usize = MAX_ERROR_BYTES / 2;

/// `text`, or its first `MAX_ERROR_BYTES` and a note saying so (see [`capped_at`]).
pub fn capped(text: &str) -> String {
    capped_at(text, MAX_ERROR_BYTES)
}

/// `text`, or its first `max` bytes (cut at a character boundary) and a note saying that
/// it was cut and how long it was.
pub fn capped_at(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… [cut: the first {cut} of {} bytes of this text]",
        &text[..cut],
        text.len()
    )
}

/// An error and its sources on one line, skipping a source whose text the line already
/// holds (tokio-postgres, the credential chain and rustls nest their useful part).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        DbError::from(&e)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.severity, &self.code) {
            (Some(sev), Some(code)) => write!(f, "{sev} {code}: {}", self.message)?,
            (None, Some(code)) => write!(f, "{code}: {}", self.message)?,
            _ => f.write_str(&self.message)?,
        }
        if let Some(p) = self.position {
            write!(f, " (at character {p})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, "\nDETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nHINT: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_cuts_at_a_char_boundary_and_says_so() {
        assert_eq!(capped("short"), "short");
        let exact = "a".repeat(MAX_ERROR_BYTES);
        assert_eq!(capped(&exact), exact);
        // 'é' is two bytes: a cut at 16384 would split the one that starts at 16383.
        let text = format!("{}é{}", "a".repeat(MAX_ERROR_BYTES - 1), "b".repeat(100));
        assert_eq!(
            capped(&text),
            format!(
                "{}… [cut: the first 16383 of {} bytes of this text]",
                "a".repeat(MAX_ERROR_BYTES - 1),
                text.len()
            )
        );
    }
}
