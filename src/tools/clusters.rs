//! `list_clusters`, and the `cluster` argument database tools take when several clusters
//! are configured.
//!
//! Both exist only with several clusters: with one, the tool surface stays exactly the
//! reference's (the drop-in contract). `list_clusters` says what a caller may use (name,
//! endpoint, port, region, user, the mode this caller gets there, which one is the
//! default), never a profile or any other credential, and never a cluster outside the
//! caller's allowed ones.

use std::sync::Arc;

use rmcp::model::Tool;
use serde_json::{Map, Value, json};

use super::args::ArgReader;
use super::{CLUSTER_ARG, Call, Output, ToolError, ToolResult, read_only_hints, tool};
use crate::policy::Access;

/// The `mode` `list_clusters` reports.
pub fn mode_name(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "read-only",
        Access::ReadWrite => "read-write",
    }
}

pub fn list_clusters(tb: &Call<'_>, args: &Map<String, Value>) -> ToolResult {
    ArgReader::new("list_clusters", args)
        .finish()
        .map_err(ToolError)?;
    let registry = &tb.toolbox.clusters;
    let clusters: Vec<Value> = registry
        .visible(tb.caller)
        .map(|c| {
            json!({
                "name": c.name,
                "endpoint": c.database.endpoint,
                "port": c.database.port,
                "region": c.database.region,
                "user": c.database.user,
                "mode": mode_name(c.access_for(tb.caller)),
                "default": c.name == registry.default_name(),
            })
        })
        .collect();
    Ok(Output::Structured(json!({
        "clusters": clusters,
        "count": clusters.len(),
    })))
}

/// The `list_clusters` tool's listing.
pub fn list_clusters_tool() -> Tool {
    tool(
        "list_clusters",
        "List the Aurora DSQL clusters this server serves: each one's name (what the database tools' `cluster` \
         argument takes), endpoint, port, region, database user, mode (read-only or read-write: what calls may do \
         there) and whether it is the default (used when a call names no cluster).",
        json!({"type": "object", "properties": {}}),
        Some(json!({
            "type": "object",
            "properties": {
                "clusters": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "endpoint": {"type": "string"},
                        "port": {"type": "integer"},
                        "region": {"type": "string"},
                        "user": {"type": "string"},
                        "mode": {"type": "string", "enum": ["read-only", "read-write"]},
                        "default": {"type": "boolean"}
                    },
                    "required": ["name", "endpoint", "port", "region", "user", "mode", "default"]
                }},
                "count": {"type": "integer"}
            },
            "required": ["clusters", "count"]
        })),
        read_only_hints(),
    )
}

/// Adds the optional `cluster` argument to a database tool's listing, and says so in its
/// description.
pub fn add_cluster_argument(t: &mut Tool, names: &[&str], default: &str) {
    let mut schema = (*t.input_schema).clone();
    let properties = schema.entry("properties").or_insert_with(|| json!({}));
    if let Value::Object(properties) = properties {
        let mut arg = json!({
            "type": "string",
            "enum": names,
            "description": format!("Which configured cluster to run on (default: {default}); list_clusters shows each one's endpoint and mode."),
        });
        // The default is offered only to a caller that may use it.
        if names.contains(&default) {
            arg["default"] = json!(default);
        }
        properties.insert(CLUSTER_ARG.to_owned(), arg);
    }
    t.input_schema = Arc::new(schema);
    let description = t.description.as_deref().unwrap_or_default();
    t.description = Some(
        format!(
            "{description} Several clusters are configured: `cluster` names the one to use (default: {default}); \
             each has its own mode (list_clusters)."
        )
        .into(),
    );
}
