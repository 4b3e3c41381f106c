//! Proves the Kiro power's four tools (`query`, `execute`, `list_tables`, `describe_table`)
//! over the real server binary and rmcp's real MCP client, against the TLS PostgreSQL
//! stand-in: the exact result shapes (structured content and the same JSON as text), every
//! argument and its default, bad input (validation errors, missing tables, parameters that do
//! not parse, SQL errors with their position), the read-only refusals, JSON parameter binding,
//! and a scripted multi-tenant walk-through in the power's style whose every write is checked
//! against the database with a superuser connection.

mod common;

use common::{McpSession, PgCluster, structured, text, unique_name};
use rmcp::model::CallToolResult;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers

/// A successful call: its structured content, after checking that the text content is the
/// same JSON.
async fn ok(session: &McpSession, tool: &str, args: Value) -> Value {
    let result = session.call(tool, args.clone()).await;
    let (text_json, structured) = success(tool, &args, &result);
    assert_eq!(
        text_json, structured,
        "{tool}: the text content and structuredContent differ"
    );
    structured
}

/// A successful call: (text content parsed as JSON, structured content).
fn success(tool: &str, args: &Value, result: &CallToolResult) -> (Value, Value) {
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} {args} failed: {}",
        text(result)
    );
    assert_eq!(result.content.len(), 1, "{tool}: one text content expected");
    let text_json: Value = serde_json::from_str(&text(result))
        .unwrap_or_else(|e| panic!("{tool}: text content is not JSON ({e}): {}", text(result)));
    (text_json, structured(result))
}

/// A failed call (`isError: true`): its text, which must start with the tool's error prefix.
async fn fails(session: &McpSession, tool: &str, args: Value) -> String {
    let result = session.call(tool, args.clone()).await;
    let message = text(&result);
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} {args} should have failed but returned: {message}"
    );
    assert!(
        result.structured_content.is_none(),
        "{tool}: an error carries no structured content"
    );
    let prefix = format!("Error executing tool {tool}: ");
    assert!(
        message.starts_with(&prefix),
        "{tool}: error without the `{prefix}` prefix: {message}"
    );
    message[prefix.len()..].to_owned()
}

async fn admin_setup(pg: &PgCluster, sql: &str) {
    pg.connect_as("admin")
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("setup failed: {e:?}\n{sql}"));
}

/// `SELECT count(*)` as the superuser.
async fn count(su: &tokio_postgres::Client, sql: &str) -> i64 {
    su.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

async fn table_exists(su: &tokio_postgres::Client, schema: &str, table: &str) -> bool {
    su.query_one(
        "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
        &[&schema, &table],
    )
    .await
    .unwrap()
    .get::<_, i64>(0)
        == 1
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 36
            && s.chars().enumerate().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
                }
            })
    })
}

// ---------------------------------------------------------------------------------------
// query

