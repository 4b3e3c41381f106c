//! The function policy: every function name the guard knows, and who may call it.
//!
//! A denylist of dangerous names cannot be complete (each PostgreSQL release adds some, and
//! an agent only needs one the list forgot), so read-only mode works the other way round: a
//! call is allowed only when its function is a known built-in without side effects
//! (`functions.tsv`, generated from `pg_proc`), or one the user vouched for with
//! `--allow-function NAME`. With writes allowed, the refused set (host and files, SQL text
//! run by a function, session and server control, locks, large objects, replication, other
//! sessions) still holds everywhere, DDL bodies included; other names (the user's own SQL
//! functions) may be called.
//!
//! The guard resolves every syntactic form of a call to a name before asking here: plain and
//! schema-qualified calls, quoted and `U&` names, `FROM f()`, and attribute notation
//! (`(expr).f` and `t.f`, which PostgreSQL reads as `f(expr)` when no column `f` exists).
//! Attribute notation cannot be told apart from a column by its text, so there a name counts
//! as a call only when it is a function this policy would refuse (`Site::Attribute`).

use std::collections::HashMap;
use std::sync::OnceLock;

use super::Access;

/// What calling a function may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// A read without side effects: allowed in every mode.
    Read,
    /// Changes session or database state the transaction protects (sequences, the random
    /// seed): allowed only with `--allow-writes`.
    Write,
    /// Refused in every mode, wherever it appears.
    Refused(Why),
}

/// Why a function is in the refused set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    Sleep,
    Sessions,
    Host,
    SqlText,
    Control,
    Locks,
    LargeObjects,
    Replication,
    Internal,
    Unvetted,
}

impl Why {
    fn parse(s: &str) -> Option<Why> {
        Some(match s {
            "sleep" => Why::Sleep,
            "sessions" => Why::Sessions,
            "host" => Why::Host,
            "sql_text" => Why::SqlText,
            "control" => Why::Control,
            "locks" => Why::Locks,
            "large_objects" => Why::LargeObjects,
            "replication" => Why::Replication,
            "internal" => Why::Internal,
            "unvetted" => Why::Unvetted,
            _ => return None,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Why::Sleep => "it makes the session wait",
            Why::Sessions => "it reads or acts on other sessions",
            Why::Host => "it reads the server's files or host details",
            Why::SqlText => "it runs SQL text the guard cannot see",
            Why::Control => "it changes session or server configuration",
            Why::Locks => "it takes or releases advisory locks that outlive the call",
            Why::LargeObjects => "it reads or writes large objects",
            Why::Replication => "it acts on replication state",
            Why::Internal => "it is an internal support function",
            Why::Unvetted => "it has side effects this server has not vetted",
        }
    }
}

/// Families refused whatever the catalog says: a newer server adds members (`pg_ls_*`,
/// `pg_stat_reset_*`), and extension functions (`dblink*`) are in no built-in catalog.
/// Matched case-insensitively on the folded name, so a quoted spelling cannot dodge them.
const REFUSED_PREFIXES: &[(&str, Why)] = &[
    ("pg_sleep", Why::Sleep),
    ("pg_advisory_", Why::Locks),
    ("pg_try_advisory_", Why::Locks),
    ("dblink", Why::SqlText),
    ("pg_read_", Why::Host),
    ("pg_ls_", Why::Host),
    ("pg_file_", Why::Host),
    ("pg_stat_file", Why::Host),
    ("pg_rotate_logfile", Why::Control),
    ("pg_stat_reset", Why::Control),
    ("pg_stat_get_backend_", Why::Sessions),
    ("pg_terminate_backend", Why::Sessions),
    ("pg_cancel_backend", Why::Sessions),
    ("lo_", Why::LargeObjects),
    ("pg_replication_origin_", Why::Replication),
    ("pg_logical_", Why::Replication),
    ("pg_create_", Why::Replication),
    ("pg_drop_replication", Why::Replication),
    ("pg_copy_", Why::Replication),
    ("binary_upgrade_", Why::Internal),
    ("query_to_xml", Why::SqlText),
    ("cursor_to_xml", Why::SqlText),
    ("table_to_xml", Why::SqlText),
    ("schema_to_xml", Why::SqlText),
    ("database_to_xml", Why::SqlText),
    ("ts_stat", Why::SqlText),
    ("ts_rewrite", Why::SqlText),
    ("set_config", Why::Control),
];

/// The generated catalog: `name<TAB>class` lines (see the file's header).
const CATALOG: &str = include_str!("functions.tsv");

fn catalog() -> &'static HashMap<&'static str, Class> {
    static MAP: OnceLock<HashMap<&'static str, Class>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = HashMap::new();
        for line in CATALOG.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((name, class)) = line.split_once('\t') else {
                continue;
            };
            let class = match class {
                "read" => Class::Read,
                "write" => Class::Write,
                other => match other.strip_prefix("refused:").and_then(Why::parse) {
                    Some(why) => Class::Refused(why),
                    // An unreadable line refuses its name (fail closed).
                    None => Class::Refused(Why::Unvetted),
                },
            };
            map.insert(name, class);
        }
        map
    })
}

