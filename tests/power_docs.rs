//! Proves the Kiro power's documents say what the server does (issue 4): every SQL block in
//! `POWER.md` and `steering/*.md` is checked (```` ```sql ```` blocks pass the DSQL rule checker
//! and run on the PostgreSQL stand-in, `$n` ones are prepared; ```` ```sql dsql-only ```` blocks
//! pass the rule checker; ```` ```sql rejected ```` blocks are refused by it), the JSON blocks
//! parse, `mcp.json` registers the binary with the power's environment, the POWER.md
//! frontmatter has exactly the power's five fields, the steering table lists the steering
//! files, and the tools POWER.md documents are exactly the tools the real server lists, with
//! every `usePower` example using only arguments the tool's schema declares.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aurora_dsql_mcp_server::migrate::plan;
use aurora_dsql_mcp_server::policy::{self, Access, AllowedFunctions, Placeholders, RuleSet};
use common::McpSession;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Reading the documents

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// POWER.md and every steering file, as (path relative to the crate, contents).
fn documents() -> Vec<(String, String)> {
    let mut files = vec!["POWER.md".to_owned()];
    let mut steering: Vec<String> = std::fs::read_dir(root().join("steering"))
        .expect("steering/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("steering/{name}"))
        .collect();
    steering.sort();
    files.extend(steering);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root().join(&f))
                .unwrap_or_else(|e| panic!("read {f}: {e}"));
            (f, text)
        })
        .collect()
}

/// One fenced code block.
#[derive(Debug, Clone)]
struct Block {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// The info string after the fence (`sql`, `sql dsql-only`, `json`, ...).
    info: String,
    body: String,
}

impl Block {
    fn place(&self) -> String {
        format!("{}:{} (```{})", self.file, self.line, self.info)
    }
}

/// Every fenced block of a Markdown text (``` fences; a block ends at the next bare fence).
fn fenced_blocks(file: &str, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((i + 1, info.trim().to_owned(), Vec::new()));
                }
            }
            Some((start, info, mut body)) => {
                if trimmed.trim_end() == "```" {
                    blocks.push(Block {
                        file: file.to_owned(),
                        line: start,
                        info,
                        body: body.join("\n"),
                    });
                } else {
                    body.push(line);
                    open = Some((start, info, body));
                }
            }
        }
    }
    assert!(open.is_none(), "{file}: unterminated code block");
    blocks
}

fn all_blocks() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|(f, t)| fenced_blocks(f, t))
        .collect()
}

/// Splits SQL text into statements at top-level `;`, respecting quotes, quoted identifiers,
/// dollar quotes and comments. Each statement is returned trimmed, without its `;`.
fn split_statements(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' => {
                // Quoted text; a doubled quote stays inside.
                current.push(c);
                i += 1;
                while i < chars.len() {
                    current.push(chars[i]);
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            current.push(c);
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    current.push(chars[i]);
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        current.push_str("/*");
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        current.push_str("*/");
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        current.push(chars[i]);
                        i += 1;
                    }
                }
            }
            '$' if dollar_tag(&chars[i..]).is_some() => {
                let tag = dollar_tag(&chars[i..]).unwrap();
                let tag_chars: Vec<char> = tag.chars().collect();
                current.push_str(&tag);
                i += tag_chars.len();
                while i < chars.len() && !chars[i..].starts_with(&tag_chars) {
                    current.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    current.push_str(&tag);
                    i += tag_chars.len();
                }
            }
            ';' => {
                let stmt = current.trim().to_owned();
                if !stmt.is_empty() {
                    out.push(stmt);
                }
                current.clear();
                i += 1;
            }
            _ => {
                current.push(c);
                i += 1;
            }
        }
    }
    let stmt = current.trim().to_owned();
    if !stmt.is_empty() {
        out.push(stmt);
    }
    out
}

/// `$tag$` or `$$` at the start of `s` (not `$1`).
fn dollar_tag(s: &[char]) -> Option<String> {
    let mut tag = String::from("$");
    for (k, &c) in s.iter().enumerate().skip(1) {
        if c == '$' {
            tag.push('$');
            return Some(tag);
        }
        let ok = c == '_' || c.is_alphabetic() || (k > 1 && c.is_ascii_digit());
        if !ok {
            return None;
        }
        tag.push(c);
    }
    None
}

