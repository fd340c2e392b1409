//! Configuration: the YAML format, its validation, and the typed settings it produces.
//!
//! The file uses the field names of ResolveSpec's Go `dbmanager`, so its users can bring
//! their files, plus what production services need and it lacks
//! (`acquire_timeout`, `min_idle_conns`, `startup`, `application_name`, TLS files...).
//! Every field is described in `docs/configuration.md`.
//!
//! Loading happens once, in four steps:
//! 1. the YAML is parsed into a tree that remembers each value's line and column;
//! 2. `DBMANAGER__...` environment variables override fields in that tree
//!    (`DBMANAGER__CONNECTIONS__PRIMARY__PASSWORD=...`);
//! 3. `${VAR}` and `${VAR:-default}` are expanded in every string;
//! 4. the tree is validated into [`Config`]: every problem is collected (not just the
//!    first), each naming its YAML path and position.
//!
//! ```
//! use dbmanager::config::Config;
//!
//! let config = Config::from_yaml_str(r#"
//! connections:
//!   cache:
//!     type: sqlite
//!     filepath: ":memory:"
//! "#).unwrap();
//! assert_eq!(config.default_connection.as_deref(), Some("cache"));
//!
//! let err = Config::from_yaml_str(r#"
//! max_open_conns: 10
//! connections:
//!   cache:
//!     type: sqlite
//!     filepath: ":memory:"
//!     max_idle_conns: 20
//! "#).unwrap_err();
//! assert!(err.has_path("connections.cache.max_idle_conns"));
//! ```

mod checks;
mod error;
mod fields;
mod read;
mod tree;
mod validate;
mod value;

pub(crate) use fields::changed;
pub use fields::reference;

pub use dbmanager_providers::DbType;
pub use dbmanager_providers::settings::{
    Endpoint, LoadBalanceHosts, MongoSettings, PoolSettings, ServerSettings, SqliteSettings,
    SqliteTarget, SslMode, TargetSessionAttrs, TlsSettings,
};
pub use error::{ConfigError, ConfigErrors, ConfigWarning, Origin};
pub use validate::{KeyedConfig, ReplicaConfig};

use crate::registry::Registry;
use dbmanager_providers::{Provider, Rules};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What `Manager::connect` does with a connection whose server is unreachable (`startup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Startup {
    /// Connect at once; `connect()` fails naming the connection if it cannot.
    #[default]
    Strict,
    /// Build the pool without connecting; the supervisor connects in the background with
    /// the reconnect backoff, and `connect()` does not wait for it.
    Lazy,
}

impl Startup {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Startup::Strict => "strict",
            Startup::Lazy => "lazy",
        }
    }
}

/// What an acquire does while the connection is down (`on_unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnUnavailable {
    /// Wait for the supervisor to bring the connection back, up to `acquire_timeout`,
    /// then fail with `Error::Unavailable`.
    #[default]
    Wait,
    /// Fail at once with `Error::Unavailable` (an open circuit); the supervisor's probe,
    /// one at a time, closes it again.
    FailFast,
}

impl OnUnavailable {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::Wait => "wait",
            OnUnavailable::FailFast => "fail_fast",
        }
    }
}

/// How `Connection::reader()` picks among healthy replicas (`load_balancing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadBalancing {
    /// In turn, each replica as often as its weight.
    #[default]
    RoundRobin,
    /// The replica with the fewest connections in use per unit of weight.
    LeastConnections,
    /// At random, in proportion to the weights.
    Random,
}

impl LoadBalancing {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalancing::RoundRobin => "round_robin",
            LoadBalancing::LeastConnections => "least_connections",
            LoadBalancing::Random => "random",
        }
    }
}

/// What `Connection::reader()` returns when no replica is healthy and caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// The connection itself (the primary).
    #[default]
    Primary,
    /// `Error::NoReplica`.
    Error,
}

impl Fallback {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Primary => "primary",
            Fallback::Error => "error",
        }
    }
}

/// Which view of a SQL connection is created eagerly (`default_orm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DefaultOrm {
    /// The sqlx pool (`sqlx`, alias `native`).
    #[default]
    Sqlx,
    /// SeaORM (`sea_orm`).
    SeaOrm,
    /// diesel-async (`diesel`).
    Diesel,
}

impl DefaultOrm {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultOrm::Sqlx => "sqlx",
            DefaultOrm::SeaOrm => "sea_orm",
            DefaultOrm::Diesel => "diesel",
        }
    }
}

/// The values of each choice setting, for reading them by their canonical spelling.
macro_rules! choice_values {
    ($($t:ident: $($v:ident),+;)*) => {$(
        impl fields::Choice for $t {
            const ALL: &'static [Self] = &[$($t::$v),+];
            fn as_str(self) -> &'static str {
                $t::as_str(self)
            }
        }
    )*};
}

