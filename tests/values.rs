//! The value mapping (README "Value mapping") end to end: real PostgreSQL values of every
//! type DSQL stores, plus the runtime-only ones, decoded by the server from the binary
//! wire format and checked as exact JSON.

mod common;

use common::*;
use serde_json::{Value, json};

async fn one_row(s: &McpSession, sql: &str) -> Value {
    let r = s.call("readonly_query", json!({ "sql": sql })).await;
    assert_ne!(r.is_error, Some(true), "{sql}: {}", text(&r));
    structured(&r)["result"][0].clone()
}

#[tokio::test]
async fn every_mapped_type_decodes_to_the_documented_json() {
    let s = McpSession::for_cluster(shared(), &[]).await;
    let cases: &[(&str, Value)] = &[
        ("1::smallint", json!(1)),
        ("(-2147483648)::integer", json!(-2147483648i64)),
        ("9223372036854775807::bigint", json!(9223372036854775807i64)),
        ("42::oid", json!(42)),
        ("1.5::real", json!(1.5)),
        ("0.1::real", json!(0.1)),
        ("2.25::double precision", json!(2.25)),
        ("'NaN'::float8", json!("NaN")),
        ("'Infinity'::float8", json!("Infinity")),
        ("'-Infinity'::float4", json!("-Infinity")),
        ("12.50::numeric", json!("12.50")),
        ("0::numeric", json!("0")),
        ("(-0.000123)::numeric(10,6)", json!("-0.000123")),
        (
            "123456789012345678901234567890.123456789::numeric",
            json!("123456789012345678901234567890.123456789"),
        ),
        ("'NaN'::numeric", json!("NaN")),
        ("true", json!(true)),
        ("'héllo'::text", json!("héllo")),
        ("'ab'::varchar(5)", json!("ab")),
        ("'ab'::char(4)", json!("ab  ")),
        (
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ),
        ("'2024-01-02'::date", json!("2024-01-02")),
        ("'10:11:12'::time", json!("10:11:12")),
        ("'10:11:12.5'::time", json!("10:11:12.5")),
        (
            "'2024-01-02 03:04:05'::timestamp",
            json!("2024-01-02T03:04:05"),
        ),
        (
            "'2024-01-02 03:04:05.123456+02'::timestamptz",
            json!("2024-01-02T01:04:05.123456Z"),
        ),
        ("'infinity'::timestamptz", json!("infinity")),
        ("'1 day'::interval", json!("P1D")),
        ("'1 hour 30 minutes'::interval", json!("PT1H30M")),
        (
            "'{\"a\": [1, {\"b\": null}]}'::jsonb",
            json!({"a": [1, {"b": null}]}),
        ),
        ("'{\"z\": 1, \"a\": 2}'::json", json!({"z": 1, "a": 2})),
        ("'\\xdeadbeef'::bytea", json!("\\xdeadbeef")),
        ("''::bytea", json!("\\x")),
        ("ARRAY[1, NULL, 3]::int[]", json!([1, null, 3])),
        (
            "ARRAY[['a','b'],['c','d']]::text[]",
            json!([["a", "b"], ["c", "d"]]),
        ),
        ("'{}'::int[]", json!([])),
        ("'192.168.0.1'::inet", json!("192.168.0.1")),
        ("'10.0.0.0/8'::cidr", json!("10.0.0.0/8")),
        ("NULL::int", Value::Null),
    ];
    let mut failures = Vec::new();
    for (expr, expected) in cases {
        let got = one_row(&s, &format!("SELECT {expr} AS v")).await["v"].clone();
        if &got != expected {
            failures.push(format!("{expr}: expected {expected}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn values_stored_in_a_table_round_trip_through_parameters() {
    let pg = shared();
    let table = unique_name("vals");
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id uuid PRIMARY KEY, n numeric(12,2), at timestamptz, doc jsonb, raw bytea, ok boolean, note text);
         GRANT ALL ON {table} TO admin;"
    ))
    .await
    .unwrap();
    let s = McpSession::for_cluster(pg, &["--allow-writes"]).await;
    let r = s
        .call(
            "transact",
            json!({
                "sql_list": [format!("INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)")],
                "params_list": [["0b7d6a3c-2a4f-4e0a-9a53-0d1f3f8f4c11", "1234.5", "2026-11-24T08:00:00Z",
                                 {"tags": ["x"], "n": 1}, "\\x0001ff", true, null]]
            }),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let row = one_row(&s, &format!("SELECT * FROM {table}")).await;
    assert_eq!(
        row,
        json!({
            "id": "0b7d6a3c-2a4f-4e0a-9a53-0d1f3f8f4c11",
            "n": "1234.50",
            "at": "2026-11-24T08:00:00Z",
            "doc": {"n": 1, "tags": ["x"]},
            "raw": "\\x0001ff",
            "ok": true,
            "note": null
        })
    );
    // The text content is valid JSON too (the reference printed bare NaN).
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT 'NaN'::float8 AS f, 'Infinity'::numeric AS n"}),
        )
        .await;
    let parsed: Value = serde_json::from_str(&text(&r)).expect("valid JSON text");
    assert_eq!(parsed, json!({"f": "NaN", "n": "Infinity"}));
}

/// An answer of several megabytes (its rows span many of the renderer's 1 MiB pieces)
/// arrives through the real binary with every row once, in order, each as its object and
/// as its pretty text.
#[tokio::test]
async fn an_answer_of_many_megabytes_holds_every_row_once() {
    let s = McpSession::for_cluster(
        shared(),
        &["--max-rows", "200000", "--max-result-bytes", "1000000000"],
    )
    .await;
    let n = 40_000;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": format!(
                "SELECT i, 'line ' || i || E'\\n\"quoted\" é \\\\' AS note, i * 0.5::float8 AS half \
                 FROM generate_series(1, {n}) i"
            )}),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let expected: Vec<Value> = (1..=n)
        .map(|i| json!({"i": i, "note": format!("line {i}\n\"quoted\" é \\"), "half": f64::from(i) * 0.5}))
        .collect();
    let structured = structured(&r);
    let got = structured["result"].as_array().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == &expected, "the rows differ from the generated ones");
    assert_eq!(
        structured.as_object().unwrap().len(),
        1,
        "no truncation note"
    );
    assert_eq!(r.content.len(), expected.len());
    for (block, row) in r.content.iter().zip(&expected) {
        assert_eq!(
            block.as_text().unwrap().text,
            serde_json::to_string_pretty(row).unwrap()
        );
    }
    let wire = serde_json::to_vec(&structured).unwrap().len();
    // The objects alone fill three pieces, the text blocks more.
    assert!(wire > 2 << 20, "only {wire} bytes: not several pieces");
}
