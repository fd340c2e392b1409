//! Configuration errors: each names the YAML path and where the value came from.

use std::fmt;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A position in the YAML text (1-based).
    Yaml {
        /// Line, starting at 1.
        line: u64,
        /// Column, starting at 1.
        column: u64,
    },
    /// An environment variable override (`DBMANAGER__...`).
    Env(String),
    /// A built-in default, or a position the parser could not give.
    Unknown,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Yaml { line, column } => write!(f, "line {line}, column {column}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Unknown => Ok(()),
        }
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The YAML path, e.g. `connections.primary.max_idle_conns` (empty for the whole file).
    pub path: String,
    /// Where the offending value came from.
    pub origin: Origin,
    /// What is wrong, and what would be right. Never contains a secret.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, origin: Origin, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            origin,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<file>"
        } else {
            &self.path
        };
        match self.origin {
            Origin::Unknown => write!(f, "{path}: {}", self.message),
            _ => write!(f, "{path} ({}): {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file (or `<string>`) the configuration was read from.
    pub source_name: String,
    /// The problems, in the order they were found.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Whether any error has this exact YAML path.
    pub fn has_path(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "invalid configuration in {}: {n} error{}",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Something valid but probably not what was meant (a setting an engine ignores, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigWarning {
    /// The YAML path.
    pub path: String,
    /// What will happen.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
