//! The YAML document as a tree of nodes that remember where they came from.
//!
//! Parsing is serde-saphyr's (pure Rust, depth- and size-budgeted, never panics); the tree
//! exists so that validation can report *every* problem with its YAML path and position,
//! which a derived `Deserialize` cannot (it stops at the first error). Environment
//! overrides and `${VAR}` interpolation are applied to this tree before validation.

use super::error::{ConfigError, Origin};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;

/// Largest configuration file accepted.
pub(crate) const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Prefix of environment variables that override fields.
pub(crate) const ENV_PREFIX: &str = "DBMANAGER__";

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) origin: Origin,
}

impl Node {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node_from(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let key_text = match key.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Null => "null".to_owned(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(de::Error::custom(format!(
                        "a mapping key must be a scalar (line {}, column {})",
                        key.referenced.line(),
                        key.referenced.column()
                    )));
                }
            };
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((key_text, node_from(value)));
        }
        Ok(Value::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

fn node_from(s: Spanned<Value>) -> Node {
    let loc = s.referenced;
    Node {
        value: s.value,
        origin: if loc.line() == 0 {
            Origin::Unknown
        } else {
            Origin::Yaml {
                line: loc.line(),
                column: loc.column(),
            }
        },
    }
}

/// Parses YAML text into a tree. Errors carry the position but never a snippet of the
/// text (a snippet could show a password).
pub(crate) fn parse(text: &str) -> Result<Node, ConfigError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(ConfigError::new(
            "",
            Origin::Unknown,
            format!(
                "the file is {} bytes; the limit is {MAX_INPUT_BYTES}",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Err(ConfigError::new(
            "",
            Origin::Unknown,
            "the file is empty: expected a mapping with `connections`",
        ));
    }
    let options = serde_saphyr::options! { with_snippet: false };
    match serde_saphyr::from_str_with_options::<Spanned<Value>>(text, options) {
        Ok(root) => Ok(node_from(root)),
        Err(e) => {
            let origin = e
                .location()
                .filter(|l| l.line() > 0)
                .map_or(Origin::Unknown, |l| Origin::Yaml {
                    line: l.line(),
                    column: l.column(),
                });
            let message = e.without_snippet().to_string();
            Err(ConfigError::new(
                "",
                origin,
                format!("malformed YAML: {}", first_line(&message)),
            ))
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// Applies `DBMANAGER__A__B__C=value` overrides: each `__`-separated segment names a key
/// (case-insensitively; `_` also matches `-` in keys such as `cache-db`).
pub(crate) fn apply_env_overrides(
    root: &mut Node,
    env: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) {
    let mut vars: Vec<(&String, &String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let segments: Vec<&str> = var[ENV_PREFIX.len()..].split("__").collect();
        if segments.iter().any(|s| s.is_empty()) {
            errors.push(ConfigError::new(
                "",
                Origin::Env(var.clone()),
                "malformed override: expected DBMANAGER__FIELD or DBMANAGER__CONNECTIONS__NAME__FIELD",
            ));
            continue;
        }
        let leaf = Node {
            value: Value::Str(value.clone()),
            origin: Origin::Env(var.clone()),
        };
        match set_path(root, &segments, leaf) {
            Ok(()) => {}
            Err((path, Clash::NotAMapping)) => errors.push(ConfigError::new(
                path,
                Origin::Env(var.clone()),
                "cannot override: that path holds a value that is not a mapping",
            )),
            Err((path, Clash::Ambiguous(keys))) => errors.push(ConfigError::new(
                path,
                Origin::Env(var.clone()),
                format!(
                    "ambiguous override: it matches {} (overrides match names \
                     case-insensitively); rename one of them",
                    keys.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )),
        }
    }
}

fn key_matches(key: &str, segment: &str) -> bool {
    key.len() == segment.len()
        && key
            .chars()
            .zip(segment.chars())
            .all(|(k, s)| k.eq_ignore_ascii_case(&s) || (k == '-' && s == '_'))
}

/// Why an override could not be applied.
enum Clash {
    NotAMapping,
    /// The segment matches these keys (say `Primary` and `primary`).
    Ambiguous(Vec<String>),
}

fn set_path(node: &mut Node, segments: &[&str], leaf: Node) -> Result<(), (String, Clash)> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(());
    };
    if matches!(node.value, Value::Null) {
        node.value = Value::Map(Vec::new());
    }
    let Value::Map(entries) = &mut node.value else {
        return Err((String::new(), Clash::NotAMapping));
    };
    let matching: Vec<String> = entries
        .iter()
        .filter(|(k, _)| key_matches(k, first))
        .map(|(k, _)| k.clone())
        .collect();
    if matching.len() > 1 {
        return Err((String::new(), Clash::Ambiguous(matching)));
    }
    let idx = match entries.iter().position(|(k, _)| key_matches(k, first)) {
        Some(i) => i,
        None => {
            entries.push((
                first.to_ascii_lowercase(),
                Node {
                    value: Value::Null,
                    origin: leaf.origin.clone(),
                },
            ));
            entries.len() - 1
        }
    };
    let (key, child) = &mut entries[idx];
    if rest.is_empty() {
        *child = leaf;
        Ok(())
    } else {
        let key = key.clone();
        set_path(child, rest, leaf).map_err(|(p, c)| (join(&key, &p), c))
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}.{b}"),
    }
}

/// Whether the value at `path` is a secret (a `password` or a `dsn`).
fn is_secret_path(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    last == "password" || last == "dsn"
}

/// Expands `${VAR}` and `${VAR:-default}` in every string of the tree; `$$` is a literal `$`.
/// Values that came from an environment override are taken literally. An error about a
/// secret field never quotes its text: it names a missing variable only when the whole
/// value is one reference (`${DB_PASSWORD}`), which is then a name, not a password.
pub(crate) fn interpolate(
    node: &mut Node,
    path: &str,
    env: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) {
    if matches!(node.origin, Origin::Env(_)) {
        return;
    }
    match &mut node.value {
        Value::Str(s) if s.contains('$') => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(msg) => {
                let msg = if is_secret_path(path) && !is_one_reference(s) {
                    "holds a `$` that is not a valid `${VAR}` reference to a set variable (the \
                     value is not shown: it is a secret). Write `$$` for a literal `$`, or set \
                     it through an environment override, which is taken literally"
                        .to_owned()
                } else {
                    msg
                };
                errors.push(ConfigError::new(path, node.origin.clone(), msg));
            }
        },
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env, errors);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let p = join(path, k);
                interpolate(v, &p, env, errors);
            }
        }
        _ => {}
    }
}