choice_values! {
    Startup: Strict, Lazy;
    OnUnavailable: Wait, FailFast;
    LoadBalancing: RoundRobin, LeastConnections, Random;
    Fallback: Primary, Error;
    DefaultOrm: Sqlx, SeaOrm, Diesel;
}

/// Reconnect backoff (`retry_attempts`, `retry_delay`, `retry_max_delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetrySettings {
    /// Attempts per round.
    pub attempts: u32,
    /// First delay; doubles up to `max_delay`.
    pub delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
}

/// One named connection's typed settings: top-level defaults already merged in.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// The key under `connections`.
    pub name: String,
    /// The engine.
    pub kind: DbType,
    /// Where the database is.
    pub endpoint: Endpoint,
    /// Pool limits and timeouts.
    pub pool: PoolSettings,
    /// Reconnect backoff.
    pub retry: RetrySettings,
    /// Period of the background health check (`health_check_interval`).
    pub health_check_interval: Duration,
    /// Bound on one health check (`health_check_timeout`).
    pub health_check_timeout: Duration,
    /// Consecutive failed health checks that mark the connection unhealthy
    /// (`failure_threshold`).
    pub failure_threshold: u32,
    /// Reconnect automatically after failures (`enable_auto_reconnect`).
    pub enable_auto_reconnect: bool,
    /// What acquires do while the connection is down (`on_unavailable`).
    pub on_unavailable: OnUnavailable,
    /// How long a replaced pool may finish its in-flight work before it is closed
    /// (`drain_timeout`).
    pub drain_timeout: Duration,
    /// Strict or lazy start.
    pub startup: Startup,
    /// How long `close()` waits for in-flight work (`close_timeout`).
    pub close_timeout: Duration,
    /// A checkout held longer than this is reported once (`leak_detection_threshold`).
    pub leak_detection_threshold: Option<Duration>,
    /// The view created eagerly (`default_orm`).
    pub default_orm: DefaultOrm,
    /// How many of `max_open_conns` the diesel view may open (`diesel_conns`); the sqlx
    /// pool, which the sqlx and SeaORM views share, gets the rest. Defaults to 0, or to
    /// all but one with `default_orm: diesel`. Always 0 on MongoDB and SQL Server.
    pub diesel_conns: u32,
    /// Emit OpenTelemetry spans (`enable_tracing`).
    pub enable_tracing: bool,
    /// Export metrics (`enable_metrics`).
    pub enable_metrics: bool,
    /// Log lifecycle events (`enable_logging`).
    pub enable_logging: bool,
    /// The service needs it to be ready (`required`; `/readyz`).
    pub required: bool,
    /// The application name reported to the server, where the engine supports it.
    pub application_name: Option<String>,
    /// MongoDB-only settings.
    pub mongo: MongoSettings,
    /// Free-form labels (`tags`).
    pub tags: BTreeMap<String, String>,
    /// Free-form settings for a service's own provider (`options`). Not for secrets: put
    /// those in `password` or `dsn`, which are redacted everywhere.
    pub options: BTreeMap<String, String>,
    /// Read replicas (`replicas`), each a connection of its own settings.
    pub replicas: Vec<ReplicaConfig>,
    /// How `reader()` picks a replica (`load_balancing`).
    pub load_balancing: LoadBalancing,
    /// What `reader()` does when no replica can serve (`fallback`).
    pub fallback: Fallback,
    /// Replicas further behind are skipped (`max_replica_lag`; on a replica's own
    /// settings, the limit its health checks apply).
    pub max_replica_lag: Option<Duration>,
    /// The provider that opens this connection's pools: the engine's, from the registry
    /// the configuration was loaded with. `None` when the engine was not compiled in
    /// (opening then fails with `Error::NotBuilt`).
    pub provider: Option<Arc<dyn Provider>>,
}

impl ConnectionConfig {
    /// One connection's settings from its YAML section (what would sit under
    /// `connections.<name>`), validated as a file's are, with overrides and `${VAR}` from
    /// the process environment. For [`Manager::add`](crate::Manager::add).
    ///
    /// ```
    /// let c = dbmanager::config::ConnectionConfig::from_yaml("cache", "type: sqlite\nfilepath: ':memory:'\n").unwrap();
    /// assert_eq!(c.name, "cache");
    /// let err = dbmanager::config::ConnectionConfig::from_yaml("cache", "type: sqlite\nmax_open_conns: 0\n").unwrap_err();
    /// assert!(err.to_string().contains("connections.cache.max_open_conns"), "{err}");
    /// ```
    pub fn from_yaml(name: &str, section: &str) -> Result<ConnectionConfig, ConfigErrors> {
        ConfigLoader::new().load_connection(name, section)
    }

