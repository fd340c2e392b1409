//! The crate's error type. Every variant that concerns a connection names it; none carries
//! a password or a DSN.

use crate::config::{ConfigErrors, DbType};
use dbmanager_providers::{ErrorClass, ProviderError};
use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from the manager and its connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (every problem is listed).
    #[error(transparent)]
    Config(#[from] ConfigErrors),

    /// `get(name)` for a name that is not configured.
    #[error("unknown connection `{name}` (configured: {})", known.join(", "))]
    UnknownConnection {
        /// The name asked for.
        name: String,
        /// The configured names.
        known: Vec<String>,
    },

    /// `default()` when no default connection is set.
    #[error("no default connection: set `default_connection` (configured: {})", known.join(", "))]
    NoDefault {
        /// The configured names.
        known: Vec<String>,
    },

    /// A typed accessor for another engine, e.g. `postgres()` on a MySQL connection.
    #[error("connection `{name}` is {actual}, not {expected}")]
    WrongKind {
        /// The connection.
        name: String,
        /// What the accessor serves.
        expected: DbType,
        /// What the connection is.
        actual: DbType,
    },

    /// `Connection::managed::<K>()` on a connection whose pool is not a
    /// `ManagedPool<K>` (another engine, or another connector type).
    #[error("connection `{name}` is {kind}: its pool is not a {requested}")]
    WrongPool {
        /// The connection.
        name: String,
        /// What the connection is.
        kind: DbType,
        /// The pool type asked for.
        requested: &'static str,
    },

    /// A view accessor on an engine it does not serve, e.g. `sea_orm()` on a MongoDB
    /// connection (SeaORM and diesel serve postgres, mysql and sqlite).
    #[error("connection `{name}` is {kind}: the {view} view serves postgres, mysql and sqlite")]
    NoView {
        /// The connection.
        name: String,
        /// The view asked for (`SeaORM`, `diesel`).
        view: &'static str,
        /// What the connection is.
        kind: DbType,
    },

    /// The diesel view was asked for but has no share of the budget.
    #[error(
        "connection `{name}` gives the diesel view no connections: set `connections.{name}.diesel_conns` \
         (how many of max_open_conns the diesel view may open) or `default_orm: diesel`"
    )]
    NoBudget {
        /// The connection.
        name: String,
    },

    /// The connection's engine was not compiled in.
    #[error(
        "connection `{name}` is {kind}, but dbmanager was built without the `{feature}` feature"
    )]
    NotBuilt {
        /// The connection.
        name: String,
        /// Its engine.
        kind: DbType,
        /// The cargo feature that would add it.
        feature: &'static str,
    },

    /// The connection's engine has no provider yet.
    #[error("connection `{name}`: {kind} connections are not yet supported")]
    NotSupported {
        /// The connection.
        name: String,
        /// Its engine.
        kind: DbType,
    },

    /// `Manager::set_credential_provider` for an engine that takes no password from one.
    #[error("connection `{name}` is {kind}: a credential provider serves postgres and mysql")]
    NoCredentialProvider {
        /// The connection.
        name: String,
        /// Its engine.
        kind: DbType,
    },

    /// `mongo_database()` on a MongoDB connection that names no database.
    #[error("connection `{name}` names no database: set `database` (or a path in the dsn)")]
    NoDatabase {
        /// The connection.
        name: String,
    },

    /// The connection has not been opened: call `Manager::connect` first.
    #[error("connection `{name}` is not connected yet: call Manager::connect() first")]
    NotConnected {
        /// The connection.
        name: String,
    },

    /// Opening a connection failed (refused, unreachable, timed out, a rejected login).
    #[error("connection `{name}`{}: {source}", at(address.as_deref()))]
    Connect {
        /// The connection (with the replica's name, `primary/replica-1`, for a replica).
        name: String,
        /// Where it tried: `host:port` or a file's path (never credentials).
        address: Option<String>,
        /// Why.
        #[source]
        source: ProviderError,
    },

    /// No pooled connection became free within `acquire_timeout`.
    #[error("connection `{name}`: no connection available within acquire_timeout ({waited:?})")]
    AcquireTimeout {
        /// The connection.
        name: String,
        /// How long the caller waited.
        waited: Duration,
    },

    /// The manager (or this connection) was closed.
    #[error("connection `{name}` is closed")]
    Closed {
        /// The connection (`*` for the whole manager).
        name: String,
    },

    /// The connection is down: under `on_unavailable: fail_fast` at once, under `wait`
    /// after waiting `acquire_timeout` for it to come back (or at once when an
    /// authentication or configuration error keeps it down).
    #[error("connection `{name}` is unavailable (waited {waited:?}){}", last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    Unavailable {
        /// The connection.
        name: String,
        /// How long the caller waited.
        waited: Duration,
        /// The last health-check error (redacted).
        last_error: Option<String>,
        /// That error's class.
        class: Option<ErrorClass>,
    },

    /// A health check or statement failed on an open connection.
    #[error("connection `{name}`: {source}")]
    Database {
        /// The connection.
        name: String,
        /// Why.
        #[source]
        source: ProviderError,
    },

    /// A query failed (a sqlx error met through `?` in a handler: `From<sqlx::Error>`).
    /// A failed checkout inside a query through [`Db`](crate::Db) is given back as the
    /// error it was (`Unavailable`, `AcquireTimeout`...), not as this.
    #[error("query failed: {0}")]
    Query(#[source] sqlx::Error),

    /// `reader()` found no healthy, caught-up replica and the connection says
    /// `fallback: error`.
    #[error("connection `{name}`: no replica is healthy and within max_replica_lag")]
    NoReplica {
        /// The connection.
        name: String,
    },

    /// `Manager::keyed` was given a group name the configuration has no `keyed` entry for.
    #[error("unknown keyed group `{name}` (configured: {})", known.join(", "))]
    UnknownGroup {
        /// The name asked for.
        name: String,
        /// The configured groups.
        known: Vec<String>,
    },

    /// `Manager::add` (or a keyed pool) was given a name that is already in use.
    #[error("connection `{name}` already exists: remove it first, or reload")]
    AlreadyExists {
        /// The name.
        name: String,
    },

    /// `connect()` could not open one or more `startup: strict` connections.
    #[error("{} connection(s) failed to start: {}", failures.len(), failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Startup {
        /// One error per failed connection.
        failures: Vec<Error>,
    },
}

