//! The SQL installed in the sandbox so PostgreSQL behaves like Aurora DSQL where the
//! server's tools and an agent's migrations can tell the difference.
//!
//! Run as the `postgres` superuser at every sandbox start. Every statement is idempotent
//! (`CREATE OR REPLACE`, `IF NOT EXISTS`), so a kept data directory (`--local-dir`) picks
//! up a newer emulation without losing its data. What it gives:
//!
//! - the `admin` role the server connects as (owner of database `postgres` and schema
//!   `public`, not a superuser), as on a new DSQL cluster;
//! - the read-only `reader` role (`--database_user reader`): USAGE on schemas and SELECT
//!   on tables, including those `admin` creates later (default privileges); when it is
//!   first created, also on the schemas and tables that exist already. Nobody but
//!   `admin` may create objects in `public` (PostgreSQL 15's default, made explicit for
//!   older versions);
//! - `sys.jobs` with DSQL's columns, backed by `sys.job_log` (finished jobs are pruned
//!   after 30 minutes, as DSQL keeps them "at least 30 minutes");
//! - `sys.create_index_async(ddl)` and `sys.validate_constraint_async(ddl, table, name)`:
//!   what `CREATE [UNIQUE] INDEX ASYNC` and `ALTER TABLE ASYNC … VALIDATE CONSTRAINT` are
//!   rewritten to (`rewrite.rs`). They run the PostgreSQL statement at once, in the
//!   caller's transaction and with the caller's rights, record a job and return one
//!   `job_id` row. A build that fails on the data (duplicate keys, a violated CHECK)
//!   records a `failed` job with the error in `details`, as DSQL does;
//! - a job's duration (`--local-job-seconds N`, kept in `sys.sandbox_settings`): the work
//!   is done inside the statement as above, but `sys.jobs` reports the job `processing`
//!   (no details yet) until N seconds after it started, then its real final state, so a
//!   client's waiting, progress and timeouts can be exercised as against a cluster. N is 0
//!   unless the flag is given (written at every start, so a kept folder does not keep it);
//! - `CALL sys.wait_for_job(job_id)`: a procedure whose INOUT `succeeded` column says
//!   whether the job completed (it sleeps while the job still reports `processing`); a
//!   malformed id is `22P02 Unable to convert text to UUID`;
//! - the 3,000-row transaction limit: an event trigger gives every new table three
//!   statement-level AFTER triggers (INSERT, UPDATE, DELETE) with transition tables. Each
//!   adds its row count to a transaction-local setting (`dsql.rows_modified`) and raises
//!   `54000 transaction row limit exceeded` at the statement that crosses 3,000.

/// Installed (again) at every start.
pub const SETUP_SQL: &str = r#"
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'admin') THEN
    CREATE ROLE admin LOGIN CREATEROLE;
  END IF;
END
$$;
ALTER DATABASE postgres OWNER TO admin;
GRANT ALL ON SCHEMA public TO admin;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

DO $$
DECLARE
  s text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'reader') THEN
    CREATE ROLE reader LOGIN;
    -- A kept folder from before the role existed: what is there already.
    FOR s IN SELECT nspname FROM pg_catalog.pg_namespace
              WHERE nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('information_schema', 'sys')
    LOOP
      EXECUTE format('GRANT USAGE ON SCHEMA %I TO reader', s);
      EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO reader', s);
    END LOOP;
  END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO reader;
ALTER DEFAULT PRIVILEGES FOR ROLE admin GRANT USAGE ON SCHEMAS TO reader;
ALTER DEFAULT PRIVILEGES FOR ROLE admin GRANT SELECT ON TABLES TO reader;

CREATE SCHEMA IF NOT EXISTS sys;
GRANT USAGE ON SCHEMA sys TO PUBLIC;

CREATE TABLE IF NOT EXISTS sys.job_log (
  job_id      text PRIMARY KEY,
  status      text NOT NULL,
  details     text,
  job_type    text NOT NULL,
  class_id    oid,
  object_id   oid,
  object_name text,
  start_time  timestamptz NOT NULL,
  update_time timestamptz NOT NULL
);
-- When the job stops reporting `processing` (its emulated duration, --local-job-seconds).
ALTER TABLE sys.job_log ADD COLUMN IF NOT EXISTS ready_at timestamptz;
REVOKE ALL ON sys.job_log FROM PUBLIC;