    /// The provider's configuration rules (a plain server's when it has none).
    pub fn rules(&self) -> Rules {
        self.provider
            .as_ref()
            .map_or_else(Rules::server, |p| p.rules())
    }
}

/// Every setting, the secrets included (compared, never shown); a provider by the engine
/// and `type` names it serves. A reload leaves a connection with equal settings untouched.
impl PartialEq for ConnectionConfig {
    fn eq(&self, other: &Self) -> bool {
        let served = |p: &Option<Arc<dyn Provider>>| p.as_ref().map(|p| (p.kind(), p.names()));
        // Destructured, so a new field cannot be left out of the comparison.
        let ConnectionConfig {
            name,
            kind,
            endpoint,
            pool,
            retry,
            health_check_interval,
            health_check_timeout,
            failure_threshold,
            enable_auto_reconnect,
            on_unavailable,
            drain_timeout,
            startup,
            close_timeout,
            leak_detection_threshold,
            default_orm,
            diesel_conns,
            enable_tracing,
            enable_metrics,
            enable_logging,
            required,
            application_name,
            mongo,
            tags,
            options,
            replicas,
            load_balancing,
            fallback,
            max_replica_lag,
            provider,
        } = self;
        *name == other.name
            && *kind == other.kind
            && *endpoint == other.endpoint
            && *pool == other.pool
            && *retry == other.retry
            && *health_check_interval == other.health_check_interval
            && *health_check_timeout == other.health_check_timeout
            && *failure_threshold == other.failure_threshold
            && *enable_auto_reconnect == other.enable_auto_reconnect
            && *on_unavailable == other.on_unavailable
            && *drain_timeout == other.drain_timeout
            && *startup == other.startup
            && *close_timeout == other.close_timeout
            && *leak_detection_threshold == other.leak_detection_threshold
            && *default_orm == other.default_orm
            && *diesel_conns == other.diesel_conns
            && *enable_tracing == other.enable_tracing
            && *enable_metrics == other.enable_metrics
            && *enable_logging == other.enable_logging
            && *required == other.required
            && *application_name == other.application_name
            && *mongo == other.mongo
            && *tags == other.tags
            && *options == other.options
            && *replicas == other.replicas
            && *load_balancing == other.load_balancing
            && *fallback == other.fallback
            && *max_replica_lag == other.max_replica_lag
            && served(provider) == served(&other.provider)
    }
}

impl ConnectionConfig {
    /// What a removed connection keeps of its settings: its name, type and scalar
    /// settings. No secret (the endpoint keeps no password or DSN), no tags, options,
    /// replicas or provider.
    pub(crate) fn shell(&self) -> ConnectionConfig {
        let mut shell = self.clone();
        if let Endpoint::Server(server) = &mut shell.endpoint {
            server.password = None;
            server.dsn = None;
        }
        shell.tags = BTreeMap::new();
        shell.options = BTreeMap::new();
        shell.replicas = Vec::new();
        shell.provider = None;
        shell.mongo = MongoSettings::default();
        shell
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The connection `Manager::default()` returns. When the file names none and has a
    /// single connection, that one.
    pub default_connection: Option<String>,
    /// `monitor_interval`: how often every connection's pool statistics are logged
    /// (`None`: never).
    pub monitor_interval: Option<Duration>,
    /// The connections, in file order.
    pub connections: Vec<ConnectionConfig>,
    /// The groups of keyed connections (`keyed:`), created per key on demand.
    pub keyed: Vec<KeyedConfig>,
    /// Valid but suspicious settings (a setting an engine does not apply, a DSN that
    /// overrides other fields...). `Manager::new` logs each one.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Loads a YAML file, with overrides from the process environment.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        ConfigLoader::new().load_file(path)
    }

    /// Loads YAML text, with overrides from the process environment.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigErrors> {
        ConfigLoader::new().load_str(text)
    }

    /// A loader, to choose the environment the overrides and `${VAR}` come from.
    pub fn loader() -> ConfigLoader {
        ConfigLoader::new()
    }

    /// The settings of the connection called `name`.
    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }
}

/// Loads a [`Config`] from YAML with a chosen environment.
///
/// ```
/// use dbmanager::config::Config;
///
/// let config = Config::loader()
///     .env([("DB_FILE", "/tmp/app.db"), ("DBMANAGER__MAX_OPEN_CONNS", "4")])
///     .load_str("connections:\n  cache:\n    type: sqlite\n    filepath: ${DB_FILE}\n")
///     .unwrap();
/// assert_eq!(config.connections[0].pool.max_open, 4);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    env: Option<HashMap<String, String>>,
    registry: Registry,
}

