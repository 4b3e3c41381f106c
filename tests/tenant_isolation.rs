//! Tenant isolation (`--tenant`) over the real server binary and rmcp's real MCP client,
//! against the TLS PostgreSQL stand-in. Two tenants' rows in related tables plus a shared
//! table: every read shape returns only the bound tenant's rows, every write changes only
//! its rows (checked with a superuser connection), refusals name what and why; and the same
//! statements without a tenant see both tenants (the fixture is not vacuous).

mod common;

use common::{McpSession, PgCluster, structured, text, unique_name};
use serde_json::{Value, json};

async fn fixture(pg: &PgCluster) -> String {
    let s = unique_name("ten");
    let sql = format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.customers (id int PRIMARY KEY, tenant_id text NOT NULL, name text);
         CREATE TABLE {s}.orders (id int PRIMARY KEY, tenant_id text NOT NULL, customer_id int, total int);
         CREATE TABLE {s}.countries (code text PRIMARY KEY, name text);
         CREATE TABLE {s}.audit_log (id int, note text);
         CREATE VIEW {s}.big_orders AS SELECT * FROM {s}.orders WHERE total > 10;
         INSERT INTO {s}.customers VALUES (1, 'acme', 'Ann'), (2, 'acme', 'Bob'), (3, 'globex', 'Gil'), (4, 'globex', 'Gus');
         INSERT INTO {s}.orders VALUES (1, 'acme', 1, 5), (2, 'acme', 1, 20), (3, 'globex', 3, 30), (4, 'globex', 4, 40), (5, 'acme', 2, 7);
         INSERT INTO {s}.countries VALUES ('fr', 'France'), ('jp', 'Japan');
         INSERT INTO {s}.audit_log VALUES (1, 'x');
         GRANT USAGE ON SCHEMA {s} TO admin;
         GRANT ALL ON ALL TABLES IN SCHEMA {s} TO admin;"
    );
    pg.superuser()
        .await
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("fixture: {e:?}"));
    s
}

/// `query`'s rows, or the error text.
async fn rows(session: &McpSession, sql: &str) -> Result<(Value, Option<Value>), String> {
    let r = session.call("query", json!({ "sql": sql })).await;
    if r.is_error == Some(true) {
        return Err(text(&r));
    }
    let s = structured(&r);
    Ok((s["rows"].clone(), s.get("scopedToTenant").cloned()))
}

