//! Typed, validated settings a provider is built from.
//!
//! These carry no defaults of their own and know nothing about where they came from: the
//! `dbmanager` crate fills them from the YAML file (global defaults merged with the
//! connection's overrides) after validating every value.

use secrecy::SecretString;
use std::path::PathBuf;
use std::time::Duration;

/// Pool limits and timeouts shared by every engine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Hard cap on connections this pool opens to the server (`max_open_conns`).
    pub max_open: u32,
    /// Most connections kept idle; a connection released while this many are idle is
    /// closed (`max_idle_conns`).
    pub max_idle: u32,
    /// Connections opened at start and kept open (`min_idle_conns`).
    pub min_idle: u32,
    /// Connections older than this are closed on their next acquire or release
    /// (`conn_max_lifetime`). `None`: no limit.
    pub max_lifetime: Option<Duration>,
    /// How much earlier than `max_lifetime` a connection may be replaced, drawn per
    /// connection, so that connections opened together do not all close together
    /// (`conn_max_lifetime_jitter`). Zero: every connection lives exactly `max_lifetime`.
    pub max_lifetime_jitter: Duration,
    /// Idle connections older than this are closed by the reaper or on acquire
    /// (`conn_max_idle_time`). `None`: no limit.
    pub max_idle_time: Option<Duration>,
    /// How long an acquire waits for a connection before failing (`acquire_timeout`).
    pub acquire_timeout: Duration,
    /// Bound on connection attempts the manager makes itself (`connect_timeout`).
    pub connect_timeout: Duration,
    /// A connection idle for longer than this is pinged before it is handed out
    /// (`ping_idle_after`). `None`: never ping on acquire.
    pub ping_idle_after: Option<Duration>,
}

impl PoolSettings {
    /// Settings with the given cap and the defaults `dbmanager` documents for the rest.
    pub fn with_max_open(max_open: u32) -> Self {
        PoolSettings {
            max_open,
            max_idle: max_open.min(5),
            min_idle: 0,
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            max_lifetime_jitter: Duration::from_secs(3 * 60),
            max_idle_time: Some(Duration::from_secs(5 * 60)),
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            ping_idle_after: Some(Duration::from_secs(30)),
        }
    }
}

impl PoolSettings {
    /// The lifetime of the connection whose draw is `draw` (any `u64`, spread evenly: a
    /// hash of when it was opened, say): `max_lifetime` less a share of
    /// `max_lifetime_jitter`, so between `max_lifetime - max_lifetime_jitter` and
    /// `max_lifetime`. `None`: no limit.
    pub fn lifetime_of(&self, draw: u64) -> Option<Duration> {
        let lifetime = self.max_lifetime?;
        let jitter = self.max_lifetime_jitter.min(lifetime);
        // splitmix64's finaliser: neighbouring draws (connections opened a millisecond
        // apart) land far apart in the window.
        let mut z = draw.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let share = (z >> 11) as f64 / (1u64 << 53) as f64;
        Some(lifetime - jitter.mul_f64(share))
    }
}

/// The password in `password_file` (see [`crate::pool::PasswordFile`]), or an error that
/// names the file and why it cannot be read (never its contents).
pub fn password_from_file(
    path: &std::path::Path,
) -> Result<SecretString, crate::error::ProviderError> {
    crate::pool::read_password_file(path).map_err(|e| crate::error::ProviderError::InvalidSetting {
        field: "password_file",
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

/// Which servers of a multi-host connection a session may use: libpq's
/// `target_session_attrs`, checked on every new connection (PostgreSQL:
/// `pg_is_in_recovery()`, so `read-write` and `primary` mean the same here, as do
/// `read-only` and `standby`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetSessionAttrs {
    /// Any server that accepts the connection (no check).
    #[default]
    Any,
    /// A server that accepts writes.
    ReadWrite,
    /// A server that refuses writes.
    ReadOnly,
    /// A primary (not in recovery).
    Primary,
    /// A standby (in recovery).
    Standby,
    /// A standby if one of the hosts is, else any.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// Every accepted spelling and its canonical name (libpq's).
    pub const SPELLINGS: &'static [(&'static str, &'static str)] = &[
        ("any", "any"),
        ("read-write", "read-write"),
        ("read-only", "read-only"),
        ("primary", "primary"),
        ("standby", "standby"),
        ("prefer-standby", "prefer-standby"),
    ];

    /// Every value.
    pub const ALL: &'static [TargetSessionAttrs] = &[
        TargetSessionAttrs::Any,
        TargetSessionAttrs::ReadWrite,
        TargetSessionAttrs::ReadOnly,
        TargetSessionAttrs::Primary,
        TargetSessionAttrs::Standby,
        TargetSessionAttrs::PreferStandby,
    ];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
            TargetSessionAttrs::Primary => "primary",
            TargetSessionAttrs::Standby => "standby",
            TargetSessionAttrs::PreferStandby => "prefer-standby",
        }
    }

    /// Parses any of [`SPELLINGS`](Self::SPELLINGS).
    pub fn parse(s: &str) -> Option<Self> {
        let (_, canonical) = Self::SPELLINGS
            .iter()
            .find(|(sp, _)| sp.eq_ignore_ascii_case(s.trim()))?;
        Self::ALL.iter().copied().find(|t| t.as_str() == *canonical)
    }

    /// Whether a server that does (`true`) or does not refuse writes will do for a new
    /// session. `prefer-standby` takes either (its preference is in the host search).
    pub fn accepts(self, read_only: bool) -> bool {
        match self {
            TargetSessionAttrs::ReadWrite | TargetSessionAttrs::Primary => !read_only,
            TargetSessionAttrs::ReadOnly | TargetSessionAttrs::Standby => read_only,
            TargetSessionAttrs::Any | TargetSessionAttrs::PreferStandby => true,
        }
    }
}

