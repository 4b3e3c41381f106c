//! The command line: `--help` and `--version` work, bad values exit non-zero with exactly
//! one clear line on stderr, and nothing but JSON-RPC ever reaches stdout in server mode.

use std::process::{Command, Stdio};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aurora-dsql-mcp-server"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_reference_flags_and_ours() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--cluster_endpoint",
        "--database_user",
        "--region",
        "--allow-writes",
        "--profile",
        "--knowledge-server",
        "--knowledge-timeout",
        "--port",
        "--ssl-root-cert",
        "--rules",
        "--query-timeout",
        "--max-rows",
    ] {
        assert!(stdout.contains(flag), "--help lacks {flag}:\n{stdout}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("aurora-dsql-mcp-server {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_values_exit_non_zero_with_one_line() {
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--no-such-flag"],
            2,
            "aurora-dsql-mcp-server: error: unexpected argument '--no-such-flag' found (see --help)",
        ),
        (
            &["--port", "abc"],
            2,
            "aurora-dsql-mcp-server: error: invalid value 'abc' for '--port <PORT>': invalid digit found in string (see --help)",
        ),
        (
            &["--rules", "lax"],
            2,
            "aurora-dsql-mcp-server: error: invalid value 'lax' for '--rules <SET>': expected `power` or `cluster`, got `lax` (see --help)",
        ),
        (
            &["--knowledge-server", "http://example.com"],
            1,
            "aurora-dsql-mcp-server: Knowledge server URL must use HTTPS protocol. Got: http://example.com",
        ),
        (
            &["--knowledge-timeout", "0"],
            1,
            "aurora-dsql-mcp-server: Knowledge timeout must be positive. Got: 0",
        ),
        (
            &["--query-timeout", "-3"],
            1,
            "aurora-dsql-mcp-server: --query-timeout must be a positive number of seconds. Got: -3",
        ),
        (
            &["--ssl-root-cert", "/nonexistent/ca.pem"],
            1,
            "aurora-dsql-mcp-server: --ssl-root-cert /nonexistent/ca.pem: file cannot be read: No such file or directory (os error 2)",
        ),
    ];
    for (args, code, line) in cases {
        let (got, stdout, stderr) = run(args);
        assert_eq!(got, *code, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().collect::<Vec<_>>(), vec![*line], "{args:?}");
        assert!(stdout.is_empty(), "{args:?} printed to stdout: {stdout}");
    }
}

#[test]
fn a_bad_ca_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let ca = ca.display().to_string();
    let (code, _, stderr) = run(&[
        "--cluster_endpoint",
        "localhost",
        "--database_user",
        "admin",
        "--region",
        "us-east-1",
        "--ssl-root-cert",
        &ca,
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "aurora-dsql-mcp-server: TLS configuration: {ca} contains no usable CA certificate"
        )
    );
}