/// Whether `s` is exactly one `${NAME}` or `${NAME:-default}` reference.
fn is_one_reference(s: &str) -> bool {
    s.strip_prefix("${")
        .and_then(|b| b.strip_suffix('}'))
        .is_some_and(|body| {
            let name = body.split_once(":-").map_or(body, |(n, _)| n);
            !body.contains('}')
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

pub(crate) fn expand(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err("unterminated `${`: expected `${VAR}` or `${VAR:-default}`".into());
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid variable reference (names use A-Z, 0-9 and _)"
                ));
            }
            // Shell semantics: `:-` also replaces a variable that is set but empty.
            match (env.get(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set (write `${{{name}:-default}}` for a fallback)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Every string under a `password` or `dsn` key (and the password inside each DSN),
/// longest first, so messages can be scrubbed of them.
pub(crate) fn secret_values(root: &Node) -> Vec<String> {
    fn walk(node: &Node, secret: bool, out: &mut Vec<String>) {
        match &node.value {
            Value::Str(s) if secret && !s.is_empty() => {
                out.push(s.clone());
                out.extend(dbmanager_providers::dsn_secrets(s));
            }
            Value::Seq(items) => items.iter().for_each(|i| walk(i, secret, out)),
            Value::Map(entries) => {
                for (k, v) in entries {
                    walk(v, secret || k == "password" || k == "dsn", out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(root, false, &mut out);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}