/// The highest `$n` placeholder outside quotes and comments (0 when there is none).
fn highest_placeholder(stmt: &str) -> usize {
    let mut highest = 0;
    let chars: Vec<char> = strip_quoted(stmt).chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            let digits: String = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if !digits.is_empty() {
                highest = highest.max(digits.parse().unwrap());
            }
            i += 1 + digits.len();
        } else {
            i += 1;
        }
    }
    highest
}

/// The statement with quoted strings, quoted identifiers and comments blanked out.
fn strip_quoted(stmt: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut chars = stmt.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '-' && chars.peek() == Some(&'-') => {
                for rest in chars.by_ref() {
                    if rest == '\n' {
                        break;
                    }
                }
            }
            None => out.push(c),
        }
    }
    out
}

#[test]
fn the_statement_splitter_respects_quotes_comments_and_dollar_quotes() {
    assert_eq!(
        split_statements(
            "SELECT 'a;b'; SELECT \"x;y\" -- c;d\n;\n/* e;f */ SELECT $$g;h$$;SELECT $t$i;$t$, $1"
        ),
        vec![
            "SELECT 'a;b'",
            "SELECT \"x;y\" -- c;d",
            "/* e;f */ SELECT $$g;h$$",
            "SELECT $t$i;$t$, $1"
        ]
    );
    assert_eq!(highest_placeholder("SELECT $2, '$9', $10 -- $11"), 10);
    assert_eq!(highest_placeholder("SELECT 1"), 0);
}

// ---------------------------------------------------------------------------------------
// SQL blocks

/// The kinds of SQL block the documents use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqlKind {
    /// Accepted by the rule checker and runnable on PostgreSQL.
    Runs,
    /// Accepted by the rule checker; DSQL-only syntax, so not run on the stand-in.
    DsqlOnly,
    /// Shown as wrong: the rule checker must refuse it.
    Rejected,
}

fn sql_kind(block: &Block) -> Option<SqlKind> {
    let mut words = block.info.split_whitespace();
    if words.next() != Some("sql") {
        return None;
    }
    let kind = match words.next() {
        None => SqlKind::Runs,
        Some("dsql-only") => SqlKind::DsqlOnly,
        Some("rejected") => SqlKind::Rejected,
        Some(other) => panic!("{}: unknown SQL block marker `{other}`", block.place()),
    };
    assert!(
        words.next().is_none(),
        "{}: one marker per SQL block",
        block.place()
    );
    Some(kind)
}

#[test]
fn every_sql_block_is_marked_and_there_are_blocks_of_each_kind() {
    let mut kinds = BTreeMap::new();
    for block in all_blocks() {
        // A block whose body looks like SQL must say so (and so be checked).
        let first = block.body.trim_start().to_ascii_uppercase();
        let looks_like_sql = [
            "SELECT ",
            "INSERT ",
            "UPDATE ",
            "DELETE ",
            "CREATE ",
            "ALTER ",
            "DROP ",
            "CALL ",
            "GRANT ",
            "TRUNCATE ",
        ]
        .iter()
        .any(|k| first.starts_with(k));
        if looks_like_sql {
            assert!(
                block.info.starts_with("sql"),
                "{}: SQL in a block not marked `sql`",
                block.place()
            );
        }
        if let Some(kind) = sql_kind(&block) {
            assert!(
                !split_statements(&block.body).is_empty(),
                "{}: empty SQL block",
                block.place()
            );
            *kinds.entry(format!("{kind:?}")).or_insert(0) += 1;
        }
    }
    for kind in ["Runs", "DsqlOnly", "Rejected"] {
        assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "{kinds:?}");
    }
}

/// The guard as the tools apply it: reads as `query` would (read-only), everything else as
/// `execute` would (read-write), with one parameter per `$n`.
fn guard(stmt: &str) -> Result<policy::Checked, policy::PolicyError> {
    let params = Some(highest_placeholder(stmt));
    policy::check(stmt, params, Placeholders::Numbered, Access::ReadOnly)
        .or_else(|_| policy::check(stmt, params, Placeholders::Numbered, Access::ReadWrite))
}

