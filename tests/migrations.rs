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

/// The workflow as one migration: two tables, 7,500 rows (three INSERTs, each alone in
/// its transaction under the 3,000-row limit), an ASYNC index, a new column backfilled in
/// batches of 1,000, a CHECK added NOT VALID and validated by an async job.
const WORKFLOW: &str = "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);\n\
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount int NOT NULL);\n\
INSERT INTO orders SELECT g, g % 50, g % 100 FROM generate_series(1, 2500) g;\n\
INSERT INTO orders SELECT g, g % 50, g % 100 FROM generate_series(2501, 5000) g;\n\
INSERT INTO orders SELECT g, g % 50, g % 100 FROM generate_series(5001, 7500) g;\n\
CREATE INDEX ASYNC orders_customer_idx ON orders (customer_id);\n\
ALTER TABLE orders ADD COLUMN status text;\n\
-- dsql:batched 1000\n\
UPDATE orders SET status = 'new' WHERE status IS NULL;\n\
ALTER TABLE orders ADD CONSTRAINT orders_status_known CHECK (status IN ('new', 'paid')) NOT VALID;\n\
ALTER TABLE ASYNC orders VALIDATE CONSTRAINT orders_status_known;\n";

fn states(v: &Value) -> Vec<String> {
    v["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|st| st["state"].as_str().unwrap().to_owned())
        .collect()
}

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
    assert_eq!(
        kinds,
        [
            "ddl", "ddl", "dml", "dml", "dml", "ddl_job", "ddl", "batched", "ddl", "ddl_job"
        ],
        "{plan}"
    );
    let absent = rows(
        &s,
        "SELECT to_regclass('public.orders')::text AS t, to_regclass('public.dsql_mcp_migrations')::text AS h",
    )
    .await;
    assert_eq!(absent, [json!({ "t": null, "h": null })]);

    // Apply: every step applied, history rows exact, row counts included.
    let applied = ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_orders", "sql": WORKFLOW }),
    )
    .await;
    assert_eq!(applied["status"], "applied", "{applied}");
    assert_eq!(states(&applied), ["applied"; 10], "{applied}");
    for i in [2, 3, 4] {
        assert_eq!(applied["steps"][i]["rows"], 2500, "{applied}");
    }
    assert_eq!(applied["steps"][7]["rows"], 7500, "{applied}");
    assert_eq!(applied["steps"][7]["batches"], 8, "{applied}");
    let index_job = applied["steps"][5]["job_id"].as_str().unwrap().to_owned();
    let validate_job = applied["steps"][9]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(validate_job.len(), 26, "{applied}");
    assert_ne!(index_job, validate_job);
    let history = rows(
        &s,
        "SELECT step, kind, state, rows_changed, job_id, last_error \
         FROM public.dsql_mcp_migrations WHERE name = '0001_orders' ORDER BY step",
    )
    .await;
    let h = |step: u64, kind: &str, rows: Value, job: Value| json!({"step": step, "kind": kind, "state": "done", "rows_changed": rows, "job_id": job, "last_error": null});
    assert_eq!(
        history,
        [
            h(1, "ddl", Value::Null, Value::Null),
            h(2, "ddl", Value::Null, Value::Null),
            h(3, "dml", json!(2500), Value::Null),
            h(4, "dml", json!(2500), Value::Null),
            h(5, "dml", json!(2500), Value::Null),
            h(6, "ddl_job", Value::Null, json!(index_job)),
            h(7, "ddl", Value::Null, Value::Null),
            h(8, "batched", json!(7500), Value::Null),
            h(9, "ddl", Value::Null, Value::Null),
            h(10, "ddl_job", Value::Null, json!(validate_job)),
        ]
    );
    let backfilled = rows(
        &s,
        "SELECT count(*)::int AS n FROM orders WHERE status = 'new'",
    )
    .await;
    assert_eq!(backfilled, [json!({ "n": 7500 })]);
    // The constraint ends validated, by the job the history names.
    let constraint = rows(
        &s,
        "SELECT conname::text AS name, convalidated FROM pg_catalog.pg_constraint \
         WHERE conrelid = 'public.orders'::regclass AND contype = 'c'",
    )
    .await;
    assert_eq!(
        constraint,
        [json!({ "name": "orders_status_known", "convalidated": true })]
    );
    let jobs = rows(
        &s,
        &format!(
            "SELECT job_id, job_type, status, object_name FROM sys.jobs \
             WHERE job_id IN ('{index_job}', '{validate_job}') ORDER BY job_type"
        ),
    )
    .await;
    assert_eq!(
        jobs,
        [
            json!({"job_id": index_job, "job_type": "INDEX_BUILD", "status": "completed", "object_name": "public.orders_customer_idx"}),
            json!({"job_id": validate_job, "job_type": "VALIDATE_CONSTRAINT", "status": "completed", "object_name": "public.orders_status_known"}),
        ]
    );
    let listed = ok(&s, "list_migrations", json!({})).await;
    assert_eq!(listed["migrations"][0]["name"], "0001_orders", "{listed}");
    assert_eq!(listed["migrations"][0]["rows"], 15000, "{listed}");
    assert_eq!(listed["migrations"][0]["steps_done"], 10, "{listed}");

    // A re-run of the same text skips everything.
    let again = ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_orders", "sql": WORKFLOW }),
    )
    .await;
    assert_eq!(again["status"], "already_applied", "{again}");
    assert_eq!(states(&again), ["skipped"; 10], "{again}");

    // An edited applied migration is refused, naming the first differing step.
    let edited = WORKFLOW.replace("ADD COLUMN status text", "ADD COLUMN status varchar(20)");
    let refused = err(
        &s,
        "apply_migration",
        json!({ "name": "0001_orders", "sql": edited }),
    )
    .await;
    assert!(
        refused.starts_with("Error executing tool apply_migration: migration 0001_orders was applied with a different text: step 7 (ALTER TABLE, line 7) differs"),
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
    assert_eq!(
        states(&resumed),
        ["skipped", "applied", "applied"],
        "{resumed}"
    );
    assert_eq!(resumed["steps"][1]["rows"], 1, "{resumed}");
    let m2 = ok(&s, "list_migrations", json!({})).await["migrations"][1].clone();
    assert_eq!(
        (
            m2["name"].as_str(),
            m2["status"].as_str(),
            m2["rows"].as_i64()
        ),
        (Some("0002_t2"), Some("applied"), Some(1)),
        "{m2}"
    );
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
    // A WHERE on the changed column that the SET leaves true: refused, with the forms to use.
    let same = err(
        &s,
        "execute_batched",
        json!({ "sql": "UPDATE big SET flag = true WHERE flag = true" }),
    )
    .await;
    assert_eq!(
        same,
        "Error executing tool execute_batched: this UPDATE's batches would not converge, or it cannot be shown \
         that they do: `SET flag = true` does not surely make `WHERE flag = true` false for the rows it updates, so \
         a row it changed could match again and be changed again (by the next batch, or by a re-run after an \
         interruption). Write a WHERE that the SET makes false: `WHERE flag IS NULL` with a SET value that is never \
         NULL (a literal, or coalesce(…, <default>)), `WHERE (flag = true) AND flag IS DISTINCT FROM true` for \
         `SET flag = true` (a literal, a parameter, or an expression of other columns), or `WHERE flag = <old>` \
         with a different literal in the SET\nBefore it stopped, 0 batches changed 0 rows and committed. A batched \
         write is not atomic: each batch committed on its own. If it stopped early, the batches before the failure \
         stay applied; running the same statement again continues with the rows that still match."
    );
    // Decided with the catalog: a primary-key column, and a value a nullable column may leave NULL.
    ok(
        &s,
        "execute",
        json!({ "sql": "ALTER TABLE big ADD COLUMN note text" }),
    )
    .await;
    let key = err(
        &s,
        "execute_batched",
        json!({ "sql": "UPDATE big SET id = 0 WHERE id > 7500" }),
    )
    .await;
    assert!(
        key.starts_with("Error executing tool execute_batched: this UPDATE cannot run in batches: it changes id, a column of the primary key the batches walk"),
        "{key}"
    );
    let nullable = err(
        &s,
        "execute_batched",
        json!({ "sql": "UPDATE big SET note = $1 WHERE note IS NULL", "parameters": [null] }),
    )
    .await;
    assert!(
        nullable.contains("`SET note = $1` does not surely make `WHERE note IS NULL` false for the rows it updates, so"),
        "{nullable}"
    );
    // flag is nullable (the catalog says so), so flag::text may leave note NULL.
    let copied = err(
        &s,
        "execute_batched",
        json!({ "sql": "UPDATE big SET note = flag::text WHERE note IS NULL" }),
    )
    .await;
    assert!(
        copied.contains("`SET note = flag::TEXT` does not surely make `WHERE note IS NULL` false for the rows it updates (note is text)"),
        "{copied}"
    );
    assert_eq!(
        rows(
            &s,
            "SELECT count(*)::int AS n FROM big WHERE flag AND id <= 7500 AND note IS NULL"
        )
        .await,
        [json!({ "n": 7500 })]
    );
    // The accepted form converges: every row once, and a second run changes nothing.
    let tagged = ok(
        &s,
        "execute_batched",
        json!({ "sql": "UPDATE big SET note = $1 WHERE note IS DISTINCT FROM $1", "parameters": ["x"], "batch_size": 3000 }),
    )
    .await;
    assert_eq!(
        (tagged["rows"].as_i64(), tagged["batches"].as_i64()),
        (Some(7500), Some(3)),
        "{tagged}"
    );
    let again = ok(
        &s,
        "execute_batched",
        json!({ "sql": "UPDATE big SET note = $1 WHERE note IS DISTINCT FROM $1", "parameters": ["x"], "batch_size": 3000 }),
    )
    .await;
    assert_eq!(
        (again["rows"].as_i64(), again["batches"].as_i64()),
        (Some(0), Some(1)),
        "{again}"
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

/// A sandbox whose async jobs report `processing` for `job_seconds` (`--local-job-seconds`).
async fn slow_jobs(job_seconds: u64, extra: &[&str]) -> McpSession {
    let mut args: Vec<String> = vec![
        "--local".into(),
        "--allow-writes".into(),
        "--local-job-seconds".into(),
        job_seconds.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    McpSession::start(&args, &[]).await
}

#[tokio::test]
async fn a_job_still_running_at_job_timeout_stops_the_migration_and_a_rerun_waits_for_it() {
    let s = slow_jobs(6, &["--job-timeout", "1"]).await;
    let sql = "CREATE TABLE jt (id int PRIMARY KEY, v int);\n\
               CREATE INDEX ASYNC jt_v ON jt (v);\n\
               CREATE TABLE jt_after (id int PRIMARY KEY);\n";
    let started = std::time::Instant::now();
    let e = err(
        &s,
        "apply_migration",
        json!({ "name": "0001_jt", "sql": sql }),
    )
    .await;
    let history = rows(
        &s,
        "SELECT step, state, job_id, last_error FROM public.dsql_mcp_migrations \
         WHERE name = '0001_jt' ORDER BY step",
    )
    .await;
    assert_eq!(history.len(), 2, "{history:?}");
    let job = history[1]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(
        e.lines().next().unwrap(),
        format!(
            "Error executing tool apply_migration: migration 0001_jt stopped at step 2 (CREATE INDEX): job {job} was \
             still running after --job-timeout (1 s). Run the migration again to keep waiting for the same job (the \
             step is not re-run)."
        ),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "0001_jt step 2/3 ddl_job  failed   CREATE INDEX, job {job} ("
        )),
        "{e}"
    );
    assert!(
        e.ends_with(" s): job still running at --job-timeout"),
        "{e}"
    );
    // The history keeps the step started, with its job and why it stopped.
    assert_eq!(history[0]["state"], "done", "{history:?}");
    assert_eq!(history[1]["state"], "started", "{history:?}");
    let why = history[1]["last_error"].as_str().unwrap();
    assert!(
        why.starts_with(&format!(
            "job {job} is still processing after 1 s (INDEX_BUILD on public.jt_v, started "
        )),
        "{why}"
    );
    // The step after the job never ran; the job is still running.
    assert_eq!(
        rows(&s, "SELECT to_regclass('public.jt_after')::text AS t").await,
        [json!({ "t": null })]
    );
    assert_eq!(
        rows(
            &s,
            &format!("SELECT status FROM sys.jobs WHERE job_id = '{job}'")
        )
        .await,
        [json!({ "status": "processing" })]
    );
    let listed = ok(&s, "list_migrations", json!({})).await;
    assert_eq!(listed["migrations"][0]["status"], "started", "{listed}");
    assert_eq!(listed["migrations"][0]["steps_done"], 1, "{listed}");

    // Once the job has finished, a re-run settles the step by its job (not re-run) and goes on.
    let left = std::time::Duration::from_secs(7).saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    let again = ok(
        &s,
        "apply_migration",
        json!({ "name": "0001_jt", "sql": sql }),
    )
    .await;
    assert_eq!(states(&again), ["skipped", "applied", "applied"], "{again}");
    assert_eq!(again["steps"][1]["job_id"], job.as_str(), "{again}");
    let history = rows(
        &s,
        "SELECT step, state, job_id FROM public.dsql_mcp_migrations WHERE name = '0001_jt' ORDER BY step",
    )
    .await;
    assert_eq!(
        history,
        [
            json!({"step": 1, "state": "done", "job_id": null}),
            json!({"step": 2, "state": "done", "job_id": job}),
            json!({"step": 3, "state": "done", "job_id": null}),
        ]
    );
    assert_eq!(
        rows(
            &s,
            "SELECT count(*)::int AS n FROM sys.jobs WHERE object_name = 'public.jt_v'"
        )
        .await,
        [json!({ "n": 1 })],
        "the index was built once"
    );
    s.close().await;
}

#[tokio::test]
async fn a_migration_sends_increasing_progress_while_it_runs_batches_and_waits_for_a_job() {
    let s = slow_jobs(3, &[]).await;
    exec(&s, "CREATE TABLE pr (id int PRIMARY KEY, v int)").await;
    exec(
        &s,
        "INSERT INTO pr SELECT g, NULL FROM generate_series(1, 2500) g",
    )
    .await;
    let sql = "-- dsql:batched 1000\nUPDATE pr SET v = 1 WHERE v IS NULL;\n\
               CREATE INDEX ASYNC pr_v ON pr (v);\n";
    // rmcp's client sends a progressToken in the `_meta` of every request.
    let r = s
        .call("apply_migration", json!({ "name": "0001_pr", "sql": sql }))
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let done = structured(&r);
    assert_eq!(states(&done), ["applied", "applied"], "{done}");
    let job = done["steps"][1]["job_id"].as_str().unwrap().to_owned();
    // Notifications travel on their own task; let the last ones arrive.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let progress = s.all_progress();
    let messages: Vec<String> = progress
        .iter()
        .map(|p| p.message.clone().unwrap_or_default())
        .collect();
    // One call's notifications, under its token.
    assert!(
        progress
            .iter()
            .all(|p| p.progress_token == progress[0].progress_token),
        "{progress:?}"
    );
    let values: Vec<f64> = progress.iter().map(|p| p.progress).collect();
    // The batches count 1, 2, 3 and the job's polls count afresh; what is sent still increases.
    let expected: Vec<f64> = (1..=values.len()).map(|n| n as f64).collect();
    assert_eq!(values, expected, "progress must increase: {messages:?}");
    // Three batches of the backfill, then the wait for the job (about 3 s of polling).
    let heads = [
        "batch 1: 1000 rows (1000 so far, ",
        "batch 2: 1000 rows (2000 so far, ",
        "batch 3: 500 rows (2500 so far, ",
    ];
    for (m, head) in messages.iter().zip(heads) {
        assert!(m.starts_with(head), "{messages:?}");
    }
    let waits: Vec<&String> = messages[3..].iter().collect();
    assert!(waits.len() >= 3, "{messages:?}");
    for w in &waits {
        assert!(
            w.starts_with(&format!("job {job} is processing after ")),
            "{messages:?}"
        );
    }
    s.close().await;
}
