//! Whether a batched `UPDATE` converges: every row it changes must stop matching its own
//! `WHERE`, or a row done by one batch (or by a run that was interrupted) would be selected
//! and changed again. A `DELETE` always converges (a deleted row never matches again).
//!
//! The proof is syntactic and conservative: the `WHERE` must contain a predicate on a column
//! the `SET` assigns that the assigned value makes false (or NULL), reached through `AND`
//! (one such conjunct is enough) or `OR` (every branch must be falsified). What is accepted:
//!
//! - `c IS NULL` with `SET c = <never NULL>`: a non-NULL literal or bound parameter, a
//!   column that is `NOT NULL` (catalog) or that the `WHERE` requires to be non-NULL,
//!   `coalesce(…, <never NULL>)`, operators and common strict functions of such values;
//! - `c IS NOT NULL`, `c = v`, `c IN (…)`, `c < v` (…) with `SET c = NULL`;
//! - `c = old`, `c IN (old, …)`, `c IS NOT DISTINCT FROM old` with `SET c = new`, literals
//!   that surely differ once converted to the column's type;
//! - `c <> v`, `c IS DISTINCT FROM v`, `c NOT IN (…, v)` with `SET c = v`, the same literal;
//! - integer range predicates (`c < 0` with `SET c = 0`), boolean columns (`WHERE NOT c`
//!   with `SET c = true`, `c IS NOT TRUE`, …);
//! - `c IS DISTINCT FROM <expr>` / `c <> <expr>` with `SET c = <the same expr>`, when the
//!   expression reads no assigned column, calls only immutable functions and converts to the
//!   column's type without loss (the column is `text`, or the expression is a column of the
//!   same type).
//!
//! Conversion matters: `SET n = 1.4 WHERE n = 1` never converges on an integer column (1.4
//! is stored as 1), nor `SET ts = '… 00:00:00.5' WHERE ts <> '… 00:00:00.5'` on a
//! `timestamp(0)`. So where a proof depends on the column's type, it is decided with the
//! table's catalog ([`Facts::columns`]) when the batches start; a migration's plan, made
//! before its tables may exist, has no catalog and accepts such a proof for the types the
//! literals suggest, and the run decides again. Everything else is refused, with the reason
//! and the forms that are accepted.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use serde_json::Value as Json;
use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, CastKind, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Statement, UnaryOperator, Value, visit_expressions,
};

/// What is known about a batched write beyond its text.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The bound parameters (`$1` is the first).
    pub params: Vec<Json>,
    /// The table's columns from the catalog; `None` before the table is read (a plan).
    pub columns: Option<Vec<ColumnFact>>,
}

/// One column of the batched table, as the catalog has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnFact {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: `integer`, `character varying(20)`, …
    pub type_name: String,
    pub not_null: bool,
    pub primary_key: bool,
}

/// How a column's type converts and compares literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// No catalog: the literals' own kinds are assumed to fit.
    Unknown,
    /// `text`, `varchar` (unbounded) or `varchar(n)` / `char(n)` (bounded: pads or trims spaces).
    Text {
        bounded: bool,
    },
    Integer,
    /// `numeric`, `numeric(p, s)`; a negative scale rounds integers.
    Numeric {
        constrained: bool,
        negative_scale: bool,
    },
    /// `real` (24-bit mantissa) or `double precision` (53).
    Float {
        mantissa: u32,
    },
    Boolean,
    /// Any other type; with a type modifier (`timestamp(0)`) conversion may round.
    Other {
        typmod: bool,
    },
}

fn class_of(type_name: &str) -> Class {
    let t = type_name.trim();
    let (base, modifier) = match t.split_once('(') {
        Some((b, m)) => (b.trim(), Some(m.trim_end_matches(')'))),
        None => (t, None),
    };
    match base {
        "text" => Class::Text { bounded: false },
        "character varying" => Class::Text {
            bounded: modifier.is_some(),
        },
        "character" | "bpchar" => Class::Text { bounded: true },
        "smallint" | "integer" | "bigint" => Class::Integer,
        "numeric" => Class::Numeric {
            constrained: modifier.is_some(),
            negative_scale: modifier
                .and_then(|m| m.split(',').nth(1))
                .is_some_and(|s| s.trim().starts_with('-')),
        },
        "real" => Class::Float { mantissa: 24 },
        "double precision" => Class::Float { mantissa: 53 },
        "boolean" => Class::Boolean,
        _ => Class::Other {
            typmod: modifier.is_some(),
        },
    }
}

