//! Turns the YAML tree into typed settings, collecting every error with its YAML path.
//!
//! What each field is, where it may sit and its default come from [`super::fields`];
//! what an engine accepts, warns about or rejects comes from its provider's
//! [`Rules`](dbmanager_providers::Rules). This file only applies them.

use super::error::{ConfigError, ConfigWarning, Origin};
use super::fields::{self, FromVal, Key, Scope, Val, key};
use super::tree::{Node, Value};
use super::value::{Src, join, quote, suggestion};
use super::{Config, ConnectionConfig, DbType, Endpoint, MongoSettings};
use crate::registry::Registry;
use dbmanager_providers::settings::{ServerSettings, SslMode, TlsSettings};
use dbmanager_providers::{EndpointKind, Provider, SecretString};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[path = "keyed.rs"]
mod keyed;
#[path = "replicas.rs"]
mod replicas;
pub use keyed::KeyedConfig;
pub use replicas::ReplicaConfig;

/// One layer of defaultable settings (the top level, or one connection), by field name.
pub(crate) type Layer = BTreeMap<&'static str, Src<Val>>;

pub(crate) struct Validator<'r> {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigWarning>,
    registry: &'r Registry,
}

/// A connection's own value of a shared setting, else the top level's.
pub(crate) struct Merged<'a> {
    local: &'a Layer,
    global: &'a Layer,
}

impl Merged<'_> {
    /// The value set for the field called `name` (a name from a provider's rules).
    pub(crate) fn src(&self, name: &str) -> Option<&Src<Val>> {
        self.local.get(name).or_else(|| self.global.get(name))
    }

    /// The value set for `key`, if one is.
    pub(crate) fn set<T>(&self, key: Key<T>) -> Option<&Src<Val>> {
        self.src(key.name)
    }

    /// `key`'s value: set, else its default.
    pub(crate) fn get<T: FromVal + std::default::Default>(&self, key: Key<T>) -> T {
        key.read(self.set(key).map(|s| &s.value))
    }

    /// Where a value that breaks a rule came from (the connection's path when defaulted).
    pub(crate) fn at<T>(&self, key: Key<T>, conn_path: &str) -> (String, Origin) {
        self.at_name(key.name, conn_path)
    }

    /// [`at`](Self::at) by the field's name (a name from a provider's rules).
    pub(crate) fn at_name(&self, name: &str, conn_path: &str) -> (String, Origin) {
        self.src(name)
            .map(|s| (s.path.clone(), s.origin.clone()))
            .unwrap_or_else(|| (join(conn_path, name), Origin::Unknown))
    }
}

pub(crate) fn inherited(value_path: &str, conn_path: &str) -> String {
    if value_path.starts_with(conn_path) {
        String::new()
    } else {
        format!(" (the top-level value applies to `{conn_path}`)")
    }
}

impl<'r> Validator<'r> {
    /// `pgbouncer: true` with a session setting PgBouncer cannot carry.
    fn bouncer_conflicts(&mut self, s: &ServerSettings, m: &Merged<'_>, path: &str) {
        let set = [
            (key::schema.name, "search_path", s.schema.is_some()),
            (
                key::query_timeout.name,
                "statement_timeout",
                s.query_timeout.is_some(),
            ),
        ];
        for (field, what, _) in set.into_iter().filter(|(_, _, on)| *on) {
            let (at, origin) = m.at_name(field, path);
            self.err(
                &at,
                &origin,
                format!(
                    "`{field}` cannot be combined with `pgbouncer: true`{}: PgBouncer refuses \
                     session options at login and moves transactions between server \
                     connections; set it on the database role instead (ALTER ROLE ... SET \
                     {what} = ...)",
                    inherited(&at, path)
                ),
            );
        }
    }

    pub(crate) fn new(registry: &'r Registry) -> Self {
        Validator {
            errors: Vec::new(),
            warnings: Vec::new(),
            registry,
        }
    }

