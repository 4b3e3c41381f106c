//! MCP resources: the bundled guides, and the cluster's tables when one is configured.
//!
//! - `dsql://guides/<name>`: a steering guide, as Markdown, straight from the binary.
//! - `dsql://tables/<schema>/<table>`: a table's description (columns, indexes,
//!   constraints) as JSON, read from the catalog in a read-only unit of work by the same
//!   code as the `describe_table` tool. Names are percent-encoded in the URI.
//! - With several clusters configured, table URIs name their cluster:
//!   `dsql://clusters/<cluster>/tables/<schema>/<table>` (with one, they stay as above).
//!
//! Listing never fails because the cluster is away: the guides are listed anyway and the
//! failure is logged.

use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};

use super::guides;
use crate::catalog;
use crate::executor::{Control, Executor};
use crate::tools::names::{Name, preview};

/// The longest resource URI read: a table URI of two 63-byte names, each byte
/// percent-encoded, fits with room to spare.
pub const MAX_URI_BYTES: usize = 1024;

pub const TABLE_URI_PREFIX: &str = "dsql://tables/";
/// With several clusters: `dsql://clusters/<cluster>/tables/<schema>/<table>`.
pub const CLUSTER_URI_PREFIX: &str = "dsql://clusters/";
const MARKDOWN: &str = "text/markdown";
const JSON: &str = "application/json";

/// How long listing resources waits for the cluster's table list.
const LIST_TABLES_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a resource cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceError {
    /// No such resource (MCP's resource-not-found).
    NotFound(String),
    /// It exists (or may), but reading it failed.
    Failed(String),
}

/// Where table resources come from: the clusters the caller may use.
pub enum Tables<'a> {
    /// No cluster configured: guides only.
    None,
    /// One cluster: `dsql://tables/...`, as ever.
    One(&'a Executor),
    /// Several: `dsql://clusters/<name>/tables/...`, by name.
    Several(Vec<(&'a str, &'a Executor)>),
}

impl<'a> Tables<'a> {
    /// The executor of a table URI's cluster (`None`: the URI names none).
    fn executor(&self, cluster: Option<&str>, uri: &str) -> Result<&'a Executor, ResourceError> {
        match (self, cluster) {
            (Tables::None, _) => Err(ResourceError::NotFound(
                crate::tools::NOT_CONFIGURED.to_owned(),
            )),
            (Tables::One(executor), None) => Ok(executor),
            (Tables::Several(_), None) => Err(ResourceError::NotFound(format!(
                "{}: several clusters are configured, so table URIs name theirs: {CLUSTER_URI_PREFIX}<cluster>/tables/<schema>/<table>",
                preview(uri)
            ))),
            (Tables::One(_), Some(_)) => Err(self.unknown(uri)),
            (Tables::Several(all), Some(name)) => all
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, e)| *e)
                .ok_or_else(|| {
                    ResourceError::NotFound(format!(
                        "unknown cluster \"{}\" (configured: {})",
                        preview(name),
                        all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ))
                }),
        }
    }

    fn unknown(&self, uri: &str) -> ResourceError {
        let tables = match self {
            Tables::Several(_) => format!("{CLUSTER_URI_PREFIX}<cluster>/tables/<schema>/<table>"),
            _ => format!("{TABLE_URI_PREFIX}<schema>/<table>"),
        };
        ResourceError::NotFound(format!(
            "unknown resource {} (this server serves {}<name> and {tables})",
            preview(uri),
            guides::URI_PREFIX
        ))
    }
}

/// The guides, then the tables of every cluster that is configured and answers.
pub async fn list(sources: &Tables<'_>, ctl: &Control<'_>) -> Vec<Resource> {
    let mut resources: Vec<Resource> = guides::all()
        .map(|g| {
            Resource::new(g.uri(), g.name)
                .with_title(g.title())
                .with_description(g.summary())
                .with_mime_type(MARKDOWN)
                .with_size(g.text.len() as u64)
        })
        .collect();
    let clusters: Vec<(Option<&str>, &Executor)> = match sources {
        Tables::None => vec![],
        Tables::One(executor) => vec![(None, *executor)],
        Tables::Several(all) => all.iter().map(|(n, e)| (Some(*n), *e)).collect(),
    };
    // Each cluster within its own bound, all at once: one that is away holds up no other.
    let listings = futures_util::future::join_all(
        clusters
            .iter()
            .map(|(_, executor)| bounded_tables(executor, ctl)),
    )
    .await;
    for ((cluster, _), listing) in clusters.iter().zip(listings) {
        match listing {
            Ok(tables) => resources.extend(tables.into_iter().map(|(schema, table)| {
                match cluster {
                    None => Resource::new(table_uri(&schema, &table), format!("{schema}.{table}"))
                        .with_title(format!("Table {schema}.{table}"))
                        .with_description("Columns, indexes and constraints of the table, as JSON.")
                        .with_mime_type(JSON),
                    Some(cluster) => Resource::new(
                        cluster_table_uri(cluster, &schema, &table),
                        format!("{cluster}/{schema}.{table}"),
                    )
                    .with_title(format!("Table {schema}.{table} of cluster {cluster}"))
                    .with_description("Columns, indexes and constraints of the table, as JSON.")
                    .with_mime_type(JSON),
                }
            })),
            Err(e) => match cluster {
                None => tracing::warn!("table resources are not listed: {e}"),
                Some(cluster) => {
                    tracing::warn!(
                        cluster,
                        "table resources of this cluster are not listed: {e}"
                    )
                }
            },
        }
    }
    resources
}

