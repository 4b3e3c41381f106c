//! Applies one planned migration under the lock, step by step, recording each step in the
//! history, and resumes a migration that stopped.
//!
//! A re-run verifies the steps already done by their statement hash (a changed applied text
//! is refused, naming the first differing step), then starts at the first step not done. A
//! step found `started` (the process stopped between its commit and its history row) is
//! never re-run blindly: a job step is settled through `sys.jobs` (its recorded job id), and
//! otherwise the catalog is read and the caller is told what was found and what to do. A
//! batched step is the exception: its batches converge by construction, so it continues.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::history::{self, DONE, FAILED, Record, STARTED};
use super::plan::{self, Kind, Plan, Step};
use super::{batched, lock};
use crate::executor::{Control, ExecError, Executor, Mode, Statement, Work};
use crate::jobs::{self, WaitError};
use crate::policy::{AllowedFunctions, RuleSet};

/// Default and largest `--job-timeout`.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(1800);

/// What a run needs from the configuration.
pub struct Settings<'a> {
    pub allowed: &'a AllowedFunctions,
    pub rules: RuleSet,
    pub job_timeout: Duration,
}

/// How one step ended, as reported (and printed by the CLI, one line each).
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub of: usize,
    pub kind: Kind,
    pub transaction: usize,
    pub command: String,
    /// `applied`, `skipped` (done before), `failed`.
    pub state: &'static str,
    pub seconds: f64,
    pub rows: Option<u64>,
    pub batches: Option<u64>,
    pub job_id: Option<String>,
    pub note: Option<String>,
}

impl StepReport {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "step": self.step,
            "transaction": self.transaction,
            "kind": self.kind.as_str(),
            "command": self.command,
            "state": self.state,
            "seconds": (self.seconds * 10.0).round() / 10.0,
        });
        if let Some(r) = self.rows {
            v["rows"] = json!(r);
        }
        if let Some(b) = self.batches {
            v["batches"] = json!(b);
        }
        if let Some(j) = &self.job_id {
            v["job_id"] = json!(j);
        }
        if let Some(n) = &self.note {
            v["note"] = json!(n);
        }
        v
    }

    /// The CLI's line for this step.
    pub fn line(&self, name: &str) -> String {
        let mut l = format!(
            "{name} step {}/{} {:<8} {:<8} {}",
            self.step,
            self.of,
            self.kind.as_str(),
            self.state,
            self.command
        );
        if let Some(r) = self.rows {
            l.push_str(&format!(", {r} rows"));
        }
        if let Some(b) = self.batches {
            l.push_str(&format!(" in {b} batches"));
        }
        if let Some(j) = &self.job_id {
            l.push_str(&format!(", job {j}"));
        }
        if self.state != "skipped" {
            l.push_str(&format!(" ({:.1} s)", self.seconds));
        }
        if let Some(n) = &self.note {
            l.push_str(&format!(": {n}"));
        }
        l
    }
}

/// A migration that did not apply: the message and what was done before it stopped.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub steps: Vec<StepReport>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            steps: Vec::new(),
        }
    }

    /// The tool's error text: the message, then one line per step reported.
    pub fn text(&self, name: &str) -> String {
        let mut t = self.message.clone();
        if !self.steps.is_empty() {
            t.push_str("\nSteps:");
            for s in &self.steps {
                t.push_str("\n  ");
                t.push_str(&s.line(name));
            }
        }
        t
    }
}

/// Refuses a name that cannot serve as a migration's identity.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a migration needs a name (e.g. 0003_add_status)".into());
    }
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err("a migration name has at most 200 characters and no control characters".into());
    }
    Ok(())
}