#[test]
fn sql_and_dsql_only_blocks_pass_the_guard_and_the_rule_checker() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for block in all_blocks() {
        let Some(kind) = sql_kind(&block) else {
            continue;
        };
        if kind == SqlKind::Rejected {
            continue;
        }
        for stmt in split_statements(&block.body) {
            checked += 1;
            if let Err(e) = guard(&stmt) {
                problems.push(format!(
                    "{}: the guard refuses\n    {stmt}\n  -> {e}",
                    block.place()
                ));
            }
            if let Err(e) = policy::check_rules(&[stmt.as_str()], RuleSet::Power) {
                problems.push(format!(
                    "{}: the rule checker refuses\n    {stmt}\n  -> {e}",
                    block.place()
                ));
            }
        }
    }
    assert!(checked > 40, "only {checked} statements found");
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn rejected_blocks_are_refused_by_the_rule_checker() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for block in all_blocks() {
        if sql_kind(&block) != Some(SqlKind::Rejected) {
            continue;
        }
        let statements = split_statements(&block.body);
        assert_eq!(
            statements.len(),
            1,
            "{}: a rejected block shows one mistake",
            block.place()
        );
        let stmt = &statements[0];
        checked += 1;
        // Each shows SQL that is otherwise well formed: the rule checker (not a parse error)
        // is what refuses it.
        match policy::check_rules(&[stmt.as_str()], RuleSet::Power) {
            Ok(()) => problems.push(format!(
                "{}: the rule checker accepts\n    {stmt}",
                block.place()
            )),
            Err(e) if e.message.contains("parse_error") => problems.push(format!(
                "{}: refused only because it does not parse\n    {stmt}\n  -> {e}",
                block.place()
            )),
            Err(_) => {}
        }
    }
    assert!(checked >= 10, "only {checked} rejected blocks found");
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The ```` ```sql ```` blocks of every document run, in order, on the stand-in: each file in
/// a fresh schema first on its `search_path`, as `admin`; statements with `$n` placeholders
/// are prepared (parsed, planned and typed), not executed.
#[tokio::test]
async fn sql_blocks_run_on_the_stand_in() {
    let pg = common::shared();
    let mut problems = Vec::new();
    let mut ran = 0;
    for (file, text) in documents() {
        let schema = common::unique_name(&format!(
            "docs_{}",
            Path::new(&file)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .replace(['-', '.'], "_")
        ));
        let client = pg.connect_as("admin").await;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path TO {schema}, public"
            ))
            .await
            .unwrap();
        for block in fenced_blocks(&file, &text) {
            if sql_kind(&block) != Some(SqlKind::Runs) {
                continue;
            }
            for stmt in split_statements(&block.body) {
                ran += 1;
                let result = if highest_placeholder(&stmt) > 0 {
                    client.prepare(&stmt).await.map(drop)
                } else {
                    client.batch_execute(&stmt).await
                };
                if let Err(e) = result {
                    let why = e
                        .as_db_error()
                        .map(|d| format!("{} {}", d.code().code(), d.message()))
                        .unwrap_or_else(|| e.to_string());
                    problems.push(format!(
                        "{}: does not run on PostgreSQL\n    {stmt}\n  -> {why}",
                        block.place()
                    ));
                }
            }
        }
    }
    assert!(ran > 30, "only {ran} statements ran");
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn json_blocks_parse() {
    let mut checked = 0;
    for block in all_blocks() {
        if block.info != "json" {
            continue;
        }
        checked += 1;
        if let Err(e) = serde_json::from_str::<Value>(&block.body) {
            panic!("{}: not valid JSON: {e}\n{}", block.place(), block.body);
        }
    }
    assert!(checked > 5, "only {checked} JSON blocks");
}

// ---------------------------------------------------------------------------------------
// mcp.json and the frontmatter

fn mcp_json() -> Value {
    let text = std::fs::read_to_string(root().join("mcp.json")).expect("mcp.json");
    serde_json::from_str(&text).expect("mcp.json is JSON")
}

/// Checks one `mcpServers` entry registering this server.
fn check_server_entry(place: &str, server: &Value) {
    assert_eq!(
        server["command"], "aurora-dsql-mcp-server",
        "{place}: command"
    );
    if let Some(args) = server.get("args") {
        let args = args
            .as_array()
            .unwrap_or_else(|| panic!("{place}: args is a list"));
        assert!(
            args.iter().all(Value::is_string),
            "{place}: args are strings"
        );
    }
    if let Some(env) = server.get("env") {
        let env = env
            .as_object()
            .unwrap_or_else(|| panic!("{place}: env is an object"));
        assert!(
            env.values().all(Value::is_string),
            "{place}: env values are strings"
        );
    }
}

#[test]
fn mcp_json_registers_the_binary_with_the_power_environment() {
    let config = mcp_json();
    let servers = config["mcpServers"].as_object().expect("mcpServers object");
    assert_eq!(
        servers.keys().collect::<Vec<_>>(),
        ["aurora-dsql"],
        "one server, named as usePower calls it"
    );
    let server = &servers["aurora-dsql"];
    check_server_entry("mcp.json", server);
    let env: BTreeSet<&str> = server["env"]
        .as_object()
        .expect("env")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(env, BTreeSet::from(["AWS_PROFILE", "CLUSTER", "REGION"]));
    // Read-only unless the user adds --allow-writes.
    assert_eq!(server["args"], Value::Array(Vec::new()));
    // Every configuration example in the documents registers the same binary.
    for block in all_blocks() {
        if block.info != "json" {
            continue;
        }
        let value: Value = serde_json::from_str(&block.body).unwrap_or(Value::Null);
        if let Some(servers) = value.get("mcpServers").and_then(Value::as_object) {
            for (name, server) in servers {
                assert_eq!(name, "aurora-dsql", "{}", block.place());
                check_server_entry(&block.place(), server);
            }
        }
    }
}

/// The YAML frontmatter of POWER.md as (key, value) pairs in order: `key: value` lines whose
/// value is a quoted string, a plain scalar or a `[...]` flow list, or a key followed by
/// `- item` lines.
fn frontmatter(text: &str) -> Vec<(String, Value)> {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("---"),
        "POWER.md starts with frontmatter"
    );
    let mut fields: Vec<(String, Value)> = Vec::new();
    for line in lines {
        if line == "---" {
            return fields;
        }
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(item) = line.trim_start().strip_prefix("- ") {
            let (_, value) = fields.last_mut().expect("a list item follows a key");
            if !value.is_array() {
                *value = Value::Array(Vec::new());
            }
            value.as_array_mut().unwrap().push(yaml_scalar(item));
            continue;
        }
        assert!(
            !line.starts_with(' '),
            "unsupported frontmatter line: {line}"
        );
        let (key, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("frontmatter line without `key:`: {line}"));
        let value = value.trim();
        let value = if value.is_empty() {
            Value::Null
        } else if value.starts_with('[') {
            serde_json::from_str(value)
                .unwrap_or_else(|e| panic!("frontmatter list for {key} ({e}): {value}"))
        } else {
            yaml_scalar(value)
        };
        fields.push((key.trim().to_owned(), value));
    }
    panic!("POWER.md frontmatter is not closed by `---`");
}

fn yaml_scalar(raw: &str) -> Value {
    let raw = raw.trim();
    if raw.starts_with('"') {
        serde_json::from_str(raw).unwrap_or_else(|e| panic!("frontmatter string ({e}): {raw}"))
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        Value::String(inner.replace("''", "'"))
    } else {
        Value::String(raw.to_owned())
    }
}

fn sentences(text: &str) -> usize {
    let chars: Vec<char> = text.trim().chars().collect();
    (0..chars.len())
        .filter(|&i| {
            matches!(chars[i], '.' | '!' | '?')
                && chars.get(i + 1).is_none_or(|c| c.is_whitespace())
        })
        .count()
        .max(1)
}

#[test]
fn power_md_frontmatter_has_exactly_the_five_fields() {
    let text = std::fs::read_to_string(root().join("POWER.md")).unwrap();
    let fields = frontmatter(&text);
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["name", "displayName", "description", "keywords", "author"]
    );
    let field = |k: &str| &fields.iter().find(|(key, _)| key == k).unwrap().1;
    for key in ["name", "displayName", "description", "author"] {
        let value = field(key)
            .as_str()
            .unwrap_or_else(|| panic!("{key} is a string"));
        assert!(!value.trim().is_empty(), "{key} is empty");
    }
    // usePower("dsql", ...) names the power by `name`.
    assert_eq!(field("name"), "dsql");
    let description = field("description").as_str().unwrap();
    assert!(
        sentences(description) <= 3,
        "description has {} sentences: {description}",
        sentences(description)
    );
    let keywords = field("keywords").as_array().expect("keywords is a list");
    assert!(!keywords.is_empty());
    let mut seen = BTreeSet::new();
    for k in keywords {
        let k = k.as_str().expect("keywords are strings");
        assert!(!k.trim().is_empty());
        assert!(seen.insert(k), "duplicate keyword {k}");
    }
}

#[test]
fn the_steering_table_lists_exactly_the_steering_files() {
    let text = std::fs::read_to_string(root().join("POWER.md")).unwrap();
    let section = text
        .split("## Available Steering Files")
        .nth(1)
        .expect("POWER.md has `## Available Steering Files`")
        .split("\n## ")
        .next()
        .unwrap();
    let listed: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect();
    let files: BTreeSet<String> = documents()
        .into_iter()
        .filter_map(|(f, _)| f.strip_prefix("steering/").map(str::to_owned))
        .collect();
    assert_eq!(listed, files);
    for required in [
        "development-guide.md",
        "dsql-examples.md",
        "language.md",
        "troubleshooting.md",
        "onboarding.md",
    ] {
        assert!(files.contains(required), "steering/{required} is missing");
    }
}

