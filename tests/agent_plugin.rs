//! Proves the Agent Plugins 1.0 package in `agent-plugin/` (issue 14) is one the format
//! accepts and says what the classic power says: `plugin.json` and `mcp.json` validate against
//! the published schemas (vendored byte for byte in `tests/schemas/agent-plugins-1.0.0/`, see
//! its SOURCE.md), which really do refuse the classic power's `mcp.json`; `SKILL.md`'s
//! frontmatter names its folder; and the package's tool list, environment variables, command
//! and version are POWER.md's, `mcp.json`'s and Cargo's.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_file(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn validator(schema: &str) -> jsonschema::Validator {
    let schema = json_file(&format!("tests/schemas/agent-plugins-1.0.0/{schema}"));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{e}"))
}

/// The schema's complaints about `instance`, one line each (empty when valid).
fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| e.to_string()).collect()
}

#[test]
fn the_package_validates_against_the_published_schemas() {
    let plugin = json_file("agent-plugin/plugin.json");
    assert_eq!(
        errors(&validator("plugin.schema.json"), &plugin),
        Vec::<String>::new()
    );
    let mcp = json_file("agent-plugin/mcp.json");
    assert_eq!(
        errors(&validator("mcp.schema.json"), &mcp),
        Vec::<String>::new()
    );
}

#[test]
fn the_schemas_refuse_what_the_format_refuses() {
    // The classic power's mcp.json (no `type`, Kiro's `disabled`/`autoApprove`, no `$schema`)
    // is not an Agent Plugins mcp.json: the validation above can fail.
    let mcp = validator("mcp.schema.json");
    assert!(!errors(&mcp, &json_file("mcp.json")).is_empty());
    let mut entry = json_file("agent-plugin/mcp.json");
    entry["mcpServers"]["aurora-dsql"]["type"] = json!("http");
    assert!(!errors(&mcp, &entry).is_empty(), "type http is rejected");
    let mut entry = json_file("agent-plugin/mcp.json");
    entry["mcpServers"]["aurora-dsql"]["disabled"] = json!(false);
    assert!(!errors(&mcp, &entry).is_empty(), "disabled is rejected");
    // plugin.json is closed and needs its `$schema`.
    let plugin = validator("plugin.schema.json");
    let mut manifest = json_file("agent-plugin/plugin.json");
    manifest["displayName"] = json!("Amazon Aurora DSQL");
    assert!(
        !errors(&plugin, &manifest).is_empty(),
        "an unknown key is rejected"
    );
    let mut manifest = json_file("agent-plugin/plugin.json");
    manifest.as_object_mut().unwrap().remove("$schema");
    assert!(
        !errors(&plugin, &manifest).is_empty(),
        "$schema is required"
    );
}

#[test]
fn the_package_is_one_folder_of_three_files() {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("agent-plugin")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(root().join("agent-plugin")).unwrap();
                files.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    assert_eq!(files, ["mcp.json", "plugin.json", "skills/dsql/SKILL.md"]);
}

/// SKILL.md's frontmatter as (key, value) pairs, and the body after it.
fn skill() -> (Vec<(String, String)>, String) {
    let text = read("agent-plugin/skills/dsql/SKILL.md");
    let rest = text
        .strip_prefix("---\n")
        .expect("SKILL.md starts with frontmatter");
    let (front, body) = rest.split_once("\n---\n").expect("frontmatter is closed");
    let pairs = front
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("not `key: value`: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (pairs, body.to_owned())
}

/// The backticked names that open the list items of one `## heading` section of `body`.
fn listed(body: &str, heading: &str) -> Vec<String> {
    let section = body
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("SKILL.md has `## {heading}`"))
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn the_skill_names_its_folder_as_the_agent_skills_format_asks() {
    let (front, _) = skill();
    let keys: Vec<&str> = front.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["name", "description"]);
    assert_eq!(front[0].1, "dsql", "name equals the folder name");
    let description = &front[1].1;
    assert!(
        (20..=1024).contains(&description.chars().count()),
        "description of 20 to 1,024 characters: {description}"
    );
}

/// The first column of POWER.md's table under `heading`, for rows `| \`x\` | ...`.
fn power_table(heading: &str) -> Vec<String> {
    let text = read("POWER.md");
    let section = text
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("POWER.md has `{heading}`"))
        .split("\n#")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn the_package_is_in_step_with_the_classic_power() {
    let (_, body) = skill();
    // The same tools, in POWER.md's order.
    assert_eq!(listed(&body, "Tools"), power_table("### aurora-dsql"));
    // The same environment variables.
    let env = power_table("### Environment variables (set in `mcp.json` under `env`)");
    assert_eq!(listed(&body, "Configuration"), env);
    // The same server entry as the classic mcp.json, without the keys the format rejects.
    let classic = json_file("mcp.json")["mcpServers"]["aurora-dsql"].clone();
    let mut expected = json!({"type": "stdio"});
    for key in ["command", "args", "env"] {
        expected[key] = classic[key].clone();
    }
    let package = json_file("agent-plugin/mcp.json");
    let servers: BTreeSet<&String> = package["mcpServers"].as_object().unwrap().keys().collect();
    assert_eq!(servers, BTreeSet::from([&"aurora-dsql".to_owned()]));
    assert_eq!(package["mcpServers"]["aurora-dsql"], expected);
    // Every variable the package sets is one POWER.md documents.
    for name in package["mcpServers"]["aurora-dsql"]["env"]
        .as_object()
        .unwrap()
        .keys()
    {
        assert!(env.contains(name), "{name} is not in POWER.md");
    }
    // The manifest's version is the crate's.
    let plugin = json_file("agent-plugin/plugin.json");
    assert_eq!(plugin["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(plugin["license"], "Apache-2.0");
}
