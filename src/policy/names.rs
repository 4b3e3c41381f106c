//! The function and setting names the guard treats specially.
//!
//! Names are matched on their last part, after PostgreSQL's folding, so
//! `pg_catalog.pg_sleep`, `PG_SLEEP` and `"pg_sleep"` all match while the
//! quoted `"PG_SLEEP"` (a different function) does not. Lists are kept here,
//! apart from the guard's logic, so they can be reviewed on their own.

/// What calling a function means for the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FunctionClass {
    /// Refused in every mode.
    Dangerous,
    /// Changes state: refused in read-only mode.
    Mutating,
    /// `set_config`: refused in read-only mode, and in every mode for a
    /// security-sensitive or computed setting name.
    SetConfig,
    Plain,
}

/// Exact names refused in every mode.
const DANGEROUS: &[&str] = &[
    // time-based abuse (MySQL spellings too, as the reference refused them)
    "sleep",
    "benchmark",
    // other sessions
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_log_backend_memory_contexts",
    // server files
    "pg_stat_file",
    "pg_current_logfile",
    "pg_logdir_ls",
    "load_file",
    "lo_import",
    "lo_export",
    // server control
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_notify",
    // SQL text run by a function, which the guard cannot see into
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    // AWS extensions: aws_lambda, aws_s3, aws_ml, pg_cron
    "invoke",
    "invoke_endpoint",
    "query_export_to_s3",
    "table_import_from_s3",
    "schedule",
    "schedule_in_database",
    "unschedule",
    "alter_job",
];

/// Prefixes refused in every mode.
const DANGEROUS_PREFIXES: &[&str] = &[
    "pg_sleep",
    "pg_advisory_",
    "pg_try_advisory_",
    "dblink",
    "pg_read_",
    "pg_ls_",
    "pg_file_",
];

/// Exact names refused in read-only mode.
const MUTATING: &[&str] = &[
    "nextval",
    "setval",
    "setseed",
    "pg_import_system_collations",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_emit_message",
];

/// Prefixes refused in read-only mode.
const MUTATING_PREFIXES: &[&str] = &["pg_stat_reset", "lo_", "pg_replication_origin_"];

/// Settings that weaken row security or disable triggers and constraints.
const SECURITY_SETTINGS: &[&str] = &["row_security", "session_replication_role"];

pub(crate) fn classify_function(base: &str) -> FunctionClass {
    if DANGEROUS.contains(&base) || DANGEROUS_PREFIXES.iter().any(|p| base.starts_with(p)) {
        FunctionClass::Dangerous
    } else if base == "set_config" {
        FunctionClass::SetConfig
    } else if MUTATING.contains(&base) || MUTATING_PREFIXES.iter().any(|p| base.starts_with(p)) {
        FunctionClass::Mutating
    } else {
        FunctionClass::Plain
    }
}

/// Setting names are case-insensitive in PostgreSQL, quoted or not.
pub(crate) fn is_security_setting(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    SECURITY_SETTINGS.contains(&lower.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify_function("pg_sleep_for"), FunctionClass::Dangerous);
        assert_eq!(
            classify_function("dblink_connect"),
            FunctionClass::Dangerous
        );
        assert_eq!(
            classify_function("pg_advisory_xact_lock"),
            FunctionClass::Dangerous
        );
        assert_eq!(classify_function("lo_import"), FunctionClass::Dangerous);
        assert_eq!(classify_function("lo_create"), FunctionClass::Mutating);
        assert_eq!(
            classify_function("pg_stat_reset_shared"),
            FunctionClass::Mutating
        );
        assert_eq!(classify_function("set_config"), FunctionClass::SetConfig);
        assert_eq!(classify_function("PG_SLEEP"), FunctionClass::Plain);
        assert_eq!(classify_function("count"), FunctionClass::Plain);
        assert!(is_security_setting("ROW_SECURITY"));
        assert!(!is_security_setting("search_path"));
    }
}
