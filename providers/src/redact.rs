//! [`Secrets`]: the one redaction routine. Config errors, provider errors, health, events
//! and the CLI all scrub their text through it, so a password or DSN never reaches a
//! message, however it was spelled.

/// What replaces a secret in a message.
pub const REDACTED: &str = "<redacted>";

/// A set of strings that must never appear in a message: passwords, whole DSNs and the
/// password inside a DSN. Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
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

    /// Adds every secret of `other`.
    pub fn extend(&mut self, other: &Secrets) -> &mut Self {
        for s in &other.0 {
            self.add(s);
        }
        self
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

    /// Adds a DSN: the whole text and every spelling of the password in it (see
    /// [`dsn_secrets`]).
    pub fn add_dsn(&mut self, dsn: &str) -> &mut Self {
        self.add(dsn);
        for pw in dsn_secrets(dsn) {
            self.add(&pw);
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

/// Pieces of a DSN that must never reach an error message (callers scrub the whole DSN
/// as well): the password of a URL's userinfo, read the way [`split_userinfo`] reads it
/// and also as every other `@` would cut it (a password with an unescaped `@`, or an `@`
/// in the query: redacting too much is harmless, too little is not); each also
/// percent-decoded, as a driver's message may quote it; and the `password=`/`pwd=` value
/// of an ADO.NET or JDBC string.
pub fn dsn_secrets(dsn: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
        if let Ok(decoded) = crate::percent_decode(s)
            && !decoded.is_empty()
            && !out.contains(&decoded)
        {
            out.push(decoded);
        }
    };
    if let Some((_, rest)) = dsn.split_once("://") {
        for (at, _) in rest.match_indices('@') {
            if let Some((_, pw)) = rest[..at].split_once(':') {
                push(pw);
            }
        }
        if let (Some(userinfo), _) = split_userinfo(rest)
            && let Some((_, pw)) = userinfo.split_once(':')
        {
            push(pw);
        }
    }
    for pw in keyword_passwords(dsn) {
        push(&pw);
    }
    out
}

/// Splits what follows a URL's `://` into its userinfo (if any) and the rest. The
/// userinfo ends at the first `@` (before any `/`) after which the host part (up to `?`)
/// holds no other `@`: so a password may hold `?` or an unescaped `@`, and an `@` in the
/// query is not taken for the end of the userinfo.
pub fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    let region = &rest[..rest.find('/').unwrap_or(rest.len())];
    for (at, _) in region.match_indices('@') {
        let after = &region[at + 1..];
        let host = after.split('?').next().unwrap_or(after);
        if !host.contains('@') {
            return (Some(&rest[..at]), &rest[at + 1..]);
        }
    }
    (None, rest)
}

/// The values of `password=` / `pwd=` in a `key=value;...` string (ADO.NET, JDBC), with
/// `{...}`, `"..."` and `'...'` quoting.
fn keyword_passwords(dsn: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = dsn.to_ascii_lowercase();
    for key in ["password=", "pwd="] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(key) {
            let start = from + i + key.len();
            from = start;
            // Only at the start of a pair.
            let before = lower[..start - key.len()].trim_end();
            if !(before.is_empty() || before.ends_with(';') || before.ends_with(':')) {
                continue;
            }
            let value = dsn[start..].trim_start();
            let (close, open_len) = match value.chars().next() {
                Some('{') => ("}", 1),
                Some('"') => ("\"", 1),
                Some('\'') => ("'", 1),
                _ => (";", 0),
            };
            let body = &value[open_len..];
            let end = body.find(close).unwrap_or(body.len());
            let pw = body[..end].trim_end();
            if !pw.is_empty() {
                out.push(pw.to_owned());
            }
        }
    }
    out
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