-- One row: the sandbox's settings, written by the server at every start.
CREATE TABLE IF NOT EXISTS sys.sandbox_settings (
  id          int PRIMARY KEY CHECK (id = 1),
  job_seconds double precision NOT NULL DEFAULT 0 CHECK (job_seconds >= 0)
);
REVOKE ALL ON sys.sandbox_settings FROM PUBLIC;
INSERT INTO sys.sandbox_settings (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

CREATE OR REPLACE VIEW sys.jobs AS
  SELECT job_id,
         CASE WHEN ready_at > clock_timestamp() THEN 'processing' ELSE status END AS status,
         CASE WHEN ready_at > clock_timestamp() THEN NULL ELSE details END AS details,
         job_type, class_id, object_id, object_name, start_time,
         CASE WHEN ready_at > clock_timestamp() THEN clock_timestamp()
              ELSE greatest(update_time, ready_at) END AS update_time
  FROM sys.job_log;
GRANT SELECT ON sys.jobs TO PUBLIC;

-- A 26-character base32 rendering of a random UUID, like DSQL's job ids.
CREATE OR REPLACE FUNCTION sys.new_job_id() RETURNS text
LANGUAGE plpgsql VOLATILE AS $f$
DECLARE
  b bytea := decode(replace(gen_random_uuid()::text, '-', ''), 'hex');
  alphabet constant text := 'abcdefghijklmnopqrstuvwxyz234567';
  out text := '';
  v int;
  k int;
BEGIN
  FOR i IN 0..25 LOOP
    v := 0;
    FOR j IN 0..4 LOOP
      k := i * 5 + j;
      v := v * 2 + CASE WHEN k < 128 THEN get_bit(b, (k / 8) * 8 + 7 - k % 8) ELSE 0 END;
    END LOOP;
    out := out || substr(alphabet, v + 1, 1);
  END LOOP;
  RETURN out;
END
$f$;

-- Writes a job row; the only way callers write to sys.job_log.
CREATE OR REPLACE FUNCTION sys.record_job(
  p_type text, p_status text, p_details text, p_class oid, p_object oid, p_name text,
  p_start timestamptz
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  id text := sys.new_job_id();
BEGIN
  DELETE FROM sys.job_log
   WHERE status IN ('completed', 'failed', 'cancelled')
     AND update_time < now() - interval '30 minutes';
  INSERT INTO sys.job_log
       (job_id, status, details, job_type, class_id, object_id, object_name, start_time,
        update_time, ready_at)
  VALUES (id, p_status, p_details, p_type, p_class, p_object, p_name, p_start, clock_timestamp(),
          p_start + make_interval(secs => coalesce(
            (SELECT s.job_seconds FROM sys.sandbox_settings s WHERE s.id = 1), 0)));
  RETURN id;
END
$f$;
-- Definer rights write sys.job_log: only for admin, the one login role that can build
-- indexes, so that `reader` cannot write through it.
REVOKE EXECUTE ON FUNCTION sys.record_job(text, text, text, oid, oid, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sys.record_job(text, text, text, oid, oid, text, timestamptz) TO admin;

-- CREATE [UNIQUE] INDEX ASYNC, run synchronously with the caller's rights.
CREATE OR REPLACE FUNCTION sys.create_index_async(ddl text, OUT job_id text)
LANGUAGE plpgsql AS $f$
DECLARE
  before oid[];
  started timestamptz := clock_timestamp();
  st text := 'completed';
  det text;
  idx oid;
  idx_name text;
BEGIN
  SELECT coalesce(array_agg(c.oid), '{}') INTO before
    FROM pg_catalog.pg_class c WHERE c.relkind = 'i';
  BEGIN
    EXECUTE ddl;
  EXCEPTION WHEN integrity_constraint_violation OR data_exception THEN
    GET STACKED DIAGNOSTICS det = PG_EXCEPTION_DETAIL;
    st := 'failed';
    det := SQLERRM || coalesce(nullif(': ' || det, ': '), '');
  END;
  SELECT c.oid, format('%s.%s', n.nspname, c.relname) INTO idx, idx_name
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'i' AND c.oid <> ALL (before)
   LIMIT 1;
  job_id := sys.record_job('INDEX_BUILD', st, det, 'pg_catalog.pg_class'::regclass, idx,
                           idx_name, started);
END
$f$;

-- ALTER TABLE ASYNC ... VALIDATE CONSTRAINT, run synchronously with the caller's rights.
-- A failed validation leaves the constraint NOT VALID, as on DSQL.
CREATE OR REPLACE FUNCTION sys.validate_constraint_async(
  ddl text, rel text, con text, OUT job_id text
)
LANGUAGE plpgsql AS $f$
DECLARE
  started timestamptz := clock_timestamp();
  st text := 'completed';
  det text;
  cid oid;
  cname text;
BEGIN
  SELECT c.oid, format('%s.%s', n.nspname, c.conname) INTO cid, cname
    FROM pg_catalog.pg_constraint c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
   WHERE c.conrelid = to_regclass(rel) AND c.conname = con;
  BEGIN
    EXECUTE ddl;
  EXCEPTION WHEN integrity_constraint_violation THEN
    GET STACKED DIAGNOSTICS det = PG_EXCEPTION_DETAIL;
    st := 'failed';
    det := SQLERRM || coalesce(nullif(': ' || det, ': '), '');
  END;
  job_id := sys.record_job('VALIDATE_CONSTRAINT', st, det, 'pg_catalog.pg_constraint'::regclass,
                           cid, cname, started);
END
$f$;

-- CALL sys.wait_for_job('<job id>'): the work is done before its statement returns, so
-- this waits out the job's emulated duration, then reports how the job ended.
CREATE OR REPLACE PROCEDURE sys.wait_for_job(job text, INOUT succeeded boolean DEFAULT NULL)
LANGUAGE plpgsql AS $f$
DECLARE
  st text;
BEGIN
  IF job IS NULL OR job !~ '^[a-z2-7]{26}$' THEN
    RAISE EXCEPTION 'Unable to convert text to UUID' USING ERRCODE = '22P02';
  END IF;
  SELECT j.status INTO st FROM sys.jobs j WHERE j.job_id = job;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'job % does not exist', job USING ERRCODE = '42704';
  END IF;
  WHILE st IN ('submitted', 'processing') LOOP
    PERFORM pg_sleep(0.1);
    SELECT j.status INTO st FROM sys.jobs j WHERE j.job_id = job;
  END LOOP;
  succeeded := st = 'completed';
END
$f$;

-- The 3,000-row transaction limit.
CREATE OR REPLACE FUNCTION sys.count_changed_rows() RETURNS trigger
LANGUAGE plpgsql AS $f$
DECLARE
  n bigint;
BEGIN
  SELECT count(*) INTO n FROM changed_rows;
  n := n + coalesce(nullif(current_setting('dsql.rows_modified', true), ''), '0')::bigint;
  PERFORM set_config('dsql.rows_modified', n::text, true);
  IF n > 3000 THEN
    RAISE EXCEPTION 'transaction row limit exceeded' USING ERRCODE = '54000';
  END IF;
  RETURN NULL;
END
$f$;

CREATE OR REPLACE FUNCTION sys.attach_row_limit() RETURNS event_trigger
LANGUAGE plpgsql AS $f$
DECLARE
  obj record;
BEGIN
  FOR obj IN
    SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands()
     WHERE command_tag = 'CREATE TABLE' AND object_type = 'table'
       AND schema_name IS DISTINCT FROM 'sys'
  LOOP
    EXECUTE format('CREATE TRIGGER dsql_row_limit_insert AFTER INSERT ON %s '
                   'REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION sys.count_changed_rows()', obj.objid::regclass);
    EXECUTE format('CREATE TRIGGER dsql_row_limit_update AFTER UPDATE ON %s '
                   'REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION sys.count_changed_rows()', obj.objid::regclass);
    EXECUTE format('CREATE TRIGGER dsql_row_limit_delete AFTER DELETE ON %s '
                   'REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION sys.count_changed_rows()', obj.objid::regclass);
  END LOOP;
END
$f$;

DROP EVENT TRIGGER IF EXISTS dsql_row_limit;
CREATE EVENT TRIGGER dsql_row_limit ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE')
  EXECUTE FUNCTION sys.attach_row_limit();
"#;

/// Sets the emulated duration of the jobs started from now on (`--local-job-seconds`).
pub fn job_seconds_sql(seconds: u64) -> String {
    format!("UPDATE sys.sandbox_settings SET job_seconds = {seconds} WHERE id = 1")
}

/// Lines appended to `postgresql.conf` when the sandbox's data directory is created.
pub const CONF: &str = "\
# Aurora DSQL runs every transaction at REPEATABLE READ.\n\
default_transaction_isolation = 'repeatable read'\n";
