//! Migrations (issue 11) through the real binary and a real MCP client on the `--local`
//! sandbox (a real PostgreSQL that emulates DSQL's CREATE INDEX ASYNC jobs and sys.jobs):
//! the add-column / batched-backfill / ASYNC-index workflow as one migration with exact
//! history rows, dry runs that change nothing, resume after a failure, refusal of an edited
//! applied migration, execute_batched over 7,500 rows, a non-converging write refused, a
//! held lock refusing a second runner (and an expired one taken over), a step left `started`
//! reported and not re-run, and `migrate DIR` (one line per step, exit status 1 on a failure).

mod common;

use common::{McpSession, structured, text};
use serde_json::{Value, json};

async fn ok(s: &McpSession, tool: &str, args: Value) -> Value {
    let r = s.call(tool, args.clone()).await;
    assert_ne!(r.is_error, Some(true), "{tool} {args}: {}", text(&r));
    structured(&r)
}

async fn err(s: &McpSession, tool: &str, args: Value) -> String {
    let r = s.call(tool, args.clone()).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "{tool} {args} succeeded: {}",
        text(&r)
    );
    text(&r)
}

async fn rows(s: &McpSession, sql: &str) -> Vec<Value> {
    ok(s, "query", json!({ "sql": sql })).await["rows"]
        .as_array()
        .unwrap()
        .clone()
}

const WORKFLOW: &str = "CREATE TABLE orders (id int PRIMARY KEY, amount int NOT NULL);\n\
INSERT INTO orders SELECT g, g % 100 FROM generate_series(1, 2500) g;\n\
ALTER TABLE orders ADD COLUMN status text;\n\
-- dsql:batched 1000\n\
UPDATE orders SET status = 'new' WHERE status IS NULL;\n\
CREATE INDEX ASYNC orders_status_idx ON orders (status);\n";