/// The order a multi-host connection tries its hosts in (libpq's `load_balance_hosts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalanceHosts {
    /// As listed.
    #[default]
    Disable,
    /// Shuffled once per pool, so that clients spread over the hosts.
    Random,
}

impl LoadBalanceHosts {
    /// Every accepted spelling and its canonical name.
    pub const SPELLINGS: &'static [(&'static str, &'static str)] =
        &[("disable", "disable"), ("random", "random")];

    /// Every value.
    pub const ALL: &'static [LoadBalanceHosts] =
        &[LoadBalanceHosts::Disable, LoadBalanceHosts::Random];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalanceHosts::Disable => "disable",
            LoadBalanceHosts::Random => "random",
        }
    }
}

/// TLS mode, with PostgreSQL's names; MySQL maps them to its own (see `mysql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// Plain first, TLS if the server insists.
    Allow,
    /// TLS if the server offers it, else plain (the drivers' default).
    #[default]
    Prefer,
    /// TLS required; the certificate is not verified.
    Require,
    /// TLS required and the certificate chain verified against `ssl_root_cert`.
    VerifyCa,
    /// As `VerifyCa`, and the host name must match the certificate.
    VerifyFull,
    /// SQL Server only: TDS 8.0 "strict" encryption, TLS from the first byte, with the
    /// certificate verified (against `ssl_root_cert` if set).
    Strict,
}

impl SslMode {
    /// Every accepted spelling (compared case-insensitively, `_` and `-` alike) and the
    /// canonical name it stands for: PostgreSQL's names, MySQL's (`disabled`, `preferred`,
    /// `required`, `verify_ca`, `verify_identity`) and booleans.
    pub const SPELLINGS: &'static [(&'static str, &'static str)] = &[
        ("disable", "disable"),
        ("disabled", "disable"),
        ("false", "disable"),
        ("off", "disable"),
        ("allow", "allow"),
        ("prefer", "prefer"),
        ("preferred", "prefer"),
        ("require", "require"),
        ("required", "require"),
        ("true", "require"),
        ("on", "require"),
        ("verify-ca", "verify-ca"),
        ("verify-full", "verify-full"),
        ("verify-identity", "verify-full"),
        ("strict", "strict"),
    ];

    /// Every mode.
    pub const ALL: &'static [SslMode] = &[
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
        SslMode::Strict,
    ];

    /// Every canonical name, for error messages.
    pub const NAMES: &'static [&'static str] = &[
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
        "strict",
    ];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
            SslMode::Strict => "strict",
        }
    }

    /// Parses any of [`SPELLINGS`](Self::SPELLINGS).
    pub fn parse(s: &str) -> Option<Self> {
        let norm = |s: &str| s.trim().to_ascii_lowercase().replace('_', "-");
        let wanted = norm(s);
        let (_, canonical) = Self::SPELLINGS.iter().find(|(sp, _)| norm(sp) == wanted)?;
        Self::ALL.iter().copied().find(|m| m.as_str() == *canonical)
    }
}

/// TLS settings for network engines.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TlsSettings {
    /// The mode (`sslmode`).
    pub mode: SslMode,
    /// CA certificate file (`ssl_root_cert`).
    pub root_cert: Option<PathBuf>,
    /// Client certificate file (`ssl_cert`).
    pub client_cert: Option<PathBuf>,
    /// Client key file (`ssl_key`).
    pub client_key: Option<PathBuf>,
}

