//! The connection manager: IAM tokens, TLS, and the pool of connections.
//!
//! Invariants kept here:
//! - every new physical connection is authenticated with a token minted for it alone
//!   (`token`), DbConnectAdmin for `admin` and DbConnect for any other user;
//! - every connection is TLS with certificate and host-name verification (`tls`);
//! - connections are retired before DSQL's one-hour cap (`pool`).

pub mod error;
pub mod pool;
mod sdk_http;
pub mod tls;
pub mod token;

pub use error::DbError;
pub use pool::{ConnectError, PgConnection, Pool, Pooled, session_problem};
