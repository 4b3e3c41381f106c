//! The documentation tools: `dsql_search_documentation`, `dsql_read_documentation`,
//! `dsql_recommend`.
//!
//! Thin handlers: read the arguments, forward them to the knowledge server exactly as the
//! reference does (optional arguments only when given), and fall back to the bundled
//! guides where that makes sense. The client, the fallback and the ranking live in
//! `crate::knowledge`.

use serde_json::{Map, Value};

use super::args::ArgReader;
use super::{Call, Output, ToolError, ToolResult};
use crate::executor::Control;
use crate::knowledge::{self, KnowledgeClient, KnowledgeError, guides};

/// One remote call, abandoned if the client cancels the MCP request.
async fn remote(
    tb: &Call<'_>,
    tool: &str,
    arguments: Map<String, Value>,
    ctl: &Control<'_>,
) -> Result<Value, KnowledgeError> {
    let client = KnowledgeClient::new(&tb.config.knowledge_server, tb.config.knowledge_timeout);
    tokio::select! {
        answer = client.call(tool, arguments) => answer,
        _ = ctl.cancel.cancelled() => Err(KnowledgeError::Cancelled),
    }
}

fn put(arguments: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    if let Some(value) = value {
        arguments.insert(name.to_owned(), value);
    }
}

pub async fn search_documentation(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    let mut a = ArgReader::new("dsql_search_documentation", args);
    let search_phrase = a.string("search_phrase");
    let limit = a.integer("limit");
    a.finish().map_err(ToolError)?;
    let mut arguments = Map::new();
    arguments.insert("search_phrase".into(), search_phrase.clone().into());
    put(&mut arguments, "limit", limit.map(Value::from));
    match remote(tb, "dsql_search_documentation", arguments, ctl).await {
        Ok(answer) => Ok(Output::Text(answer)),
        Err(KnowledgeError::Unreachable(reason)) => Ok(Output::Text(knowledge::search_bundled(
            &search_phrase,
            limit,
            &reason,
        ))),
        Err(e) => Err(ToolError(e.to_string())),
    }
}

pub async fn read_documentation(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    let mut a = ArgReader::new("dsql_read_documentation", args);
    let url = a.string("url");
    let start_index = a.integer("start_index");
    let max_length = a.integer("max_length");
    a.finish().map_err(ToolError)?;
    // A bundled guide never leaves the binary: the remote server does not know these URIs.
    if guides::name_of_uri(&url).is_some() {
        return knowledge::read_bundled(&url, start_index, max_length)
            .map(Output::Text)
            .map_err(ToolError);
    }
    let mut arguments = Map::new();
    arguments.insert("url".into(), url.into());
    put(&mut arguments, "start_index", start_index.map(Value::from));
    put(&mut arguments, "max_length", max_length.map(Value::from));
    let answer = remote(tb, "dsql_read_documentation", arguments, ctl).await?;
    Ok(Output::Text(answer))
}

pub async fn recommend(tb: &Call<'_>, args: &Map<String, Value>, ctl: &Control<'_>) -> ToolResult {
    let mut a = ArgReader::new("dsql_recommend", args);
    let url = a.string("url");
    a.finish().map_err(ToolError)?;
    let mut arguments = Map::new();
    arguments.insert("url".into(), url.into());
    let answer = remote(tb, "dsql_recommend", arguments, ctl).await?;
    Ok(Output::Text(answer))
}
