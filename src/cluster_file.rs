//! The `--clusters FILE`: several clusters in one process, one TOML table each.
//!
//! The reference's flags describe one cluster; a team's server fronts several (production
//! read-only, staging with writes, ...). The file names each cluster and gives it what the
//! flags give one: endpoint, region, user, profile, port, CA file, its own access mode
//! (`allow_writes`, false unless set) and its own bounds on a call. Parsing is strict
//! (`deny_unknown_fields`: a misspelt `allow_write` must not silently leave a cluster
//! read-only, or a misspelt `max_rows` unbounded), and every error names the file, the
//! line and the cluster. The result is the same [`ClusterConfig`] the flags resolve to, so
//! one cluster given by flags and several given by a file run on one code path.
//!
//! ```toml
//! default = "prod"
//!
//! [clusters.prod]
//! endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
//! user = "reader"
//!
//! [clusters.staging]
//! endpoint = "zyxwvutsrqponmlkjihgfedcba.dsql.us-west-2.on.aws"
//! user = "admin"
//! allow_writes = true
//! max_rows = 500
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ClusterConfig, ConfigError, Database, is_cluster_id, region_of_endpoint};
use crate::executor::Limits;
use crate::policy::Access;

/// The most connections one cluster's pool may be given.
pub const MAX_POOL_SIZE: usize = 100;

/// The longest cluster name (names travel in resource URIs and tool arguments).
pub const MAX_NAME_LEN: usize = 63;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The cluster a call uses when it names none.
    default: String,
    clusters: BTreeMap<String, Entry>,
}

/// One `[clusters.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    endpoint: String,
    region: Option<String>,
    user: String,
    profile: Option<String>,
    port: Option<u16>,
    ssl_root_cert: Option<PathBuf>,
    #[serde(default)]
    allow_writes: bool,
    max_rows: Option<usize>,
    max_result_bytes: Option<usize>,
    /// Seconds, like `--query-timeout`.
    query_timeout: Option<f64>,
    pool_size: Option<usize>,
}

/// What a cluster takes from the command line when its table does not say.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `--profile` / `AWS_PROFILE`.
    pub profile: Option<String>,
    /// `--ssl-root-cert` / `PGSSLROOTCERT`.
    pub ssl_root_cert: Option<PathBuf>,
    /// `--query-timeout`, `--max-rows`, `--max-result-bytes` (the budget is process-wide).
    pub limits: Limits,
    /// The pool size of a cluster given by flags.
    pub pool_size: usize,
}

/// The clusters of a file, by name (sorted), and the default's name.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub clusters: Vec<ClusterConfig>,
    pub default: String,
}

/// Reads and resolves the file at `path`.
pub fn load(path: &Path, defaults: &Defaults) -> Result<Resolved, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!(
            "--clusters {}: cannot be read: {e}",
            path.display()
        ))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, defaults)
        .map_err(|e| ConfigError::Invalid(format!("--clusters {}: {e}", path.display())))
}

/// Parses the file's text; relative `ssl_root_cert` paths are taken from `base` (the
/// file's folder), so a file and its CA files can move together.
pub fn parse(text: &str, base: &Path, defaults: &Defaults) -> Result<Resolved, String> {
    let file: File = toml::from_str(text).map_err(|e| {
        // toml's own Display draws the line in several lines; the server reports start-up
        // errors in one, so say where and what.
        match e.span() {
            Some(span) => format!("line {}: {}", line_of(text, span.start), e.message()),
            None => e.message().to_owned(),
        }
        .trim_end()
        .to_owned()
    })?;
    if file.clusters.is_empty() {
        return Err("no clusters defined: add a [clusters.NAME] table per cluster".into());
    }
    let mut clusters = Vec::with_capacity(file.clusters.len());
    for (name, entry) in file.clusters {
        check_name(&name)?;
        clusters.push(
            resolve(&name, entry, base, defaults).map_err(|e| format!("cluster {name}: {e}"))?,
        );
    }
    if !clusters.iter().any(|c| c.name == file.default) {
        return Err(format!(
            "default = \"{}\" names no cluster of the file (defined: {})",
            crate::tools::names::preview(&file.default),
            clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Resolved {
        clusters,
        default: file.default,
    })
}

/// A cluster name: a lower-case letter, then lower-case letters, digits, `-` or `_`, at most
/// 63 in all: it travels unescaped in `dsql://clusters/<name>/...` and tool arguments.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cluster name \"{}\" is not allowed: use a lower-case letter, then lower-case letters, digits, - or _ (at most {MAX_NAME_LEN})",
            crate::tools::names::preview(name)
        ))
    }
}