#[tokio::test]
async fn workflow_migration_dry_run_apply_resume_and_refusals() {
    let s = McpSession::start(&["--local".to_string(), "--allow-writes".to_string()], &[]).await;

    // Dry run: the plan, and nothing changed (no table, no history table).
    let plan = ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_orders", "sql": WORKFLOW, "dry_run": true }),
    )
    .await;
    assert_eq!(plan["dry_run"], true, "{plan}");
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ddl", "dml", "ddl", "batched", "ddl_job"], "{plan}");
    let absent = rows(
        &s,
        "SELECT to_regclass('public.orders')::text AS t, to_regclass('public.dsql_mcp_migrations')::text AS h",
    )
    .await;
    assert_eq!(absent, [json!({ "t": null, "h": null })]);

    // Apply: every step applied, history rows exact. A DML step's row commits inside the step's
    // transaction, before its row count is known, so `rows_changed` is recorded only for batched steps.
    let applied = ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_orders", "sql": WORKFLOW }),
    )
    .await;
    assert_eq!(applied["status"], "applied", "{applied}");
    let states: Vec<&str> = applied["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied"; 5], "{applied}");
    assert_eq!(applied["steps"][1]["rows"], 2500, "{applied}");
    assert_eq!(applied["steps"][3]["rows"], 2500, "{applied}");
    assert_eq!(applied["steps"][3]["batches"], 3, "{applied}");
    let history = rows(
        &s,
        "SELECT step, kind, state, rows_changed, job_id IS NOT NULL AS has_job, last_error \
         FROM public.dsql_mcp_migrations WHERE name = '0001_orders' ORDER BY step",
    )
    .await;
    assert_eq!(
        history,
        [
            json!({"step": 1, "kind": "ddl", "state": "done", "rows_changed": null, "has_job": false, "last_error": null}),
            json!({"step": 2, "kind": "dml", "state": "done", "rows_changed": null, "has_job": false, "last_error": null}),
            json!({"step": 3, "kind": "ddl", "state": "done", "rows_changed": null, "has_job": false, "last_error": null}),
            json!({"step": 4, "kind": "batched", "state": "done", "rows_changed": 2500, "has_job": false, "last_error": null}),
            json!({"step": 5, "kind": "ddl_job", "state": "done", "rows_changed": null, "has_job": true, "last_error": null}),
        ]
    );
    let backfilled = rows(
        &s,
        "SELECT count(*)::int AS n FROM orders WHERE status = 'new'",
    )
    .await;
    assert_eq!(backfilled, [json!({ "n": 2500 })]);

    // A re-run of the same text skips everything.
    let again = ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_orders", "sql": WORKFLOW }),
    )
    .await;
    let states: Vec<&str> = again["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["skipped"; 5], "{again}");

    // An edited applied migration is refused, naming the first differing step.
    let edited = WORKFLOW.replace("ADD COLUMN status text", "ADD COLUMN status varchar(20)");
    let refused = err(
        &s,
        "apply_migration",
        json!({ "name": "0001_orders", "sql": edited }),
    )
    .await;
    assert!(
        refused.starts_with("Error executing tool apply_migration: migration 0001_orders was applied with a different text: step 3 (ALTER TABLE, line 3) differs"),
        "{refused}"
    );

    // A failure in the middle: step 2 fails (no such table), step 1 stays applied.
    let broken = "CREATE TABLE t2 (id int PRIMARY KEY, v int);\nINSERT INTO t2_missing VALUES (1, 1);\nALTER TABLE t2 ADD COLUMN w int;\n";
    let failed = err(
        &s,
        "apply_migration",
        json!({ "name": "0002_t2", "sql": broken }),
    )
    .await;
    assert!(
        failed.starts_with("Error executing tool apply_migration: migration 0002_t2 failed at step 2 of 3 (INSERT, line 2):"),
        "{failed}"
    );
    let history = rows(
        &s,
        "SELECT step, state, last_error IS NOT NULL AS has_error FROM public.dsql_mcp_migrations \
         WHERE name = '0002_t2' ORDER BY step",
    )
    .await;
    assert_eq!(
        history,
        [
            json!({"step": 1, "state": "done", "has_error": false}),
            json!({"step": 2, "state": "failed", "has_error": true}),
        ]
    );
    let listed = ok(&s, "list_migrations", json!({})).await;
    assert_eq!(listed["count"], 2, "{listed}");
    assert_eq!(listed["table"], "public.dsql_mcp_migrations");
    let m2 = listed["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "0002_t2")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(m2["status"], "failed", "{listed}");
    assert_eq!(m2["steps_done"], 1, "{listed}");
    assert_eq!(m2["steps_total"], 3, "{listed}");

    // The fixed re-run (step 1 unchanged) resumes at step 2.
    let fixed = broken.replace("t2_missing", "t2");
    let resumed = ok(
        &s,
        "apply_migration",
        json!({ "name": "0002_t2", "sql": fixed }),
    )
    .await;
    let states: Vec<&str> = resumed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["skipped", "applied", "applied"], "{resumed}");
    assert_eq!(
        rows(&s, "SELECT id, v, w FROM t2").await,
        [json!({"id": 1, "v": 1, "w": null})]
    );

    // execute_batched over 7,500 rows: 8 batches, every row changed once.
    ok(
        &s,
        "execute",
        json!({ "sql": "CREATE TABLE big (id int PRIMARY KEY, flag boolean)" }),
    )
    .await;
    for chunk in 0..3 {
        let lo = chunk * 2500 + 1;
        let hi = lo + 2499;
        ok(
            &s,
            "execute",
            json!({ "sql": format!("INSERT INTO big SELECT g, false FROM generate_series({lo}, {hi}) g") }),
        )
        .await;
    }
    let done = ok(
        &s,
        "execute_batched",
        json!({ "sql": "UPDATE big SET flag = true WHERE flag = false", "batch_size": 1000 }),
    )
    .await;
    assert_eq!(done["rows"], 7500, "{done}");
    assert_eq!(done["batches"], 8, "{done}");
    assert_eq!(done["atomic"], false, "{done}");
    assert_eq!(
        rows(&s, "SELECT count(*)::int AS n FROM big WHERE flag").await,
        [json!({ "n": 7500 })]
    );

    // A write whose batches would never converge is refused, nothing changed.
    let never = err(
        &s,
        "execute_batched",
        json!({ "sql": "UPDATE big SET flag = false WHERE id > 0" }),
    )
    .await;
    assert!(
        never.contains(
            "this UPDATE's batches would not converge: its WHERE reads none of the columns its SET changes (flag)"
        ),
        "{never}"
    );
    assert_eq!(
        rows(&s, "SELECT count(*)::int AS n FROM big WHERE flag").await,
        [json!({ "n": 7500 })]
    );
    s.close().await;
}