#[tokio::test]
async fn reads_see_only_the_bound_tenant_and_everything_without_one() {
    let pg = common::shared();
    let s = fixture(pg).await;
    let shared = format!("{s}.countries");
    let tenant =
        McpSession::for_cluster(pg, &["--tenant", "acme", "--shared-table", &shared]).await;
    let open = McpSession::for_cluster(pg, &[]).await;

    // (statement, rows under acme, rows without a tenant)
    let cases: Vec<(String, Value, Value)> = vec![
        (
            format!("SELECT id FROM {s}.orders ORDER BY id"),
            json!([{"id": 1}, {"id": 2}, {"id": 5}]),
            json!([{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}]),
        ),
        (
            format!(
                "SELECT o.id, c.name FROM {s}.orders o JOIN {s}.customers c ON c.id = o.customer_id WHERE o.total > 6 ORDER BY o.id"
            ),
            json!([{"id": 2, "name": "Ann"}, {"id": 5, "name": "Bob"}]),
            json!([{"id": 2, "name": "Ann"}, {"id": 3, "name": "Gil"}, {"id": 4, "name": "Gus"}, {"id": 5, "name": "Bob"}]),
        ),
        (
            // the nullable side of an outer join: globex's orders never appear
            format!(
                "SELECT c.id, o.id AS oid FROM {s}.customers c RIGHT JOIN {s}.orders o ON o.customer_id = c.id AND c.id > 2 ORDER BY oid"
            ),
            json!([{"id": null, "oid": 1}, {"id": null, "oid": 2}, {"id": null, "oid": 5}]),
            json!([{"id": null, "oid": 1}, {"id": null, "oid": 2}, {"id": 3, "oid": 3}, {"id": 4, "oid": 4}, {"id": null, "oid": 5}]),
        ),
        (
            format!(
                "SELECT count(*) AS n FROM {s}.customers WHERE id IN (SELECT customer_id FROM {s}.orders)"
            ),
            json!([{"n": 2}]),
            json!([{"n": 4}]),
        ),
        (
            format!(
                "SELECT name FROM {s}.customers c WHERE EXISTS (SELECT 1 FROM {s}.orders o WHERE o.customer_id = c.id AND o.total >= 20) ORDER BY name"
            ),
            json!([{"name": "Ann"}]),
            json!([{"name": "Ann"}, {"name": "Gil"}, {"name": "Gus"}]),
        ),
        (
            format!(
                "WITH RECURSIVE r(n) AS (SELECT min(id) FROM {s}.orders UNION ALL SELECT (SELECT min(id) FROM {s}.orders WHERE id > r.n) FROM r WHERE r.n IS NOT NULL) SELECT n FROM r WHERE n IS NOT NULL ORDER BY n"
            ),
            json!([{"n": 1}, {"n": 2}, {"n": 5}]),
            json!([{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}, {"n": 5}]),
        ),
        (
            format!("SELECT id FROM {s}.orders UNION SELECT id FROM {s}.customers ORDER BY id"),
            json!([{"id": 1}, {"id": 2}, {"id": 5}]),
            json!([{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}]),
        ),
        (
            format!("TABLE {s}.customers ORDER BY id"),
            json!([{"id": 1, "tenant_id": "acme", "name": "Ann"}, {"id": 2, "tenant_id": "acme", "name": "Bob"}]),
            json!([{"id": 1, "tenant_id": "acme", "name": "Ann"}, {"id": 2, "tenant_id": "acme", "name": "Bob"}, {"id": 3, "tenant_id": "globex", "name": "Gil"}, {"id": 4, "tenant_id": "globex", "name": "Gus"}]),
        ),
        (
            format!(
                "SELECT c.name, l.total FROM {s}.customers c CROSS JOIN LATERAL (SELECT sum(total) AS total FROM {s}.orders o WHERE o.customer_id = c.id) l ORDER BY c.name"
            ),
            json!([{"name": "Ann", "total": 25}, {"name": "Bob", "total": 7}]),
            json!([{"name": "Ann", "total": 25}, {"name": "Bob", "total": 7}, {"name": "Gil", "total": 30}, {"name": "Gus", "total": 40}]),
        ),
        (
            // a view is a relation like any other: scoped because it exposes the column
            format!("SELECT id FROM {s}.big_orders ORDER BY id"),
            json!([{"id": 2}]),
            json!([{"id": 2}, {"id": 3}, {"id": 4}]),
        ),
        (
            // the shared table: every row, for both
            format!("SELECT code FROM {s}.countries ORDER BY code"),
            json!([{"code": "fr"}, {"code": "jp"}]),
            json!([{"code": "fr"}, {"code": "jp"}]),
        ),
    ];
    for (sql, scoped, all) in &cases {
        let (got, marker) = rows(&tenant, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(&got, scoped, "under the tenant: {sql}");
        assert_eq!(
            marker,
            Some(json!("acme")),
            "{sql}: the result says it was scoped"
        );
        let (got, marker) = rows(&open, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(&got, all, "without a tenant: {sql}");
        assert_eq!(marker, None, "{sql}: no tenant, no marker");
    }

    // The reference tool: same scoping, and its last text line says so.
    let r = tenant
        .call(
            "readonly_query",
            json!({ "sql": format!("SELECT id FROM {s}.orders WHERE id = %s"), "params": [3] }),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(structured(&r)["result"], json!([]));
    assert_eq!(structured(&r)["scopedToTenant"], json!("acme"));

    // Refusals.
    assert_eq!(
        rows(&tenant, &format!("SELECT * FROM {s}.audit_log"))
            .await
            .unwrap_err(),
        "Error executing tool query: Tenant isolation refused the statement: table `audit_log` has no tenant_id column and is not a shared table"
    );
    let e = rows(&tenant, "SELECT * FROM pg_stats").await.unwrap_err();
    assert!(
        e.contains("catalog relation `pg_catalog.pg_stats` exposes row values"),
        "{e}"
    );
    // Structure stays readable.
    let r = tenant
        .call(
            "describe_table",
            json!({ "table_name": "orders", "schema": s }),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    tenant.close().await;
    open.close().await;
}

#[tokio::test]
async fn writes_change_only_the_bound_tenant() {
    let pg = common::shared();
    let s = fixture(pg).await;
    let shared = format!("{s}.countries");
    let session = McpSession::for_cluster(
        pg,
        &[
            "--allow-writes",
            "--tenant",
            "acme",
            "--shared-table",
            &shared,
        ],
    )
    .await;
    let exec = |sql: String| {
        let session = &session;
        async move {
            let r = session.call("execute", json!({ "sql": sql })).await;
            if r.is_error == Some(true) {
                Err(text(&r))
            } else {
                Ok(structured(&r))
            }
        }
    };
    let ok = exec(format!(
        "INSERT INTO {s}.orders (id, customer_id, total) VALUES (10, 1, 1)"
    ))
    .await
    .unwrap();
    assert_eq!(ok["rowCount"], json!(1));
    assert_eq!(ok["scopedToTenant"], json!("acme"));
    exec(format!(
        "INSERT INTO {s}.orders (id, tenant_id, customer_id, total) VALUES (11, 'acme', 2, 1)"
    ))
    .await
    .unwrap();
    let e = exec(format!(
        "INSERT INTO {s}.orders (id, tenant_id, customer_id, total) VALUES (12, 'globex', 3, 1)"
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains("INSERT sets tenant_id to a value other than the bound tenant"),
        "{e}"
    );
    // UPDATE with no WHERE: only acme's rows.
    assert_eq!(
        exec(format!("UPDATE {s}.orders SET total = total + 100"))
            .await
            .unwrap()["rowCount"],
        json!(5)
    );
    // DELETE of globex's row by key: nothing.
    assert_eq!(
        exec(format!("DELETE FROM {s}.orders WHERE id = 3"))
            .await
            .unwrap()["rowCount"],
        json!(0)
    );
    // ON CONFLICT DO UPDATE against globex's row 4: not reached.
    assert_eq!(
        exec(format!("INSERT INTO {s}.orders (id, customer_id, total) VALUES (4, 1, 0) ON CONFLICT (id) DO UPDATE SET total = 0")).await.unwrap()["rowCount"],
        json!(0)
    );
    // UPDATE … FROM and DELETE … USING read through the scoping.
    exec(format!("UPDATE {s}.orders o SET total = 0 FROM {s}.customers c WHERE c.id = o.customer_id AND c.name IN ('Bob', 'Gil')")).await.unwrap();
    exec(format!("DELETE FROM {s}.orders o USING {s}.customers c WHERE c.id = o.customer_id AND c.name IN ('Ann', 'Gus') AND o.id = 10")).await.unwrap();
    // INSERT … SELECT copies only acme's customers, into acme.
    exec(format!(
        "INSERT INTO {s}.orders (id, customer_id, total) SELECT id + 100, id, 1 FROM {s}.customers"
    ))
    .await
    .unwrap();
    let e = exec(format!("UPDATE {s}.orders SET tenant_id = 'globex'"))
        .await
        .unwrap_err();
    assert!(e.contains("the tenant_id column cannot be assigned"), "{e}");
    let e = exec(format!(
        "INSERT INTO {s}.countries (code, name) VALUES ('de', 'Germany')"
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains("writes to shared table `countries` are refused in tenant mode"),
        "{e}"
    );
    let e = exec(format!("DROP TABLE {s}.orders")).await.unwrap_err();
    assert!(
        e.contains("statement type not allowed in tenant mode: DROP TABLE"),
        "{e}"
    );
    // transact: each statement scoped.
    let r = session
        .call("transact", json!({ "sql_list": [format!("DELETE FROM {s}.customers WHERE name = 'Gil'"), format!("SELECT count(*) AS n FROM {s}.customers")] }))
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(structured(&r)["result"], json!([{"n": 2}]));

    let su = pg.superuser().await;
    let got: Vec<(i32, String, i32)> = su
        .query(
            &format!("SELECT id, tenant_id, total FROM {s}.orders ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(i32, String, i32)> = vec![
        (1, "acme".into(), 105),
        (2, "acme".into(), 120),
        (3, "globex".into(), 30),
        (4, "globex".into(), 40),
        (5, "acme".into(), 0),
        (11, "acme".into(), 0),
        (101, "acme".into(), 1),
        (102, "acme".into(), 1),
    ];
    assert_eq!(got, want);
    let customers: i64 = su
        .query_one(&format!("SELECT count(*) FROM {s}.customers"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(customers, 4, "globex's Gil was out of reach");
    session.close().await;
}

/// A tiny seeded generator (xorshift64*), so a failing seed replays exactly.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// A random read over the fixture: joins of every kind, subqueries in several clauses,
/// set operations and CTEs; `{s}` is the schema. Always ordered, so results compare exactly.
#[tokio::test]
async fn migrations_and_batched_writes_are_refused_to_a_tenant_session() {
    let pg = common::shared();
    let s = fixture(pg).await;
    let session = McpSession::for_cluster(pg, &["--allow-writes", "--tenant", "acme"]).await;
    let refused = |what: &str| {
        format!(
            "Tenant isolation refused {what}: this session is bound to tenant acme, and migrations and batched writes are not scoped to one tenant; run them from a session without --tenant"
        )
    };
    let r = session
        .call(
            "execute_batched",
            json!({ "sql": format!("UPDATE {s}.orders SET total = 0 WHERE total <> 0") }),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        text(&r).ends_with(&refused("execute_batched")),
        "{}",
        text(&r)
    );
    let r = session
        .call(
            "apply_migration",
            json!({ "name": "0001_t", "sql": format!("ALTER TABLE {s}.orders ADD COLUMN x int") }),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        text(&r).ends_with(&refused("apply_migration (without dry_run)")),
        "{}",
        text(&r)
    );
    // Nothing reached the tables: every order keeps its total, and no column was added.
    let su = pg.superuser().await;
    let totals: Vec<i32> = su
        .query(&format!("SELECT total FROM {s}.orders ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(totals, vec![5, 20, 30, 40, 7]);
    let columns: i64 = su
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'orders'",
            &[&s],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 4);
    session.close().await;
}

fn random_query(g: &mut Gen) -> String {
    let join = g.pick(&["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]);
    let filter = g.pick(&[
        "TRUE",
        "o.total > 6",
        "o.id IN (SELECT customer_id FROM {s}.orders)",
        "EXISTS (SELECT 1 FROM {s}.orders x WHERE x.customer_id = c.id)",
        "c.id NOT IN (SELECT id FROM {s}.customers WHERE name LIKE 'G%')",
        "o.total >= (SELECT avg(total) FROM {s}.orders)",
    ]);
    match g.next() % 4 {
        0 => format!(
            "SELECT c.id AS cid, o.id AS oid FROM {{s}}.customers c {join} {{s}}.orders o ON o.customer_id = c.id WHERE {filter} OR c.id IS NULL OR o.id IS NULL ORDER BY cid NULLS FIRST, oid NULLS FIRST"
        ),
        1 => format!(
            "SELECT count(*) AS n, coalesce(sum(o.total), 0) AS t FROM {{s}}.orders o {join} {{s}}.customers c ON c.id = o.customer_id WHERE {filter}"
        ),
        2 => format!(
            "WITH w AS (SELECT o.id FROM {{s}}.orders o JOIN {{s}}.customers c ON c.id = o.customer_id WHERE {filter}) SELECT id FROM w {} SELECT id FROM {{s}}.customers ORDER BY id",
            g.pick(&["UNION", "UNION ALL", "EXCEPT", "INTERSECT"])
        ),
        _ => format!(
            "SELECT c.name, (SELECT count(*) FROM {{s}}.orders o WHERE o.customer_id = c.id) AS n, l.m FROM {{s}}.customers c LEFT JOIN LATERAL (SELECT max(total) AS m FROM {{s}}.orders o WHERE o.customer_id = c.id AND {}) l ON true ORDER BY c.name",
            g.pick(&[
                "TRUE",
                "o.total > 6",
                "o.id IN (SELECT id FROM {s}.big_orders)"
            ])
        ),
    }
}

/// Property: under `--tenant acme` a random query over the fixture returns exactly what the
/// same query returns, without a tenant, on a copy holding only acme's rows. The seed is
/// printed; `TENANT_SEED=<n>` replays one.
#[tokio::test]
async fn random_queries_equal_the_tenant_only_copy() {
    let pg = common::shared();
    let s = fixture(pg).await;
    let only = fixture(pg).await;
    pg.superuser()
        .await
        .batch_execute(&format!(
            "DELETE FROM {only}.orders WHERE tenant_id <> 'acme'; DELETE FROM {only}.customers WHERE tenant_id <> 'acme';"
        ))
        .await
        .unwrap();
    let seed: u64 = std::env::var("TENANT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("tenant property test: TENANT_SEED={seed}");
    let tenant = McpSession::for_cluster(pg, &["--tenant", "acme"]).await;
    let open = McpSession::for_cluster(pg, &[]).await;
    let mut g = Gen(seed);
    for i in 0..60 {
        let q = random_query(&mut g);
        let scoped = rows(&tenant, &q.replace("{s}", &s)).await;
        let reference = rows(&open, &q.replace("{s}", &only)).await;
        let (scoped, reference) = match (scoped, reference) {
            (Ok((a, _)), Ok((b, _))) => (a, b),
            (a, b) => panic!("seed {seed}, query {i}: {q}\nscoped: {a:?}\nreference: {b:?}"),
        };
        assert_eq!(scoped, reference, "seed {seed}, query {i}: {q}");
    }
    tenant.close().await;
    open.close().await;
}