/// A constant whose value the check can compare.
#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Int(i128),
    /// A number with a fraction or an exponent, as written.
    Dec(String),
    Str(String),
}

impl Lit {
    fn int_fits(n: i128, class: Class) -> bool {
        match class {
            Class::Unknown | Class::Integer => true,
            Class::Numeric { negative_scale, .. } => !negative_scale,
            Class::Float { mantissa } => n.unsigned_abs() <= 1u128 << mantissa,
            _ => false,
        }
    }

    /// Whether a column holding `self` (assigned) surely compares equal to `other`.
    fn surely_equal(&self, other: &Lit, class: Class) -> bool {
        if self != other {
            return false;
        }
        match self {
            Lit::Null => false,
            Lit::Bool(_) => true,
            // Into text the comparison fails with an error, never loops.
            Lit::Int(n) => matches!(class, Class::Text { .. }) || Self::int_fits(*n, class),
            Lit::Dec(_) => matches!(
                class,
                Class::Unknown
                    | Class::Text { .. }
                    | Class::Numeric {
                        constrained: false,
                        ..
                    }
            ),
            Lit::Str(s) => {
                // Input words that name a time read the clock: another run, another value.
                let volatile = ["now", "today", "tomorrow", "yesterday"]
                    .contains(&s.trim().to_ascii_lowercase().as_str());
                !volatile
                    && match class {
                        Class::Unknown | Class::Integer | Class::Boolean => true,
                        Class::Text { bounded } => !bounded || !s.ends_with(' '),
                        Class::Other { typmod } => !typmod,
                        Class::Numeric { .. } | Class::Float { .. } => false,
                    }
            }
        }
    }

    /// Whether a column holding `self` (assigned) surely compares unequal to `other`.
    fn surely_different(&self, other: &Lit, class: Class) -> bool {
        match (self, other) {
            (Lit::Bool(a), Lit::Bool(b)) => {
                a != b && matches!(class, Class::Unknown | Class::Boolean)
            }
            (Lit::Int(a), Lit::Int(b)) => {
                a != b && Self::int_fits(*a, class) && Self::int_fits(*b, class)
            }
            // char(n) ignores trailing spaces, varchar(n) trims them when too long.
            (Lit::Str(a), Lit::Str(b)) => {
                a.trim_end_matches(' ') != b.trim_end_matches(' ')
                    && matches!(class, Class::Unknown | Class::Text { .. })
            }
            _ => false,
        }
    }
}

/// The folded name of a column reference (the last part, as PostgreSQL folds it).
fn column(e: &Expr) -> Option<String> {
    let ident = match e {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        Expr::Nested(inner) => return column(inner),
        _ => return None,
    };
    Some(if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    })
}

fn function_name(f: &sqlparser::ast::Function) -> Option<String> {
    let parts = &f.name.0;
    let last = parts.last()?.as_ident()?;
    if parts.len() == 2
        && !parts[0]
            .as_ident()
            .is_some_and(|s| s.value.eq_ignore_ascii_case("pg_catalog"))
    {
        return None;
    }
    if parts.len() > 2 {
        return None;
    }
    Some(last.value.to_lowercase())
}

/// A plain call's arguments (no `FILTER`, `OVER`, named or wildcard arguments).
fn plain_args(f: &sqlparser::ast::Function) -> Option<Vec<&Expr>> {
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return None;
    }
    match &f.args {
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::List(list) if list.clauses.is_empty() => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Functions that return NULL only for a NULL argument (and are immutable).
const STRICT_IMMUTABLE: &[&str] = &[
    "lower",
    "upper",
    "btrim",
    "ltrim",
    "rtrim",
    "md5",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "length",
    "char_length",
    "left",
    "right",
    "substr",
    "replace",
    "repeat",
    "lpad",
    "rpad",
    "sign",
    "mod",
    "initcap",
    "reverse",
    "split_part",
];
/// Never NULL, whatever their arguments; immutable.
const NEVER_NULL_IMMUTABLE: &[&str] = &["concat"];
/// NULL only when every argument is; immutable.
const ANY_ARG_IMMUTABLE: &[&str] = &["coalesce", "greatest", "least"];
/// Never NULL, but read the clock or a generator: fine for a value, not for a comparison.
const NEVER_NULL_VOLATILE: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "gen_random_uuid",
    "random",
];

struct Proof<'a> {
    facts: &'a Facts,
    /// Assigned column → its value (`None`: part of a tuple assignment).
    set: HashMap<String, Option<&'a Expr>>,
    /// Columns the `WHERE` requires to be non-NULL / NULL (top-level conjuncts).
    non_null: HashSet<String>,
    null: HashSet<String>,
}