impl Error {
    /// A copy of this error with the same variant, message and class, for every caller
    /// of a shared attempt but the first (a keyed open that failed). A driver's error
    /// becomes its message (it cannot be cloned), so only the original can be downcast.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Config(errors) => Error::Config(errors.clone()),
            Error::UnknownConnection { name, known } => Error::UnknownConnection {
                name: name.clone(),
                known: known.clone(),
            },
            Error::NoDefault { known } => Error::NoDefault {
                known: known.clone(),
            },
            Error::WrongKind {
                name,
                expected,
                actual,
            } => Error::WrongKind {
                name: name.clone(),
                expected: *expected,
                actual: *actual,
            },
            Error::WrongPool {
                name,
                kind,
                requested,
            } => Error::WrongPool {
                name: name.clone(),
                kind: *kind,
                requested,
            },
            Error::NoView { name, view, kind } => Error::NoView {
                name: name.clone(),
                view,
                kind: *kind,
            },
            Error::NoBudget { name } => Error::NoBudget { name: name.clone() },
            Error::NotBuilt {
                name,
                kind,
                feature,
            } => Error::NotBuilt {
                name: name.clone(),
                kind: *kind,
                feature,
            },
            Error::NoCredentialProvider { name, kind } => Error::NoCredentialProvider {
                name: name.clone(),
                kind: *kind,
            },
            Error::NotSupported { name, kind } => Error::NotSupported {
                name: name.clone(),
                kind: *kind,
            },
            Error::NoDatabase { name } => Error::NoDatabase { name: name.clone() },
            Error::NotConnected { name } => Error::NotConnected { name: name.clone() },
            Error::Connect {
                name,
                address,
                source,
            } => Error::Connect {
                name: name.clone(),
                address: address.clone(),
                source: source.duplicate(),
            },
            Error::AcquireTimeout { name, waited } => Error::AcquireTimeout {
                name: name.clone(),
                waited: *waited,
            },
            Error::Closed { name } => Error::Closed { name: name.clone() },
            Error::Unavailable {
                name,
                waited,
                last_error,
                class,
            } => Error::Unavailable {
                name: name.clone(),
                waited: *waited,
                last_error: last_error.clone(),
                class: *class,
            },
            Error::Database { name, source } => Error::Database {
                name: name.clone(),
                source: source.duplicate(),
            },
            Error::NoReplica { name } => Error::NoReplica { name: name.clone() },
            Error::Query(e) => Error::Query(sqlx::Error::Protocol(e.to_string())),
            Error::UnknownGroup { name, known } => Error::UnknownGroup {
                name: name.clone(),
                known: known.clone(),
            },
            Error::AlreadyExists { name } => Error::AlreadyExists { name: name.clone() },
            Error::Startup { failures } => Error::Startup {
                failures: failures.iter().map(Error::duplicate).collect(),
            },
        }
    }

    /// The connection this error concerns, if any.
    pub fn connection(&self) -> Option<&str> {
        match self {
            Error::UnknownConnection { name, .. }
            | Error::WrongKind { name, .. }
            | Error::WrongPool { name, .. }
            | Error::NoView { name, .. }
            | Error::NoBudget { name }
            | Error::NotBuilt { name, .. }
            | Error::NotSupported { name, .. }
            | Error::NoCredentialProvider { name, .. }
            | Error::NotConnected { name }
            | Error::NoDatabase { name }
            | Error::Connect { name, .. }
            | Error::AcquireTimeout { name, .. }
            | Error::Closed { name }
            | Error::AlreadyExists { name }
            | Error::NoReplica { name }
            | Error::Unavailable { name, .. }
            | Error::Database { name, .. } => Some(name),
            Error::Config(_)
            | Error::Query(_)
            | Error::NoDefault { .. }
            | Error::Startup { .. }
            | Error::UnknownGroup { .. } => None,
        }
    }

    /// What this error means (see [`ErrorClass`]), decided from SQLSTATEs, engine error
    /// numbers and I/O error kinds, never from message text. `None` for errors that are
    /// not about reaching a database (an unknown name, a wrong accessor...).
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            Error::Connect { source, .. } | Error::Database { source, .. } => Some(source.class()),
            Error::AcquireTimeout { .. } => Some(ErrorClass::Transient),
            Error::Query(e) => Some(dbmanager_providers::classify(e)),
            Error::Unavailable { class, .. } => Some(class.unwrap_or(ErrorClass::ConnectionLost)),
            Error::Config(_) => Some(ErrorClass::Config),
            Error::Startup { failures } => failures.iter().find_map(Error::class),
            _ => None,
        }
    }

    /// Whether retrying the same idempotent operation later may succeed: a lost or
    /// refused connection, a failover, a timeout, a deadlock, an outage. Authentication,
    /// configuration and SQL errors are not transient.
    pub fn is_transient(&self) -> bool {
        self.class().is_some_and(ErrorClass::is_transient)
    }

    /// Maps a provider error raised while using an open pool.
    pub(crate) fn from_provider(name: &str, e: ProviderError) -> Self {
        let name = name.to_owned();
        match e {
            ProviderError::AcquireTimeout { waited } => Error::AcquireTimeout { name, waited },
            ProviderError::Closed => Error::Closed { name },
            ProviderError::Connect(_)
            | ProviderError::Driver {
                phase: dbmanager_providers::Phase::Connect,
                ..
            } => Error::Connect {
                name,
                address: None,
                source: e,
            },
            other => Error::Database {
                name,
                source: other,
            },
        }
    }
}

/// ` (address)` after a connection's name, when the address is known.
fn at(address: Option<&str>) -> String {
    address.map(|a| format!(" ({a})")).unwrap_or_default()
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // A checkout failure inside a `Db` query: give back the error it was.
            sqlx::Error::AnyDriverError(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::Query(sqlx::Error::AnyDriverError(other)),
            },
            e => Error::Query(e),
        }
    }
}