/// Where and how to reach a database server (PostgreSQL, MySQL/MariaDB).
///
/// When `dsn` is set it is parsed by the driver and the endpoint fields (`host`, `port`,
/// `user`, `password`, `database`, TLS) are not used; session settings
/// (`application_name`, `schema`, `query_timeout`) still apply on top of it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ServerSettings {
    /// A complete connection URL, kept secret because it usually holds a password.
    pub dsn: Option<SecretString>,
    /// Host name or IP address.
    pub host: Option<String>,
    /// TCP port; the engine's default when `None`.
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Password.
    pub password: Option<SecretString>,
    /// A file holding the password, read again for new connections when it changes
    /// (`password_file`); wins over `password`.
    pub password_file: Option<PathBuf>,
    /// Database name.
    pub database: Option<String>,
    /// TLS mode and files.
    pub tls: TlsSettings,
    /// Name reported to the server (PostgreSQL `application_name`).
    pub application_name: Option<String>,
    /// Default schema (PostgreSQL `search_path`).
    pub schema: Option<String>,
    /// Server-side statement timeout.
    pub query_timeout: Option<Duration>,
    /// The server is a PgBouncer in transaction pooling mode (PostgreSQL): no prepared
    /// statement may outlive one protocol exchange, and no session setting is sent.
    pub pgbouncer: bool,
    /// Every server of a multi-host connection, in order (`hosts`; PostgreSQL): host and
    /// port (the engine's default when `None`). Empty: `host` and `port` alone.
    pub hosts: Vec<(String, Option<u16>)>,
    /// Which of those servers a session may use (`target_session_attrs`).
    pub target_session_attrs: TargetSessionAttrs,
    /// Try the hosts in a random order rather than as listed (`load_balance_hosts`).
    pub load_balance_hosts: LoadBalanceHosts,
}

impl ServerSettings {
    /// Settings for `host` with everything else unset.
    pub fn new(host: impl Into<String>) -> Self {
        ServerSettings {
            host: Some(host.into()),
            ..ServerSettings::default()
        }
    }

    /// Settings from a DSN alone.
    pub fn from_dsn(dsn: impl Into<String>) -> Self {
        ServerSettings {
            dsn: Some(SecretString::from(dsn.into())),
            ..ServerSettings::default()
        }
    }
}

impl PartialEq for ServerSettings {
    /// Every field, the secrets included: compared here, never shown.
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        let secret = |a: &Option<SecretString>, b: &Option<SecretString>| {
            a.as_ref().map(|s| s.expose_secret()) == b.as_ref().map(|s| s.expose_secret())
        };
        // Destructured, so a new field cannot be left out of the comparison.
        let ServerSettings {
            dsn,
            host,
            port,
            user,
            password,
            password_file,
            database,
            tls,
            application_name,
            schema,
            query_timeout,
            pgbouncer,
            hosts,
            target_session_attrs,
            load_balance_hosts,
        } = self;
        secret(dsn, &other.dsn)
            && *host == other.host
            && *port == other.port
            && *user == other.user
            && secret(password, &other.password)
            && *password_file == other.password_file
            && *database == other.database
            && *tls == other.tls
            && *application_name == other.application_name
            && *schema == other.schema
            && *query_timeout == other.query_timeout
            && *pgbouncer == other.pgbouncer
            && *hosts == other.hosts
            && *target_session_attrs == other.target_session_attrs
            && *load_balance_hosts == other.load_balance_hosts
    }
}

impl std::fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SecretString already redacts, but spell the DSN out as redacted for clarity.
        f.debug_struct("ServerSettings")
            .field("dsn", &self.dsn.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("application_name", &self.application_name)
            .field("schema", &self.schema)
            .field("pgbouncer", &self.pgbouncer)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

/// Which SQLite database to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteTarget {
    /// A database file, created if missing.
    File(PathBuf),
    /// A private in-memory database shared by every connection of this pool (and only
    /// this pool). `name` must be unique in the process.
    Memory {
        /// A process-unique name for the shared in-memory database.
        name: String,
    },
}

/// SQLite settings. Every PRAGMA here is applied to each pooled connection when it opens.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SqliteSettings {
    /// The database.
    pub target: SqliteTarget,
    /// How long a statement waits for a lock held by another connection (`busy_timeout`).
    pub busy_timeout: Duration,
    /// `PRAGMA foreign_keys`.
    pub foreign_keys: bool,
    /// `PRAGMA journal_mode`; `None` picks WAL for files and MEMORY for in-memory databases.
    pub journal_mode: Option<String>,
    /// `PRAGMA synchronous`; `None` picks NORMAL (safe with WAL).
    pub synchronous: Option<String>,
}