impl Proof<'_> {
    fn fact(&self, col: &str) -> Option<&ColumnFact> {
        self.facts.columns.as_ref()?.iter().find(|c| c.name == col)
    }

    fn class(&self, col: &str) -> Class {
        match &self.facts.columns {
            None => Class::Unknown,
            Some(_) => self
                .fact(col)
                .map_or(Class::Other { typmod: true }, |c| class_of(&c.type_name)),
        }
    }

    fn lit(&self, e: &Expr) -> Option<Lit> {
        match e {
            Expr::Nested(inner) => self.lit(inner),
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match self.lit(expr)? {
                Lit::Int(n) => Some(Lit::Int(-n)),
                Lit::Dec(d) => Some(Lit::Dec(format!("-{d}"))),
                _ => None,
            },
            Expr::Value(v) => match &v.value {
                Value::Null => Some(Lit::Null),
                Value::Boolean(b) => Some(Lit::Bool(*b)),
                Value::Number(n, _) => Some(match n.parse::<i128>() {
                    Ok(i) => Lit::Int(i),
                    Err(_) => Lit::Dec(n.to_string()),
                }),
                Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => {
                    Some(Lit::Str(s.clone()))
                }
                Value::DollarQuotedString(d) => Some(Lit::Str(d.value.clone())),
                Value::Placeholder(p) => {
                    let n: usize = p.strip_prefix('$')?.parse().ok()?;
                    Some(match self.facts.params.get(n.checked_sub(1)?)? {
                        Json::Null => Lit::Null,
                        Json::Bool(b) => Lit::Bool(*b),
                        Json::Number(x) => match x.as_i64() {
                            Some(i) => Lit::Int(i.into()),
                            None => Lit::Dec(x.to_string()),
                        },
                        Json::String(s) => Lit::Str(s.clone()),
                        _ => return None,
                    })
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether `e`, evaluated on a row the `WHERE` selected, is surely not NULL.
    fn never_null(&self, e: &Expr) -> bool {
        if let Some(l) = self.lit(e) {
            return l != Lit::Null;
        }
        if let Some(c) = column(e) {
            if self.null.contains(&c) {
                return false;
            }
            return self.non_null.contains(&c)
                || match &self.facts.columns {
                    None => true, // decided again with the catalog
                    Some(_) => self.fact(&c).is_some_and(|f| f.not_null),
                };
        }
        match e {
            Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => self.never_null(inner),
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr,
                ..
            } => self.never_null(expr),
            Expr::TypedString(_) => true,
            Expr::BinaryOp { left, op, right } => {
                use BinaryOperator::*;
                matches!(
                    op,
                    Plus | Minus
                        | Multiply
                        | Divide
                        | Modulo
                        | StringConcat
                        | Eq
                        | NotEq
                        | Lt
                        | LtEq
                        | Gt
                        | GtEq
                        | And
                        | Or
                ) && self.never_null(left)
                    && self.never_null(right)
            }
            Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsNotTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotFalse(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..) => true,
            Expr::Function(f) => {
                let (Some(name), Some(args)) = (function_name(f), plain_args(f)) else {
                    return false;
                };
                let name = name.as_str();
                if NEVER_NULL_IMMUTABLE.contains(&name) || NEVER_NULL_VOLATILE.contains(&name) {
                    true
                } else if ANY_ARG_IMMUTABLE.contains(&name) {
                    args.iter().any(|a| self.never_null(a))
                } else if STRICT_IMMUTABLE.contains(&name) {
                    !args.is_empty() && args.iter().all(|a| self.never_null(a))
                } else {
                    false
                }
            }
            Expr::Case {
                conditions,
                else_result: Some(otherwise),
                ..
            } => {
                conditions.iter().all(|w| self.never_null(&w.result)) && self.never_null(otherwise)
            }
            _ => false,
        }
    }

    /// The assigned value of the column `e` names, if `e` is an assigned column.
    fn assigned(&self, e: &Expr) -> Option<(String, &Expr)> {
        let c = column(e)?;
        let v = (*self.set.get(&c)?)?;
        Some((c, v))
    }

    /// `SET c = x … WHERE c IS DISTINCT FROM x`: the same deterministic expression, which
    /// reads no assigned column and converts to the column's type without loss.
    fn same_value(&self, col: &str, value: &Expr, other: &Expr) -> bool {
        if value.to_string() != other.to_string() {
            return false;
        }
        let mut deterministic = true;
        let _ = visit_expressions(other, |e| {
            match e {
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    deterministic = false
                }
                Expr::Function(f) => {
                    let name = function_name(f).unwrap_or_default();
                    let name = name.as_str();
                    if !(STRICT_IMMUTABLE.contains(&name)
                        || NEVER_NULL_IMMUTABLE.contains(&name)
                        || ANY_ARG_IMMUTABLE.contains(&name))
                    {
                        deterministic = false;
                    }
                }
                _ => {
                    if let Some(c) = column(e)
                        && self.set.contains_key(&c)
                    {
                        deterministic = false;
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        if !deterministic {
            return false;
        }
        if let Some(l) = self.lit(other) {
            return self.assigned_lit_equal(col, &l, &l);
        }
        match self.class(col) {
            Class::Unknown | Class::Text { bounded: false } => true,
            _ => column(other).is_some_and(|o| {
                matches!((self.fact(col), self.fact(&o)), (Some(a), Some(b)) if a.type_name == b.type_name)
            }),
        }
    }

    fn assigned_lit_equal(&self, col: &str, value: &Lit, other: &Lit) -> bool {
        value.surely_equal(other, self.class(col))
    }

    /// Whether `p` is surely false or NULL for a row once the `SET` has been applied.
    fn falsified(&self, p: &Expr) -> bool {
        use BinaryOperator::*;
        match p {
            Expr::Nested(inner) => self.falsified(inner),
            Expr::BinaryOp {
                left,
                op: And,
                right,
            } => self.falsified(left) || self.falsified(right),
            Expr::BinaryOp {
                left,
                op: Or,
                right,
            } => self.falsified(left) && self.falsified(right),
            Expr::IsNull(e) => self.assigned(e).is_some_and(|(_, v)| self.never_null(v)),
            Expr::IsNotNull(e) => self
                .assigned(e)
                .is_some_and(|(_, v)| self.lit(v) == Some(Lit::Null)),
            Expr::IsDistinctFrom(a, b) => {
                self.distinct_falsified(a, b) || self.distinct_falsified(b, a)
            }
            Expr::IsNotDistinctFrom(a, b) => {
                self.not_distinct_falsified(a, b) || self.not_distinct_falsified(b, a)
            }
            Expr::BinaryOp { left, op, right }
                if matches!(op, Eq | NotEq | Lt | LtEq | Gt | GtEq) =>
            {
                self.compare_falsified(left, op, right)
                    || self.compare_falsified(right, &flipped(op), left)
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let Some((col, v)) = self.assigned(expr) else {
                    return false;
                };
                let Some(value) = self.lit(v) else {
                    return false;
                };
                if value == Lit::Null {
                    return true; // NULL [NOT] IN (…) is never true
                }
                let items: Option<Vec<Lit>> = list.iter().map(|e| self.lit(e)).collect();
                let Some(items) = items else {
                    return false;
                };
                let class = self.class(&col);
                if *negated {
                    items.contains(&Lit::Null) || items.iter().any(|i| value.surely_equal(i, class))
                } else {
                    items
                        .iter()
                        .all(|i| *i == Lit::Null || value.surely_different(i, class))
                }
            }
            // Boolean columns: `c`, `NOT c`, `c IS [NOT] TRUE/FALSE`.
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                self.bool_set(p, &[Lit::Null, Lit::Bool(false)])
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => self.bool_set(expr, &[Lit::Null, Lit::Bool(true)]),
            Expr::IsTrue(e) => self.bool_set(e, &[Lit::Null, Lit::Bool(false)]),
            Expr::IsFalse(e) => self.bool_set(e, &[Lit::Null, Lit::Bool(true)]),
            Expr::IsNotTrue(e) => self.bool_set(e, &[Lit::Bool(true)]),
            Expr::IsNotFalse(e) => self.bool_set(e, &[Lit::Bool(false)]),
            _ => false,
        }
    }

    /// Whether the boolean column `e` is assigned one of `falsifying`.
    fn bool_set(&self, e: &Expr, falsifying: &[Lit]) -> bool {
        let Some((col, v)) = self.assigned(e) else {
            return false;
        };
        let ok_class = matches!(self.class(&col), Class::Unknown | Class::Boolean);
        self.lit(v)
            .is_some_and(|l| ok_class && falsifying.contains(&l))
    }

    /// `c IS DISTINCT FROM x` after `SET c = v`.
    fn distinct_falsified(&self, c: &Expr, x: &Expr) -> bool {
        let Some((col, v)) = self.assigned(c) else {
            return false;
        };
        match (self.lit(v), self.lit(x)) {
            (Some(Lit::Null), Some(Lit::Null)) => true,
            (Some(a), Some(b)) if a != Lit::Null && b != Lit::Null => {
                self.assigned_lit_equal(&col, &a, &b)
            }
            (Some(_), Some(_)) => false,
            _ => self.same_value(&col, v, x),
        }
    }

    /// `c IS NOT DISTINCT FROM x` after `SET c = v`.
    fn not_distinct_falsified(&self, c: &Expr, x: &Expr) -> bool {
        let Some((col, v)) = self.assigned(c) else {
            return false;
        };
        match self.lit(x) {
            Some(Lit::Null) => self.never_null(v),
            Some(b) => match self.lit(v) {
                Some(Lit::Null) => true,
                Some(a) => a.surely_different(&b, self.class(&col)),
                None => false,
            },
            None => false,
        }
    }

    /// `c op x` after `SET c = v`.
    fn compare_falsified(&self, c: &Expr, op: &BinaryOperator, x: &Expr) -> bool {
        use BinaryOperator::*;
        let Some((col, v)) = self.assigned(c) else {
            return false;
        };
        let class = self.class(&col);
        let (value, other) = (self.lit(v), self.lit(x));
        if value == Some(Lit::Null) || other == Some(Lit::Null) {
            return true; // a comparison with NULL is never true
        }
        match (op, value, other) {
            (Eq, Some(a), Some(b)) => a.surely_different(&b, class),
            (NotEq, Some(a), Some(b)) => a.surely_equal(&b, class),
            (NotEq, _, _) => self.same_value(&col, v, x),
            (_, Some(Lit::Int(a)), Some(Lit::Int(b)))
                if Lit::int_fits(a, class) && Lit::int_fits(b, class) =>
            {
                let holds = match op {
                    Lt => a < b,
                    LtEq => a <= b,
                    Gt => a > b,
                    GtEq => a >= b,
                    _ => true,
                };
                !holds
            }
            _ => false,
        }
    }
}

fn flipped(op: &BinaryOperator) -> BinaryOperator {
    use BinaryOperator::*;
    match op {
        Lt => Gt,
        LtEq => GtEq,
        Gt => Lt,
        GtEq => LtEq,
        other => other.clone(),
    }
}

/// What the top-level conjuncts of `w` say about NULLs: (non-NULL columns, NULL columns).
fn where_nulls(w: &Expr, non_null: &mut HashSet<String>, null: &mut HashSet<String>) {
    use BinaryOperator::*;
    match w {
        Expr::Nested(inner) => where_nulls(inner, non_null, null),
        Expr::BinaryOp {
            left,
            op: And,
            right,
        } => {
            where_nulls(left, non_null, null);
            where_nulls(right, non_null, null);
        }
        // A strict comparison that holds has no NULL side.
        Expr::BinaryOp {
            left,
            op: Eq | NotEq | Lt | LtEq | Gt | GtEq,
            right,
        } => {
            non_null.extend(column(left));
            non_null.extend(column(right));
        }
        Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsFalse(e)
        | Expr::InList { expr: e, .. }
        | Expr::Like { expr: e, .. }
        | Expr::ILike { expr: e, .. } => non_null.extend(column(e)),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => non_null.extend(column(expr)),
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => non_null.extend(column(w)),
        Expr::IsNull(e) => null.extend(column(e)),
        _ => {}
    }
}

/// Checks that the batched `UPDATE` `statement` converges (see the module doc); a DELETE
/// always does. An error says why not and what to write instead.
pub(crate) fn check(statement: &Statement, facts: &Facts) -> Result<(), String> {
    let Statement::Update(u) = statement else {
        return Ok(());
    };
    let table = u.table.relation.to_string();
    let mut set: HashMap<String, Option<&Expr>> = HashMap::new();
    let mut order = Vec::new();
    for a in &u.assignments {
        match &a.target {
            AssignmentTarget::ColumnName(n) => {
                if let Some(c) = n.0.last().and_then(|p| p.as_ident()) {
                    let name = column(&Expr::Identifier(c.clone())).unwrap_or_default();
                    order.push(name.clone());
                    set.insert(name, Some(&a.value));
                }
            }
            AssignmentTarget::Tuple(ns) => {
                for n in ns {
                    if let Some(c) = n.0.last().and_then(|p| p.as_ident()) {
                        let name = column(&Expr::Identifier(c.clone())).unwrap_or_default();
                        order.push(name.clone());
                        set.insert(name, None);
                    }
                }
            }
        }
    }
    let first = order.first().cloned().unwrap_or_else(|| "col".into());
    if let Some(cols) = &facts.columns
        && let Some(pk) = order
            .iter()
            .find(|c| cols.iter().any(|f| &f.name == *c && f.primary_key))
    {
        return Err(format!(
            "this UPDATE cannot run in batches: it changes {pk}, a column of the primary key the batches walk, so a \
             row moved further along the key would be met and changed again. Change a key with a plain UPDATE of at \
             most 3,000 rows per statement (or copy the rows to a new table)"
        ));
    }
    let Some(cond) = &u.selection else {
        return Err(format!(
            "this UPDATE has no WHERE, so its batches would not converge: a row it changed would still \
             match, and a re-run after an interruption would change every row again. Add a WHERE that \
             the SET makes false, e.g. `UPDATE {table} SET {first} = … WHERE {first} IS NULL`"
        ));
    };
    let mut read = Vec::new();
    let _ = visit_expressions(cond, |e| {
        read.extend(column(e));
        ControlFlow::<()>::Continue(())
    });
    if !read.iter().any(|c| set.contains_key(c)) {
        return Err(format!(
            "this UPDATE's batches would not converge: its WHERE reads none of the columns its SET changes \
             ({}), so the rows it updates keep matching and a re-run after an interruption would update them \
             again. Make the WHERE select only rows not yet done, on a column the SET changes, e.g. \
             `… SET {first} = … WHERE ({cond}) AND {first} IS DISTINCT FROM <new value>` or `WHERE {first} IS NULL` \
             for a backfill",
            order.join(", "),
        ));
    }
    let mut proof = Proof {
        facts,
        set,
        non_null: HashSet::new(),
        null: HashSet::new(),
    };
    where_nulls(cond, &mut proof.non_null, &mut proof.null);
    if proof.falsified(cond) {
        return Ok(());
    }
    let sets = u
        .assignments
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let types = match &facts.columns {
        Some(_) => {
            let typed: Vec<String> = order
                .iter()
                .filter_map(|c| proof.fact(c).map(|f| format!("{c} is {}", f.type_name)))
                .collect();
            if typed.is_empty() {
                String::new()
            } else {
                format!(" ({})", typed.join(", "))
            }
        }
        None => String::new(),
    };
    // The value itself when the suggestion can use it: it reads no assigned column.
    let value = match proof.set.get(&first).copied().flatten() {
        Some(v) => {
            let mut reads_assigned = false;
            let _ = visit_expressions(v, |e| {
                if column(e).is_some_and(|c| proof.set.contains_key(&c)) {
                    reads_assigned = true;
                }
                ControlFlow::<()>::Continue(())
            });
            if reads_assigned {
                "<new value>".to_owned()
            } else {
                v.to_string()
            }
        }
        None => "<new value>".to_owned(),
    };
    Err(format!(
        "this UPDATE's batches would not converge, or it cannot be shown that they do: `SET {sets}` does not \
         surely make `WHERE {cond}` false for the rows it updates{types}, so a row it changed could match again \
         and be changed again (by the next batch, or by a re-run after an interruption). Write a WHERE that the \
         SET makes false: `WHERE {first} IS NULL` with a SET value that is never NULL (a literal, or \
         coalesce(…, <default>)), `WHERE ({cond}) AND {first} IS DISTINCT FROM {value}` for `SET {first} = {value}` \
         (a literal, a parameter, or an expression of other columns), or `WHERE {first} = <old>` with a different \
         literal in the SET"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        super::super::guard::parse_text(sql).unwrap().remove(0)
    }

    fn plan(sql: &str) -> Result<(), String> {
        check(&parse(sql), &Facts::default())
    }

    fn col(name: &str, type_name: &str, not_null: bool) -> ColumnFact {
        ColumnFact {
            name: name.into(),
            type_name: type_name.into(),
            not_null,
            primary_key: name == "id",
        }
    }

    fn run(sql: &str, params: Vec<Json>) -> Result<(), String> {
        let facts = Facts {
            params,
            columns: Some(vec![
                col("id", "integer", true),
                col("s", "text", false),
                col("v", "character varying(5)", false),
                col("n", "integer", false),
                col("amount", "integer", true),
                col("note", "text", false),
                col("flag", "boolean", false),
                col("r", "real", false),
                col("p", "numeric(10,2)", false),
                col("ts", "timestamp(0) without time zone", false),
                col("d", "date", false),
            ]),
        };
        check(&parse(sql), &facts)
    }

    #[test]
    fn backfills_of_nulls_converge_with_a_never_null_value() {
        assert!(run("UPDATE t SET s = 'x' WHERE s IS NULL", vec![]).is_ok());
        assert!(run("UPDATE t SET n = 0 WHERE n IS NULL AND id > 10", vec![]).is_ok());
        assert!(run("UPDATE t SET n = amount * 2 WHERE n IS NULL", vec![]).is_ok());
        assert!(
            run(
                "UPDATE t SET s = coalesce(note, 'none') WHERE s IS NULL",
                vec![]
            )
            .is_ok()
        );
        assert!(
            run(
                "UPDATE t SET s = lower(note) WHERE s IS NULL AND note IS NOT NULL",
                vec![]
            )
            .is_ok()
        );
        assert!(run("UPDATE t SET ts = now() WHERE ts IS NULL", vec![]).is_ok());
        assert!(run("UPDATE t SET s = $1 WHERE s IS NULL", vec![json_str("x")]).is_ok());
        // NULL, a nullable column, the column itself, a NULL parameter: the rows stay NULL.
        for sql in [
            "UPDATE t SET s = NULL WHERE s IS NULL",
            "UPDATE t SET s = note WHERE s IS NULL",
            "UPDATE t SET s = s WHERE s IS NULL",
            "UPDATE t SET s = upper(note) WHERE s IS NULL",
            "UPDATE t SET s = coalesce(note, note) WHERE s IS NULL",
        ] {
            assert!(run(sql, vec![]).is_err(), "{sql}");
        }
        assert!(run("UPDATE t SET s = $1 WHERE s IS NULL", vec![Json::Null]).is_err());
        // The plan has no catalog: a column is assumed NOT NULL, the run decides.
        assert!(plan("UPDATE t SET s = note WHERE s IS NULL").is_ok());
        assert!(plan("UPDATE t SET s = s WHERE s IS NULL").is_err());
        assert!(plan("UPDATE t SET s = NULL WHERE s IS NULL").is_err());
    }

    fn json_str(s: &str) -> Json {
        Json::String(s.into())
    }

    #[test]
    fn a_set_value_must_make_the_where_false() {
        for sql in [
            "UPDATE t SET s = 'x' WHERE s <> 'x'",
            "UPDATE t SET s = 'x' WHERE s IS DISTINCT FROM 'x'",
            "UPDATE t SET s = 'x' WHERE id < 100 AND s IS DISTINCT FROM 'x'",
            "UPDATE t SET s = 'new' WHERE s = 'old'",
            "UPDATE t SET s = 'new' WHERE 'old' = s",
            "UPDATE t SET s = 'new' WHERE s IN ('old', 'older')",
            "UPDATE t SET s = 'a' WHERE s NOT IN ('a', 'b')",
            "UPDATE t SET s = NULL WHERE s IS NOT NULL",
            "UPDATE t SET s = NULL WHERE s = 'gone'",
            "UPDATE t SET flag = true WHERE flag = false",
            "UPDATE t SET flag = true WHERE NOT flag",
            "UPDATE t SET flag = true WHERE flag IS NOT TRUE",
            "UPDATE t SET flag = false WHERE flag",
            "UPDATE t SET n = 0 WHERE n < 0",
            "UPDATE t SET n = 2 WHERE n = 1 OR n IS NULL",
            "UPDATE t SET s = note WHERE s IS DISTINCT FROM note",
            "UPDATE t SET s = lower(note) WHERE s IS DISTINCT FROM lower(note)",
            "UPDATE t SET d = '2024-01-01' WHERE d IS DISTINCT FROM '2024-01-01'",
        ] {
            assert_eq!(run(sql, vec![]), Ok(()), "{sql}");
        }
        assert!(
            run(
                "UPDATE t SET s = $1 WHERE s IS DISTINCT FROM $1",
                vec![json_str("x")]
            )
            .is_ok()
        );
        assert!(run("UPDATE t SET n = $1 WHERE n = $2", vec![2.into(), 1.into()]).is_ok());
        // sqlparser reads `a IS DISTINCT FROM b AND c` as `a IS DISTINCT FROM (b AND c)`
        // (PostgreSQL: `(a IS DISTINCT FROM b) AND c`): refused, never accepted on that reading;
        // written last, or in parentheses, it is read as PostgreSQL reads it.
        let tail = |sql: &str| run(sql, vec![json_str("x"), json_str("2026-01-01")]);
        assert!(tail("UPDATE t SET s = $1 WHERE s IS DISTINCT FROM $1 AND d < $2").is_err());
        assert!(tail("UPDATE t SET s = $1 WHERE d < $2 AND s IS DISTINCT FROM $1").is_ok());
        assert!(tail("UPDATE t SET s = $1 WHERE (s IS DISTINCT FROM $1) AND d < $2").is_ok());
        for sql in [
            "UPDATE t SET flag = true WHERE flag = true",
            "UPDATE t SET n = n WHERE n > 0",
            "UPDATE t SET n = n + 1 WHERE n > 0",
            "UPDATE t SET s = 'x' WHERE s = 'x'",
            "UPDATE t SET s = 'x' WHERE s IS DISTINCT FROM 'y'",
            "UPDATE t SET s = 'x' WHERE s IS NOT NULL",
            "UPDATE t SET n = 5 WHERE n > 0",
            "UPDATE t SET n = 2 WHERE n = 1 OR id > 5",
            "UPDATE t SET s = lower(s) WHERE s IS DISTINCT FROM lower(s)",
            "UPDATE t SET s = note || random()::text WHERE s IS DISTINCT FROM note || random()::text",
            // Conversion: 1.4 is stored as 1 in an integer; a rounded timestamp(0); 'x ' in varchar(5).
            "UPDATE t SET n = 1.4 WHERE n <> 1.4",
            "UPDATE t SET ts = '2024-01-01 00:00:00.5' WHERE ts <> '2024-01-01 00:00:00.5'",
            "UPDATE t SET v = 'x ' WHERE v <> 'x '",
            "UPDATE t SET r = 16777217 WHERE r <> 16777217",
            "UPDATE t SET p = 1.005 WHERE p <> 1.005",
            "UPDATE t SET d = 'today' WHERE d IS DISTINCT FROM 'today'",
            // Literals that may convert to the same date.
            "UPDATE t SET d = '2024-01-01' WHERE d = '2024-1-1'",
            "UPDATE t SET s = (SELECT max(s) FROM u) WHERE s IS DISTINCT FROM (SELECT max(s) FROM u)",
        ] {
            assert!(run(sql, vec![]).is_err(), "{sql}");
        }
        assert!(run("UPDATE t SET n = $1 WHERE n = $2", vec![1.into(), 1.into()]).is_err());
    }

    #[test]
    fn refusals_say_why_and_what_to_write() {
        let e = run("UPDATE t SET flag = true WHERE flag = true", vec![]).unwrap_err();
        assert_eq!(
            e,
            "this UPDATE's batches would not converge, or it cannot be shown that they do: `SET flag = true` does \
             not surely make `WHERE flag = true` false for the rows it updates (flag is boolean), so a row it \
             changed could match again and be changed again (by the next batch, or by a re-run after an \
             interruption). Write a WHERE that the SET makes false: `WHERE flag IS NULL` with a SET value that is \
             never NULL (a literal, or coalesce(…, <default>)), `WHERE (flag = true) AND flag IS DISTINCT FROM \
             true` for `SET flag = true` (a literal, a parameter, or an expression of other columns), or `WHERE \
             flag = <old>` with a different literal in the SET"
        );
        let e = run("UPDATE t SET n = n + 1 WHERE n > 0", vec![]).unwrap_err();
        assert!(
            e.contains(
                "`WHERE (n > 0) AND n IS DISTINCT FROM <new value>` for `SET n = <new value>`"
            ),
            "{e}"
        );
        let e = run("UPDATE t SET id = 0 WHERE id > 10", vec![]).unwrap_err();
        assert!(
            e.starts_with(
                "this UPDATE cannot run in batches: it changes id, a column of the primary key"
            ),
            "{e}"
        );
        let e = plan("UPDATE t SET s = 'x' WHERE id > 0").unwrap_err();
        assert!(e.starts_with("this UPDATE's batches would not converge: its WHERE reads none of the columns its SET changes (s)"), "{e}");
        assert!(
            plan("UPDATE t SET s = 'x'")
                .unwrap_err()
                .starts_with("this UPDATE has no WHERE")
        );
        assert!(plan("DELETE FROM t WHERE s = 'x'").is_ok());
    }

    #[test]
    fn type_classes() {
        assert_eq!(
            class_of("character varying(20)"),
            Class::Text { bounded: true }
        );
        assert_eq!(
            class_of("character varying"),
            Class::Text { bounded: false }
        );
        assert_eq!(
            class_of("numeric(5,-2)"),
            Class::Numeric {
                constrained: true,
                negative_scale: true
            }
        );
        assert_eq!(
            class_of("timestamp(0) without time zone"),
            Class::Other { typmod: true }
        );
        assert_eq!(class_of("date"), Class::Other { typmod: false });
    }
}
