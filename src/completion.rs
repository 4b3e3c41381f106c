//! `completion/complete`: suggestions for the variables of this server's resource templates.
//!
//! MCP completes two kinds of reference: a prompt's arguments and a resource template's
//! variables (tool arguments are not completable in the protocol). This server's prompts take
//! only SQL text, which has nothing to suggest, so the work is in the templates:
//! `dsql://guides/{name}` (the bundled guides), `dsql://tables/{schema}/{table}` and, with
//! several clusters, `dsql://clusters/{cluster}/tables/{schema}/{table}`. Schemas and tables
//! come from the catalog listing the table resources use (`resources::catalog_tables`),
//! cached per cluster for [`CACHE_FOR`], since a client asks again at every keystroke.
//! Values are those that start with what was typed, sorted, at most MCP's 100, with `total`
//! and `hasMore`. A cluster that does not answer gives no suggestions, never an error.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rmcp::model::{CompleteRequestParams, CompleteResult, CompletionInfo, Reference};

use crate::executor::{Control, Executor};
use crate::knowledge::guides;
use crate::knowledge::resources::{self, CLUSTER_URI_PREFIX, TABLE_URI_PREFIX, Tables};

/// How long one cluster's listing of (schema, table) serves completions.
pub const CACHE_FOR: Duration = Duration::from_secs(30);

/// One listing per cluster (`None`: the one cluster), with when it was read.
type Listing = (Instant, Vec<(String, String)>);

/// The catalog listings completions are drawn from.
#[derive(Default)]
pub struct CatalogCache {
    entries: Mutex<HashMap<Option<String>, Listing>>,
}

impl CatalogCache {
    /// The (schema, table) pairs of one cluster: cached, else read (and kept if read).
    async fn tables(
        &self,
        cluster: Option<&str>,
        executor: &Executor,
        ctl: &Control<'_>,
    ) -> Vec<(String, String)> {
        let key = cluster.map(str::to_owned);
        if let Some((at, listing)) = self.lock().get(&key)
            && at.elapsed() < CACHE_FOR
        {
            return listing.clone();
        }
        match resources::catalog_tables(executor, ctl).await {
            Ok(listing) => {
                self.lock().insert(key, (Instant::now(), listing.clone()));
                listing
            }
            Err(e) => {
                tracing::debug!("no completions from the catalog: {e}");
                Vec::new()
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<String>, Listing>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Answers one `completion/complete` request. `default_cluster` is the cluster a table
/// template means when the request's context names none (several clusters only).
pub async fn complete(
    cache: &CatalogCache,
    sources: &Tables<'_>,
    default_cluster: &str,
    request: &CompleteRequestParams,
    ctl: &Control<'_>,
) -> CompleteResult {
    let typed = request.argument.value.as_str();
    let context = |name: &str| {
        request
            .context
            .as_ref()
            .and_then(|c| c.arguments.as_ref())
            .and_then(|a| a.get(name))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let uri = match &request.r#ref {
        Reference::Resource(r) => r.uri.as_str(),
        // The prompts' only argument is SQL text: nothing to suggest.
        _ => return shape(Vec::new(), typed),
    };
    let variable = request.argument.name.as_str();
    if uri == format!("{}{{name}}", guides::URI_PREFIX) {
        let names = match variable {
            "name" => guides::all().map(|g| g.name.to_owned()).collect(),
            _ => Vec::new(),
        };
        return shape(names, typed);
    }
    let (cluster, executor) = match sources {
        Tables::One(executor) if uri == format!("{TABLE_URI_PREFIX}{{schema}}/{{table}}") => {
            (None, *executor)
        }
        Tables::Several(all)
            if uri == format!("{CLUSTER_URI_PREFIX}{{cluster}}/tables/{{schema}}/{{table}}") =>
        {
            if variable == "cluster" {
                return shape(all.iter().map(|(n, _)| (*n).to_owned()).collect(), typed);
            }
            let name = context("cluster").unwrap_or(default_cluster);
            match all.iter().find(|(n, _)| *n == name) {
                Some((n, executor)) => (Some(*n), *executor),
                // Not one of the caller's clusters: nothing to suggest.
                None => return shape(Vec::new(), typed),
            }
        }
        _ => return shape(Vec::new(), typed),
    };
    let values = match variable {
        "schema" => cache
            .tables(cluster, executor, ctl)
            .await
            .into_iter()
            .map(|(schema, _)| schema)
            .collect(),
        "table" => {
            let schema = context("schema");
            cache
                .tables(cluster, executor, ctl)
                .await
                .into_iter()
                .filter(|(s, _)| schema.is_none_or(|want| want == s))
                .map(|(_, table)| table)
                .collect()
        }
        _ => Vec::new(),
    };
    shape(values, typed)
}

/// The values that start with `typed`, sorted and unique, at most MCP's 100, with the total.
fn shape(values: Vec<String>, typed: &str) -> CompleteResult {
    let matching: BTreeSet<String> = values
        .into_iter()
        .filter(|v| v.starts_with(typed))
        .collect();
    let total = matching.len();
    let values: Vec<String> = matching
        .into_iter()
        .take(CompletionInfo::MAX_VALUES)
        .collect();
    let has_more = total > values.len();
    // At most MAX_VALUES values: `with_pagination` cannot refuse them.
    let info =
        CompletionInfo::with_pagination(values, Some(total as u32), has_more).unwrap_or_default();
    CompleteResult::new(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_filtered_sorted_unique_and_capped() {
        let r = shape(
            vec![
                "orders".into(),
                "items".into(),
                "order_lines".into(),
                "orders".into(),
            ],
            "ord",
        );
        assert_eq!(r.completion.values, ["order_lines", "orders"]);
        assert_eq!(r.completion.total, Some(2));
        assert_eq!(r.completion.has_more, Some(false));
        let many: Vec<String> = (0..250).map(|i| format!("t{i:03}")).collect();
        let r = shape(many, "t");
        assert_eq!(r.completion.values.len(), 100);
        assert_eq!(r.completion.values[0], "t000");
        assert_eq!(r.completion.total, Some(250));
        assert_eq!(r.completion.has_more, Some(true));
    }
}
