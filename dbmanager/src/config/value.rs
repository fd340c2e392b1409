//! A value read from the file (`Val`), where it came from (`Src`), and the path and quoting
//! helpers that messages use: what the reader, the validator and the checks share.

use super::error::Origin;
use std::collections::BTreeMap;
use std::time::Duration;

/// Fields that hold secrets: their values are never quoted in messages.
pub(crate) const SECRET_FIELDS: &[&str] = &["password", "dsn"];

/// A value read as its field's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Count(u32),
    Duration(Duration),
    OptDuration(Option<Duration>),
    Bool(bool),
    Text(String),
    Map(BTreeMap<String, String>),
}

/// A value plus the path and origin it was read from.
#[derive(Debug, Clone)]
pub(crate) struct Src<T> {
    pub(crate) value: T,
    pub(crate) path: String,
    pub(crate) origin: Origin,
}

pub(crate) fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}.{b}")
    }
}

pub(crate) fn quote(field: &str, s: &str) -> String {
    if SECRET_FIELDS.contains(&field) {
        "<redacted>".to_owned()
    } else if s.chars().count() > 60 {
        format!("`{}…`", s.chars().take(60).collect::<String>())
    } else {
        format!("`{s}`")
    }
}

pub(crate) fn field_of(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}
