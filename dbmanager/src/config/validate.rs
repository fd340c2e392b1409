//! Turns the YAML tree into typed settings, collecting every error with its YAML path.

use super::error::{ConfigError, ConfigWarning, Origin};
use super::tree::{Node, Value};
use super::{
    Config, ConnectionConfig, DbType, DefaultOrm, Endpoint, MongoSettings, OnUnavailable,
    RetrySettings, Startup,
};
use dbmanager_providers::SecretString;
use dbmanager_providers::settings::{
    PoolSettings, ServerSettings, SqliteSettings, SqliteTarget, SslMode, TlsSettings,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Settings allowed both at the top level (as defaults) and per connection.
pub(crate) const DEFAULTABLE: &[&str] = &[
    "max_open_conns",
    "max_idle_conns",
    "min_idle_conns",
    "conn_max_lifetime",
    "conn_max_idle_time",
    "acquire_timeout",
    "connect_timeout",
    "query_timeout",
    "ping_idle_after",
    "retry_attempts",
    "retry_delay",
    "retry_max_delay",
    "health_check_interval",
    "health_check_timeout",
    "failure_threshold",
    "enable_auto_reconnect",
    "on_unavailable",
    "drain_timeout",
    "startup",
    "close_timeout",
    "enable_tracing",
    "enable_metrics",
    "enable_logging",
    "application_name",
    "default_orm",
];

/// Settings allowed only at the top level.
pub(crate) const TOP_ONLY: &[&str] = &["default_connection", "connections"];

/// Settings allowed only inside a connection.
pub(crate) const CONNECTION_ONLY: &[&str] = &[
    "name",
    "type",
    "dsn",
    "host",
    "port",
    "user",
    "password",
    "database",
    "sslmode",
    "ssl_root_cert",
    "ssl_cert",
    "ssl_key",
    "schema",
    "filepath",
    "busy_timeout",
    "journal_mode",
    "synchronous",
    "foreign_keys",
    "auth_source",
    "replica_set",
    "read_preference",
    "diesel_conns",
    "tags",
];

/// Fields that hold secrets: their values are never quoted in messages.
const SECRET_FIELDS: &[&str] = &["password", "dsn"];

/// A value plus the path and origin it was read from.
#[derive(Debug, Clone)]
struct Src<T> {
    value: T,
    path: String,
    origin: Origin,
}

/// One layer of defaultable settings (the top level, or one connection).
#[derive(Debug, Default, Clone)]
struct Layer {
    max_open: Option<Src<u32>>,
    max_idle: Option<Src<u32>>,
    min_idle: Option<Src<u32>>,
    lifetime: Option<Src<Option<Duration>>>,
    idle_time: Option<Src<Option<Duration>>>,
    acquire_timeout: Option<Src<Duration>>,
    connect_timeout: Option<Src<Duration>>,
    query_timeout: Option<Src<Option<Duration>>>,
    ping_idle_after: Option<Src<Option<Duration>>>,
    retry_attempts: Option<Src<u32>>,
    retry_delay: Option<Src<Duration>>,
    retry_max_delay: Option<Src<Duration>>,
    health_interval: Option<Src<Duration>>,
    health_timeout: Option<Src<Duration>>,
    auto_reconnect: Option<Src<bool>>,
    failure_threshold: Option<Src<u32>>,
    on_unavailable: Option<Src<OnUnavailable>>,
    drain_timeout: Option<Src<Duration>>,
    startup: Option<Src<Startup>>,
    close_timeout: Option<Src<Duration>>,
    tracing: Option<Src<bool>>,
    metrics: Option<Src<bool>>,
    logging: Option<Src<bool>>,
    application_name: Option<Src<String>>,
    default_orm: Option<Src<DefaultOrm>>,
}

pub(crate) struct Validator {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigWarning>,
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}.{b}")
    }
}

fn quote(field: &str, s: &str) -> String {
    if SECRET_FIELDS.contains(&field) {
        "<redacted>".to_owned()
    } else if s.chars().count() > 60 {
        format!("`{}…`", s.chars().take(60).collect::<String>())
    } else {
        format!("`{s}`")
    }
}