#[tokio::test]
async fn query_returns_rows_count_and_columns_with_the_value_mapping() {
    let pg = common::shared();
    let t = unique_name("pt_values");
    admin_setup(
        pg,
        &format!(
            "CREATE TABLE {t} (id integer PRIMARY KEY, big bigint, name text, label varchar(10), \
               price numeric(10,2), at timestamptz, doc jsonb, flag boolean, u uuid, raw bytea); \
             INSERT INTO {t} VALUES \
               (1, 9007199254740993, 'héllo', 'a', 12.5, '2024-01-02 03:04:05.25+02', \
                '{{\"a\": [1, 2.5, null], \"b\": {{\"c\": true}}}}', true, \
                'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\\xdeadbeef'), \
               (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ),
    )
    .await;
    let session = McpSession::for_cluster(pg, &[]).await;
    let out = ok(
        &session,
        "query",
        json!({"sql": format!("SELECT * FROM {t} ORDER BY id")}),
    )
    .await;
    assert_eq!(
        out,
        json!({
            "rows": [
                {"id": 1, "big": 9007199254740993_i64, "name": "héllo", "label": "a", "price": "12.50",
                 "at": "2024-01-02T01:04:05.25Z", "doc": {"a": [1, 2.5, null], "b": {"c": true}},
                 "flag": true, "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "raw": "\\xdeadbeef"},
                {"id": 2, "big": null, "name": null, "label": null, "price": null,
                 "at": null, "doc": null, "flag": null, "u": null, "raw": null}
            ],
            "rowCount": 2,
            "columns": [
                {"name": "id", "type": "integer"},
                {"name": "big", "type": "bigint"},
                {"name": "name", "type": "text"},
                {"name": "label", "type": "character varying"},
                {"name": "price", "type": "numeric"},
                {"name": "at", "type": "timestamp with time zone"},
                {"name": "doc", "type": "jsonb"},
                {"name": "flag", "type": "boolean"},
                {"name": "u", "type": "uuid"},
                {"name": "raw", "type": "bytea"}
            ]
        })
    );
    // Key order is column order, in the text as well.
    let result = session
        .call(
            "query",
            json!({"sql": format!("SELECT name, id FROM {t} WHERE id = 1")}),
        )
        .await;
    let raw = text(&result);
    assert!(
        raw.find("\"name\"").unwrap() < raw.find("\"id\"").unwrap(),
        "{raw}"
    );

    // No rows: still the columns.
    let empty = ok(
        &session,
        "query",
        json!({"sql": format!("SELECT id, name FROM {t} WHERE id > 100")}),
    )
    .await;
    assert_eq!(
        empty,
        json!({"rows": [], "rowCount": 0,
               "columns": [{"name": "id", "type": "integer"}, {"name": "name", "type": "text"}]})
    );
    session.close().await;
}

#[tokio::test]
async fn query_binds_json_parameters() {
    let pg = common::shared();
    let t = unique_name("pt_params");
    admin_setup(
        pg,
        &format!(
            "CREATE TABLE {t} (id integer PRIMARY KEY, name text, doc jsonb, note text); \
             INSERT INTO {t} VALUES (1, 'one', '{{\"k\": 1}}', NULL), (2, 'two', NULL, 'x'), \
                                    (3, 'three', '{{\"k\": 3}}', NULL)"
        ),
    )
    .await;
    let session = McpSession::for_cluster(pg, &[]).await;

    // Scalars with explicit casts: numbers, strings, booleans, null.
    let out = ok(
        &session,
        "query",
        json!({
            "sql": "SELECT $1::integer AS i, $2::bigint AS big, $3::double precision AS f, \
                    $4::numeric AS n, $5::text AS s, $6::boolean AS b, $7::text AS nothing, \
                    $8::integer IS NULL AS null_int",
            "parameters": [42, -9007199254740993_i64, 0.25, 12.345, "héllo 'quoted'", true, null, null]
        }),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"i": 42, "big": -9007199254740993_i64, "f": 0.25, "n": "12.345",
                "s": "héllo 'quoted'", "b": true, "nothing": null, "null_int": true}])
    );
    assert_eq!(out["rowCount"], json!(1));

    // Types inferred from the columns, no casts.
    let out = ok(
        &session,
        "query",
        json!({"sql": format!("SELECT id, name FROM {t} WHERE id = $1 OR name = $2 ORDER BY id"),
               "parameters": [1, "three"]}),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"id": 1, "name": "one"}, {"id": 3, "name": "three"}])
    );
    // A string for an integer column parses as the inferred type, like a psql literal.
    let out = ok(
        &session,
        "query",
        json!({"sql": format!("SELECT name FROM {t} WHERE id = $1"), "parameters": ["2"]}),
    )
    .await;
    assert_eq!(out["rows"], json!([{"name": "two"}]));
    // A boolean where a boolean is inferred.
    let out = ok(
        &session,
        "query",
        json!({"sql": format!("SELECT id FROM {t} WHERE (note IS NULL) = $1 ORDER BY id"),
               "parameters": [false]}),
    )
    .await;
    assert_eq!(out["rows"], json!([{"id": 2}]));

    // An object bound to jsonb and to text travels as JSON text.
    let out = ok(
        &session,
        "query",
        json!({"sql": "SELECT $1::jsonb AS j, $2::text AS t, $1::jsonb -> 'b' -> 1 AS second",
               "parameters": [{"a": "x", "b": [1, {"c": null}]}, {"k": "v", "n": 1}]}),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"j": {"a": "x", "b": [1, {"c": null}]}, "t": "{\"k\":\"v\",\"n\":1}", "second": {"c": null}}])
    );
    // An object compared with a jsonb column (inferred jsonb).
    let out = ok(
        &session,
        "query",
        json!({"sql": format!("SELECT id FROM {t} WHERE doc = $1"), "parameters": [{"k": 3}]}),
    )
    .await;
    assert_eq!(out["rows"], json!([{"id": 3}]));

    // An array bound to an int[] parameter.
    let out = ok(
        &session,
        "query",
        json!({"sql": format!("SELECT id, name FROM {t} WHERE id = ANY($1) ORDER BY id"),
               "parameters": [[3, 1, 99]]}),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"id": 1, "name": "one"}, {"id": 3, "name": "three"}])
    );
    // Text arrays, with quoting, and an array coming back as a JSON array.
    let out = ok(
        &session,
        "query",
        json!({"sql": format!("SELECT array_agg(id ORDER BY id) AS ids FROM {t} WHERE name = ANY($1::text[])"),
               "parameters": [["two", "three", "a \"quoted\", odd {value}"]]}),
    )
    .await;
    assert_eq!(out["rows"], json!([{"ids": [2, 3]}]));
    assert_eq!(
        out["columns"],
        json!([{"name": "ids", "type": "integer[]"}])
    );
    // An array bound to a text parameter arrives as JSON text.
    let out = ok(
        &session,
        "query",
        json!({"sql": "SELECT $1::text AS t", "parameters": [[1, "a", null]]}),
    )
    .await;
    assert_eq!(out["rows"], json!([{"t": "[1,\"a\",null]"}]));

    // `parameters: null` counts as absent.
    let out = ok(
        &session,
        "query",
        json!({"sql": "SELECT 1 AS one", "parameters": null}),
    )
    .await;
    assert_eq!(out["rows"], json!([{"one": 1}]));
    session.close().await;
}

#[tokio::test]
async fn query_says_when_a_result_was_truncated() {
    let pg = common::shared();
    let session = McpSession::for_cluster(pg, &["--max-rows", "2"]).await;
    let out = ok(
        &session,
        "query",
        json!({"sql": "SELECT n FROM generate_series(1, $1::integer) AS n ORDER BY n", "parameters": [5]}),
    )
    .await;
    assert_eq!(
        out,
        json!({
            "rows": [{"n": 1}, {"n": 2}],
            "rowCount": 2,
            "columns": [{"name": "n", "type": "integer"}],
            "truncated": true,
            "totalRows": 5,
            "note": "Result truncated: 2 of 5 rows returned because the result has more than 2 rows (--max-rows). \
                     Add LIMIT/OFFSET (or keyset pagination on the primary key) or a narrower WHERE to read the rest."
        })
    );
    // At the limit exactly: nothing was cut.
    let out = ok(
        &session,
        "query",
        json!({"sql": "SELECT n FROM generate_series(1, 2) AS n"}),
    )
    .await;
    assert_eq!(
        out,
        json!({"rows": [{"n": 1}, {"n": 2}], "rowCount": 2, "columns": [{"name": "n", "type": "integer"}]})
    );
    session.close().await;
}