impl SqliteSettings {
    /// Defaults for `target`: WAL (for files), `busy_timeout` 5 s, foreign keys on.
    pub fn new(target: SqliteTarget) -> Self {
        SqliteSettings {
            target,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: true,
            journal_mode: None,
            synchronous: None,
        }
    }
}

/// MongoDB-only settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MongoSettings {
    /// The database that holds the user's credentials (`auth_source`).
    pub auth_source: Option<String>,
    /// The replica set's name (`replica_set`).
    pub replica_set: Option<String>,
    /// Which members reads (and health checks) go to (`read_preference`): `primary`,
    /// `primaryPreferred`, `secondary`, `secondaryPreferred` or `nearest`.
    pub read_preference: Option<String>,
}

/// How to reach a connection's database.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A network server (PostgreSQL, MySQL, SQL Server, MongoDB, a service's own).
    Server(ServerSettings),
    /// An embedded SQLite database.
    Sqlite(SqliteSettings),
}

static MEMORY_DB_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Endpoint {
    /// Where the database is, for messages: `host:port` (`host` alone when no port is
    /// set), read from the DSN when there is one (a URL's authority, or an ADO string's
    /// `server`); a SQLite target's path or `:memory:`. Never a user name or password.
    /// `None` when a DSN's address cannot be read.
    pub fn address(&self) -> Option<String> {
        match self {
            Endpoint::Sqlite(s) => Some(match &s.target {
                SqliteTarget::File(path) => path.display().to_string(),
                SqliteTarget::Memory { .. } => ":memory:".to_owned(),
            }),
            Endpoint::Server(s) => match &s.dsn {
                Some(dsn) => dsn_address(secrecy::ExposeSecret::expose_secret(dsn)),
                None => s.host.as_ref().map(|h| match s.port {
                    Some(p) => format!("{h}:{p}"),
                    None => h.clone(),
                }),
            },
        }
    }

    /// The endpoint one pool generation opens: the same, except that an in-memory SQLite
    /// database gets a name unique in the process, so two managers (or a manager and a
    /// test) never share one by accident.
    pub fn instance(&self) -> Endpoint {
        let mut e = self.clone();
        if let Endpoint::Sqlite(s) = &mut e
            && let SqliteTarget::Memory { name } = &mut s.target
        {
            let seq = MEMORY_DB_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *name = format!("dbmanager-{name}-{}-{seq}", std::process::id());
        }
        e
    }

    /// The server settings, if it is a server.
    pub fn server(&self) -> Option<&ServerSettings> {
        match self {
            Endpoint::Server(s) => Some(s),
            Endpoint::Sqlite(_) => None,
        }
    }

    /// Every secret it holds (password, DSN and the DSN's password).
    pub fn secrets(&self) -> crate::redact::Secrets {
        let mut out = crate::redact::Secrets::new();
        if let Endpoint::Server(s) = self {
            if let Some(p) = &s.password {
                out.add(secrecy::ExposeSecret::expose_secret(p));
            }
            if let Some(dsn) = &s.dsn {
                out.add_dsn(secrecy::ExposeSecret::expose_secret(dsn));
            }
        }
        out
    }
}

/// A DSN's address: the authority of a URL without its user information, or the value of
/// an ADO connection string's `server` (`data source`, `address`) key.
fn dsn_address(dsn: &str) -> Option<String> {
    if let Some((_, rest)) = dsn.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next()?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return (!host.is_empty()).then(|| host.to_owned());
    }
    dsn.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        let k = k.trim().to_ascii_lowercase();
        matches!(k.as_str(), "server" | "data source" | "address" | "addr")
            .then(|| v.trim().trim_start_matches("tcp:").to_owned())
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod address_tests {
    use super::dsn_address;

    #[test]
    fn a_dsn_address_never_carries_credentials() {
        assert_eq!(
            dsn_address("postgres://app:s3cret@db.internal:6432/app?sslmode=require").as_deref(),
            Some("db.internal:6432")
        );
        assert_eq!(
            dsn_address("mysql://root:p@ss@w0rd@10.0.0.7/test").as_deref(),
            Some("10.0.0.7")
        );
        assert_eq!(
            dsn_address("mongodb://u:p@h1:27017,h2:27017/?replicaSet=rs").as_deref(),
            Some("h1:27017,h2:27017")
        );
        assert_eq!(
            dsn_address("server=tcp:sql.local,1433;user id=sa;password=x").as_deref(),
            Some("sql.local,1433")
        );
        assert_eq!(dsn_address("password=x;user=y"), None);
    }
}