/// Plans `sql` and, when a cluster is there, says which steps the history has as done.
pub async fn dry_run(
    executor: Option<&Executor>,
    name: &str,
    sql: &str,
    settings: &Settings<'_>,
    ctl: &Control<'_>,
) -> Result<Value, String> {
    check_name(name)?;
    let plan = plan::plan(
        sql,
        &plan::Checks {
            allowed: settings.allowed,
            rules: settings.rules,
        },
    )?;
    let mut out = plan.to_json();
    out["name"] = json!(name);
    out["dry_run"] = json!(true);
    if let Some(executor) = executor {
        let rows = if history::exists(executor, history::TABLE, ctl)
            .await
            .map_err(|e| e.to_string())?
        {
            history::rows(executor, name, ctl)
                .await
                .map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        if let Some(steps) = out["steps"].as_array_mut() {
            for (s, v) in plan.steps.iter().zip(steps.iter_mut()) {
                let row = rows.iter().find(|r| r.step == s.index);
                v["state"] = json!(row.map_or("pending", |r| r.state.as_str()));
            }
        }
        if let Err(e) = verify(name, &plan, &rows) {
            out["problem"] = json!(e);
        }
    }
    out["note"] = json!("Dry run: nothing was changed.");
    Ok(out)
}

/// The done steps must be the plan's, by hash.
fn verify(name: &str, plan: &Plan, rows: &[history::Row]) -> Result<(), String> {
    for r in rows.iter().filter(|r| r.state == DONE) {
        match plan.steps.get(r.step.wrapping_sub(1)) {
            Some(s) if s.hash == r.hash => {}
            Some(s) => {
                return Err(format!(
                    "migration {name} was applied with a different text: step {} ({}, line {}) differs from the \
                     statement applied on {} (sha256 {} then, {} now). An applied migration cannot change: \
                     put the change in a new migration.",
                    s.index,
                    s.command,
                    s.line,
                    r.started_at,
                    short(&r.hash),
                    short(&s.hash)
                ));
            }
            None => {
                return Err(format!(
                    "migration {name} was applied with a different text: step {} was applied on {} but the \
                     migration now has {} steps. An applied migration cannot change: put the change in a new migration.",
                    r.step,
                    r.started_at,
                    plan.steps.len()
                ));
            }
        }
    }
    Ok(())
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Applies `sql` as migration `name`; `on_step` hears each step as it ends.
pub async fn apply(
    executor: &Executor,
    name: &str,
    sql: &str,
    settings: &Settings<'_>,
    holder: &str,
    on_step: &(dyn Fn(&StepReport) + Send + Sync),
    ctl: &Control<'_>,
) -> Result<Value, Failure> {
    check_name(name).map_err(Failure::new)?;
    let plan = plan::plan(
        sql,
        &plan::Checks {
            allowed: settings.allowed,
            rules: settings.rules,
        },
    )
    .map_err(|e| Failure::new(format!("migration {name} was not applied: {e}")))?;
    history::ensure_table(executor, ctl)
        .await
        .map_err(|e| Failure::new(format!("creating {}: {e}", history::TABLE)))?;
    let held = lock::acquire(executor, holder, name, ctl)
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    let mut run = Run {
        executor,
        name,
        plan: &plan,
        settings,
        holder,
        on_step,
        ctl,
        reports: Vec::new(),
        lost: false,
    };
    let result = Box::pin(run.steps()).await;
    let released = lock::release(executor, holder).await;
    let mut reports = std::mem::take(&mut run.reports);
    match result {
        Ok(status) => {
            let mut out = json!({
                "name": name,
                "checksum": plan.checksum,
                "status": status,
                "steps": reports.iter().map(StepReport::to_json).collect::<Vec<_>>(),
            });
            if let Some((h, until)) = &held.took_over {
                out["lock_note"] = json!(format!(
                    "the migration lock was taken over from {h}, whose lease had expired at {until}"
                ));
            }
            if plan.steps.iter().any(|s| s.kind == Kind::Batched) {
                out["note"] = json!(batched::NOT_ATOMIC);
            }
            if let Err(e) = released {
                out["lock_note"] = json!(format!("the migration lock could not be released: {e}"));
            }
            Ok(out)
        }
        Err(mut f) => {
            f.steps.append(&mut reports);
            Err(f)
        }
    }
}

struct Run<'a> {
    executor: &'a Executor,
    name: &'a str,
    plan: &'a Plan,
    settings: &'a Settings<'a>,
    holder: &'a str,
    on_step: &'a (dyn Fn(&StepReport) + Send + Sync),
    ctl: &'a Control<'a>,
    reports: Vec<StepReport>,
    lost: bool,
}

impl Run<'_> {
    fn report(&mut self, s: &Step, state: &'static str, started: Instant) -> StepReport {
        StepReport {
            step: s.index,
            of: self.plan.steps.len(),
            kind: s.kind,
            transaction: s.transaction,
            command: s.command.clone(),
            state,
            seconds: started.elapsed().as_secs_f64(),
            rows: None,
            batches: None,
            job_id: None,
            note: None,
        }
    }

    fn push(&mut self, r: StepReport) {
        (self.on_step)(&r);
        self.reports.push(r);
    }

    fn record<'b>(&self, s: &'b Step, state: &'b str) -> Record<'b>
    where
        Self: 'b,
    {
        Record {
            name: self.name,
            step: s.index,
            kind: s.kind.as_str(),
            hash: &s.hash,
            checksum: &self.plan.checksum,
            steps: self.plan.steps.len(),
            state,
            job_id: None,
            rows: None,
            error: None,
        }
    }

    async fn write(&self, r: &Record<'_>) -> Result<(), Failure> {
        history::record(self.executor, r, self.ctl)
            .await
            .map_err(|e| Failure::new(format!("writing the history row of step {}: {e}", r.step)))
    }

    /// Records the step failed and builds the failure.
    async fn failed(
        &mut self,
        s: &Step,
        started: Instant,
        error: String,
        job: Option<&str>,
    ) -> Failure {
        let mut r = self.record(s, FAILED);
        r.error = Some(&error);
        r.job_id = job;
        let recorded = history::record(self.executor, &r, self.ctl).await;
        let mut rep = self.report(s, "failed", started);
        rep.job_id = job.map(str::to_owned);
        rep.note = Some(error.clone());
        self.push(rep);
        let applied = s.index - 1;
        let mut m = format!(
            "migration {} failed at step {} of {} ({}, line {}): {error}\n",
            self.name,
            s.index,
            self.plan.steps.len(),
            s.command,
            s.line
        );
        match recorded {
            Ok(()) => m.push_str(&format!(
                "Steps 1 to {applied} are applied; {} records step {} as failed. Fix the cause (or the statement) and \
                 run the migration again with the same name: it resumes at step {}.",
                history::TABLE,
                s.index,
                s.index
            )),
            Err(e) => m.push_str(&format!(
                "Steps 1 to {applied} are applied; recording the failure in {} failed too ({e}).",
                history::TABLE
            )),
        }
        Failure::new(m)
    }

    /// Keeps the lease alive while `fut` runs; a lost lease is noted, never interrupts a unit.
    async fn leased<F: std::future::Future>(&mut self, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                _ = tokio::time::sleep(lock::RENEW_EVERY) => {
                    if !matches!(lock::renew(self.executor, self.holder, self.ctl).await, Ok(true)) {
                        self.lost = true;
                    }
                }
            }
        }
    }

    async fn steps(&mut self) -> Result<&'static str, Failure> {
        let rows = history::rows(self.executor, self.name, self.ctl)
            .await
            .map_err(|e| Failure::new(format!("reading {}: {e}", history::TABLE)))?;
        verify(self.name, self.plan, &rows).map_err(Failure::new)?;
        history::restamp(
            self.executor,
            self.name,
            &self.plan.checksum,
            self.plan.steps.len(),
            self.ctl,
        )
        .await
        .map_err(|e| Failure::new(format!("updating {}: {e}", history::TABLE)))?;
        let state_of = |i: usize| rows.iter().find(|r| r.step == i).cloned();
        let mut did_any = false;
        let last = self.plan.steps.last().map_or(0, |s| s.transaction);
        for t in 1..=last {
            let group: Vec<&Step> = self
                .plan
                .steps
                .iter()
                .filter(|s| s.transaction == t)
                .collect();
            let mut todo = Vec::new();
            for s in group {
                match state_of(s.index) {
                    Some(r) if r.state == DONE => {
                        let rep = self.report(s, "skipped", Instant::now());
                        self.push(rep);
                    }
                    other => todo.push((s, other)),
                }
            }
            if todo.is_empty() {
                continue;
            }
            if !matches!(
                lock::renew(self.executor, self.holder, self.ctl).await,
                Ok(true)
            ) || self.lost
            {
                return Err(Failure::new(format!(
                    "migration {} stopped before step {}: this runner lost the migration lock (its lease expired and \
                     another runner took it); the steps before are applied and recorded",
                    self.name, todo[0].0.index
                )));
            }
            did_any = true;
            let (first, found) = (todo[0].0, todo[0].1.clone());
            match first.kind {
                Kind::Dml => {
                    let steps: Vec<&Step> = todo.iter().map(|(s, _)| *s).collect();
                    Box::pin(self.dml(&steps)).await?
                }
                Kind::Ddl => Box::pin(self.ddl(first, found)).await?,
                Kind::Job => Box::pin(self.job(first, found)).await?,
                Kind::Batched => Box::pin(self.batched(first)).await?,
            }
        }
        Ok(if did_any {
            "applied"
        } else {
            "already_applied"
        })
    }

    async fn dml(&mut self, steps: &[&Step]) -> Result<(), Failure> {
        let started = Instant::now();
        let mut statements: Vec<Statement> = steps
            .iter()
            .map(|s| Statement {
                sql: s.sql.clone(),
                params: vec![],
            })
            .collect();
        for s in steps {
            statements.push(history::upsert(&self.record(s, DONE)));
        }
        let mut work = Work::new(Mode::ReadWrite, statements);
        work.keep_all = true;
        let run = self.executor.run_all(&work, self.ctl);
        match self.leased(run).await {
            Ok(outcomes) => {
                let counts: Vec<(usize, u64)> = steps
                    .iter()
                    .zip(&outcomes)
                    .filter_map(|(s, o)| o.rows_affected.map(|n| (s.index, n)))
                    .collect();
                // The steps are done either way; a lost count is said, not fatal.
                let unrecorded = history::set_rows(self.executor, self.name, &counts, self.ctl)
                    .await
                    .err()
                    .map(|e| {
                        format!(
                            "its row count could not be recorded in {}: {e}",
                            history::TABLE
                        )
                    });
                for (s, o) in steps.iter().zip(outcomes) {
                    let mut rep = self.report(s, "applied", started);
                    rep.rows = o.rows_affected;
                    rep.note = unrecorded.clone();
                    self.push(rep);
                }
                Ok(())
            }
            Err(e) => {
                let at = match &e {
                    ExecError::Statement { index, .. } if *index < steps.len() => *index,
                    _ => 0,
                };
                let mut msg = e.to_string();
                if e.code() == Some(crate::executor::LIMIT_EXCEEDED) {
                    msg.push_str("\nIn a migration, put `-- dsql:batched` before an UPDATE or DELETE to run it in batches.");
                }
                Err(self.failed(steps[at], started, msg, None).await)
            }
        }
    }

    async fn ddl(&mut self, s: &Step, found: Option<history::Row>) -> Result<(), Failure> {
        let started = Instant::now();
        if let Some(r) = found.filter(|r| r.state == STARTED) {
            return Err(self.unsettled(s, &r, None).await);
        }
        self.write(&self.record(s, STARTED)).await?;
        let work = Work::new(
            Mode::ReadWrite,
            vec![Statement {
                sql: s.sql.clone(),
                params: vec![],
            }],
        );
        let run = self.executor.run(&work, self.ctl);
        if let Err(e) = self.leased(run).await {
            return Err(self.failed(s, started, e.to_string(), None).await);
        }
        self.write(&self.record(s, DONE)).await?;
        let rep = self.report(s, "applied", started);
        self.push(rep);
        Ok(())
    }

    async fn job(&mut self, s: &Step, found: Option<history::Row>) -> Result<(), Failure> {
        let started = Instant::now();
        let job_id = match found.filter(|r| r.state == STARTED) {
            Some(r) => match r.job_id.clone() {
                // The statement committed and its job was recorded: settle it by the job.
                Some(id) => id,
                None => return Err(self.unsettled(s, &r, None).await),
            },
            None => {
                self.write(&self.record(s, STARTED)).await?;
                let work = Work::new(
                    Mode::ReadWrite,
                    vec![Statement {
                        sql: s.sql.clone(),
                        params: vec![],
                    }],
                );
                let run = self.executor.run(&work, self.ctl);
                let outcome = match self.leased(run).await {
                    Ok(o) => o,
                    Err(e) => return Err(self.failed(s, started, e.to_string(), None).await),
                };
                let id = outcome
                    .rows
                    .first()
                    .and_then(|r| r.get("job_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let Some(id) = id else {
                    // `IF NOT EXISTS` on an existing index returns no job.
                    let mut done = self.record(s, DONE);
                    done.error = None;
                    self.write(&done).await?;
                    let mut rep = self.report(s, "applied", started);
                    rep.note = Some(
                        "no job_id returned (IF NOT EXISTS and the object exists already)".into(),
                    );
                    self.push(rep);
                    return Ok(());
                };
                let mut r = self.record(s, STARTED);
                r.job_id = Some(&id);
                self.write(&r).await?;
                id
            }
        };
        let wait = jobs::wait(self.executor, &job_id, self.settings.job_timeout, self.ctl);
        match self.leased(wait).await {
            Ok((row, _)) if row.get("status").and_then(Value::as_str) == Some("completed") => {
                let mut r = self.record(s, DONE);
                r.job_id = Some(&job_id);
                self.write(&r).await?;
                let mut rep = self.report(s, "applied", started);
                rep.job_id = Some(job_id);
                self.push(rep);
                Ok(())
            }
            Ok((row, _)) => {
                let field = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
                let msg = format!(
                    "job {job_id} ({} on {}) ended {}: {}. The index or constraint is not usable; fix the cause \
                     (for a UNIQUE index, the duplicate rows; for a CHECK, the violating rows), DROP the invalid \
                     index if one was left, and run the migration again",
                    field("job_type"),
                    field("object_name"),
                    field("status"),
                    row.get("details")
                        .and_then(Value::as_str)
                        .unwrap_or("no details recorded"),
                );
                Err(self.failed(s, started, msg, Some(&job_id)).await)
            }
            Err(WaitError::TimedOut(row)) => {
                let msg =
                    jobs::timed_out_message(&job_id, &row, self.settings.job_timeout.as_secs());
                // Still started, with its job id: the next run waits for the same job.
                let mut r = self.record(s, STARTED);
                r.job_id = Some(&job_id);
                r.error = Some(&msg);
                let _ = history::record(self.executor, &r, self.ctl).await;
                let mut rep = self.report(s, "failed", started);
                rep.job_id = Some(job_id.clone());
                rep.note = Some("job still running at --job-timeout".into());
                self.push(rep);
                Err(Failure::new(format!(
                    "migration {} stopped at step {} ({}): job {job_id} was still running after --job-timeout ({} s). \
                     Run the migration again to keep waiting for the same job (the step is not re-run).",
                    self.name,
                    s.index,
                    s.command,
                    self.settings.job_timeout.as_secs()
                )))
            }
            Err(WaitError::NotFound) => {
                let msg = format!(
                    "job {job_id} is not in sys.jobs (finished jobs are kept at least 30 minutes)"
                );
                Err(self
                    .unsettled(
                        s,
                        &history::Row {
                            step: s.index,
                            kind: s.kind.as_str().into(),
                            hash: s.hash.clone(),
                            state: STARTED.into(),
                            job_id: Some(job_id.clone()),
                            started_at: String::new(),
                            last_error: None,
                        },
                        Some(msg),
                    )
                    .await)
            }
            Err(WaitError::Cancelled) => Err(Failure::new(format!(
                "migration {} was cancelled while waiting for job {job_id} of step {}; the job keeps running. \
                 Run the migration again to keep waiting for it.",
                self.name, s.index
            ))),
            Err(WaitError::Exec(e)) => Err(Failure::new(format!(
                "migration {} stopped at step {}: polling sys.jobs for job {job_id} failed: {e}. Run it again to \
                 keep waiting for the same job.",
                self.name, s.index
            ))),
        }
    }

    async fn batched(&mut self, s: &Step) -> Result<(), Failure> {
        let started = Instant::now();
        self.write(&self.record(s, STARTED)).await?;
        let policy = batched::Policy {
            allowed: self.settings.allowed,
            rules: self.settings.rules,
        };
        let size = s.batch_size.unwrap_or(super::split::DEFAULT_BATCH);
        let run = batched::run(self.executor, &s.sql, &[], size, &policy, self.ctl);
        match self.leased(run).await {
            Ok(done) => {
                let mut r = self.record(s, DONE);
                r.rows = Some(done.rows);
                self.write(&r).await?;
                let mut rep = self.report(s, "applied", started);
                rep.rows = Some(done.rows);
                rep.batches = Some(done.batches);
                self.push(rep);
                Ok(())
            }
            Err(f) => {
                let msg = format!(
                    "{} ({} batches with {} rows committed before it; a re-run continues with the rows that still match)",
                    f.error, f.done.batches, f.done.rows
                );
                Err(self.failed(s, started, msg, None).await)
            }
        }
    }

    /// A step recorded `started` and never `done`: what the catalog says, and what to do.
    async fn unsettled(&mut self, s: &Step, r: &history::Row, extra: Option<String>) -> Failure {
        let found = Box::pin(inspect(self.executor, s, r, self.ctl)).await;
        let mut rep = self.report(s, "failed", Instant::now());
        rep.note = Some("recorded as started, never as done: not re-run".into());
        rep.job_id = r.job_id.clone();
        self.push(rep);
        let sql_name = self.name.replace('\'', "''");
        Failure::new(format!(
            "migration {name} stopped at step {step} ({cmd}, line {line}): the history records it as started{at} but \
             never as done, so it may or may not have taken effect (the process stopped between the statement and \
             its history row). It is not re-run automatically. {extra}{found}\nWhat to do: if the change is in place, \
             record the step as done: UPDATE {table} SET state = 'done' WHERE name = '{sql_name}' AND step = {step}; \
             if it is not, delete its row: DELETE FROM {table} WHERE name = '{sql_name}' AND step = {step} (DROP an \
             invalid index first); then run the migration again.",
            name = self.name,
            step = s.index,
            cmd = s.command,
            line = s.line,
            at = if r.started_at.is_empty() {
                String::new()
            } else {
                format!(" at {}", r.started_at)
            },
            extra = extra.map(|e| format!("{e}. ")).unwrap_or_default(),
            table = history::TABLE,
        ))
    }
}