fn resolve(
    name: &str,
    e: Entry,
    base: &Path,
    defaults: &Defaults,
) -> Result<ClusterConfig, String> {
    let trimmed = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let endpoint = e.endpoint.trim();
    let region = trimmed(e.region).or_else(|| region_of_endpoint(endpoint));
    let endpoint = match &region {
        Some(r) if is_cluster_id(endpoint) => format!("{endpoint}.dsql.{r}.on.aws"),
        None => {
            return Err(format!(
                "region is needed: endpoint \"{}\" does not name one (<id>.dsql.<region>.on.aws); add region = \"...\"",
                crate::tools::names::preview(endpoint)
            ));
        }
        Some(_) => crate::config::validate_host(endpoint).map_err(|e| e.to_string())?,
    };
    let user = e.user.trim().to_owned();
    if user.is_empty() {
        return Err("user is empty".into());
    }
    let port = e.port.unwrap_or(5432);
    if port == 0 {
        return Err("port must be between 1 and 65535".into());
    }
    let ssl_root_cert = match e.ssl_root_cert {
        Some(p) if p.is_relative() => Some(base.join(p)),
        Some(p) => Some(p),
        None => defaults.ssl_root_cert.clone(),
    };
    if let Some(path) = &ssl_root_cert {
        std::fs::metadata(path).map_err(|err| {
            format!(
                "ssl_root_cert {}: file cannot be read: {err}",
                path.display()
            )
        })?;
    }
    let mut limits = defaults.limits;
    if let Some(n) = e.max_rows {
        if n == 0 {
            return Err("max_rows must be at least 1".into());
        }
        limits.max_rows = n;
    }
    if let Some(n) = e.max_result_bytes {
        if n == 0 {
            return Err("max_result_bytes must be at least 1".into());
        }
        limits.max_bytes = n;
    }
    if let Some(s) = e.query_timeout {
        if !(s > 0.0 && s.is_finite()) {
            return Err(format!(
                "query_timeout must be a positive number of seconds. Got: {s}"
            ));
        }
        limits.timeout = Duration::from_secs_f64(s);
    }
    let pool_size = e.pool_size.unwrap_or(defaults.pool_size);
    if !(1..=MAX_POOL_SIZE).contains(&pool_size) {
        return Err(format!(
            "pool_size must be between 1 and {MAX_POOL_SIZE}. Got: {pool_size}"
        ));
    }
    Ok(ClusterConfig {
        name: name.to_owned(),
        database: Database {
            endpoint,
            port,
            user,
            region: region.unwrap_or_default(),
            profile: trimmed(e.profile).or_else(|| defaults.profile.clone()),
            ssl_root_cert,
        },
        access: if e.allow_writes {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        },
        limits,
        pool_size,
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            profile: Some("team".into()),
            ssl_root_cert: None,
            limits: Limits::default(),
            pool_size: 10,
        }
    }

    fn parse_ok(text: &str) -> Resolved {
        parse(text, Path::new("/etc/dsql"), &defaults()).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("/etc/dsql"), &defaults()).unwrap_err()
    }

    const TWO: &str = r#"
default = "prod"

[clusters.prod]
endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
user = "reader"

