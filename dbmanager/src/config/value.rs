//! Where a value came from (`Src`), and the path and quoting helpers that messages use:
//! what the reader, the validator and the checks share.

use super::error::Origin;
use super::fields::is_secret;

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
    if is_secret(field) {
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

/// The candidate nearest to `word`, if one is near enough to be what was meant.
pub(crate) fn suggestion<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|cand| (strsim::jaro_winkler(word, cand), *cand))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
