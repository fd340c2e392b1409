//! Reading one YAML value as a field's type, reporting what is wrong with its path.

use super::error::{ConfigError, ConfigWarning, Origin};
use super::fields::{Bounds, Field, Ty};
use super::fields::{Val, is_secret};
use super::tree::{Node, Value};
use super::validate::Validator;
use super::value::{Src, field_of, join, quote, suggestion};
use std::collections::BTreeMap;
use std::time::Duration;

impl Validator<'_> {
    pub(crate) fn err(&mut self, path: &str, origin: &Origin, msg: impl Into<String>) {
        self.errors
            .push(ConfigError::new(path, origin.clone(), msg.into()));
    }

    pub(crate) fn warn(&mut self, path: &str, msg: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            path: path.to_owned(),
            message: msg.into(),
        });
    }

    // ---- scalar readers -------------------------------------------------------------------

    pub(crate) fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) if !is_secret(field_of(path)) => Some(i.to_string()),
            Value::Float(f) if !is_secret(field_of(path)) => Some(f.to_string()),
            Value::Bool(b) if !is_secret(field_of(path)) => Some(b.to_string()),
            Value::Null => {
                self.err(
                    path,
                    &node.origin,
                    "expected a string, found nothing (null)",
                );
                None
            }
            _ => {
                self.err(
                    path,
                    &node.origin,
                    format!(
                        "expected a string, found {}{}",
                        node.kind_name(),
                        if is_secret(field_of(path)) {
                            " (quote it)"
                        } else {
                            ""
                        }
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn nonempty_string(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = self.string(node, path)?;
        if s.trim().is_empty() {
            self.err(path, &node.origin, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub(crate) fn integer(&mut self, node: &Node, path: &str) -> Option<i64> {
        match &node.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) => match s.trim().parse::<i64>() {
                Ok(i) => Some(i),
                Err(_) => {
                    self.err(
                        path,
                        &node.origin,
                        format!(
                            "expected a whole number, found {}",
                            quote(field_of(path), s)
                        ),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    path,
                    &node.origin,
                    format!("expected a whole number, found {}", node.kind_name()),
                );
                None
            }
        }
    }

    /// A count that must be at least `min`.
    pub(crate) fn count(&mut self, node: &Node, path: &str, min: u32) -> Option<u32> {
        let i = self.integer(node, path)?;
        if i < i64::from(min) {
            let what = if i < 0 {
                "negative"
            } else if i == 0 {
                "zero"
            } else {
                "too small"
            };
            self.err(
                path,
                &node.origin,
                format!("must be at least {min}, got {i} ({what})"),
            );
            return None;
        }
        match u32::try_from(i) {
            Ok(v) if v <= 100_000 => Some(v),
            _ => {
                self.err(
                    path,
                    &node.origin,
                    format!("must be at most 100000, got {i}"),
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" => Some(false),
                _ => {
                    self.err(
                        path,
                        &node.origin,
                        format!("expected true or false, found {}", quote(field_of(path), s)),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    path,
                    &node.origin,
                    format!("expected true or false, found {}", node.kind_name()),
                );
                None
            }
        }
    }

    /// A duration such as `500ms`, `30s`, `1h30m`. With `optional`, `0`, `none`, `off`
    /// and null mean "no limit" (`Ok(None)`).
    pub(crate) fn duration(
        &mut self,
        node: &Node,
        path: &str,
        optional: bool,
    ) -> Option<Option<Duration>> {
        let text = match &node.value {
            Value::Null if optional => return Some(None),
            Value::Int(0) if optional => return Some(None),
            Value::Str(s) => s.trim().to_owned(),
            Value::Int(i) => {
                self.err(
                    path,
                    &node.origin,
                    format!("`{i}` has no unit: write a duration such as `{i}s` or `{i}ms`"),
                );
                return None;
            }
            _ => {
                self.err(
                    path,
                    &node.origin,
                    format!(
                        "expected a duration such as `500ms`, `30s` or `1h30m`, found {}",
                        node.kind_name()
                    ),
                );
                return None;
            }
        };
        if optional
            && matches!(
                text.to_ascii_lowercase().as_str(),
                "0" | "none" | "off" | "disabled"
            )
        {
            return Some(None);
        }
        if text.starts_with('-') {
            self.err(
                path,
                &node.origin,
                format!("must not be negative, got `{text}`"),
            );
            return None;
        }
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            self.err(
                path,
                &node.origin,
                format!("`{text}` has no unit: write a duration such as `{text}s` or `{text}ms`"),
            );
            return None;
        }
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() && !optional => {
                self.err(path, &node.origin, "must be greater than zero");
                None
            }
            Ok(d) if d.is_zero() => Some(None),
            Ok(d) => Some(Some(d)),
            Err(e) => {
                self.err(
                    path,
                    &node.origin,
                    format!(
                        "cannot parse duration {}: {e} (examples: `500ms`, `30s`, `1h30m`)",
                        quote(field_of(path), &text)
                    ),
                );
                None
            }
        }
    }

    /// `d` if it is within `b`; an error naming the bound otherwise.
    fn bounded(
        &mut self,
        d: Option<Duration>,
        b: Bounds,
        node: &Node,
        path: &str,
    ) -> Option<Option<Duration>> {
        let Some(v) = d else { return Some(None) };
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if v > b.max {
            self.err(
                path,
                &node.origin,
                format!("must be at most {}, got {}", show(b.max), show(v)),
            );
            return None;
        }
        if v < b.min {
            self.err(
                path,
                &node.origin,
                format!(
                    "must be at least {}, got {} (a smaller value would make the manager \
                     spin or probe a server many times a second)",
                    show(b.min),
                    show(v)
                ),
            );
            return None;
        }
        Some(Some(v))
    }

    pub(crate) fn required_duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        self.duration(node, path, false).flatten()
    }

    pub(crate) fn src<T>(value: Option<T>, path: &str, node: &Node) -> Option<Src<T>> {
        value.map(|value| Src {
            value,
            path: path.to_owned(),
            origin: node.origin.clone(),
        })
    }

    /// Reads `node` as `field`'s type.
    pub(crate) fn read(&mut self, field: &Field, node: &Node, path: &str) -> Option<Val> {
        match field.ty {
            Ty::Count { min } => self.count(node, path, min).map(Val::Count),
            Ty::Duration(b) => self
                .required_duration(node, path)
                .and_then(|d| self.bounded(Some(d), b, node, path))
                .flatten()
                .map(Val::Duration),
            Ty::OptDuration(b) => self
                .duration(node, path, true)
                .and_then(|d| self.bounded(d, b, node, path))
                .map(Val::OptDuration),
            Ty::Bool => self.boolean(node, path).map(Val::Bool),
            Ty::Text => self.nonempty_string(node, path).map(Val::Text),
            // A password may legitimately be empty; it is never quoted.
            Ty::Secret => self.string(node, path).map(Val::Text),
            Ty::Port => {
                let i = self.integer(node, path)?;
                match u16::try_from(i) {
                    Ok(port) if port > 0 => Some(Val::Count(u32::from(port))),
                    _ => {
                        self.err(
                            path,
                            &node.origin,
                            format!("must be a TCP port from 1 to 65535, got {i}"),
                        );
                        None
                    }
                }
            }
            Ty::Choice { what, options } => {
                let s = self.string(node, path)?;
                // Case, and `-` against `_`, do not matter.
                let norm = |s: &str| s.trim().to_ascii_lowercase().replace('-', "_");
                let wanted = norm(&s);
                if let Some((_, canonical)) = options.iter().find(|(sp, _)| norm(sp) == wanted) {
                    return Some(Val::Text((*canonical).to_owned()));
                }
                if field.name == "default_orm" && matches!(wanted.as_str(), "bun" | "gorm") {
                    // ResolveSpec's files say `bun` or `gorm`: accept them.
                    self.warn(
                        path,
                        format!(
                            "`{wanted}` is a Go ORM: mapped to the `sqlx` view (the connection's \
                             sqlx pool). Write `default_orm: sqlx`, `sea_orm` or `diesel` to \
                             choose a Rust view"
                        ),
                    );
                    return Some(Val::Text("sqlx".to_owned()));
                }
                let mut names: Vec<&str> = Vec::new();
                for (_, canonical) in options {
                    if !names.contains(canonical) {
                        names.push(canonical);
                    }
                }
                let spellings: Vec<&str> = options.iter().map(|(sp, _)| *sp).collect();
                let hint = suggestion(&wanted, &spellings)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                self.err(
                    path,
                    &node.origin,
                    format!(
                        "unknown {what} {}{hint}: expected one of {}",
                        quote(field.name, &s),
                        names.join(", ")
                    ),
                );
                None
            }
            Ty::Map => self.map(node, path).map(Val::Map),
            Ty::Hosts => self.hosts(node, path).map(Val::Hosts),
            Ty::Special => None,
        }
    }

    /// `hosts`: a list of `host` or `host:port` (`[::1]:5432` for an IPv6 address), or
    /// one comma-separated string of them.
    fn hosts(&mut self, node: &Node, path: &str) -> Option<Vec<(String, Option<u16>)>> {
        let items: Vec<(String, String)> = match &node.value {
            Value::Str(s) => s
                .split(',')
                .map(|h| (path.to_owned(), h.trim().to_owned()))
                .collect(),
            Value::Seq(nodes) => {
                let mut items = Vec::new();
                for (i, n) in nodes.iter().enumerate() {
                    let at = format!("{path}[{i}]");
                    items.push((at.clone(), self.string(n, &at)?));
                }
                items
            }
            _ => {
                self.err(
                    path,
                    &node.origin,
                    format!("expected a list of `host:port`, found {}", node.kind_name()),
                );
                return None;
            }
        };
        if items.is_empty() {
            self.err(path, &node.origin, "lists no host");
            return None;
        }
        let mut hosts = Vec::new();
        for (at, item) in items {
            let (host, port) = match item.strip_prefix('[') {
                Some(v6) => match v6.split_once(']') {
                    Some((h, rest)) => (h.to_owned(), rest.strip_prefix(':')),
                    None => (item.clone(), None),
                },
                None => match item.rsplit_once(':') {
                    Some((h, p)) => (h.to_owned(), Some(p)),
                    None => (item.clone(), None),
                },
            };
            if host.is_empty() {
                self.err(&at, &node.origin, format!("`{item}` names no host"));
                return None;
            }
            let port = match port.map(str::parse::<u16>) {
                None => None,
                Some(Ok(p)) if p > 0 => Some(p),
                Some(_) => {
                    self.err(
                        &at,
                        &node.origin,
                        format!("`{item}`: the port must be a number from 1 to 65535"),
                    );
                    return None;
                }
            };
            hosts.push((host, port));
        }
        Some(hosts)
    }

    /// A mapping of strings to strings (`tags`, `options`).
    fn map(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    if let Some(s) = self.string(v, &join(path, k)) {
                        out.insert(k.clone(), s);
                    }
                }
            }
            Value::Null => {}
            _ => {
                self.err(
                    path,
                    &node.origin,
                    format!(
                        "expected a mapping of names to strings, found {}",
                        node.kind_name()
                    ),
                );
                return None;
            }
        }
        Some(out)
    }
}