#[tokio::test]
async fn query_bad_input_is_reported_clearly() {
    let pg = common::shared();
    let t = unique_name("pt_bad");
    admin_setup(
        pg,
        &format!("CREATE TABLE {t} (id integer PRIMARY KEY, name text)"),
    )
    .await;
    let session = McpSession::for_cluster(pg, &[]).await;

    // Argument validation, in the reference's (pydantic) shape.
    assert_eq!(
        fails(
            &session,
            "query",
            json!({"sql": "SELECT 1", "parameters": "x"})
        )
        .await,
        "1 validation error for queryArguments\nparameters\n  Input should be a valid list"
    );
    assert_eq!(
        fails(&session, "query", json!({"parameters": {"a": 1}})).await,
        "2 validation errors for queryArguments\nsql\n  Field required\nparameters\n  Input should be a valid list"
    );
    assert_eq!(
        fails(&session, "query", json!({"sql": 7})).await,
        "1 validation error for queryArguments\nsql\n  Input should be a valid string"
    );
    assert_eq!(
        fails(&session, "query", json!({"sql": "   "})).await,
        "Incorrect invocation: query invoked without a SQL statement"
    );

    // Placeholders and parameters must match.
    assert_eq!(
        fails(
            &session,
            "query",
            json!({"sql": "SELECT $1::int, $2::int", "parameters": [1]})
        )
        .await,
        "Your query contains risky injection patterns: Query has 2 placeholders but 1 parameters were supplied. \
This is not an injection: the statement has 2 placeholders but 1 parameter was given; pass one parameter per placeholder"
    );

    // A parameter that does not parse for its inferred type: the database's error and SQLSTATE.
    assert_eq!(
        fails(
            &session,
            "query",
            json!({"sql": format!("SELECT name FROM {t} WHERE id = $1"), "parameters": ["abc"]})
        )
        .await,
        "ERROR 22P02: invalid input syntax for type integer: \"abc\""
    );
    assert_eq!(
        fails(
            &session,
            "query",
            json!({"sql": "SELECT $1::uuid AS u", "parameters": [12]})
        )
        .await,
        "ERROR 22P02: invalid input syntax for type uuid: \"12\""
    );

    // SQL errors from the database carry their position.
    assert_eq!(
        fails(
            &session,
            "query",
            json!({"sql": format!("SELECT nosuchcolumn FROM {t}")})
        )
        .await,
        "ERROR 42703: column \"nosuchcolumn\" does not exist (at character 8)"
    );
    assert_eq!(
        fails(
            &session,
            "query",
            json!({"sql": format!("SELECT id FROM {t}_missing")})
        )
        .await,
        format!("ERROR 42P01: relation \"{t}_missing\" does not exist (at character 16)")
    );
    // A syntax error the database reports, with its position.
    assert_eq!(
        fails(&session, "query", json!({"sql": "SELECT id FROM WHERE"})).await,
        "ERROR 42601: syntax error at or near \"WHERE\" (at character 16)"
    );
    // One the parser-based guard refuses before anything reaches the database, saying where
    // the parser stopped.
    let garbled = fails(&session, "query", json!({"sql": "SELEC id FROM t"})).await;
    assert!(
        garbled
            .starts_with("Your query contains risky injection patterns: SQL could not be parsed: ")
            && garbled.contains("Line: 1, Column: 1"),
        "{garbled}"
    );
    session.close().await;
}

#[tokio::test]
async fn query_refuses_writes_in_both_modes() {
    let pg = common::shared();
    let t = unique_name("pt_ro");
    admin_setup(
        pg,
        &format!("CREATE TABLE {t} (id integer PRIMARY KEY, name text)"),
    )
    .await;
    // A write hidden in a function: the guard cannot see it, the read-only transaction stops it.
    admin_setup(
        pg,
        &format!(
            "CREATE FUNCTION {t}_sneaky() RETURNS integer LANGUAGE sql \
             AS 'INSERT INTO {t} VALUES (99, ''sneaky'') RETURNING id'"
        ),
    )
    .await;
    let su = pg.superuser().await;
    let sneaky = format!("{t}_sneaky");
    for flags in [
        &["--allow-function", sneaky.as_str()][..],
        &["--allow-writes", "--allow-function", sneaky.as_str()][..],
    ] {
        let session = McpSession::for_cluster(pg, flags).await;
        assert_eq!(
            fails(
                &session,
                "query",
                json!({"sql": format!("SELECT {t}_sneaky() AS id")})
            )
            .await,
            "query does not support write operations. Use execute",
            "{flags:?}"
        );
        // A read-only server says writes need the configuration; a server that allows
        // writes says to use `execute`.
        let refused = if flags.contains(&"--allow-writes") {
            "This tool runs reads only; the server allows writes: run the statement with execute ("
        } else {
            "Your MCP server does not allow write operations"
        };
        let insert = fails(
            &session,
            "query",
            json!({"sql": format!("INSERT INTO {t} VALUES ($1, 'x')"), "parameters": [1]}),
        )
        .await;
        assert!(
            insert.starts_with(refused) && insert.contains("INSERT"),
            "{flags:?}: {insert}"
        );
        let drop = fails(&session, "query", json!({"sql": format!("DROP TABLE {t}")})).await;
        assert!(drop.starts_with(refused), "{flags:?}: {drop}");
        // A data-modifying CTE is a write too.
        let cte = fails(
            &session,
            "query",
            json!({"sql": format!("WITH x AS (DELETE FROM {t} RETURNING id) SELECT * FROM x")}),
        )
        .await;
        assert!(cte.starts_with(refused), "{flags:?}: {cte}");
        // Two statements, and transaction control, never pass.
        let two = fails(
            &session,
            "query",
            json!({"sql": format!("SELECT 1; DELETE FROM {t}")}),
        )
        .await;
        assert!(
            two.starts_with(
                "Query contains patterns that could bypass read-only transaction controls"
            ) || two.starts_with(refused),
            "{flags:?}: {two}"
        );
        session.close().await;
        assert_eq!(count(&su, &format!("SELECT count(*) FROM {t}")).await, 0);
        assert!(table_exists(&su, "public", &t).await);
    }
}

// ---------------------------------------------------------------------------------------
// execute

#[tokio::test]
async fn execute_is_refused_without_allow_writes() {
    let pg = common::shared();
    let t = unique_name("pt_nowrite");
    admin_setup(pg, &format!("CREATE TABLE {t} (id integer PRIMARY KEY)")).await;
    let session = McpSession::for_cluster(pg, &[]).await;
    let expected = "Your MCP server does not allow write operations. To use write operations, \
                    change the MCP configuration per README.md \
                    (execute needs the server started with --allow-writes)";
    assert_eq!(
        fails(
            &session,
            "execute",
            json!({"sql": format!("INSERT INTO {t} VALUES ($1)"), "parameters": [1]})
        )
        .await,
        expected
    );
    assert_eq!(
        fails(
            &session,
            "execute",
            json!({"sql": format!("CREATE TABLE {t}_new (id integer PRIMARY KEY)")})
        )
        .await,
        expected
    );
    // Even a read is refused: the tool itself needs --allow-writes.
    assert!(
        fails(&session, "execute", json!({"sql": "SELECT 1"}))
            .await
            .contains("does not allow write operations")
    );
    // The tool list says so too.
    let tools = session.list_tools().await;
    let execute = tools.iter().find(|t| t.name == "execute").unwrap();
    let hints = execute.annotations.as_ref().unwrap();
    assert_eq!(hints.read_only_hint, Some(true));
    session.close().await;

    let su = pg.superuser().await;
    assert_eq!(count(&su, &format!("SELECT count(*) FROM {t}")).await, 0);
    assert!(!table_exists(&su, "public", &format!("{t}_new")).await);
}