/// The name after `INDEX ASYNC [IF NOT EXISTS]` or `VALIDATE CONSTRAINT`, folded.
fn object_name(sql: &str, after: &[&str], skip: &[&str]) -> Option<String> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let at = upper
        .windows(after.len())
        .position(|w| w.iter().zip(after).all(|(a, b)| a == b))?;
    let mut i = at + after.len();
    while upper.get(i).is_some_and(|w| skip.contains(&w.as_str())) {
        i += 1;
    }
    let w = words.get(i)?.trim_end_matches(';');
    if w.eq_ignore_ascii_case("ON") {
        return None;
    }
    Some(
        match w.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            Some(q) => q.replace("\"\"", "\""),
            None => w.to_lowercase(),
        },
    )
}

/// What the catalog and `sys.jobs` say about a step's object, as one sentence or two.
async fn inspect(executor: &Executor, s: &Step, r: &history::Row, ctl: &Control<'_>) -> String {
    let mut out = Vec::new();
    if s.kind == Kind::Job {
        let (sql, name) = if let Some(n) =
            object_name(&s.sql, &["INDEX", "ASYNC"], &["IF", "NOT", "EXISTS"])
        {
            (
                "SELECT c.relname::text AS name, i.indisvalid AS valid FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid WHERE c.relname = $1",
                n,
            )
        } else if let Some(n) = object_name(&s.sql, &["VALIDATE", "CONSTRAINT"], &[]) {
            (
                "SELECT conname::text AS name, convalidated AS valid FROM pg_catalog.pg_constraint WHERE conname = $1",
                n,
            )
        } else {
            return "The object it creates could not be named from the statement.".into();
        };
        let work = Work::new(
            Mode::ReadOnly,
            vec![Statement {
                sql: sql.into(),
                params: vec![Value::from(name.as_str())],
            }],
        );
        match executor.run(&work, ctl).await {
            Ok(o) => match o.rows.first() {
                None => out.push(format!("The catalog has no {name}: the statement did not take effect.")),
                Some(row) if row.get("valid") == Some(&Value::Bool(true)) => {
                    out.push(format!("The catalog has {name} and it is valid: the statement took effect."))
                }
                Some(_) => out.push(format!(
                    "The catalog has {name} but it is not valid: its job is still running or failed."
                )),
            },
            Err(e) => out.push(format!("The catalog could not be read: {e}.")),
        }
        let jobs = match &r.job_id {
            Some(id) => jobs::fetch(executor, id, ctl)
                .await
                .map(|j| j.into_iter().collect::<Vec<_>>()),
            None => {
                let work = Work::new(
                    Mode::ReadOnly,
                    vec![Statement {
                        sql: "SELECT job_id, status, details FROM sys.jobs WHERE object_name = $1 \
                              OR object_name LIKE '%.' || $1 ORDER BY start_time DESC LIMIT 1"
                            .into(),
                        params: vec![Value::from(name.as_str())],
                    }],
                );
                executor.run(&work, ctl).await.map(|o| o.rows)
            }
        };
        if let Ok(Some(j)) = jobs.map(|j| j.into_iter().next()) {
            let f = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
            out.push(format!(
                "sys.jobs has job {} for it: {}{}.",
                f("job_id"),
                f("status"),
                j.get("details")
                    .and_then(Value::as_str)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
        }
    } else {
        out.push(format!(
            "Check whether the statement took effect (describe_table or list_tables show the schema): {}",
            s.sql
        ));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_read() {
        assert_eq!(
            object_name(
                "CREATE INDEX ASYNC IF NOT EXISTS Ix_A ON t (a)",
                &["INDEX", "ASYNC"],
                &["IF", "NOT", "EXISTS"]
            ),
            Some("ix_a".into())
        );
        assert_eq!(
            object_name(
                "CREATE UNIQUE INDEX ASYNC \"Q\" ON t (a)",
                &["INDEX", "ASYNC"],
                &[]
            ),
            Some("Q".into())
        );
        assert_eq!(
            object_name("CREATE INDEX ASYNC ON t (a)", &["INDEX", "ASYNC"], &[]),
            None
        );
        assert_eq!(
            object_name(
                "ALTER TABLE ASYNC t VALIDATE CONSTRAINT c_pos",
                &["VALIDATE", "CONSTRAINT"],
                &[]
            ),
            Some("c_pos".into())
        );
    }
}