/// The URI templates: guides always, tables when a cluster is configured (naming the
/// cluster when there are several).
pub fn templates(sources: &Tables<'_>) -> Vec<ResourceTemplate> {
    let mut templates = vec![
        ResourceTemplate::new(format!("{}{{name}}", guides::URI_PREFIX), "guide")
            .with_title("Aurora DSQL steering guide")
            .with_description(format!("A bundled guide by name: {}.", guides::names()))
            .with_mime_type(MARKDOWN),
    ];
    match sources {
        Tables::None => {}
        Tables::One(_) => templates.push(
            ResourceTemplate::new(format!("{TABLE_URI_PREFIX}{{schema}}/{{table}}"), "table")
                .with_title("Table description")
                .with_description("Columns, indexes and constraints of a table, as JSON.")
                .with_mime_type(JSON),
        ),
        Tables::Several(all) => templates.push(
            ResourceTemplate::new(
                format!("{CLUSTER_URI_PREFIX}{{cluster}}/tables/{{schema}}/{{table}}"),
                "table",
            )
            .with_title("Table description")
            .with_description(format!(
                "Columns, indexes and constraints of a table of one cluster ({}), as JSON.",
                all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
            .with_mime_type(JSON),
        ),
    }
    templates
}

/// Reads one resource by URI.
pub async fn read(
    sources: &Tables<'_>,
    uri: &str,
    ctl: &Control<'_>,
) -> Result<ReadResourceResult, ResourceError> {
    if uri.len() > MAX_URI_BYTES || uri.contains('\0') {
        return Err(ResourceError::NotFound(format!(
            "no such resource: {} ({} bytes; resource URIs of this server are at most {MAX_URI_BYTES} bytes, without NUL)",
            preview(&uri.replace('\0', "\\0")),
            uri.len()
        )));
    }
    if let Some(name) = guides::name_of_uri(uri) {
        let guide = guides::get(name).ok_or_else(|| {
            ResourceError::NotFound(format!(
                "no bundled guide named \"{}\" (bundled guides: {})",
                preview(name),
                guides::names()
            ))
        })?;
        let contents = ResourceContents::text(guide.text, uri).with_mime_type(MARKDOWN);
        return Ok(ReadResourceResult::new(vec![contents]));
    }
    // `dsql://tables/<s>/<t>`, or `dsql://clusters/<c>/tables/<s>/<t>`.
    let table_part = match uri.strip_prefix(CLUSTER_URI_PREFIX) {
        Some(rest) => rest
            .split_once('/')
            .and_then(|(cluster, rest)| Some((Some(cluster), rest.strip_prefix("tables/")?))),
        None => uri.strip_prefix(TABLE_URI_PREFIX).map(|rest| (None, rest)),
    };
    if let Some((cluster, rest)) = table_part {
        // Split before decoding: a `/` inside a name travels as %2F (`table_uri`).
        let (schema, table) = rest
            .split_once('/')
            .filter(|(_, t)| !t.contains('/'))
            .and_then(|(s, t)| Some((decode(s)?, decode(t)?)))
            .filter(|(s, t)| !s.is_empty() && !t.is_empty())
            .ok_or_else(|| {
                ResourceError::NotFound(format!(
                    "{} is not a table URI ({}<schema>/<table>)",
                    preview(uri),
                    match cluster {
                        Some(c) => format!("{CLUSTER_URI_PREFIX}{c}/tables/"),
                        None => TABLE_URI_PREFIX.to_owned(),
                    }
                ))
            })?;
        let executor = sources.executor(cluster, uri)?;
        // The URI carries names as stored in the catalog: matched exactly, never re-quoted.
        let key = Name::stored(&schema)
            .and_then(|s| Ok(s.key(&Name::stored(&table)?)))
            .map_err(|e| ResourceError::NotFound(format!("{}: {e}", preview(uri))))?;
        let description = catalog::describe(executor, &key, ctl)
            .await
            .map_err(ResourceError::Failed)?
            .ok_or_else(|| {
                ResourceError::NotFound(format!(
                    "table \"{table}\" was not found in schema \"{schema}\""
                ))
            })?;
        let text = serde_json::to_string_pretty(&description).unwrap_or_default();
        let contents = ResourceContents::text(text, uri).with_mime_type(JSON);
        return Ok(ReadResourceResult::new(vec![contents]));
    }
    Err(sources.unknown(uri))
}

/// The table listing, given at most [`LIST_TABLES_WAIT`]: hosts list resources on their
/// own schedule (often at start-up), and a cluster that is away must not hold them up. On
/// timeout the unit is cancelled through the executor (never dropped mid-transaction).
/// The (schema, table) pairs of one cluster's user tables, within the listing's own bound:
/// the table resources' listing, shared with `completion`.
pub async fn catalog_tables(
    executor: &Executor,
    ctl: &Control<'_>,
) -> Result<Vec<(String, String)>, String> {
    bounded_tables(executor, ctl).await
}

async fn bounded_tables(
    executor: &Executor,
    ctl: &Control<'_>,
) -> Result<Vec<(String, String)>, String> {
    let cancel = ctl.cancel.child_token();
    let mut inner = Control::new(cancel.clone(), ctl.observer);
    inner.shutdown = ctl.shutdown.clone();
    inner.held = ctl.held.clone();
    let listing = catalog::tables(executor, &inner);
    tokio::pin!(listing);
    tokio::select! {
        done = &mut listing => done,
        _ = tokio::time::sleep(LIST_TABLES_WAIT) => {
            cancel.cancel();
            let _ = listing.await;
            Err(format!("the cluster did not answer within {LIST_TABLES_WAIT:?}"))
        }
    }
}

/// `dsql://tables/<schema>/<table>`, names percent-encoded.
pub fn table_uri(schema: &str, table: &str) -> String {
    format!("{TABLE_URI_PREFIX}{}/{}", encode(schema), encode(table))
}

/// `dsql://clusters/<cluster>/tables/<schema>/<table>` (cluster names need no escaping:
/// `cluster_file::check_name`).
pub fn cluster_table_uri(cluster: &str, schema: &str, table: &str) -> String {
    format!(
        "{CLUSTER_URI_PREFIX}{cluster}/tables/{}/{}",
        encode(schema),
        encode(table)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes; `None` for a broken escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_survive_the_uri() {
        for (schema, table) in [
            ("public", "orders"),
            ("My Schema", "a/b%c"),
            ("ünï", "t\"q"),
        ] {
            let uri = table_uri(schema, table);
            let rest = uri.strip_prefix(TABLE_URI_PREFIX).unwrap();
            let (s, t) = rest.split_once('/').unwrap();
            assert_eq!(
                (decode(s).unwrap(), decode(t).unwrap()),
                (schema.to_owned(), table.to_owned())
            );
        }
        assert_eq!(table_uri("public", "orders"), "dsql://tables/public/orders");
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
    }

    #[tokio::test]
    async fn guides_are_listed_and_readable_without_a_cluster() {
        let ctl = Control::none();
        let listed = list(&Tables::None, &ctl).await;
        assert_eq!(listed.len(), guides::all().count());
        for r in &listed {
            assert_eq!(r.mime_type.as_deref(), Some(MARKDOWN));
            let read = read(&Tables::None, &r.uri, &ctl).await.unwrap();
            let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
                panic!("text expected")
            };
            assert_eq!(text, guides::get(&r.name).unwrap().text);
        }
        assert!(matches!(
            read(&Tables::None, "dsql://guides/nope", &ctl).await,
            Err(ResourceError::NotFound(_))
        ));
        assert!(matches!(
            read(&Tables::None, "file:///etc/passwd", &ctl).await,
            Err(ResourceError::NotFound(_))
        ));
        assert_eq!(
            read(&Tables::None, "dsql://tables/public/t", &ctl).await,
            Err(ResourceError::NotFound(
                crate::tools::NOT_CONFIGURED.to_owned()
            ))
        );
        assert_eq!(templates(&Tables::None).len(), 1);
    }

    #[tokio::test]
    async fn with_several_clusters_table_uris_name_theirs() {
        let ctl = Control::none();
        let several = Tables::Several(vec![]);
        assert_eq!(
            read(&several, "dsql://tables/public/t", &ctl).await,
            Err(ResourceError::NotFound(
                "dsql://tables/public/t: several clusters are configured, so table URIs name theirs: dsql://clusters/<cluster>/tables/<schema>/<table>".into()
            ))
        );
        assert_eq!(
            read(&several, "dsql://clusters/x/tables/public/t", &ctl).await,
            Err(ResourceError::NotFound(
                "unknown cluster \"x\" (configured: )".into()
            ))
        );
        assert_eq!(
            read(&several, "dsql://clusters/x/views/v", &ctl).await,
            Err(ResourceError::NotFound(
                "unknown resource dsql://clusters/x/views/v (this server serves dsql://guides/<name> and dsql://clusters/<cluster>/tables/<schema>/<table>)".into()
            ))
        );
        assert_eq!(
            read(&several, "dsql://clusters/x/tables/public", &ctl).await,
            Err(ResourceError::NotFound(
                "dsql://clusters/x/tables/public is not a table URI (dsql://clusters/x/tables/<schema>/<table>)".into()
            ))
        );
        assert_eq!(
            cluster_table_uri("prod", "My Schema", "t"),
            "dsql://clusters/prod/tables/My%20Schema/t"
        );
        let templates = templates(&several);
        assert_eq!(
            templates[1].uri_template,
            "dsql://clusters/{cluster}/tables/{schema}/{table}"
        );
    }
}
