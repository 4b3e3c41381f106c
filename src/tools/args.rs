//! Reading a tool call's arguments, with errors shaped like the reference's.
//!
//! The reference validates arguments with pydantic, and agents have seen its messages
//! ("1 validation error for readonly_queryArguments ..."). Every field problem of a call
//! is collected and reported together, in that shape, before anything else happens.

use serde_json::{Map, Value};

/// Collects the arguments of one call and the problems found in them.
pub struct ArgReader<'a> {
    tool: &'a str,
    args: &'a Map<String, Value>,
    problems: Vec<(String, &'static str)>,
}

impl<'a> ArgReader<'a> {
    pub fn new(tool: &'a str, args: &'a Map<String, Value>) -> Self {
        ArgReader {
            tool,
            args,
            problems: Vec::new(),
        }
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.args.get(name).filter(|v| !v.is_null())
    }

    /// A required string.
    pub fn string(&mut self, name: &str) -> String {
        match self.args.get(name) {
            None => self.problem(name, "Field required"),
            Some(Value::String(s)) => return s.clone(),
            Some(_) => self.problem(name, "Input should be a valid string"),
        }
        String::new()
    }

    /// An optional string with a default.
    pub fn string_or(&mut self, name: &str, default: &str) -> String {
        match self.present(name) {
            None => default.to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.problem(name, "Input should be a valid string");
                String::new()
            }
        }
    }

    /// A required array of strings.
    pub fn strings(&mut self, name: &str) -> Vec<String> {
        match self.args.get(name) {
            None => self.problem(name, "Field required"),
            Some(Value::Array(items)) => {
                if let Some(v) = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect()
                {
                    return v;
                }
                self.problem(name, "Input should be a list of strings")
            }
            Some(_) => self.problem(name, "Input should be a valid list"),
        }
        Vec::new()
    }

    /// An optional array of any JSON values (`null` counts as absent).
    pub fn values(&mut self, name: &str) -> Option<Vec<Value>> {
        match self.present(name)? {
            Value::Array(items) => Some(items.clone()),
            _ => {
                self.problem(name, "Input should be a valid list");
                None
            }
        }
    }

    /// An optional array whose entries are arrays or null.
    pub fn value_lists(&mut self, name: &str) -> Option<Vec<Option<Vec<Value>>>> {
        let Value::Array(items) = self.present(name)? else {
            self.problem(name, "Input should be a valid list");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::Null => out.push(None),
                Value::Array(inner) => out.push(Some(inner.clone())),
                _ => {
                    self.problem(name, "Input should be a list of lists (or nulls)");
                    return None;
                }
            }
        }
        Some(out)
    }

    /// An optional boolean with a default.
    pub fn boolean_or(&mut self, name: &str, default: bool) -> bool {
        match self.present(name) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problem(name, "Input should be a valid boolean");
                default
            }
        }
    }

    /// An optional integer (`null` counts as absent).
    pub fn integer(&mut self, name: &str) -> Option<i64> {
        match self.present(name)? {
            Value::Number(n) if n.is_i64() => n.as_i64(),
            _ => {
                self.problem(name, "Input should be a valid integer");
                None
            }
        }
    }

    fn problem(&mut self, name: &str, message: &'static str) {
        self.problems.push((name.to_owned(), message));
    }

    /// Ends reading: every problem found, in the reference's validation-error shape.
    pub fn finish(self) -> Result<(), String> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let n = self.problems.len();
        let mut out = format!(
            "{n} validation error{} for {}Arguments",
            if n == 1 { "" } else { "s" },
            self.tool
        );
        for (field, message) in &self.problems {
            out.push_str(&format!("\n{field}\n  {message}"));
        }
        Err(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn missing_and_mistyped_fields_are_all_reported() {
        let args = obj(json!({"params": "x"}));
        let mut r = ArgReader::new("readonly_query", &args);
        r.string("sql");
        r.values("params");
        assert_eq!(
            r.finish().unwrap_err(),
            "2 validation errors for readonly_queryArguments\nsql\n  Field required\nparams\n  Input should be a valid list"
        );
    }

    #[test]
    fn null_optional_is_absent_and_lists_of_lists_accept_null_entries() {
        let args =
            obj(json!({"sql_list": ["SELECT 1", "SELECT 2"], "params_list": [null, [1, "a"]]}));
        let mut r = ArgReader::new("transact", &args);
        assert_eq!(r.strings("sql_list"), vec!["SELECT 1", "SELECT 2"]);
        assert_eq!(
            r.value_lists("params_list"),
            Some(vec![None, Some(vec![json!(1), json!("a")])])
        );
        assert_eq!(r.values("absent"), None);
        assert!(r.finish().is_ok());
    }

    #[test]
    fn wrong_element_types_are_reported() {
        let args = obj(json!({"sql_list": ["SELECT 1", 2], "fix": "yes", "limit": 1.5}));
        let mut r = ArgReader::new("x", &args);
        r.strings("sql_list");
        r.boolean_or("fix", false);
        r.integer("limit");
        assert_eq!(
            r.finish().unwrap_err(),
            "3 validation errors for xArguments\nsql_list\n  Input should be a list of strings\nfix\n  Input should be a valid boolean\nlimit\n  Input should be a valid integer"
        );
    }
}
