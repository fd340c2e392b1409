//! [`Secrets`]: the one redaction routine. Config errors, provider errors, health, events
//! and the CLI all scrub their text through it, so a password or DSN never reaches a
//! message, however it was spelled.

/// What replaces a secret in a message.
pub const REDACTED: &str = "<redacted>";

/// A set of strings that must never appear in a message: passwords, whole DSNs and the
/// password inside a DSN. Cheap to clone.
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    /// An empty set.
    pub fn new() -> Self {
        Secrets::default()
    }

    /// Adds a password (or any secret text). Empty strings are ignored.
    pub fn add(&mut self, secret: &str) -> &mut Self {
        if !secret.is_empty() && !self.0.iter().any(|s| s == secret) {
            self.0.push(secret.to_owned());
            // Longest first, so a DSN is replaced whole before the password inside it.
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        self
    }

    /// Adds a DSN: the whole text and the password in its userinfo.
    pub fn add_dsn(&mut self, dsn: &str) -> &mut Self {
        self.add(dsn);
        for pw in dsn_secrets(dsn) {
            self.add(pw);
        }
        self
    }

    /// Whether nothing is to be redacted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub fn scrub(&self, text: impl Into<String>) -> String {
        let mut text = text.into();
        for s in &self.0 {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), REDACTED);
            }
        }
        text
    }
}

/// Pieces of a DSN that must never reach an error message: the password in its userinfo.
/// (Callers scrub the whole DSN as well.)
pub fn dsn_secrets(dsn: &str) -> Vec<&str> {
    let Some(rest) = dsn.split_once("://").map(|(_, r)| r) else {
        return Vec::new();
    };
    let Some(at) = rest.rfind('@') else {
        return Vec::new();
    };
    match rest[..at].split_once(':') {
        Some((_, pw)) if !pw.is_empty() => vec![pw],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_the_dsn_and_its_password() {
        let mut s = Secrets::new();
        s.add_dsn("postgres://u:pw-1@h/db").add("other");
        let out = s.scrub("bad postgres://u:pw-1@h/db; pw-1 and other");
        assert!(!out.contains("pw-1") && !out.contains("other"), "{out}");
        assert!(out.contains(REDACTED));
    }
}