#[tokio::test]
async fn execute_reports_command_row_count_and_returned_rows() {
    let pg = common::shared();
    let t = unique_name("pt_exec");
    let su = pg.superuser().await;
    let session = McpSession::for_cluster(pg, &["--allow-writes"]).await;

    let created = ok(
        &session,
        "execute",
        json!({"sql": format!(
            "CREATE TABLE {t} (id integer PRIMARY KEY, name text NOT NULL, price numeric(8,2), \
             tags text, created_at timestamptz NOT NULL DEFAULT now())"
        )}),
    )
    .await;
    assert_eq!(created, json!({"command": "CREATE TABLE", "rowCount": 0}));
    assert!(table_exists(&su, "public", &t).await);

    let inserted = ok(
        &session,
        "execute",
        json!({"sql": format!("INSERT INTO {t} (id, name, price) VALUES ($1, $2, $3), ($4, $5, $6)"),
               "parameters": [1, "one", 1.5, 2, "two", "2"]}),
    )
    .await;
    assert_eq!(inserted, json!({"command": "INSERT", "rowCount": 2}));
    assert_eq!(count(&su, &format!("SELECT count(*) FROM {t}")).await, 2);
    let price: String = su
        .query_one(&format!("SELECT price::text FROM {t} WHERE id = 2"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(price, "2.00");

    let returned = ok(
        &session,
        "execute",
        json!({"sql": format!("INSERT INTO {t} (id, name, price, tags) VALUES ($1, $2, $3, $4) RETURNING id, name, price, tags"),
               "parameters": [3, "three", 10, {"colour": "red", "sizes": [1, 2]}]}),
    )
    .await;
    assert_eq!(
        returned,
        json!({"command": "INSERT", "rowCount": 1,
               "rows": [{"id": 3, "name": "three", "price": "10.00",
                         "tags": "{\"colour\":\"red\",\"sizes\":[1,2]}"}]})
    );
    let tags: String = su
        .query_one(&format!("SELECT tags FROM {t} WHERE id = 3"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tags, "{\"colour\":\"red\",\"sizes\":[1,2]}");

    let updated = ok(
        &session,
        "execute",
        json!({"sql": format!("UPDATE {t} SET price = price * 2 WHERE id = ANY($1)"),
               "parameters": [[1, 2]]}),
    )
    .await;
    assert_eq!(updated, json!({"command": "UPDATE", "rowCount": 2}));
    assert_eq!(
        count(
            &su,
            &format!("SELECT count(*) FROM {t} WHERE price IN (3.00, 4.00)")
        )
        .await,
        2
    );

    let none = ok(
        &session,
        "execute",
        json!({"sql": format!("UPDATE {t} SET name = $1 WHERE id = $2 RETURNING id"),
               "parameters": ["nobody", 99]}),
    )
    .await;
    assert_eq!(
        none,
        json!({"command": "UPDATE", "rowCount": 0, "rows": []})
    );

    let deleted = ok(
        &session,
        "execute",
        json!({"sql": format!("DELETE FROM {t} WHERE id = $1 RETURNING name"), "parameters": [3]}),
    )
    .await;
    assert_eq!(
        deleted,
        json!({"command": "DELETE", "rowCount": 1, "rows": [{"name": "three"}]})
    );
    assert_eq!(count(&su, &format!("SELECT count(*) FROM {t}")).await, 2);

    // NULL parameter, boolean parameter (as text in a text column).
    let nulls = ok(
        &session,
        "execute",
        json!({"sql": format!("UPDATE {t} SET price = $1, tags = $2 WHERE id = 1"),
               "parameters": [null, false]}),
    )
    .await;
    assert_eq!(nulls, json!({"command": "UPDATE", "rowCount": 1}));
    let row = su
        .query_one(
            &format!("SELECT price IS NULL, tags FROM {t} WHERE id = 1"),
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "false");

    let altered = ok(
        &session,
        "execute",
        json!({"sql": format!("ALTER TABLE {t} ADD COLUMN note text")}),
    )
    .await;
    assert_eq!(altered, json!({"command": "ALTER TABLE", "rowCount": 0}));

    let dropped = ok(
        &session,
        "execute",
        json!({"sql": format!("DROP TABLE {t}")}),
    )
    .await;
    assert_eq!(dropped, json!({"command": "DROP TABLE", "rowCount": 0}));
    assert!(!table_exists(&su, "public", &t).await);
    session.close().await;
}

#[tokio::test]
async fn execute_bad_input_rules_and_database_errors() {
    let pg = common::shared();
    let t = unique_name("pt_execbad");
    admin_setup(
        pg,
        &format!("CREATE TABLE {t} (id integer PRIMARY KEY, qty integer CHECK (qty > 0)); INSERT INTO {t} VALUES (1, 1)"),
    )
    .await;
    let su = pg.superuser().await;
    let session = McpSession::for_cluster(pg, &["--allow-writes"]).await;

    assert_eq!(
        fails(
            &session,
            "execute",
            json!({"sql": "DELETE FROM x", "parameters": 5})
        )
        .await,
        "1 validation error for executeArguments\nparameters\n  Input should be a valid list"
    );
    assert_eq!(
        fails(&session, "execute", json!({})).await,
        "1 validation error for executeArguments\nsql\n  Field required"
    );
    assert_eq!(
        fails(&session, "execute", json!({"sql": ""})).await,
        "Incorrect invocation: execute invoked without a SQL statement"
    );

    // The rule checker refuses what DSQL would refuse, before anything runs.
    let index = fails(
        &session,
        "execute",
        json!({"sql": format!("CREATE INDEX {t}_by_qty ON {t} (qty)")}),
    )
    .await;
    assert!(index.contains("ASYNC"), "{index}");
    let serial = fails(
        &session,
        "execute",
        json!({"sql": format!("CREATE TABLE {t}_s (id serial PRIMARY KEY)")}),
    )
    .await;
    assert!(serial.to_lowercase().contains("serial"), "{serial}");
    let truncate = fails(&session, "execute", json!({"sql": format!("TRUNCATE {t}")})).await;
    assert!(truncate.to_uppercase().contains("TRUNCATE"), "{truncate}");
    // ... and the power's policy: no JSON columns, no foreign keys.
    let jsonb = fails(
        &session,
        "execute",
        json!({"sql": format!("CREATE TABLE {t}_j (id integer PRIMARY KEY, doc jsonb)")}),
    )
    .await;
    assert!(jsonb.contains("--rules cluster"), "{jsonb}");
    let fk = fails(
        &session,
        "execute",
        json!({"sql": format!("CREATE TABLE {t}_f (id integer PRIMARY KEY, p integer REFERENCES {t} (id))")}),
    )
    .await;
    assert!(fk.contains("--rules cluster"), "{fk}");
    // Several statements in one call are refused by the guard.
    let two = fails(
        &session,
        "execute",
        json!({"sql": format!("DELETE FROM {t}; DROP TABLE {t}")}),
    )
    .await;
    assert!(
        two.starts_with("Your query contains risky injection patterns"),
        "{two}"
    );
    assert!(!table_exists(&su, "public", &format!("{t}_s")).await);
    assert!(!table_exists(&su, "public", &format!("{t}_j")).await);
    assert!(!table_exists(&su, "public", &format!("{t}_f")).await);
    assert_eq!(
        count(
            &su,
            &format!("SELECT count(*) FROM pg_indexes WHERE tablename = '{t}'")
        )
        .await,
        1,
        "only the primary key index"
    );

    // Database errors: SQLSTATE, message, detail.
    assert_eq!(
        fails(
            &session,
            "execute",
            json!({"sql": format!("INSERT INTO {t} (id, qty) VALUES ($1, $2)"), "parameters": [1, 5]})
        )
        .await,
        format!(
            "ERROR 23505: duplicate key value violates unique constraint \"{t}_pkey\"\nDETAIL: Key (id)=(1) already exists."
        )
    );
    assert_eq!(
        fails(
            &session,
            "execute",
            json!({"sql": format!("UPDATE {t} SET qty = $1 WHERE id = 1"), "parameters": [0]})
        )
        .await,
        format!(
            "ERROR 23514: new row for relation \"{t}\" violates check constraint \"{t}_qty_check\"\nDETAIL: Failing row contains (1, 0)."
        )
    );
    assert_eq!(
        fails(
            &session,
            "execute",
            json!({"sql": format!("UPDATE {t} SET qty = $1 WHERE id = 1"), "parameters": ["lots"]})
        )
        .await,
        "ERROR 22P02: invalid input syntax for type integer: \"lots\""
    );
    assert_eq!(
        fails(
            &session,
            "execute",
            json!({"sql": format!("UPDATE {t} SET nosuch = 1")})
        )
        .await,
        format!(
            "ERROR 42703: column \"nosuch\" of relation \"{t}\" does not exist (at character {})",
            13 + t.len()
        )
    );
    // Nothing changed.
    assert_eq!(
        count(
            &su,
            &format!("SELECT count(*) FROM {t} WHERE id = 1 AND qty = 1")
        )
        .await,
        1
    );
    assert_eq!(count(&su, &format!("SELECT count(*) FROM {t}")).await, 1);
    session.close().await;
}

// ---------------------------------------------------------------------------------------
// list_tables

#[tokio::test]
async fn list_tables_in_a_named_schema_sorted_without_views() {
    let pg = common::shared();
    let s = unique_name("pt_schema");
    let empty = unique_name("pt_empty");
    admin_setup(
        pg,
        &format!(
            "CREATE SCHEMA {s}; CREATE SCHEMA {empty}; \
             CREATE TABLE {s}.zebra (id int PRIMARY KEY); \
             CREATE TABLE {s}.apple (id int PRIMARY KEY); \
             CREATE TABLE {s}.\"Mango\" (id int PRIMARY KEY); \
             CREATE TABLE {s}.apple_2 (id int PRIMARY KEY); \
             CREATE TABLE {s}.parted (id int) PARTITION BY RANGE (id); \
             CREATE VIEW {s}.a_view AS SELECT 1 AS one; \
             CREATE SEQUENCE {s}.a_seq;"
        ),
    )
    .await;
    let session = McpSession::for_cluster(pg, &[]).await;
    let args = json!({"schema": s});
    let result = session.call("list_tables", args.clone()).await;
    let (text_json, structured) = success("list_tables", &args, &result);
    let tables = json!(["Mango", "apple", "apple_2", "parted", "zebra"]);
    assert_eq!(text_json, tables);
    assert_eq!(structured, json!({"schema": s, "tables": tables}));

    let args = json!({"schema": empty});
    let result = session.call("list_tables", args.clone()).await;
    assert_eq!(
        success("list_tables", &args, &result),
        (json!([]), json!({"schema": empty, "tables": []}))
    );
    // A schema that does not exist is said to, not listed as empty.
    assert_eq!(
        fails(
            &session,
            "list_tables",
            json!({"schema": format!("{s}_nope")})
        )
        .await,
        format!(
            "schema \"{s}_nope\" does not exist (query SELECT nspname FROM pg_catalog.pg_namespace to see the schemas)"
        )
    );
    // Schema names are bound, never spliced.
    assert_eq!(
        fails(
            &session,
            "list_tables",
            json!({"schema": format!("{s}' OR '1'='1")})
        )
        .await,
        format!(
            "schema \"{s}' OR '1'='1\" does not exist (query SELECT nspname FROM pg_catalog.pg_namespace to see the schemas)"
        )
    );
    // include_views adds the views (not sequences), sorted, beside the tables.
    let args = json!({"schema": s, "include_views": true});
    let result = session.call("list_tables", args.clone()).await;
    let (text_json, structured) = success("list_tables", &args, &result);
    let expected = json!({"schema": s, "tables": ["Mango", "apple", "apple_2", "parted", "zebra"], "views": ["a_view"]});
    assert_eq!(structured, expected);
    assert_eq!(text_json, expected);

    assert_eq!(
        fails(&session, "list_tables", json!({"schema": 3})).await,
        "1 validation error for list_tablesArguments\nschema\n  Input should be a valid string"
    );
    session.close().await;
}

// ---------------------------------------------------------------------------------------
// describe_table

#[tokio::test]
async fn describe_table_reports_columns_indexes_and_constraints() {
    let pg = common::shared();
    let s = unique_name("pt_desc");
    admin_setup(
        pg,
        &format!(
            "CREATE SCHEMA {s}; \
             CREATE TABLE {s}.items ( \
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
               tenant_id uuid NOT NULL, \
               sku varchar(40) NOT NULL, \
               qty integer NOT NULL DEFAULT 1, \
               price numeric(12,2), \
               total numeric GENERATED ALWAYS AS (price * qty) STORED, \
               code integer GENERATED BY DEFAULT AS IDENTITY, \
               created_at timestamptz NOT NULL DEFAULT now(), \
               UNIQUE (tenant_id, sku)); \
             CREATE INDEX items_by_created ON {s}.items (tenant_id, created_at); \
             CREATE INDEX items_broken ON {s}.items (sku); \
             ALTER TABLE {s}.items ADD CONSTRAINT items_qty_positive CHECK (qty > 0) NOT VALID; \
             ALTER TABLE {s}.items ADD CONSTRAINT items_price_positive CHECK (price >= 0);"
        ),
    )
    .await;
    // An index whose build failed (as an ASYNC build leaves it): only the superuser can fake it.
    let su = pg.superuser().await;
    su.execute(
        &format!(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{s}.items_broken'::regclass"
        ),
        &[],
    )
    .await
    .unwrap();

    let session = McpSession::for_cluster(pg, &[]).await;
    let out = ok(
        &session,
        "describe_table",
        json!({"table_name": "items", "schema": s}),
    )
    .await;
    let column = |name: &str,
                  ty: &str,
                  nullable: bool,
                  default: Value,
                  identity: Value,
                  generated: Value| {
        json!({"name": name, "type": ty, "nullable": nullable, "default": default,
               "identity": identity, "generated": generated})
    };
    assert_eq!(
        out,
        json!({
            "schema": s,
            "table": "items",
            "columns": [
                column("id", "bigint", false, Value::Null, json!("ALWAYS"), Value::Null),
                column("tenant_id", "uuid", false, Value::Null, Value::Null, Value::Null),
                column("sku", "character varying(40)", false, Value::Null, Value::Null, Value::Null),
                column("qty", "integer", false, json!("1"), Value::Null, Value::Null),
                column("price", "numeric(12,2)", true, Value::Null, Value::Null, Value::Null),
                column("total", "numeric", true, Value::Null, Value::Null, json!("(price * (qty)::numeric)")),
                column("code", "integer", false, Value::Null, json!("BY DEFAULT"), Value::Null),
                column("created_at", "timestamp with time zone", false, json!("now()"), Value::Null, Value::Null),
            ],
            "indexes": [
                {"name": "items_pkey",
                 "definition": format!("CREATE UNIQUE INDEX items_pkey ON {s}.items USING btree (id)"),
                 "unique": true, "primary": true, "valid": true},
                {"name": "items_broken",
                 "definition": format!("CREATE INDEX items_broken ON {s}.items USING btree (sku)"),
                 "unique": false, "primary": false, "valid": false},
                {"name": "items_by_created",
                 "definition": format!("CREATE INDEX items_by_created ON {s}.items USING btree (tenant_id, created_at)"),
                 "unique": false, "primary": false, "valid": true},
                {"name": "items_tenant_id_sku_key",
                 "definition": format!("CREATE UNIQUE INDEX items_tenant_id_sku_key ON {s}.items USING btree (tenant_id, sku)"),
                 "unique": true, "primary": false, "valid": true},
            ],
            "constraints": [
                {"name": "items_pkey", "type": "PRIMARY KEY", "definition": "PRIMARY KEY (id)", "validated": true},
                {"name": "items_price_positive", "type": "CHECK", "definition": "CHECK ((price >= (0)::numeric))", "validated": true},
                {"name": "items_qty_positive", "type": "CHECK", "definition": "CHECK ((qty > 0)) NOT VALID", "validated": false},
                {"name": "items_tenant_id_sku_key", "type": "UNIQUE", "definition": "UNIQUE (tenant_id, sku)", "validated": true},
            ]
        })
    );

    // Unquoted-identifier folding: `ITEMS` in `SCHEMA` finds items.
    let folded = ok(
        &session,
        "describe_table",
        json!({"table_name": "ITEMS", "schema": s.to_uppercase()}),
    )
    .await;
    assert_eq!(folded, out);
    session.close().await;
}

#[tokio::test]
async fn describe_table_defaults_to_public_and_names_the_schema_when_missing() {
    let pg = common::shared();
    let t = unique_name("pt_pub");
    let s = unique_name("pt_other");
    admin_setup(
        pg,
        &format!(
            "CREATE TABLE {t} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), note text); \
             CREATE SCHEMA {s}; CREATE TABLE {s}.{t} (other_id integer NOT NULL)"
        ),
    )
    .await;
    let session = McpSession::for_cluster(pg, &[]).await;
    let public = ok(&session, "describe_table", json!({"table_name": t})).await;
    assert_eq!(
        public,
        json!({
            "schema": "public",
            "table": t,
            "columns": [
                {"name": "id", "type": "uuid", "nullable": false, "default": "gen_random_uuid()", "identity": null, "generated": null},
                {"name": "note", "type": "text", "nullable": true, "default": null, "identity": null, "generated": null},
            ],
            "indexes": [
                {"name": format!("{t}_pkey"),
                 "definition": format!("CREATE UNIQUE INDEX {t}_pkey ON public.{t} USING btree (id)"),
                 "unique": true, "primary": true, "valid": true},
            ],
            "constraints": [
                {"name": format!("{t}_pkey"), "type": "PRIMARY KEY", "definition": "PRIMARY KEY (id)", "validated": true},
            ]
        })
    );
    // `schema: null` is the default too.
    assert_eq!(
        ok(
            &session,
            "describe_table",
            json!({"table_name": t, "schema": null})
        )
        .await,
        public
    );
    // The same name in another schema is another table.
    let other = ok(
        &session,
        "describe_table",
        json!({"table_name": t, "schema": s}),
    )
    .await;
    assert_eq!(other["schema"], json!(s));
    assert_eq!(
        other["columns"],
        json!([{"name": "other_id", "type": "integer", "nullable": false, "default": null, "identity": null, "generated": null}])
    );
    assert_eq!(other["indexes"], json!([]));
    assert_eq!(other["constraints"], json!([]));

    // Missing tables: an error that names the schema searched.
    assert_eq!(
        fails(
            &session,
            "describe_table",
            json!({"table_name": "no_such_table"})
        )
        .await,
        "table \"no_such_table\" was not found in schema \"public\" (list_tables shows the tables of a schema)"
    );
    assert_eq!(
        fails(
            &session,
            "describe_table",
            json!({"table_name": "note", "schema": s})
        )
        .await,
        format!(
            "table \"note\" was not found in schema \"{s}\" (list_tables shows the tables of a schema)"
        )
    );
    // Names are bound, never spliced into SQL.
    let sneaky = format!("{t}' OR '1'='1");
    assert_eq!(
        fails(&session, "describe_table", json!({"table_name": sneaky})).await,
        format!(
            "table \"{sneaky}\" was not found in schema \"public\" (list_tables shows the tables of a schema)"
        )
    );

    assert_eq!(
        fails(&session, "describe_table", json!({})).await,
        "1 validation error for describe_tableArguments\ntable_name\n  Field required"
    );
    assert_eq!(
        fails(
            &session,
            "describe_table",
            json!({"table_name": ["x"], "schema": false})
        )
        .await,
        "2 validation errors for describe_tableArguments\ntable_name\n  Input should be a valid string\nschema\n  Input should be a valid string"
    );
    assert_eq!(
        fails(&session, "describe_table", json!({"table_name": " "})).await,
        "Incorrect invocation: describe_table invoked without a table name"
    );
    session.close().await;
}

// ---------------------------------------------------------------------------------------
// Walk-through

/// The power's multi-tenant flow, one call at a time, on a private cluster so that the
/// `public` schema holds exactly what the walk-through creates.
#[tokio::test]
async fn multi_tenant_walk_through_in_the_powers_style() {
    let pg = tokio::task::spawn_blocking(common::start).await.unwrap();
    let su = pg.superuser().await;
    let session = McpSession::for_cluster(&pg, &["--allow-writes"]).await;
    let tenant_a = "0b6c2f0e-3c1a-4a51-9d55-2f4f6f7e8a90";
    let tenant_b = "7d3e1f2a-5b6c-4d7e-8f90-a1b2c3d4e5f6";

    // A fresh cluster: nothing in public.
    let result = session.call("list_tables", json!({})).await;
    assert_eq!(
        success("list_tables", &json!({}), &result),
        (json!([]), json!({"schema": "public", "tables": []}))
    );

    // 1. Schema: one DDL per call.
    for ddl in [
        "CREATE TABLE IF NOT EXISTS tenants (id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY, \
         name varchar(200) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE IF NOT EXISTS customers (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), \
         email varchar(320) NOT NULL, full_name varchar(200), created_at timestamptz NOT NULL DEFAULT now(), \
         PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, email))",
        "CREATE TABLE IF NOT EXISTS orders (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), \
         customer_id uuid NOT NULL, status varchar(20) NOT NULL DEFAULT 'pending' \
         CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')), \
         total numeric(12,2) NOT NULL DEFAULT 0, attributes text, \
         created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id))",
    ] {
        assert_eq!(
            ok(&session, "execute", json!({"sql": ddl})).await,
            json!({"command": "CREATE TABLE", "rowCount": 0})
        );
    }
    for table in ["tenants", "customers", "orders"] {
        assert!(table_exists(&su, "public", table).await, "{table}");
    }
    let result = session.call("list_tables", json!({})).await;
    assert_eq!(
        success("list_tables", &json!({}), &result).0,
        json!(["customers", "orders", "tenants"])
    );

    // 2. Tenants and customers, values as parameters.
    for (id, name) in [(tenant_a, "Acme"), (tenant_b, "Globex")] {
        assert_eq!(
            ok(
                &session,
                "execute",
                json!({"sql": "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                       "parameters": [id, name]})
            )
            .await,
            json!({"command": "INSERT", "rowCount": 1})
        );
    }
    assert_eq!(count(&su, "SELECT count(*) FROM tenants").await, 2);

    let mut customers = Vec::new();
    for (tenant, email, name) in [
        (tenant_a, "ana@example.com", "Ana Lima"),
        (tenant_a, "raj@example.com", "Raj Patel"),
        (tenant_b, "ana@example.com", "Ana Other"),
    ] {
        let out = ok(
            &session,
            "execute",
            json!({"sql": "INSERT INTO customers (tenant_id, email, full_name) VALUES ($1, $2, $3) \
                           ON CONFLICT (tenant_id, email) DO NOTHING RETURNING id",
                   "parameters": [tenant, email, name]}),
        )
        .await;
        assert_eq!(out["command"], json!("INSERT"));
        assert_eq!(out["rowCount"], json!(1));
        let rows = out["rows"].as_array().expect("rows for RETURNING");
        assert_eq!(rows.len(), 1);
        let id = rows[0]["id"].clone();
        assert!(is_uuid(&id), "{out}");
        assert_eq!(rows[0].as_object().unwrap().len(), 1);
        customers.push(id.as_str().unwrap().to_owned());
    }
    let stored: i64 = su
        .query_one(
            "SELECT count(*) FROM customers WHERE tenant_id = $1::text::uuid AND id::text = ANY($2)",
            &[&tenant_a, &vec![customers[0].clone(), customers[1].clone()]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 2);
    // The same email again for tenant A: nothing inserted, nothing returned.
    assert_eq!(
        ok(
            &session,
            "execute",
            json!({"sql": "INSERT INTO customers (tenant_id, email, full_name) VALUES ($1, $2, $3) \
                           ON CONFLICT (tenant_id, email) DO NOTHING RETURNING id",
                   "parameters": [tenant_a, "ana@example.com", "Duplicate"]})
        )
        .await,
        json!({"command": "INSERT", "rowCount": 0, "rows": []})
    );
    assert_eq!(count(&su, "SELECT count(*) FROM customers").await, 3);

    // 3. Orders only when the customer exists for the same tenant.
    let insert_order = "INSERT INTO orders (tenant_id, customer_id, total, attributes) \
                        SELECT c.tenant_id, c.id, $3, $4 FROM customers c \
                        WHERE c.tenant_id = $1 AND c.id = $2 RETURNING id, status, total, attributes";
    let mut orders = Vec::new();
    for (customer, total, attributes) in [
        (
            &customers[0],
            json!(42.5),
            json!({"channel": "web", "coupon": null}),
        ),
        (&customers[0], json!("10"), json!({"channel": "store"})),
        (&customers[1], json!(7), json!({"channel": "web"})),
    ] {
        let out = ok(
            &session,
            "execute",
            json!({"sql": insert_order, "parameters": [tenant_a, customer, total, attributes]}),
        )
        .await;
        assert_eq!(out["command"], json!("INSERT"));
        assert_eq!(out["rowCount"], json!(1));
        let row = &out["rows"][0];
        assert!(is_uuid(&row["id"]), "{out}");
        assert_eq!(row["status"], json!("pending"));
        assert_eq!(row["attributes"], json!(attributes.to_string()));
        orders.push(row["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM orders WHERE total IN (42.50, 10.00, 7.00)"
        )
        .await,
        3
    );
    // Tenant B cannot attach an order to tenant A's customer.
    assert_eq!(
        ok(
            &session,
            "execute",
            json!({"sql": insert_order, "parameters": [tenant_b, &customers[0], 99, {"channel": "web"}]})
        )
        .await,
        json!({"command": "INSERT", "rowCount": 0, "rows": []})
    );
    assert_eq!(count(&su, "SELECT count(*) FROM orders").await, 3);

    // 4. Tenant-scoped join and aggregate.
    let revenue = ok(
        &session,
        "query",
        json!({"sql": "SELECT c.email, count(*) AS orders, sum(o.total) AS revenue, \
                       count(*) FILTER (WHERE o.attributes::jsonb ->> 'channel' = 'web') AS web_orders \
                       FROM customers c JOIN orders o ON o.tenant_id = c.tenant_id AND o.customer_id = c.id \
                       WHERE c.tenant_id = $1 GROUP BY c.email ORDER BY revenue DESC",
               "parameters": [tenant_a]}),
    )
    .await;
    assert_eq!(
        revenue,
        json!({
            "rows": [
                {"email": "ana@example.com", "orders": 2, "revenue": "52.50", "web_orders": 1},
                {"email": "raj@example.com", "orders": 1, "revenue": "7.00", "web_orders": 1}
            ],
            "rowCount": 2,
            "columns": [
                {"name": "email", "type": "character varying"},
                {"name": "orders", "type": "bigint"},
                {"name": "revenue", "type": "numeric"},
                {"name": "web_orders", "type": "bigint"}
            ]
        })
    );
    let other_tenant = ok(
        &session,
        "query",
        json!({"sql": "SELECT o.id FROM orders o JOIN customers c \
                       ON c.tenant_id = o.tenant_id AND c.id = o.customer_id WHERE o.tenant_id = $1",
               "parameters": [tenant_b]}),
    )
    .await;
    assert_eq!(other_tenant["rows"], json!([]));
    assert_eq!(other_tenant["rowCount"], json!(0));

    // 5. Describe what was built.
    let described = ok(&session, "describe_table", json!({"table_name": "orders"})).await;
    let names: Vec<&str> = described["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tenant_id",
            "id",
            "customer_id",
            "status",
            "total",
            "attributes",
            "created_at"
        ]
    );
    assert_eq!(
        described["columns"][3],
        json!({"name": "status", "type": "character varying(20)", "nullable": false,
               "default": "'pending'::character varying", "identity": null, "generated": null})
    );
    assert_eq!(
        described["indexes"],
        json!([{"name": "orders_pkey",
                "definition": "CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (tenant_id, id)",
                "unique": true, "primary": true, "valid": true}])
    );
    assert_eq!(
        described["constraints"],
        json!([
            {"name": "orders_pkey", "type": "PRIMARY KEY", "definition": "PRIMARY KEY (tenant_id, id)", "validated": true},
            {"name": "orders_status_check", "type": "CHECK",
             "definition": "CHECK (((status)::text = ANY ((ARRAY['pending'::character varying, 'paid'::character varying, 'shipped'::character varying, 'cancelled'::character varying])::text[])))",
             "validated": true}
        ])
    );

    // 6. A tenant-scoped, retry-safe state change.
    let paid = json!({"sql": "UPDATE orders SET status = 'paid' WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
                      "parameters": [tenant_a, &orders[0]]});
    assert_eq!(
        ok(&session, "execute", paid.clone()).await,
        json!({"command": "UPDATE", "rowCount": 1})
    );
    assert_eq!(
        ok(&session, "execute", paid).await,
        json!({"command": "UPDATE", "rowCount": 0})
    );
    let status: String = su
        .query_one(
            "SELECT status FROM orders WHERE id = $1::text::uuid",
            &[&orders[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "paid");

    // 7. Clean up with DELETE: children first, tenant by tenant.
    for (sql, tenant, expected) in [
        ("DELETE FROM orders WHERE tenant_id = $1", tenant_a, 3),
        ("DELETE FROM orders WHERE tenant_id = $1", tenant_b, 0),
        ("DELETE FROM customers WHERE tenant_id = $1", tenant_a, 2),
        ("DELETE FROM customers WHERE tenant_id = $1", tenant_b, 1),
        ("DELETE FROM tenants WHERE id = $1", tenant_a, 1),
        ("DELETE FROM tenants WHERE id = $1", tenant_b, 1),
    ] {
        assert_eq!(
            ok(
                &session,
                "execute",
                json!({"sql": sql, "parameters": [tenant]})
            )
            .await,
            json!({"command": "DELETE", "rowCount": expected}),
            "{sql} {tenant}"
        );
    }
    for table in ["orders", "customers", "tenants"] {
        assert_eq!(
            count(&su, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    for table in ["orders", "customers", "tenants"] {
        assert_eq!(
            ok(
                &session,
                "execute",
                json!({"sql": format!("DROP TABLE {table}")})
            )
            .await,
            json!({"command": "DROP TABLE", "rowCount": 0})
        );
        assert!(!table_exists(&su, "public", table).await, "{table}");
    }
    let result = session.call("list_tables", json!({})).await;
    assert_eq!(success("list_tables", &json!({}), &result).0, json!([]));
    session.close().await;
}
