//! Migrations on DSQL as a capability: a migration's SQL is split (`split`), checked and
//! grouped into the transactions DSQL allows (`plan`), then applied step by step under a
//! lease lock (`lock`) with a per-step history (`history`) that makes a re-run resume where
//! the last one stopped (`runner`); `-- dsql:batched` writes run as keyset batches
//! (`batched`); `cli` is the `migrate DIR` command.
//!
//! It sits on the executor (units of work, OCC retry) and the SQL policy (the guard and the
//! rule checker, exactly as `execute` uses them); neither knows about migrations. The tools
//! (`tools/migrations.rs`) are thin handlers over it.

pub mod batched;
pub mod cli;
pub mod history;
pub mod lock;
pub mod plan;
pub mod runner;
pub mod split;
