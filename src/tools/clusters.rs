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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{CLUSTERLESS_TOOLS, DATABASE_TOOLS, Toolbox};
    use super::*;
    use crate::clusters::{Cluster, Clusters};
    use crate::config::{Args, Config, Database, Env};
    use crate::executor::{Executor, Limits, RetryPolicy};
    use crate::tools::Caller;

    fn cluster(name: &str, access: Access) -> Cluster {
        let database = Database {
            endpoint: format!("{name}.example"),
            port: 5432,
            user: "admin".into(),
            region: "us-east-1".into(),
            profile: Some("secret-profile".into()),
            ssl_root_cert: None,
        };
        let pool = crate::connection::pool::build(&database, access).unwrap();
        Cluster {
            name: name.into(),
            database,
            access,
            executor: Arc::new(Executor::new(
                pool,
                Limits::default(),
                RetryPolicy::default(),
            )),
            tenant_map: Default::default(),
        }
    }

    fn toolbox(clusters: Clusters) -> Toolbox {
        let args = Args::try_parse_from(["x"]).unwrap();
        Toolbox {
            config: Config::from_args(args, &Env::default()).unwrap(),
            clusters,
        }
    }

    fn caller(access: Access, clusters: Option<&[&str]>) -> Caller {
        Caller {
            access,
            tenant: None,
            clusters: clusters.map(|c| c.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn every_tool_is_either_a_database_tool_or_clusterless() {
        let tb = toolbox(Clusters::from_entries(
            vec![
                cluster("a", Access::ReadOnly),
                cluster("b", Access::ReadWrite),
            ],
            "a",
        ));
        let all = caller(Access::ReadWrite, None);
        for t in tb.catalogue(&all) {
            let name = t.name.as_ref();
            let database = DATABASE_TOOLS.contains(&name);
            assert!(
                database != CLUSTERLESS_TOOLS.contains(&name),
                "{name}: list it in exactly one of DATABASE_TOOLS and CLUSTERLESS_TOOLS"
            );
            assert_eq!(
                t.input_schema["properties"].get("cluster").is_some(),
                database,
                "{name}"
            );
        }
    }

    #[test]
    fn one_cluster_lists_no_cluster_argument_and_no_list_clusters() {
        let one = toolbox(Clusters::from_entries(
            vec![cluster("a", Access::ReadOnly)],
            "a",
        ));
        let none = toolbox(Clusters::empty());
        let all = caller(Access::ReadWrite, None);
        for tb in [one, none] {
            let tools = tb.catalogue(&all);
            assert!(tools.iter().all(|t| t.name != "list_clusters"));
            assert!(
                tools
                    .iter()
                    .all(|t| t.input_schema["properties"].get("cluster").is_none())
            );
            assert_eq!(tools, tb.base_catalogue(tb.access() == Access::ReadWrite));
        }
    }

    #[test]
    fn the_cluster_argument_offers_only_the_callers_clusters() {
        let tb = toolbox(Clusters::from_entries(
            vec![
                cluster("a", Access::ReadOnly),
                cluster("b", Access::ReadWrite),
            ],
            "a",
        ));
        let only_b = caller(Access::ReadWrite, Some(&["b"]));
        let tools = tb.catalogue(&only_b);
        let q = tools.iter().find(|t| t.name == "query").unwrap();
        assert_eq!(
            Value::Object((*q.input_schema).clone())["properties"]["cluster"],
            json!({
                "type": "string",
                "enum": ["b"],
                "description": "Which configured cluster to run on (default: a); list_clusters shows each one's endpoint and mode."
            })
        );
        // A read credential sees no destructive tool even though b allows writes.
        let read = caller(Access::ReadOnly, None);
        let tools = tb.catalogue(&read);
        let execute = tools.iter().find(|t| t.name == "execute").unwrap();
        assert_eq!(
            execute.annotations.as_ref().unwrap().read_only_hint,
            Some(true)
        );
        let tools = tb.catalogue(&caller(Access::ReadWrite, None));
        let execute = tools.iter().find(|t| t.name == "execute").unwrap();
        assert_eq!(
            execute.annotations.as_ref().unwrap().read_only_hint,
            Some(false)
        );
    }

    #[test]
    fn a_cluster_outside_the_callers_is_refused_like_an_unknown_one() {
        let clusters = Clusters::from_entries(
            vec![
                cluster("a", Access::ReadOnly),
                cluster("b", Access::ReadWrite),
            ],
            "a",
        );
        let only_b = caller(Access::ReadWrite, Some(&["b"]));
        let hidden = clusters.resolve(Some("a"), &only_b).err().unwrap();
        let unknown = clusters.resolve(Some("zz"), &only_b).err().unwrap();
        assert_eq!(
            hidden,
            "unknown cluster \"a\" (configured: b). list_clusters shows each with its endpoint and mode."
        );
        assert_eq!(unknown, hidden.replace("\"a\"", "\"zz\""));
        assert_eq!(
            clusters.resolve(None, &only_b).err().unwrap(),
            "this call names no cluster and the default one is not available to this credential: pass `cluster` (configured: b)"
        );
        assert_eq!(
            clusters.resolve(Some("b"), &only_b).unwrap().unwrap().name,
            "b"
        );
        let all = caller(Access::ReadOnly, None);
        let a = clusters.resolve(None, &all).unwrap().unwrap();
        assert_eq!(a.name, "a");
        // A cluster's mode is never exceeded, and a caller's ceiling lowers it.
        assert_eq!(
            a.access_for(&caller(Access::ReadWrite, None)),
            Access::ReadOnly
        );
        let b = clusters.resolve(Some("b"), &all).unwrap().unwrap();
        assert_eq!(b.access_for(&all), Access::ReadOnly);
        assert_eq!(
            Clusters::empty()
                .resolve(Some("a"), &all)
                .unwrap()
                .map(|c| c.name.clone()),
            None
        );
    }

    #[tokio::test]
    async fn calls_are_refused_before_any_connection_outside_the_callers_clusters() {
        let ctl = crate::executor::Control::none();
        // Several: the named cluster must be one of the caller's; names are not leaked.
        let tb = toolbox(Clusters::from_entries(
            vec![
                cluster("a", Access::ReadOnly),
                cluster("b", Access::ReadWrite),
            ],
            "a",
        ));
        let only_b = caller(Access::ReadWrite, Some(&["b"]));
        let args = json!({"sql": "SELECT 1", "cluster": "a"});
        let r = tb
            .call("query", args.as_object().unwrap(), &only_b, &ctl)
            .await
            .unwrap();
        assert_eq!(
            r,
            Err(ToolError(
                "unknown cluster \"a\" (configured: b). list_clusters shows each with its endpoint and mode.".into()
            ))
        );
        // One: the only cluster is still the caller's to use or not.
        let tb = toolbox(Clusters::from_entries(
            vec![cluster("a", Access::ReadOnly)],
            "a",
        ));
        let r = tb
            .call(
                "query",
                json!({"sql": "SELECT 1"}).as_object().unwrap(),
                &only_b,
                &ctl,
            )
            .await
            .unwrap();
        assert_eq!(
            r,
            Err(ToolError(
                "this credential may not use the cluster this server serves".into()
            ))
        );
        // Nothing connected: these executors point at hosts that do not exist.
        assert_eq!(
            tb.clusters
                .all()
                .next()
                .unwrap()
                .executor
                .pool()
                .manager()
                .opened(),
            0
        );
    }

    #[test]
    fn list_clusters_shows_the_callers_clusters_without_secrets() {
        let tb = toolbox(Clusters::from_entries(
            vec![
                cluster("b", Access::ReadWrite),
                cluster("a", Access::ReadOnly),
            ],
            "a",
        ));
        let read = caller(Access::ReadOnly, None);
        let call = Call::new(&tb, &read, None);
        let Output::Structured(listed) = list_clusters(&call, &Map::new()).unwrap() else {
            panic!("structured")
        };
        assert_eq!(
            listed,
            json!({"clusters": [
                {"name": "a", "endpoint": "a.example", "port": 5432, "region": "us-east-1", "user": "admin", "mode": "read-only", "default": true},
                {"name": "b", "endpoint": "b.example", "port": 5432, "region": "us-east-1", "user": "admin", "mode": "read-only", "default": false}
            ], "count": 2})
        );
        assert!(!listed.to_string().contains("secret-profile"));
        let writer_of_b = caller(Access::ReadWrite, Some(&["b"]));
        let call = Call::new(&tb, &writer_of_b, None);
        let Output::Structured(listed) = list_clusters(&call, &Map::new()).unwrap() else {
            panic!("structured")
        };
        assert_eq!(listed["count"], 1);
        assert_eq!(listed["clusters"][0]["mode"], "read-write");
    }

    #[test]
    fn instructions_name_the_clusters_when_there_are_several() {
        let one = Clusters::from_entries(vec![cluster("a", Access::ReadOnly)], "a");
        let all = caller(Access::ReadWrite, None);
        assert_eq!(
            crate::server::instructions(&one, &all),
            crate::server::INSTRUCTIONS
        );
        let two = Clusters::from_entries(
            vec![
                cluster("a", Access::ReadOnly),
                cluster("b", Access::ReadWrite),
            ],
            "a",
        );
        let text = crate::server::instructions(&two, &all);
        assert!(text.starts_with("This server connects an agent to several Amazon Aurora DSQL clusters (PostgreSQL-compatible, serverless, optimistic concurrency): a (read-only), b (read-write). Every database tool takes an optional `cluster` argument naming the one to use (default: a);"), "{text}");
        assert!(!text.contains("--allow-writes"), "{text}");
        assert!(
            text.contains(
                "transact or execute to change data on a cluster whose mode is read-write."
            ),
            "{text}"
        );
    }
}
