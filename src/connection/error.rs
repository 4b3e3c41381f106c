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
                message: db.message().to_owned(),
                detail: db.detail().map(str::to_owned),
                hint: db.hint().map(str::to_owned),
                position: match db.position() {
                    Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
                    _ => None,
                },
                broken,
            };
        }
        let mut io = false;
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            io |= s.is::<std::io::Error>();
            source = s.source();
        }
        let message = error_chain(e);
        DbError::other(message, e.is_closed() || io)
    }
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