// ---------------------------------------------------------------------------------------
// The tool list

/// The tools POWER.md documents with a `#### \`tool\`` heading, in order.
fn documented_tools() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("POWER.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("#### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(str::to_owned)
        .collect()
}

/// The tools in POWER.md's tool table (`| \`tool\` | purpose | writes |`).
fn tabled_tools() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("POWER.md")).unwrap();
    let section = text
        .split("### aurora-dsql")
        .nth(1)
        .expect("POWER.md has `### aurora-dsql`")
        .split("\n#### ")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[tokio::test]
async fn documented_tools_are_exactly_the_listed_tools() {
    let documented = documented_tools();
    assert_eq!(
        tabled_tools(),
        documented,
        "POWER.md's tool table and its `#### tool` sections differ"
    );
    let session = McpSession::start(&[], &[]).await;
    let listed: Vec<String> = session
        .list_tools()
        .await
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    session.close().await;
    let documented: BTreeSet<&String> = documented.iter().collect();
    let listed: BTreeSet<&String> = listed.iter().collect();
    let undocumented: Vec<&&String> = listed.difference(&documented).collect();
    let missing: Vec<&&String> = documented.difference(&listed).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "tools/list and POWER.md disagree.\n  listed by the server but not documented: {undocumented:?}\n  \
         documented in POWER.md but not listed by the server: {missing:?}"
    );
}