[clusters.staging]
endpoint = "zyxwvutsrqponmlkjihgfedcba"
region = "us-west-2"
user = "admin"
profile = "staging"
allow_writes = true
max_rows = 50
max_result_bytes = 4096
query_timeout = 2.5
pool_size = 3
"#;

    #[test]
    fn a_file_of_two_clusters_resolves_each_with_its_own_mode_and_limits() {
        let r = parse_ok(TWO);
        assert_eq!(r.default, "prod");
        let [prod, staging] = &r.clusters[..] else {
            panic!("two clusters")
        };
        assert_eq!(prod.name, "prod");
        assert_eq!(
            prod.database.endpoint,
            "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
        );
        assert_eq!(prod.database.region, "us-east-1");
        assert_eq!(prod.database.user, "reader");
        assert_eq!(prod.database.port, 5432);
        assert_eq!(prod.database.profile.as_deref(), Some("team"));
        assert_eq!(prod.access, Access::ReadOnly);
        assert_eq!(prod.limits, Limits::default());
        assert_eq!(prod.pool_size, 10);

        assert_eq!(
            staging.database.endpoint,
            "zyxwvutsrqponmlkjihgfedcba.dsql.us-west-2.on.aws"
        );
        assert_eq!(staging.database.profile.as_deref(), Some("staging"));
        assert_eq!(staging.access, Access::ReadWrite);
        assert_eq!(staging.limits.max_rows, 50);
        assert_eq!(staging.limits.max_bytes, 4096);
        assert_eq!(staging.limits.timeout, Duration::from_millis(2500));
        assert_eq!(staging.limits.budget_bytes, Limits::default().budget_bytes);
        assert_eq!(staging.pool_size, 3);
    }

    #[test]
    fn unknown_keys_and_missing_fields_are_errors_with_their_line() {
        assert_eq!(
            parse_err(
                "default = \"a\"\n[clusters.a]\nendpoint = \"x.dsql.r.on.aws\"\nuser = \"u\"\nallow_write = true\n"
            ),
            "line 5: unknown field `allow_write`, expected one of `endpoint`, `region`, `user`, `profile`, `port`, `ssl_root_cert`, `allow_writes`, `max_rows`, `max_result_bytes`, `query_timeout`, `pool_size`"
        );
        assert_eq!(
            parse_err("defualt = \"a\"\n"),
            "line 1: unknown field `defualt`, expected `default` or `clusters`"
        );
        assert_eq!(
            parse_err("[clusters.a]\nendpoint = \"x.dsql.r.on.aws\"\nuser = \"u\"\n"),
            "line 1: missing field `default`"
        );
        assert_eq!(
            parse_err("default = \"a\"\n[clusters.a]\nendpoint = \"x.dsql.r.on.aws\"\n"),
            "line 2: missing field `user`"
        );
        assert_eq!(
            parse_err(
                "default = \"a\"\n[clusters.a]\nendpoint = \"x.dsql.r.on.aws\"\nuser = \"u\"\nport = 70000\n"
            ),
            "line 5: invalid value: integer `70000`, expected u16"
        );
    }

    #[test]
    fn bad_names_defaults_and_values_are_refused() {
        let one = |name: &str, extra: &str| {
            format!(
                "default = \"{name}\"\n[clusters.\"{name}\"]\nendpoint = \"x.dsql.us-east-1.on.aws\"\nuser = \"u\"\n{extra}"
            )
        };
        assert_eq!(
            parse_err(&one("Prod", "")),
            "cluster name \"Prod\" is not allowed: use a lower-case letter, then lower-case letters, digits, - or _ (at most 63)"
        );
        assert!(parse_err(&one("a/b", "")).starts_with("cluster name \"a/b\" is not allowed"));
        assert!(parse_err(&one("1a", "")).starts_with("cluster name \"1a\" is not allowed"));
        assert!(parse_err(&one(&"a".repeat(64), "")).contains("is not allowed"));
        assert_eq!(parse_ok(&one(&"a".repeat(63), "")).clusters.len(), 1);
        assert_eq!(
            parse_err(
                "default = \"b\"\n[clusters.a]\nendpoint = \"x.dsql.us-east-1.on.aws\"\nuser = \"u\"\n"
            ),
            "default = \"b\" names no cluster of the file (defined: a)"
        );
        assert_eq!(
            parse_err("default = \"a\"\n[clusters]\n"),
            "no clusters defined: add a [clusters.NAME] table per cluster"
        );
        assert_eq!(
            parse_err(&one("a", "max_rows = 0")),
            "cluster a: max_rows must be at least 1"
        );
        assert_eq!(
            parse_err(&one("a", "pool_size = 0")),
            "cluster a: pool_size must be between 1 and 100. Got: 0"
        );
        assert_eq!(
            parse_err(&one("a", "query_timeout = -1.0")),
            "cluster a: query_timeout must be a positive number of seconds. Got: -1"
        );
        assert_eq!(
            parse_err(&one("a", "port = 0")),
            "cluster a: port must be between 1 and 65535"
        );
        assert_eq!(
            parse_err("default = \"a\"\n[clusters.a]\nendpoint = \"localhost\"\nuser = \"u\"\n"),
            "cluster a: region is needed: endpoint \"localhost\" does not name one (<id>.dsql.<region>.on.aws); add region = \"...\""
        );
        assert!(
            parse_err(&one("a", "ssl_root_cert = \"ca.pem\""))
                .starts_with("cluster a: ssl_root_cert /etc/dsql/ca.pem: file cannot be read:")
        );
    }
}