    /// The entries of a mapping, reporting unknown keys (with the nearest known one).
    fn entries<'a>(
        &mut self,
        node: &'a Node,
        path: &str,
        allowed: &[&str],
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
            if allowed.contains(&k.as_str()) {
                out.push((k.as_str(), v));
                continue;
            }
            let hint = suggestion(k, allowed)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            self.err(
                &join(path, k),
                &v.origin,
                format!("unknown field `{k}`{hint}"),
            );
        }
        out
    }

    /// Reads a shared setting into `layer`.
    fn layer_field(&mut self, layer: &mut Layer, key: &str, node: &Node, path: &str) {
        if let Some(field) = fields::field(key)
            && let Some(v) = self.read(field, node, path)
        {
            layer.insert(
                field.name,
                Src {
                    value: v,
                    path: path.to_owned(),
                    origin: node.origin.clone(),
                },
            );
        }
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
        let fields = self.entries(section, prefix, &fields::names_in(true));

        let mut global = Layer::new();
        let mut default_connection: Option<Src<String>> = None;
        let mut monitor_interval = None;
        let mut connections_node: Option<(&Node, String)> = None;
        let mut keyed_node: Option<(&Node, String)> = None;
        for (key, node) in fields {
            let path = join(prefix, key);
            match key {
                "default_connection" => {
                    default_connection = Self::src(self.nonempty_string(node, &path), &path, node);
                }
                "connections" => connections_node = Some((node, path)),
                "keyed" => keyed_node = Some((node, path)),
                "monitor_interval" => {
                    if let Some(field) = fields::field(key)
                        && let Some(Val::OptDuration(d)) = self.read(field, node, &path)
                    {
                        monitor_interval = d;
                    }
                }
                _ => self.layer_field(&mut global, key, node, &path),
            }
        }

        let mut connections = Vec::new();
        match connections_node {
            None => self.err(
                &join(prefix, "connections"),
                &section.origin,
                "no connections: add a `connections` mapping with at least one named connection",
            ),
            Some((node, ref path)) => match &node.value {
                Value::Map(entries) if !entries.is_empty() => {
                    for (name, conn) in entries {
                        let cpath = join(path, name);
                        if let Err(why) = check_name(name) {
                            self.err(&cpath, &conn.origin, why);
                            continue;
                        }
                        if let Some(c) = self.connection(name, conn, &cpath, &global) {
                            connections.push(c);
                        }
                    }
                }
                Value::Map(_) | Value::Null => self.err(
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

        let keyed = match keyed_node {
            Some((node, path)) => self.keyed(node, &path, section, &global),
            None => Vec::new(),
        };

        Some(Config {
            default_connection,
            monitor_interval,
            connections,
            keyed,
            warnings: Vec::new(),
        })
    }

    /// The connection's engine and provider, from `type`.
    fn engine(
        &mut self,
        own: &BTreeMap<&str, (&Node, String)>,
        node: &Node,
        path: &str,
    ) -> Option<(DbType, Option<Arc<dyn Provider>>)> {
        let Some((n, p)) = own.get("type") else {
            self.err(
                &join(path, "type"),
                &node.origin,
                format!(
                    "missing `type` (one of: {})",
                    self.registry.names().join(", ")
                ),
            );
            return None;
        };
        let s = self.string(n, p)?;
        if let Some(provider) = self.registry.find(&s) {
            return Some((provider.kind(), Some(Arc::clone(provider))));
        }
        if let Some(kind) = DbType::parse(&s) {
            // A built-in engine that was not compiled in.
            return Some((kind, None));
        }
        self.err(
            p,
            &n.origin,
            format!(
                "unknown type {} (expected one of: {})",
                quote("type", &s),
                self.registry.names().join(", ")
            ),
        );
        None
    }

    fn connection(
        &mut self,
        name: &str,
        node: &Node,
        path: &str,
        global: &Layer,
    ) -> Option<ConnectionConfig> {
        let errors_before = self.errors.len();
        let entries = self.entries(node, path, &fields::names_in(false));
        if entries.is_empty() && !matches!(node.value, Value::Map(_)) {
            return None;
        }
        // Every field's value, read as its type: the connection's own layer holds its
        // connection-only fields too (they have no top-level value to inherit).
        let mut local = Layer::new();
        let mut own: BTreeMap<&str, (&Node, String)> = BTreeMap::new();
        for (key, value) in entries {
            let fpath = join(path, key);
            self.layer_field(&mut local, key, value, &fpath);
            if fields::field(key).is_some_and(|f| f.scope != Scope::Both) {
                own.insert(key, (value, fpath));
            }
        }
        let engine = self.engine(&own, node, path);
        let m = Merged {
            local: &local,
            global,
        };
        if let Some(s) = m.get(key::name)
            && s != name
        {
            let (p, o) = m.at(key::name, path);
            self.err(
                &p,
                &o,
                format!("`name` must match the connection's key `{name}` (or be left out)"),
            );
        }
        let sslmode: Option<SslMode> = m.get(key::sslmode);

        let (kind, provider) = engine?;
        let rules = provider
            .as_ref()
            .map_or_else(|| kind.rules(), |p| p.rules());
        self.applicability(kind, &rules, &own, &m, path);
        if let (Some(SslMode::Strict), false) = (sslmode, rules.strict_tls) {
            let (p, o) = m.at(key::sslmode, path);
            self.err(
                &p,
                &o,
                format!("sslmode `strict` (TDS 8.0) applies to mssql connections only, not {kind}"),
            );
        }
        let pool = self.pool(&m, path, rules.unsupported("max_idle_conns").is_none());
        let retry = self.retry(&m, path);
        let application_name = m.get(key::application_name);
        let endpoint = match rules.endpoint {
            EndpointKind::File => self.file_endpoint(&m, &own, node, path, name),
            _ => {
                let mut tls = TlsSettings::default();
                tls.mode = sslmode.unwrap_or_default();
                tls.root_cert = m.get(key::ssl_root_cert).map(PathBuf::from);
                tls.client_cert = m.get(key::ssl_cert).map(PathBuf::from);
                tls.client_key = m.get(key::ssl_key).map(PathBuf::from);
                let mut s = ServerSettings::default();
                s.dsn = m.get(key::dsn).map(SecretString::from);
                s.host = m.get(key::host);
                s.port = m.get(key::port);
                s.user = m.get(key::user);
                // An empty password is no password, as with `mysql --password=`: a
                // driver given "" sends it, and a user without one is refused.
                s.password = m
                    .get(key::password)
                    .filter(|p| !p.is_empty())
                    .map(SecretString::from);
                s.password_file = m.get(key::password_file).map(PathBuf::from);
                if s.password_file.is_some() && s.password.is_some() {
                    let (p, o) = m.at(key::password_file, path);
                    self.err(&p, &o, "set `password` or `password_file`, not both");
                }
                s.database = m.get(key::database);
                s.tls = tls;
                s.schema = m.get(key::schema);
                if rules.extra.contains(&key::hosts.name) {
                    s.hosts = m.get(key::hosts);
                    s.target_session_attrs = m.get(key::target_session_attrs);
                    s.load_balance_hosts = m.get(key::load_balance_hosts);
                }
                s.pgbouncer = rules.extra.contains(&key::pgbouncer.name) && m.get(key::pgbouncer);
                if rules.unsupported(key::application_name.name).is_none() {
                    s.application_name = application_name.clone();
                }
                if rules.unsupported(key::query_timeout.name).is_none() {
                    s.query_timeout = m.get(key::query_timeout);
                }
                if s.pgbouncer {
                    self.bouncer_conflicts(&s, &m, path);
                }
                self.server_endpoint(&rules, &own, node, path);
                Some(Endpoint::Server(s))
            }
        };
        if let (Some(e), Some(p)) = (&endpoint, &provider)
            && let Err(err) = p.check(e)
        {
            let (at, origin) = own
                .get("dsn")
                .map(|(n, p)| (p.clone(), n.origin.clone()))
                .unwrap_or_else(|| (path.to_owned(), node.origin.clone()));
            self.err(&at, &origin, err.to_string());
        }
        let (default_orm, diesel_conns) = self.views(kind, &rules, &m, path, pool.max_open);
        // The diesel view's MySQL connector takes one server: say so here rather than at
        // the first diesel checkout.
        if kind == DbType::MySql
            && diesel_conns > 0
            && endpoint
                .as_ref()
                .and_then(Endpoint::server)
                .is_some_and(|s| !s.hosts.is_empty() && s.dsn.is_none())
        {
            let (at, origin) = m.at(key::hosts, path);
            self.err(
                &at,
                &origin,
                "the diesel view does not follow several MySQL servers yet: drop `diesel_conns` \
                 (and `default_orm: diesel`), or give one `host`",
            );
        }

        if self.errors.len() > errors_before {
            return None;
        }
        let max_replica_lag = m.get(key::max_replica_lag);
        let mut replicas = if rules.extra.contains(&key::replicas.name) {
            self.replicas(name, node, path, global)
        } else {
            Vec::new()
        };
        for r in &mut replicas {
            r.config.max_replica_lag = max_replica_lag;
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(ConnectionConfig {
            replicas,
            load_balancing: m.get(key::load_balancing),
            fallback: m.get(key::fallback),
            max_replica_lag,
            name: name.to_owned(),
            kind,
            endpoint: endpoint?,
            pool,
            retry,
            health_check_interval: m.get(key::health_check_interval),
            health_check_timeout: m.get(key::health_check_timeout),
            failure_threshold: m.get(key::failure_threshold),
            enable_auto_reconnect: m.get(key::enable_auto_reconnect),
            on_unavailable: m.get(key::on_unavailable),
            drain_timeout: m.get(key::drain_timeout),
            startup: m.get(key::startup),
            close_timeout: m.get(key::close_timeout),
            leak_detection_threshold: m.get(key::leak_detection_threshold),
            default_orm,
            diesel_conns,
            enable_tracing: m.get(key::enable_tracing),
            enable_metrics: m.get(key::enable_metrics),
            enable_logging: m.get(key::enable_logging),
            required: m.get(key::required),
            application_name,
            mongo: {
                let mut mongo = MongoSettings::default();
                mongo.auth_source = m.get(key::auth_source);
                mongo.replica_set = m.get(key::replica_set);
                mongo.read_preference = m.get(key::read_preference);
                mongo
            },
            tags: m.get(key::tags),
            options: m.get(key::options),
            provider,
        })
    }
}

/// The longest connection name.
const MAX_NAME: usize = 64;

/// A connection name: letters, digits, `_`, `-` and `.`, starting with a letter or a digit,
/// at most [`MAX_NAME`] characters. It appears in metrics labels, log fields, environment
/// override names and the SQLite in-memory database's URI, so nothing there needs escaping.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() {
        return Err("a connection name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!(
            "a connection name has at most {MAX_NAME} characters"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(allowed) {
        return Err(
            "invalid connection name: use letters, digits, `_`, `-` and `.`, starting with a \
             letter or a digit"
                .into(),
        );
    }
    Ok(())
}