/// The `usePower(power, server, tool, {args})` calls of a code block: (power, server, tool,
/// args).
fn use_power_calls(text: &str) -> Vec<(String, String, String, Value)> {
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("usePower(") {
        rest = &rest[at + "usePower(".len()..];
        let brace = rest.find('{').expect("usePower arguments object");
        let head: Vec<String> = rest[..brace]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(
            head.len(),
            3,
            "usePower(power, server, tool, {{...}}): {head:?}"
        );
        let end = json_object_end(&rest[brace..]);
        let args: Value = serde_json::from_str(&rest[brace..brace + end]).unwrap_or_else(|e| {
            panic!(
                "usePower arguments are not JSON ({e}): {}",
                &rest[brace..brace + end]
            )
        });
        calls.push((head[0].clone(), head[1].clone(), head[2].clone(), args));
        rest = &rest[brace + end..];
    }
    calls
}

/// Length of the JSON object at the start of `s` (braces balanced outside strings).
fn json_object_end(s: &str) -> usize {
    let mut depth = 0;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced JSON object: {s}");
}

/// The tools whose SQL is a write: checked as `execute` checks it (the guard in write mode,
/// then the DSQL rules), each statement of a migration on its own.
const WRITE_TOOLS: [&str; 3] = ["execute", "apply_migration", "execute_batched"];