/// What this policy knows about the (folded) base name of a function.
pub(crate) fn class_of(base: &str) -> Option<Class> {
    let listed = catalog().get(base).copied();
    if let Some(Class::Refused(_)) = listed {
        return listed;
    }
    let lower = base.to_ascii_lowercase();
    match REFUSED_PREFIXES.iter().find(|(p, _)| lower.starts_with(p)) {
        Some((_, why)) => Some(Class::Refused(*why)),
        None => listed,
    }
}

/// Whether the catalog file lists `name` (for the completeness test).
pub fn is_listed(name: &str) -> bool {
    catalog().contains_key(name)
}

/// Where a name appeared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    /// Call syntax: `f(...)`, `s.f(...)`, `FROM f(...)`.
    Call,
    /// A field selection (`(expr).f`, `t.f`): a call only if `f` names a function.
    Attribute,
}

/// The guard's verdict on one function reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// A write: refused in read-only mode (the message says why), allowed otherwise.
    WriteOnly(String),
    /// Refused in this mode; the message names the function and the way out, if any.
    Refuse(String),
}

/// Functions the user vouched for (`--allow-function NAME`, repeatable): their own SQL
/// functions, which no built-in catalog can know. `NAME` is `fn` or `schema.fn`, folded as
/// SQL folds identifiers (unquoted to lower case). It never lifts the refused set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedFunctions {
    entries: Vec<(Option<String>, String)>,
}

