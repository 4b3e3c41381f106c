//! The function catalog (`src/policy/functions.tsv`) against the stand-in's own `pg_proc`:
//! every built-in function name PostgreSQL has is classified. A name the file lacks would be
//! refused in read-only mode (the allowlist), but taken for a user's function with writes
//! allowed; so when the stand-in's PostgreSQL gains functions, this test says which to vet.

mod common;

use aurora_dsql_mcp_server::policy::is_known_function;
use common::shared;

#[tokio::test]
async fn every_builtin_function_of_the_stand_in_is_classified() {
    let db = shared().superuser().await;
    let rows = db
        .query(
            "SELECT DISTINCT proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pg_catalog' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() > 2000, "only {} built-in names", rows.len());
    let missing: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| !is_known_function(name))
        .collect();
    assert!(
        missing.is_empty(),
        "built-in functions missing from src/policy/functions.tsv (classify each): {missing:?}"
    );
}
