//! The session settings the guard refuses to let a caller change, in any mode.
//!
//! Setting names are case-insensitive in PostgreSQL, quoted or not. Functions live in
//! `functions` (the catalog); this file holds only settings, so the list can be reviewed on
//! its own. Three kinds are refused:
//! - security: `row_security`, `session_replication_role` (weaken row security, disable
//!   triggers and constraints);
//! - lexer-affecting: `standard_conforming_strings`, `backslash_quote`, `client_encoding`
//!   change how the *next* statements of the same session are read, so the guard, which
//!   lexes with PostgreSQL's defaults, would read code as a string literal;
//! - identity: `session_authorization` (who the session is; `SET ROLE`, which the reset
//!   undoes and verifies, stays available when writes are allowed).

/// Settings that weaken row security or disable triggers and constraints.
const SECURITY_SETTINGS: &[&str] = &["row_security", "session_replication_role"];

/// Settings that change how later statements are lexed.
const LEXER_SETTINGS: &[&str] = &[
    "standard_conforming_strings",
    "backslash_quote",
    "client_encoding",
];

/// Settings that change the session's identity.
const IDENTITY_SETTINGS: &[&str] = &["session_authorization"];

/// Why setting `name` is refused, if it is.
pub(crate) fn setting_refusal(name: &str) -> Option<String> {
    let lower = name.trim().to_ascii_lowercase();
    let lower = lower.as_str();
    if SECURITY_SETTINGS.contains(&lower) {
        Some(format!(
            "Security-sensitive session setting not allowed: {lower}"
        ))
    } else if LEXER_SETTINGS.contains(&lower) {
        Some(format!(
            "Session setting not allowed: {lower} changes how later statements are read"
        ))
    } else if IDENTITY_SETTINGS.contains(&lower) {
        Some(format!(
            "Session setting not allowed: {lower} changes who the session is"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        assert_eq!(
            setting_refusal("ROW_SECURITY").as_deref(),
            Some("Security-sensitive session setting not allowed: row_security")
        );
        assert_eq!(
            setting_refusal("Standard_Conforming_Strings").as_deref(),
            Some(
                "Session setting not allowed: standard_conforming_strings changes how later statements are read"
            )
        );
        assert!(setting_refusal("client_encoding").is_some());
        assert!(setting_refusal("session_authorization").is_some());
        assert_eq!(setting_refusal("search_path"), None);
        assert_eq!(setting_refusal("role"), None);
    }
}