/// Why a write tool's example SQL would be refused: the write policy `execute` applies to
/// each statement, then what the tool adds (a migration's plan: `-- dsql:batched`, one
/// statement per step, no parameters; a batched write: one UPDATE or DELETE that converges).
fn write_policy_problems(
    tool: &str,
    sql: &str,
    args: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let params: Vec<Value> = args
        .get("parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let statements = if tool == "apply_migration" {
        split_statements(sql)
    } else {
        vec![sql.to_owned()]
    };
    let mut problems = Vec::new();
    for stmt in &statements {
        match policy::check(
            stmt,
            Some(params.len()),
            Placeholders::Numbered,
            Access::ReadWrite,
        ) {
            Ok(checked) => {
                if let Err(e) = policy::check_rules(&[checked.sql.as_str()], RuleSet::Power) {
                    problems.push(format!("the rule checker refuses\n    {stmt}\n  -> {e}"));
                }
            }
            Err(e) => problems.push(format!("the guard refuses\n    {stmt}\n  -> {e}")),
        }
    }
    match tool {
        "apply_migration" => {
            let checks = plan::Checks {
                allowed: &AllowedFunctions::default(),
                rules: RuleSet::Power,
            };
            if let Err(e) = plan::plan(sql, &checks) {
                problems.push(format!("the migration's plan refuses it: {e}"));
            }
        }
        "execute_batched" => {
            if let Err(e) = policy::converges(
                sql,
                policy::Facts {
                    params,
                    columns: None,
                },
            ) {
                problems.push(format!("the batched write is refused: {e}"));
            }
        }
        _ => {}
    }
    problems
}

#[test]
fn write_examples_are_held_to_the_write_policy() {
    let args = serde_json::Map::new();
    // A migration is split and each statement checked: a DDL refused by the rules is found.
    let p = write_policy_problems(
        "apply_migration",
        "CREATE TABLE t (id int PRIMARY KEY);\nCREATE INDEX i ON t (id);",
        &args,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("the rule checker refuses\n    CREATE INDEX i ON t (id)"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("the migration's plan refuses it: "),
        "{p:?}"
    );
    let p = write_policy_problems("execute_batched", "UPDATE t SET a = 1 WHERE a = 1", &args);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("the batched write is refused: this UPDATE's batches would not converge"),
        "{p:?}"
    );
    assert!(write_policy_problems("execute", "INSERT INTO t VALUES (1)", &args).is_empty());
    assert_eq!(
        write_policy_problems("execute", "CREATE INDEX i ON t (a)", &args).len(),
        1
    );
}

#[tokio::test]
async fn use_power_examples_call_listed_tools_with_declared_arguments() {
    let session = McpSession::start(&[], &[]).await;
    let tools = session.list_tools().await;
    session.close().await;
    let documented: BTreeSet<String> = documented_tools().into_iter().collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for block in all_blocks() {
        if block.info != "js" {
            continue;
        }
        for (power, server, tool, args) in use_power_calls(&block.body) {
            checked += 1;
            let place = format!("{}: usePower(.., \"{tool}\", {args})", block.place());
            if power != "dsql" || server != "aurora-dsql" {
                problems.push(format!(
                    "{place}: power/server must be \"dsql\", \"aurora-dsql\""
                ));
            }
            if !documented.contains(&tool) {
                problems.push(format!("{place}: tool not documented in POWER.md"));
            }
            // Tools the server does not list yet are reported by the tool-list test.
            let Some(listed) = tools.iter().find(|t| t.name == tool) else {
                continue;
            };
            let schema = &listed.input_schema;
            let properties = schema
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let args = args.as_object().expect("arguments object");
            for key in args.keys() {
                if !properties.contains_key(key) {
                    problems.push(format!(
                        "{place}: argument `{key}` is not in the tool's schema"
                    ));
                }
            }
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !args.contains_key(required) {
                    problems.push(format!("{place}: required argument `{required}` missing"));
                }
            }
            // The SQL of an example passes the guard with its parameters, as the tool would
            // check it.
            if let Some(sql) = args.get("sql").and_then(Value::as_str) {
                let n = args
                    .get("parameters")
                    .and_then(Value::as_array)
                    .map(Vec::len)
                    .unwrap_or(0);
                if WRITE_TOOLS.contains(&tool.as_str()) {
                    problems.extend(
                        write_policy_problems(&tool, sql, args)
                            .into_iter()
                            .map(|e| format!("{place}: {e}")),
                    );
                    continue;
                }
                let style = if tool == "query" || tool == "explain" {
                    Placeholders::Numbered
                } else {
                    Placeholders::Psycopg
                };
                let params = if style == Placeholders::Psycopg {
                    args.get("params").and_then(Value::as_array).map(Vec::len)
                } else {
                    Some(n)
                };
                if tool != "dsql_lint"
                    && let Err(e) = policy::check(sql, params, style, Access::ReadOnly)
                {
                    problems.push(format!("{place}: the guard refuses it: {e}"));
                }
            }
        }
    }
    assert!(checked > 15, "only {checked} usePower examples");
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
