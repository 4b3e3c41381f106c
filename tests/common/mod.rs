//! Shared integration-test harness: a throw-away PostgreSQL 15 over TLS standing in for an
//! Aurora DSQL cluster ([`PgCluster`]), and the real server binary driven over stdio by rmcp's
//! real MCP client ([`McpSession`]) or by hand ([`RawProcess`]) for protocol-level tests.
//!
//! Every integration test binary includes it with `mod common;` and uses only what it needs.
#![allow(dead_code)]

pub mod http;
pub mod mcp;
pub mod pg;
pub mod raw;

#[allow(unused_imports)]
pub use mcp::{McpSession, cluster_args, structured, text};
#[allow(unused_imports)]
pub use pg::{PgCluster, shared, start, unique_name};
#[allow(unused_imports)]
pub use raw::{RawProcess, raw_process};

/// Fake AWS access key id handed to every server process (never valid anywhere).
pub const FAKE_ACCESS_KEY_ID: &str = "AKIDEXAMPLEHARNESS";
/// Fake AWS secret handed to every server process; tests may assert it never leaks.
pub const FAKE_SECRET_ACCESS_KEY: &str = "harnessSecretKeyEXAMPLEdoNotUse0000000000";