/// `execute` on the session, for set-up the tools under test must then meet.
async fn exec(s: &McpSession, sql: &str) {
    ok(s, "execute", json!({ "sql": sql })).await;
}

#[tokio::test]
async fn a_held_lock_refuses_a_second_runner_and_an_expired_one_is_taken_over() {
    let s = McpSession::start(&["--local".to_string(), "--allow-writes".to_string()], &[]).await;
    let first = "CREATE TABLE la (id int PRIMARY KEY);";
    ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_la", "sql": first }),
    )
    .await;
    // Another runner holds the lock, with a live lease.
    exec(
        &s,
        "INSERT INTO public.dsql_mcp_migration_lock (id, holder, migration, acquired_at, lease_until) \
         VALUES (1, 'other runner', '0009_x', now(), now() + interval '10 minutes') \
         ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, migration = EXCLUDED.migration, \
         lease_until = EXCLUDED.lease_until",
    )
    .await;
    let second = "CREATE TABLE lb (id int PRIMARY KEY);";
    let e = err(
        &s,
        "apply_migration",
        json!({ "name": "0002_lb", "sql": second }),
    )
    .await;
    assert!(
        e.contains("another migration runner holds the migration lock: other runner (applying 0009_x) with a lease until "),
        "{e}"
    );
    assert!(e.contains("Nothing was applied"), "{e}");
    let absent = rows(&s, "SELECT to_regclass('public.lb')::text AS t").await;
    assert_eq!(absent, [json!({ "t": null })]);
    let history = rows(
        &s,
        "SELECT count(*)::int AS n FROM public.dsql_mcp_migrations WHERE name = '0002_lb'",
    )
    .await;
    assert_eq!(history, [json!({ "n": 0 })]);

    // The other runner died: its lease ran out, and the next run takes the lock over.
    exec(
        &s,
        "UPDATE public.dsql_mcp_migration_lock SET lease_until = now() - interval '1 minute' WHERE id = 1",
    )
    .await;
    let applied = ok(
        &s,
        "apply_migration",
        json!({ "name": "0002_lb", "sql": second }),
    )
    .await;
    assert_eq!(applied["status"], "applied", "{applied}");
    let note = applied["lock_note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(
            "the migration lock was taken over from other runner, whose lease had expired at "
        ),
        "{applied}"
    );
    let present = rows(&s, "SELECT to_regclass('public.lb')::text AS t").await;
    assert_eq!(present, [json!({ "t": "lb" })]);
    s.close().await;
}

#[tokio::test]
async fn a_step_left_started_is_reported_and_not_run_again() {
    let s = McpSession::start(&["--local".to_string(), "--allow-writes".to_string()], &[]).await;
    let sql = "CREATE TABLE sa (id int PRIMARY KEY);\nCREATE TABLE sb (id int PRIMARY KEY);\n";
    ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_s", "sql": sql }),
    )
    .await;
    // As if the process had stopped between step 2's commit and its history row.
    exec(
        &s,
        "UPDATE public.dsql_mcp_migrations SET state = 'started', finished_at = NULL \
         WHERE name = '0001_s' AND step = 2",
    )
    .await;
    let e = err(
        &s,
        "apply_migration",
        json!({ "name": "0001_s", "sql": sql }),
    )
    .await;
    assert!(
        e.contains("migration 0001_s stopped at step 2 (CREATE TABLE, line 2): the history records it as started"),
        "{e}"
    );
    assert!(e.contains("It is not re-run automatically."), "{e}");
    assert!(
        e.contains("UPDATE public.dsql_mcp_migrations SET state = 'done' WHERE name = '0001_s' AND step = 2"),
        "{e}"
    );
    // Still recorded as started: the run changed nothing.
    let state = rows(
        &s,
        "SELECT state FROM public.dsql_mcp_migrations WHERE name = '0001_s' ORDER BY step",
    )
    .await;
    assert_eq!(
        state,
        [json!({ "state": "done" }), json!({ "state": "started" })]
    );
    // Following the advice (the table is there) settles it.
    exec(
        &s,
        "UPDATE public.dsql_mcp_migrations SET state = 'done' WHERE name = '0001_s' AND step = 2",
    )
    .await;
    let again = ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_s", "sql": sql }),
    )
    .await;
    assert_eq!(again["status"], "already_applied", "{again}");
    s.close().await;
}