fn field_of(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

impl Validator {
    pub(crate) fn new() -> Self {
        Validator {
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn err(&mut self, path: &str, origin: &Origin, msg: impl Into<String>) {
        self.errors
            .push(ConfigError::new(path, origin.clone(), msg.into()));
    }

    fn warn(&mut self, path: &str, msg: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            path: path.to_owned(),
            message: msg.into(),
        });
    }

    /// The entries of a mapping, reporting unknown keys (with the nearest known one).
    fn entries<'a>(
        &mut self,
        node: &'a Node,
        path: &str,
        allowed: &[&[&str]],
    ) -> Vec<(&'a str, &'a Node)> {
        let Value::Map(entries) = &node.value else {
            self.err(
                path,
                &node.origin,
                format!("expected a mapping, found {}", node.kind_name()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let known = allowed.iter().any(|set| set.contains(&k.as_str()));
            if known {
                out.push((k.as_str(), v));
            } else {
                let suggestion = allowed
                    .iter()
                    .flat_map(|s| s.iter())
                    .map(|cand| (strsim::jaro_winkler(k, cand), *cand))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, c)| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                self.err(
                    &join(path, k),
                    &v.origin,
                    format!("unknown field `{k}`{suggestion}"),
                );
            }
        }
        out
    }

    // ---- scalar readers -------------------------------------------------------------------

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) if !SECRET_FIELDS.contains(&field_of(path)) => Some(i.to_string()),
            Value::Float(f) if !SECRET_FIELDS.contains(&field_of(path)) => Some(f.to_string()),
            Value::Bool(b) if !SECRET_FIELDS.contains(&field_of(path)) => Some(b.to_string()),
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
                        if SECRET_FIELDS.contains(&field_of(path)) {
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

    fn nonempty_string(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = self.string(node, path)?;
        if s.trim().is_empty() {
            self.err(path, &node.origin, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn integer(&mut self, node: &Node, path: &str) -> Option<i64> {
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
    fn count(&mut self, node: &Node, path: &str, min: u32) -> Option<u32> {
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

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
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
    fn duration(&mut self, node: &Node, path: &str, optional: bool) -> Option<Option<Duration>> {
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

    fn required_duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        self.duration(node, path, false).flatten()
    }

    fn src<T>(value: Option<T>, path: &str, node: &Node) -> Option<Src<T>> {
        value.map(|value| Src {
            value,
            path: path.to_owned(),
            origin: node.origin.clone(),
        })
    }

    // ---- layers ---------------------------------------------------------------------------

    /// Reads one defaultable field into the layer. Returns false if `key` is not defaultable.
    fn layer_field(&mut self, layer: &mut Layer, key: &str, node: &Node, path: &str) -> bool {
        match key {
            "max_open_conns" => layer.max_open = Self::src(self.count(node, path, 1), path, node),
            "max_idle_conns" => layer.max_idle = Self::src(self.count(node, path, 1), path, node),
            "min_idle_conns" => layer.min_idle = Self::src(self.count(node, path, 0), path, node),
            "conn_max_lifetime" => {
                layer.lifetime = Self::src(self.duration(node, path, true), path, node)
            }
            "conn_max_idle_time" => {
                layer.idle_time = Self::src(self.duration(node, path, true), path, node)
            }
            "acquire_timeout" => {
                layer.acquire_timeout = Self::src(self.required_duration(node, path), path, node)
            }
            "connect_timeout" => {
                layer.connect_timeout = Self::src(self.required_duration(node, path), path, node)
            }
            "query_timeout" => {
                layer.query_timeout = Self::src(self.duration(node, path, true), path, node)
            }
            "ping_idle_after" => {
                layer.ping_idle_after = Self::src(self.duration(node, path, true), path, node)
            }
            "retry_attempts" => {
                layer.retry_attempts = Self::src(self.count(node, path, 1), path, node)
            }
            "retry_delay" => {
                layer.retry_delay = Self::src(self.required_duration(node, path), path, node)
            }
            "retry_max_delay" => {
                layer.retry_max_delay = Self::src(self.required_duration(node, path), path, node)
            }
            "health_check_interval" => {
                layer.health_interval = Self::src(self.required_duration(node, path), path, node)
            }
            "health_check_timeout" => {
                layer.health_timeout = Self::src(self.required_duration(node, path), path, node)
            }
            "enable_auto_reconnect" => {
                layer.auto_reconnect = Self::src(self.boolean(node, path), path, node)
            }
            "failure_threshold" => {
                layer.failure_threshold = Self::src(self.count(node, path, 1), path, node)
            }
            "drain_timeout" => {
                layer.drain_timeout = Self::src(self.required_duration(node, path), path, node)
            }
            "on_unavailable" => {
                let v = self.string(node, path).and_then(|s| {
                    let parsed = OnUnavailable::parse(&s);
                    if parsed.is_none() {
                        self.err(
                            path,
                            &node.origin,
                            format!(
                                "unknown outage policy {}: expected one of {}",
                                quote("on_unavailable", &s),
                                OnUnavailable::NAMES.join(", ")
                            ),
                        );
                    }
                    parsed
                });
                layer.on_unavailable = Self::src(v, path, node);
            }
            "startup" => {
                let v = self.string(node, path).and_then(|s| {
                    let parsed = Startup::parse(&s);
                    if parsed.is_none() {
                        self.err(
                            path,
                            &node.origin,
                            format!(
                                "unknown startup mode {} (expected `strict` or `lazy`)",
                                quote("startup", &s)
                            ),
                        );
                    }
                    parsed
                });
                layer.startup = Self::src(v, path, node);
            }
            "close_timeout" => {
                layer.close_timeout = Self::src(self.required_duration(node, path), path, node)
            }
            "enable_tracing" => layer.tracing = Self::src(self.boolean(node, path), path, node),
            "enable_metrics" => layer.metrics = Self::src(self.boolean(node, path), path, node),
            "enable_logging" => layer.logging = Self::src(self.boolean(node, path), path, node),
            "application_name" => {
                layer.application_name = Self::src(self.nonempty_string(node, path), path, node)
            }
            "default_orm" => {
                let v = self.string(node, path).and_then(|s| {
                    let parsed = DefaultOrm::parse(&s);
                    if parsed.is_none() {
                        let hint = if matches!(s.to_ascii_lowercase().as_str(), "bun" | "gorm") {
                            " (`bun` and `gorm` are Go ORMs)"
                        } else {
                            ""
                        };
                        self.err(
                            path,
                            &node.origin,
                            format!(
                                "unknown ORM {}{hint}: expected one of {}",
                                quote("default_orm", &s),
                                DefaultOrm::NAMES.join(", ")
                            ),
                        );
                    }
                    parsed
                });
                layer.default_orm = Self::src(v, path, node);
            }
            _ => return false,
        }
        true
    }

    // ---- the whole file -------------------------------------------------------------------

    pub(crate) fn config(&mut self, root: &Node) -> Option<Config> {
        if !matches!(root.value, Value::Map(_)) {
            self.err(
                "",
                &root.origin,
                format!(
                    "expected a mapping with `connections` at the top level, found {}",
                    root.kind_name()
                ),
            );
            return None;
        }
        // The settings may sit under `dbmanager:` inside an application's own file; then
        // the other top-level keys belong to the application and are not ours to check.
        let (section, prefix) = match root.get("dbmanager") {
            Some(section) => (section, "dbmanager"),
            None => (root, ""),
        };
        let fields = self.entries(section, prefix, &[TOP_ONLY, DEFAULTABLE]);

        let mut global = Layer::default();
        let mut default_connection: Option<Src<String>> = None;
        let mut connections_node: Option<(&Node, String)> = None;
        for (key, node) in fields {
            let path = join(prefix, key);
            match key {
                "default_connection" => {
                    default_connection = Self::src(self.nonempty_string(node, &path), &path, node);
                }
                "connections" => connections_node = Some((node, path)),
                _ => {
                    self.layer_field(&mut global, key, node, &path);
                }
            }
        }

        let connections_path = join(prefix, "connections");
        let mut connections = Vec::new();
        match connections_node {
            None => self.err(
                &connections_path,
                &section.origin,
                "no connections: add a `connections` mapping with at least one named connection",
            ),
            Some((node, ref path)) => match &node.value {
                Value::Map(entries) if entries.is_empty() => self.err(
                    path,
                    &node.origin,
                    "no connections: add at least one named connection",
                ),
                Value::Map(entries) => {
                    for (name, conn) in entries {
                        let cpath = join(path, name);
                        if name.trim().is_empty() {
                            self.err(&cpath, &conn.origin, "a connection name must not be empty");
                            continue;
                        }
                        if let Some(c) = self.connection(name, conn, &cpath, &global) {
                            connections.push(c);
                        }
                    }
                }
                Value::Null => self.err(
                    path,
                    &node.origin,
                    "no connections: add at least one named connection",
                ),
                _ => self.err(
                    path,
                    &node.origin,
                    format!(
                        "expected a mapping of connection names to settings, found {}",
                        node.kind_name()
                    ),
                ),
            },
        }

        // Checked against the declared names, so it is reported even when a connection
        // has errors of its own.
        let declared: Vec<&str> = match connections_node.map(|(n, _)| &n.value) {
            Some(Value::Map(entries)) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        };
        let default_connection = match default_connection {
            Some(d) => {
                if !declared.contains(&d.value.as_str()) && !declared.is_empty() {
                    self.err(
                        &d.path,
                        &d.origin,
                        format!(
                            "default_connection `{}` is not among the connections (configured: {})",
                            d.value,
                            declared.join(", ")
                        ),
                    );
                }
                Some(d.value)
            }
            None if connections.len() == 1 && declared.len() == 1 => {
                Some(connections[0].name.clone())
            }
            None => None,
        };

        Some(Config {
            default_connection,
            connections,
            warnings: Vec::new(),
        })
    }

    fn connection(
        &mut self,
        name: &str,
        node: &Node,
        path: &str,
        global: &Layer,
    ) -> Option<ConnectionConfig> {
        let errors_before = self.errors.len();
        let fields = self.entries(node, path, &[CONNECTION_ONLY, DEFAULTABLE]);
        if fields.is_empty() && !matches!(node.value, Value::Map(_)) {
            return None;
        }
        let mut local = Layer::default();
        let mut own: BTreeMap<&str, (&Node, String)> = BTreeMap::new();
        for (key, value) in fields {
            let fpath = join(path, key);
            if !self.layer_field(&mut local, key, value, &fpath) {
                own.insert(key, (value, fpath));
            }
        }

        // type
        let kind = match own.get("type") {
            None => {
                self.err(
                    &join(path, "type"),
                    &node.origin,
                    format!("missing `type` (one of: {})", DbType::NAMES.join(", ")),
                );
                None
            }
            Some((n, p)) => self.string(n, p).and_then(|s| {
                let t = DbType::parse(&s);
                if t.is_none() {
                    self.err(
                        p,
                        &n.origin,
                        format!(
                            "unknown type {} (expected one of: {})",
                            quote("type", &s),
                            DbType::NAMES.join(", ")
                        ),
                    );
                }
                t
            }),
        };

        if let Some((n, p)) = own.get("name")
            && let Some(s) = self.string(n, p)
            && s != name
        {
            self.err(
                p,
                &n.origin,
                format!("`name` must match the connection's key `{name}` (or be left out)"),
            );
        }

        // Plain strings.
        let text = |v: &mut Self, key: &str| -> Option<String> {
            own.get(key).and_then(|(n, p)| v.nonempty_string(n, p))
        };
        let dsn = text(self, "dsn");
        let host = text(self, "host");
        let user = text(self, "user");
        let database = text(self, "database");
        let schema = text(self, "schema");
        let filepath = text(self, "filepath");
        let auth_source = text(self, "auth_source");
        let replica_set = text(self, "replica_set");
        let read_preference = text(self, "read_preference");
        let journal_mode = text(self, "journal_mode");
        let synchronous = text(self, "synchronous");
        let ssl_root_cert = text(self, "ssl_root_cert").map(PathBuf::from);
        let ssl_cert = text(self, "ssl_cert").map(PathBuf::from);
        let ssl_key = text(self, "ssl_key").map(PathBuf::from);
        // A password may legitimately be empty; it is never quoted.
        let password = own
            .get("password")
            .and_then(|(n, p)| self.string(n, p))
            .map(SecretString::from);
        let port = own.get("port").and_then(|(n, p)| {
            let i = self.integer(n, p)?;
            match u16::try_from(i) {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    self.err(
                        p,
                        &n.origin,
                        format!("must be a TCP port from 1 to 65535, got {i}"),
                    );
                    None
                }
            }
        });
        let sslmode = own.get("sslmode").and_then(|(n, p)| {
            let s = self.string(n, p)?;
            let m = SslMode::parse(&s);
            if m.is_none() {
                self.err(
                    p,
                    &n.origin,
                    format!(
                        "unknown sslmode {} (expected one of: {})",
                        quote("sslmode", &s),
                        SslMode::NAMES.join(", ")
                    ),
                );
            }
            m
        });
        let busy_timeout = own
            .get("busy_timeout")
            .and_then(|(n, p)| self.required_duration(n, p));
        let foreign_keys = own
            .get("foreign_keys")
            .and_then(|(n, p)| self.boolean(n, p));
        let diesel_conns_own = own.get("diesel_conns").and_then(|(n, p)| {
            self.count(n, p, 0)
                .map(|c| (c, p.clone(), n.origin.clone()))
        });
        let tags = own
            .get("tags")
            .map(|(n, p)| self.tags(n, p))
            .unwrap_or_default();
        if let Some(m) = &read_preference {
            const PREFS: &[&str] = &[
                "primary",
                "primaryPreferred",
                "secondary",
                "secondaryPreferred",
                "nearest",
            ];
            if !PREFS.iter().any(|p| p.eq_ignore_ascii_case(m)) {
                let (n, p) = &own["read_preference"];
                self.err(
                    p,
                    &n.origin,
                    format!(
                        "unknown read_preference `{m}` (expected one of: {})",
                        PREFS.join(", ")
                    ),
                );
            }
        }

        let kind = kind?;

        // Fields the engine cannot use are errors, not silently dropped.
        let not_for = |v: &mut Self, keys: &[&str], why: &str| {
            for key in keys {
                if let Some((n, p)) = own.get(key) {
                    v.err(
                        p,
                        &n.origin,
                        format!(
                            "`{key}` does not apply to {} connections{why}",
                            kind.as_str()
                        ),
                    );
                }
            }
        };
        const SQLITE_ONLY: &[&str] = &[
            "filepath",
            "busy_timeout",
            "journal_mode",
            "synchronous",
            "foreign_keys",
        ];
        const MONGO_ONLY: &[&str] = &["auth_source", "replica_set", "read_preference"];
        const NETWORK: &[&str] = &[
            "dsn",
            "host",
            "port",
            "user",
            "password",
            "database",
            "sslmode",
            "ssl_root_cert",
            "ssl_cert",
            "ssl_key",
        ];
        match kind {
            DbType::Sqlite => {
                not_for(self, NETWORK, " (SQLite is a file: set `filepath`)");
                not_for(self, MONGO_ONLY, "");
                not_for(self, &["schema"], "");
            }
            DbType::Postgres => {
                not_for(self, SQLITE_ONLY, "");
                not_for(self, MONGO_ONLY, "");
            }
            DbType::MsSql => {
                not_for(self, SQLITE_ONLY, "");
                not_for(self, MONGO_ONLY, "");
                not_for(
                    self,
                    &["schema"],
                    " (SQL Server gives each user a default schema: \
                     ALTER USER ... WITH DEFAULT_SCHEMA, or qualify table names)",
                );
            }
            DbType::MySql => {
                not_for(self, SQLITE_ONLY, "");
                not_for(self, MONGO_ONLY, "");
                not_for(
                    self,
                    &["schema"],
                    " (a MySQL schema is a database: set `database`)",
                );
            }
            DbType::MongoDb => {
                not_for(self, SQLITE_ONLY, "");
                not_for(self, &["schema"], "");
            }
        }

        // Merge: the connection's own value, else the top level's, else the default.
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                local
                    .$f
                    .as_ref()
                    .or(global.$f.as_ref())
                    .map(|s| s.value.clone())
                    .unwrap_or($default)
            };
        }
        let max_open_src = local.max_open.clone().or(global.max_open.clone());
        let max_open = max_open_src
            .as_ref()
            .map_or(defaults::MAX_OPEN, |s| s.value);
        let max_idle_src = local.max_idle.clone().or(global.max_idle.clone());
        let max_idle = max_idle_src
            .as_ref()
            .map_or(defaults::MAX_IDLE.min(max_open), |s| s.value);
        let min_idle_src = local.min_idle.clone().or(global.min_idle.clone());
        let min_idle = min_idle_src.as_ref().map_or(0, |s| s.value);
        if let Some(s) = &max_idle_src
            && s.value > max_open
        {
            self.err(
                &s.path,
                &s.origin,
                format!(
                    "max_idle_conns ({}) must not exceed max_open_conns ({max_open}){}",
                    s.value,
                    inherited(&s.path, path)
                ),
            );
        }
        if let Some(s) = &min_idle_src
            && s.value > max_idle
        {
            self.err(
                &s.path,
                &s.origin,
                format!(
                    "min_idle_conns ({}) must not exceed max_idle_conns ({max_idle}){}",
                    s.value,
                    inherited(&s.path, path)
                ),
            );
        }
        let lifetime_src = local.lifetime.clone().or(global.lifetime.clone());
        let idle_src = local.idle_time.clone().or(global.idle_time.clone());
        let lifetime = lifetime_src
            .as_ref()
            .map_or(Some(defaults::LIFETIME), |s| s.value);
        let idle_time = idle_src
            .as_ref()
            .map_or(Some(defaults::IDLE_TIME), |s| s.value);
        if let (Some(l), Some(i)) = (lifetime, idle_time)
            && l < i
        {
            let (p, o) = lifetime_src
                .as_ref()
                .map(|s| (s.path.clone(), s.origin.clone()))
                .or_else(|| {
                    idle_src
                        .as_ref()
                        .map(|s| (s.path.clone(), s.origin.clone()))
                })
                .unwrap_or_else(|| (join(path, "conn_max_lifetime"), Origin::Unknown));
            self.err(
                &p,
                &o,
                format!(
                    "conn_max_lifetime ({}) must not be shorter than conn_max_idle_time ({}){}",
                    humantime::format_duration(l),
                    humantime::format_duration(i),
                    inherited(&p, path)
                ),
            );
        }
        let retry_delay = pick!(retry_delay, defaults::RETRY_DELAY);
        let retry_max_src = local
            .retry_max_delay
            .clone()
            .or(global.retry_max_delay.clone());
        let retry_max_delay = retry_max_src
            .as_ref()
            .map_or(defaults::RETRY_MAX_DELAY, |s| s.value);
        if retry_delay > retry_max_delay {
            let (p, o) = retry_max_src
                .map(|s| (s.path, s.origin))
                .unwrap_or_else(|| (join(path, "retry_max_delay"), Origin::Unknown));
            self.err(
                &p,
                &o,
                format!(
                    "retry_max_delay ({}) must not be shorter than retry_delay ({}){}",
                    humantime::format_duration(retry_max_delay),
                    humantime::format_duration(retry_delay),
                    inherited(&p, path)
                ),
            );
        }

        let query_timeout_src = local.query_timeout.clone().or(global.query_timeout.clone());
        let query_timeout = query_timeout_src.as_ref().and_then(|s| s.value);
        let app_src = local
            .application_name
            .clone()
            .or(global.application_name.clone());

        // Session settings some engines cannot honour.
        let session_unsupported = |v: &mut Self, src: &Option<Src<_>>, field: &str, why: &str| {
            if let Some(s) = src {
                let s: &Src<_> = s;
                if s.path.starts_with(path) {
                    v.err(
                        &s.path,
                        &s.origin,
                        format!(
                            "`{field}` is not supported for {} connections: {why}",
                            kind.as_str()
                        ),
                    );
                } else {
                    v.warn(
                        path,
                        format!(
                            "the top-level `{field}` is not applied to this {} connection: {why}",
                            kind.as_str()
                        ),
                    );
                }
            }
        };
        let application_name = app_src.as_ref().map(|s| s.value.clone());
        match kind {
            DbType::Sqlite => {
                session_unsupported(
                    self,
                    &query_timeout_src
                        .clone()
                        .filter(|s| s.value.is_some())
                        .map(|s| Src {
                            value: (),
                            path: s.path,
                            origin: s.origin,
                        }),
                    "query_timeout",
                    "SQLite has no statement timeout (busy_timeout bounds lock waits)",
                );
                session_unsupported(
                    self,
                    &app_src.clone().map(|s| Src {
                        value: (),
                        path: s.path,
                        origin: s.origin,
                    }),
                    "application_name",
                    "SQLite has no server to report it to",
                );
            }
            DbType::MySql => {
                session_unsupported(
                    self,
                    &app_src.clone().map(|s| Src {
                        value: (),
                        path: s.path,
                        origin: s.origin,
                    }),
                    "application_name",
                    "sqlx's MySQL driver sends no connection attributes (filter by `user` instead)",
                );
            }
            DbType::MongoDb => {
                // The driver has no equivalent: say so rather than drop the value.
                let unit = |src: Option<Src<Option<Duration>>>| {
                    src.map(|s| Src {
                        value: (),
                        path: s.path,
                        origin: s.origin,
                    })
                };
                let unit_u32 = |src: Option<Src<u32>>| {
                    src.map(|s| Src {
                        value: (),
                        path: s.path,
                        origin: s.origin,
                    })
                };
                session_unsupported(
                    self,
                    &unit(lifetime_src.clone()),
                    "conn_max_lifetime",
                    "the MongoDB driver has no connection lifetime (it closes connections after \
                     conn_max_idle_time idle, after errors and when its pool is cleared)",
                );
                session_unsupported(
                    self,
                    &unit_u32(max_idle_src.clone()),
                    "max_idle_conns",
                    "the MongoDB driver keeps no cap on idle connections (min_idle_conns sets \
                     its minPoolSize, conn_max_idle_time closes idle ones)",
                );
                session_unsupported(
                    self,
                    &unit(
                        local
                            .ping_idle_after
                            .clone()
                            .or(global.ping_idle_after.clone()),
                    ),
                    "ping_idle_after",
                    "the MongoDB driver checks its servers with its own heartbeats",
                );
                session_unsupported(
                    self,
                    &unit(query_timeout_src.clone().filter(|s| s.value.is_some())),
                    "query_timeout",
                    "set a per-operation max_time on MongoDB operations instead",
                );
            }
            _ => {}
        }
        if let (Some(SslMode::Strict), false) = (sslmode, kind == DbType::MsSql)
            && let Some((n, p)) = own.get("sslmode")
        {
            self.err(
                p,
                &n.origin,
                format!(
                    "sslmode `strict` (TDS 8.0) applies to mssql connections only, not {}",
                    kind.as_str()
                ),
            );
        }

        // Endpoint.
        let mut tls = TlsSettings::default();
        tls.mode = sslmode.unwrap_or_default();
        tls.root_cert = ssl_root_cert;
        tls.client_cert = ssl_cert;
        tls.client_key = ssl_key;
        let endpoint = match kind {
            DbType::Sqlite => {
                let target = match filepath.as_deref() {
                    None => {
                        if !own.contains_key("filepath") {
                            self.err(
                                &join(path, "filepath"),
                                &node.origin,
                                "missing `filepath` for a sqlite connection (a file path, or `:memory:`)",
                            );
                        }
                        None
                    }
                    Some(":memory:") => Some(SqliteTarget::Memory {
                        name: name.to_owned(),
                    }),
                    Some(p) => Some(SqliteTarget::File(PathBuf::from(p))),
                };
                target.map(|target| {
                    let mut s = SqliteSettings::new(target);
                    if let Some(b) = busy_timeout {
                        s.busy_timeout = b;
                    }
                    if let Some(f) = foreign_keys {
                        s.foreign_keys = f;
                    }
                    s.journal_mode = journal_mode;
                    s.synchronous = synchronous;
                    Endpoint::Sqlite(s)
                })
            }
            _ => {
                if dsn.is_none() {
                    for (key, value) in [("host", &host), ("database", &database)] {
                        if value.is_none() && !own.contains_key(key) {
                            self.err(
                                &join(path, key),
                                &node.origin,
                                format!("missing `{key}` (set `{key}`, or give a complete `dsn`)"),
                            );
                        }
                    }
                } else {
                    let overridden: Vec<&str> =
                        ["host", "port", "user", "password", "database", "sslmode"]
                            .into_iter()
                            .filter(|k| own.contains_key(k))
                            .collect();
                    if !overridden.is_empty() {
                        self.warn(
                            &join(path, "dsn"),
                            format!(
                                "`dsn` is set, so {} {} ignored",
                                overridden.join(", "),
                                if overridden.len() == 1 { "is" } else { "are" }
                            ),
                        );
                    }
                }
                let mut s = ServerSettings::default();
                s.dsn = dsn.map(SecretString::from);
                s.host = host;
                s.port = port;
                s.user = user;
                s.password = password;
                s.database = database;
                s.tls = tls;
                s.application_name = if matches!(kind, DbType::MySql) {
                    None
                } else {
                    application_name.clone()
                };
                s.schema = schema;
                s.query_timeout = query_timeout;
                self.check_dsn(kind, &s, own.get("dsn").map(|(n, p)| (*n, p.as_str())));
                Some(Endpoint::Server(s))
            }
        };

        if self.errors.len() > errors_before {
            return None;
        }
        let endpoint = endpoint?;
        // The diesel view's part of the budget (docs/views.md).
        let default_orm_src = local.default_orm.clone().or(global.default_orm.clone());
        let default_orm = default_orm_src
            .as_ref()
            .map_or(DefaultOrm::Sqlx, |s| s.value);
        let sql = matches!(kind, DbType::Postgres | DbType::MySql | DbType::Sqlite);
        if !sql {
            not_for(
                self,
                &["diesel_conns"],
                " (the diesel view serves postgres, mysql and sqlite)",
            );
            if let Some(s) = &default_orm_src
                && s.value != DefaultOrm::Sqlx
            {
                if s.path.starts_with(path) {
                    self.err(
                        &s.path,
                        &s.origin,
                        format!(
                            "default_orm must be `sqlx` (or left out) on {} connections: \
                             SeaORM and diesel serve postgres, mysql and sqlite",
                            kind.as_str()
                        ),
                    );
                } else {
                    self.warn(
                        path,
                        format!(
                            "the top-level `default_orm` is not applied to this {} connection",
                            kind.as_str()
                        ),
                    );
                }
            }
        }
        let diesel_conns = match &diesel_conns_own {
            _ if !sql => 0,
            Some((c, p, o)) => {
                let c = *c;
                if c >= max_open {
                    self.err(
                        p,
                        o,
                        format!(
                            "diesel_conns ({c}) must be less than max_open_conns ({max_open}): \
                             the sqlx pool (sqlx and SeaORM views) keeps at least one"
                        ),
                    );
                } else if c == 0 && default_orm == DefaultOrm::Diesel {
                    self.err(
                        p,
                        o,
                        "diesel_conns must be at least 1 with default_orm: diesel".to_owned(),
                    );
                }
                c
            }
            None if default_orm == DefaultOrm::Diesel => {
                if max_open < 2 {
                    let (p, o) = max_open_src
                        .as_ref()
                        .map(|s| (s.path.clone(), s.origin.clone()))
                        .unwrap_or_else(|| (join(path, "max_open_conns"), Origin::Unknown));
                    self.err(
                        &p,
                        &o,
                        format!(
                            "max_open_conns must be at least 2 with default_orm: diesel (the \
                             diesel view gets all but one; the sqlx pool keeps one){}",
                            inherited(&p, path)
                        ),
                    );
                }
                max_open.saturating_sub(1)
            }
            None => 0,
        };

        let mut pool = PoolSettings::with_max_open(max_open);
        pool.max_idle = max_idle;
        pool.min_idle = min_idle;
        pool.max_lifetime = lifetime;
        pool.max_idle_time = idle_time;
        pool.acquire_timeout = pick!(acquire_timeout, defaults::ACQUIRE_TIMEOUT);
        pool.connect_timeout = pick!(connect_timeout, defaults::CONNECT_TIMEOUT);
        pool.ping_idle_after = pick!(ping_idle_after, Some(defaults::PING_IDLE_AFTER));

        Some(ConnectionConfig {
            name: name.to_owned(),
            kind,
            endpoint,
            pool,
            retry: RetrySettings {
                attempts: pick!(retry_attempts, defaults::RETRY_ATTEMPTS),
                delay: retry_delay,
                max_delay: retry_max_delay,
            },
            health_check_interval: pick!(health_interval, defaults::HEALTH_INTERVAL),
            health_check_timeout: pick!(health_timeout, defaults::HEALTH_TIMEOUT),
            failure_threshold: pick!(failure_threshold, defaults::FAILURE_THRESHOLD),
            enable_auto_reconnect: pick!(auto_reconnect, true),
            on_unavailable: pick!(on_unavailable, OnUnavailable::Wait),
            drain_timeout: pick!(drain_timeout, defaults::DRAIN_TIMEOUT),
            startup: pick!(startup, Startup::Strict),
            close_timeout: pick!(close_timeout, defaults::CLOSE_TIMEOUT),
            default_orm: if sql { default_orm } else { DefaultOrm::Sqlx },
            diesel_conns,
            enable_tracing: pick!(tracing, false),
            enable_metrics: pick!(metrics, true),
            enable_logging: pick!(logging, true),
            application_name,
            mongo: {
                let mut m = MongoSettings::default();
                m.auth_source = auth_source;
                m.replica_set = replica_set;
                m.read_preference = read_preference;
                m
            },
            tags,
        })
    }

    fn tags(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
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
            _ => self.err(
                path,
                &node.origin,
                format!(
                    "expected a mapping of tag names to strings, found {}",
                    node.kind_name()
                ),
            ),
        }
        out
    }

    /// Asks the engine's provider whether the DSN parses (only for engines compiled in).
    #[allow(unused_variables)]
    fn check_dsn(&mut self, kind: DbType, s: &ServerSettings, dsn: Option<(&Node, &str)>) {
        let Some((node, path)) = dsn else { return };
        let result: Result<(), dbmanager_providers::ProviderError> = match kind {
            #[cfg(feature = "postgres")]
            DbType::Postgres => dbmanager_providers::postgres::connect_options(s).map(drop),
            #[cfg(feature = "mysql")]
            DbType::MySql => dbmanager_providers::mysql::connect_options(s).map(drop),
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.err(path, &node.origin, e.to_string());
        }
    }
}

fn inherited(value_path: &str, conn_path: &str) -> String {
    if value_path.starts_with(conn_path) {
        String::new()
    } else {
        format!(" (the top-level value applies to `{conn_path}`)")
    }
}

/// Built-in defaults (documented in docs/configuration.md).
pub(crate) mod defaults {
    use std::time::Duration;
    pub(crate) const MAX_OPEN: u32 = 25;
    pub(crate) const MAX_IDLE: u32 = 5;
    pub(crate) const LIFETIME: Duration = Duration::from_secs(30 * 60);
    pub(crate) const IDLE_TIME: Duration = Duration::from_secs(5 * 60);
    pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
    pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub(crate) const PING_IDLE_AFTER: Duration = Duration::from_secs(30);
    pub(crate) const RETRY_ATTEMPTS: u32 = 3;
    pub(crate) const RETRY_DELAY: Duration = Duration::from_secs(1);
    pub(crate) const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);
    pub(crate) const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
    pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
    pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);
    pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    pub(crate) const FAILURE_THRESHOLD: u32 = 1;
}
