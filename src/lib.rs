//! Aurora DSQL MCP server: a Model Context Protocol server over stdio that lets an
//! AI agent query and change an Amazon Aurora DSQL cluster safely.
//!
//! See ARCHITECTURE.md for the map of modules and the path of one tool call.

pub mod catalog;
pub mod check;
pub mod cluster_file;
pub mod clusters;
pub mod completion;
pub mod config;
pub mod connection;
pub mod executor;
pub mod http;
pub mod jobs;
pub mod knowledge;
pub mod migrate;
pub mod plan;
pub mod policy;
pub mod sandbox;
pub mod server;
pub mod splice;
pub mod stdio;
pub mod tools;
pub mod value;