#[test]
fn migrate_dir_applies_each_file_once_prints_a_line_per_step_and_fails_with_status_1() {
    use common::mcp::{server_binary, server_env};
    let pg = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let t = common::unique_name("cli");
    std::fs::write(
        dir.path().join("0001_create.sql"),
        format!("CREATE TABLE {t} (id int PRIMARY KEY, v int);\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_fill.sql"),
        format!("INSERT INTO {t} VALUES (1, 10), (2, 20);\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a migration").unwrap();
    let run = || {
        let (home, env) = server_env(&[]);
        let mut args = vec!["migrate".to_string(), dir.path().display().to_string()];
        args.extend(common::cluster_args(pg, &["--allow-writes"]));
        let out = std::process::Command::new(server_binary())
            .args(&args)
            .env_clear()
            .envs(env)
            .current_dir(home.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run();
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Each step line ends with its time, " (0.0 s)"; the rest is exact.
    let lines: Vec<&str> = stdout
        .lines()
        .map(|l| match l.rsplit_once(" (") {
            Some((head, tail)) if tail.ends_with(" s)") => head,
            _ => l,
        })
        .collect();
    assert_eq!(
        lines,
        [
            "0001_create step 1/1 ddl      applied  CREATE TABLE",
            "0001_create: applied",
            "0002_fill step 1/1 dml      applied  INSERT, 2 rows",
            "0002_fill: applied",
            "2 migration(s) applied",
        ],
        "{stdout}"
    );
    // Run again: nothing re-applied, the rows are still two.
    let (code, stdout, _) = run();
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("0001_create: already applied"), "{stdout}");
    assert!(stdout.contains("0002_fill: already applied"), "{stdout}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let count: i64 = rt.block_on(async {
        pg.superuser()
            .await
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(count, 2);
    // A failing file: status 1, its failure on stdout, and the files after it not run.
    std::fs::write(
        dir.path().join("0003_bad.sql"),
        format!("INSERT INTO {t} VALUES (1, 99);\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0004_after.sql"),
        format!("INSERT INTO {t} VALUES (4, 40);\n"),
    )
    .unwrap();
    let (code, stdout, _) = run();
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("0003_bad: FAILED: "), "{stdout}");
    assert!(!stdout.contains("0004_after"), "{stdout}");
    let count: i64 = rt.block_on(async {
        pg.superuser()
            .await
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(count, 2);
}

#[tokio::test]
async fn a_failed_index_job_fails_the_migration_closed_with_its_details() {
    let s = McpSession::start(&["--local".to_string(), "--allow-writes".to_string()], &[]).await;
    let sql = "CREATE TABLE fj (id int PRIMARY KEY, v int);\n\
               INSERT INTO fj VALUES (1, 7), (2, 7);\n\
               CREATE UNIQUE INDEX ASYNC fj_v ON fj (v);\n\
               CREATE TABLE fj_after (id int PRIMARY KEY);\n";
    let e = err(
        &s,
        "apply_migration",
        json!({ "name": "0001_fj", "sql": sql }),
    )
    .await;
    assert!(e.contains(" ended failed: "), "{e}");
    assert!(e.contains("could not create unique index"), "{e}");
    assert!(
        e.contains("The index or constraint is not usable; fix the cause (for a UNIQUE index, the duplicate rows"),
        "{e}"
    );
    // Closed: the step after the job never ran, and the history says where it stopped.
    let after = rows(&s, "SELECT to_regclass('public.fj_after')::text AS t").await;
    assert_eq!(after, [json!({ "t": null })]);
    let history = rows(
        &s,
        "SELECT step, state, job_id IS NOT NULL AS has_job FROM public.dsql_mcp_migrations \
         WHERE name = '0001_fj' ORDER BY step",
    )
    .await;
    assert_eq!(
        history,
        [
            json!({ "step": 1, "state": "done", "has_job": false }),
            json!({ "step": 2, "state": "done", "has_job": false }),
            json!({ "step": 3, "state": "failed", "has_job": true }),
        ]
    );
    s.close().await;
}