/// Reads a regular file of at most [`tree::MAX_INPUT_BYTES`]. A device (`/dev/zero`), a
/// FIFO or a directory is refused before it is opened (reading one would never end, or
/// block); the read itself is bounded too, whatever the metadata said.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let limit = tree::MAX_INPUT_BYTES;
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a device, a FIFO or a directory): give the path of a YAML file",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(std::io::Error::other(format!(
            "the file is larger than the limit of {limit} bytes"
        )));
    }
    Ok(bytes)
}

impl ConfigLoader {
    /// A loader that reads the process environment.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// Uses exactly these variables instead of the process environment.
    pub fn env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Registers a provider of the application's own, so `type: <its name>` is accepted
    /// (see `examples/custom_provider.rs`).
    pub fn provider(mut self, provider: impl Provider) -> Self {
        self.registry.register(Arc::new(provider));
        self
    }

    /// Uses this registry of providers instead of the built-in one.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Loads a file.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let path = path.as_ref();
        let source_name = path.display().to_string();
        let read = read_bounded(path);
        let bytes = read.map_err(|e| ConfigErrors {
            source_name: source_name.clone(),
            errors: vec![ConfigError::new(
                "",
                Origin::Unknown,
                format!("cannot read the file: {e}"),
            )],
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigErrors {
            source_name: source_name.clone(),
            errors: vec![ConfigError::new(
                "",
                Origin::Unknown,
                format!(
                    "the file is not UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )],
        })?;
        self.load(&text, source_name)
    }

    /// Loads YAML text.
    pub fn load_str(&self, text: &str) -> Result<Config, ConfigErrors> {
        self.load(text, "<string>".to_owned())
    }

    /// Loads one connection's section (the mapping that would sit under
    /// `connections.<name>` in a file), for [`Manager::add`](crate::Manager::add). It is
    /// validated with the file's rules and no top-level defaults; errors name
    /// `connections.<name>.<field>`.
    pub fn load_connection(
        &self,
        name: &str,
        section: &str,
    ) -> Result<ConnectionConfig, ConfigErrors> {
        let source_name = format!("<connection {name}>");
        let fail = |errors| ConfigErrors {
            source_name: source_name.clone(),
            errors,
        };
        let node = tree::parse(section).map_err(|e| fail(vec![e]))?;
        let wrap = |key: &str, node: tree::Node| tree::Node {
            origin: node.origin.clone(),
            value: tree::Value::Map(vec![(key.to_owned(), node)]),
        };
        let root = wrap("connections", wrap(name, node));
        let config = self.load_tree(root, source_name.clone())?;
        config.connections.into_iter().next().ok_or_else(|| {
            fail(vec![ConfigError::new(
                "connections",
                Origin::Unknown,
                "expected one connection's settings",
            )])
        })
    }

    fn load(&self, text: &str, source_name: String) -> Result<Config, ConfigErrors> {
        let root = tree::parse(text).map_err(|e| ConfigErrors {
            source_name: source_name.clone(),
            errors: vec![e],
        })?;
        self.load_tree(root, source_name)
    }

    fn load_tree(&self, mut root: tree::Node, source_name: String) -> Result<Config, ConfigErrors> {
        let env: HashMap<String, String> = match &self.env {
            Some(env) => env.clone(),
            // Non-UTF-8 variables cannot be referenced from YAML; skip them.
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        };
        let fail = |errors| ConfigErrors {
            source_name: source_name.clone(),
            errors,
        };
        let mut errors = Vec::new();
        // Overrides go into the `dbmanager:` section when the file has one.
        let has_section = root.get("dbmanager").is_some();
        if has_section {
            if let tree::Value::Map(entries) = &mut root.value
                && let Some((_, section)) = entries.iter_mut().find(|(k, _)| k == "dbmanager")
            {
                tree::apply_env_overrides(section, &env, &mut errors);
                tree::interpolate(section, "dbmanager", &env, &mut errors);
            }
        } else {
            tree::apply_env_overrides(&mut root, &env, &mut errors);
            tree::interpolate(&mut root, "", &env, &mut errors);
        }
        let mut v = validate::Validator::new(&self.registry);
        v.errors = errors;
        let config = v.config(&root);
        // Defence in depth: a secret typed into the wrong field (say, a password where a
        // number belongs) would otherwise be quoted back. Scrub every message of every
        // password and DSN value in the file.
        let secrets = tree::secret_values(&root);
        let scrub = |text: &mut String| {
            for secret in &secrets {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "<redacted>");
                }
            }
        };
        for e in &mut v.errors {
            scrub(&mut e.message);
        }
        for w in &mut v.warnings {
            scrub(&mut w.message);
        }
        match config {
            Some(mut c) if v.errors.is_empty() => {
                c.warnings = v.warnings;
                Ok(c)
            }
            _ => Err(fail(v.errors)),
        }
    }
}