impl AllowedFunctions {
    /// Parses the `--allow-function` values.
    pub fn parse(names: &[String]) -> Result<AllowedFunctions, String> {
        let mut entries = Vec::new();
        for raw in names {
            let parts: Vec<String> = split_name(raw)
                .ok_or_else(|| format!("--allow-function {raw:?}: expected NAME or SCHEMA.NAME"))?;
            let entry = match parts.as_slice() {
                [name] => (None, name.clone()),
                [schema, name] => (Some(schema.clone()), name.clone()),
                _ => {
                    return Err(format!(
                        "--allow-function {raw:?}: expected NAME or SCHEMA.NAME"
                    ));
                }
            };
            if let Some(Class::Refused(why)) = class_of(&entry.1) {
                return Err(format!(
                    "--allow-function {raw:?}: {} cannot be allowed ({})",
                    entry.1,
                    why.describe()
                ));
            }
            entries.push(entry);
        }
        Ok(AllowedFunctions { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn contains(&self, schema: Option<&str>, base: &str) -> bool {
        self.entries.iter().any(|(s, n)| {
            n == base
                && match (s, schema) {
                    (None, _) => true,
                    (Some(s), Some(schema)) => s == schema,
                    // An unqualified call of `s.f` resolves through the search path: allow it.
                    (Some(_), None) => true,
                }
        })
    }
}

/// `a.b` or `"A".b` into folded parts; `None` if empty or badly quoted.
fn split_name(raw: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = raw.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// The schemas whose functions are the server's own.
fn is_builtin_schema(schema: &str) -> bool {
    schema == "pg_catalog"
}

fn is_temp_schema(schema: &str) -> bool {
    schema.starts_with("pg_temp") || schema.starts_with("pg_toast_temp")
}

/// Judges one function reference: `parts` are the folded name parts (`[db.]schema.fn` or
/// `fn`); messages show them joined with dots.
pub(crate) fn judge(
    parts: &[String],
    site: Site,
    access: Access,
    allowed: &AllowedFunctions,
) -> Verdict {
    let Some(base) = parts.last() else {
        return Verdict::Refuse("function name could not be resolved".into());
    };
    let schema = (parts.len() >= 2).then(|| parts[parts.len() - 2].as_str());
    let shown = parts.join(".");
    let class = class_of(base);
    if let Some(Class::Refused(why)) = class {
        return Verdict::Refuse(format!(
            "Dangerous function call not allowed: {shown} ({})",
            why.describe()
        ));
    }
    if let Some(s) = schema
        && is_temp_schema(s)
    {
        return Verdict::Refuse(format!(
            "Dangerous function call not allowed: {shown} (functions in a temporary schema shadow real ones)"
        ));
    }
    let builtin_name = schema.is_none_or(is_builtin_schema);
    let read_only = access == Access::ReadOnly;
    match (class, builtin_name) {
        (Some(Class::Read), true) => return Verdict::Allow,
        (Some(Class::Write), true) => {
            // Also in write mode: the guard then knows the statement writes.
            return Verdict::WriteOnly(format!(
                "function changes state and is not allowed in read-only mode: {shown}"
            ));
        }
        _ => {}
    }
    // Not a built-in this policy knows.
    if site == Site::Attribute {
        // A field selection whose name is no known function is a column. Names in the
        // system's `pg_` space are refused: there an unknown name is a built-in this
        // policy has not vetted (a newer server's), not a column.
        let system_name = base.to_ascii_lowercase().starts_with("pg_");
        return if system_name && !allowed.contains(schema, base) {
            Verdict::Refuse(unknown_message(&shown, read_only))
        } else {
            Verdict::Allow
        };
    }
    if allowed.contains(schema, base) {
        return Verdict::Allow;
    }
    let system_name = base.to_ascii_lowercase().starts_with("pg_")
        || schema.is_some_and(|s| is_builtin_schema(s) || s == "sys");
    if read_only || system_name {
        Verdict::Refuse(unknown_message(&shown, read_only))
    } else {
        // Write mode: the user's own functions (DSQL's are LANGUAGE SQL).
        Verdict::Allow
    }
}

fn unknown_message(shown: &str, read_only: bool) -> String {
    let mode = if read_only {
        "in read-only mode only known built-in functions without side effects may be called"
    } else {
        "it is not a built-in function this server knows"
    };
    format!(
        "Function not allowed: {shown} ({mode}; if it is your own SQL function, start the server with --allow-function {shown})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<String> {
        s.split('.').map(str::to_owned).collect()
    }

    fn verdict(name: &str, site: Site, access: Access) -> Verdict {
        judge(&parts(name), site, access, &AllowedFunctions::default())
    }

    #[test]
    fn the_catalog_classifies_the_families() {
        assert_eq!(class_of("upper"), Some(Class::Read));
        assert_eq!(class_of("ts_rank"), Some(Class::Read));
        assert_eq!(class_of("current_timestamp"), Some(Class::Read));
        assert_eq!(class_of("nextval"), Some(Class::Write));
        for (name, why) in [
            ("pg_sleep_for", Why::Sleep),
            ("pg_read_binary_file", Why::Host),
            ("lo_from_bytea", Why::LargeObjects),
            ("pg_advisory_xact_lock_shared", Why::Locks),
            ("pg_terminate_backend", Why::Sessions),
            ("pg_stat_reset_shared", Why::Control),
            ("pg_create_logical_replication_slot", Why::Replication),
            ("ts_stat", Why::SqlText),
            ("table_to_xml", Why::SqlText),
            ("set_config", Why::Control),
            ("dblink_exec", Why::SqlText),
            ("pg_hba_file_rules", Why::Host),
            ("currtid2", Why::Unvetted),
        ] {
            assert_eq!(class_of(name), Some(Class::Refused(why)), "{name}");
        }
        // Quoted upper-case spellings are other functions, but never slip a family.
        assert_eq!(class_of("PG_SLEEP"), Some(Class::Refused(Why::Sleep)));
        assert_eq!(class_of("no_such_function"), None);
    }

    #[test]
    fn read_only_allows_only_known_reads() {
        use Access::*;
        assert_eq!(verdict("lower", Site::Call, ReadOnly), Verdict::Allow);
        assert_eq!(
            verdict("pg_catalog.lower", Site::Call, ReadOnly),
            Verdict::Allow
        );
        assert!(matches!(
            verdict("nextval", Site::Call, ReadOnly),
            Verdict::WriteOnly(_)
        ));
        assert_eq!(
            verdict("my_fn", Site::Call, ReadOnly),
            Verdict::Refuse("Function not allowed: my_fn (in read-only mode only known built-in functions without side effects may be called; if it is your own SQL function, start the server with --allow-function my_fn)".into())
        );
        // A user schema's `lower` is not the built-in.
        assert!(matches!(
            verdict("public.lower", Site::Call, ReadOnly),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            verdict("pg_sleep", Site::Attribute, ReadOnly),
            Verdict::Refuse(
                "Dangerous function call not allowed: pg_sleep (it makes the session wait)".into()
            )
        );
        // An attribute that names no function is a column.
        assert_eq!(verdict("amount", Site::Attribute, ReadOnly), Verdict::Allow);
        assert!(matches!(
            verdict("pg_some_future_builtin", Site::Attribute, ReadOnly),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn write_mode_refuses_the_refused_set_and_unknown_builtins_only() {
        use Access::*;
        assert!(matches!(
            verdict("nextval", Site::Call, ReadWrite),
            Verdict::WriteOnly(_)
        ));
        assert_eq!(verdict("my_fn", Site::Call, ReadWrite), Verdict::Allow);
        assert_eq!(verdict("app.my_fn", Site::Call, ReadWrite), Verdict::Allow);
        assert!(matches!(
            verdict("pg_catalog.my_fn", Site::Call, ReadWrite),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            verdict("app.pg_read_file", Site::Call, ReadWrite),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            verdict("pg_temp.f", Site::Call, ReadWrite),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn allow_function_lifts_only_unknown_names() {
        let allowed = AllowedFunctions::parse(&["my_fn".into(), "App.\"Other\"".into()]).unwrap();
        let j = |name: &str| judge(&parts(name), Site::Call, Access::ReadOnly, &allowed);
        assert_eq!(j("my_fn"), Verdict::Allow);
        assert_eq!(j("public.my_fn"), Verdict::Allow);
        assert_eq!(j("app.Other"), Verdict::Allow);
        assert_eq!(j("Other"), Verdict::Allow);
        assert!(matches!(j("other"), Verdict::Refuse(_)));
        assert!(matches!(j("elsewhere.Other"), Verdict::Refuse(_)));
        assert_eq!(
            AllowedFunctions::parse(&["pg_sleep".into()]).unwrap_err(),
            "--allow-function \"pg_sleep\": pg_sleep cannot be allowed (it makes the session wait)"
        );
        assert!(AllowedFunctions::parse(&["a.b.c".into()]).is_err());
        assert!(AllowedFunctions::parse(&["".into()]).is_err());
    }
}
