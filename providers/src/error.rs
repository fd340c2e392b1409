//! The providers' error type.
//!
//! Messages never contain a password or a DSN: errors that come from parsing a DSN are
//! scrubbed of the DSN's text before they are stored (see [`ProviderError::invalid_dsn`]).

use crate::classify::{ErrorClass, classify};
use std::time::Duration;

/// Errors raised while building, using or closing a provider's pool.
///
/// The `dbmanager` crate wraps these with the connection's name and the YAML path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The DSN could not be parsed. The reason never quotes the DSN itself.
    #[error("invalid dsn: {reason}")]
    InvalidDsn {
        /// What is wrong, with any secret removed.
        reason: String,
    },
    /// A setting has a value the engine cannot use.
    #[error("invalid setting `{field}`: {reason}")]
    InvalidSetting {
        /// The setting's name (the YAML field name).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Opening a connection failed (network, TLS, authentication, unknown database...).
    #[error("connect failed: {0}")]
    Connect(#[source] sqlx::Error),
    /// An operation did not finish in time.
    #[error("{phase} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        phase: TimeoutPhase,
        /// The limit that was reached.
        after: Duration,
    },
    /// No connection became available within `acquire_timeout`.
    #[error("no connection available within acquire_timeout ({waited:?})")]
    AcquireTimeout {
        /// How long the caller waited.
        waited: Duration,
    },
    /// A health check found every connection in use for its whole time: the server may
    /// be answering callers as fast as they ask, so this is no verdict on its health.
    #[error("every connection was in use for the whole health check ({waited:?})")]
    Busy {
        /// How long the health check waited for a connection.
        waited: Duration,
    },
    /// The pool was closed; no new connections are handed out.
    #[error("pool is closed")]
    Closed,
    /// A statement or ping failed on an open connection.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// An error from a driver other than sqlx (MongoDB, SQL Server), classified by its
    /// provider. The source can be downcast to the driver's error type.
    #[error("{phase}: {source}")]
    Driver {
        /// Whether it happened while connecting or on an open connection.
        phase: Phase,
        /// What it means for the pool and for a retry.
        class: ErrorClass,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// When a driver error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// While opening a connection (including authentication).
    Connect,
    /// On an open connection.
    Database,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect failed",
            Phase::Database => "database error",
        })
    }
}

/// What timed out, in a [`ProviderError::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Opening a connection (including authentication).
    Connect,
    /// A health check's round trip (or the wait for a connection to make it on).
    HealthCheck,
    /// The check that the server accepts writes (`read-only check`).
    ReadOnlyCheck,
}

impl TimeoutPhase {
    /// The name in messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::HealthCheck => "health check",
            TimeoutPhase::ReadOnlyCheck => "read-only check",
        }
    }
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ProviderError {
    /// A copy of this error with the same variant, message and class. A driver's error
    /// (which cannot be cloned) becomes its message, so only the original can be
    /// downcast to the driver's type.
    pub fn duplicate(&self) -> ProviderError {
        let message = |source: &dyn std::fmt::Display| Box::new(Message(source.to_string()));
        match self {
            ProviderError::InvalidDsn { reason } => ProviderError::InvalidDsn {
                reason: reason.clone(),
            },
            ProviderError::InvalidSetting { field, reason } => ProviderError::InvalidSetting {
                field,
                reason: reason.clone(),
            },
            ProviderError::Timeout { phase, after } => ProviderError::Timeout {
                phase: *phase,
                after: *after,
            },
            ProviderError::AcquireTimeout { waited } => {
                ProviderError::AcquireTimeout { waited: *waited }
            }
            ProviderError::Busy { waited } => ProviderError::Busy { waited: *waited },
            ProviderError::Closed => ProviderError::Closed,
            ProviderError::Connect(source) => ProviderError::Driver {
                phase: Phase::Connect,
                class: self.class(),
                source: message(source),
            },
            ProviderError::Database(source) => ProviderError::Driver {
                phase: Phase::Database,
                class: self.class(),
                source: message(source),
            },
            ProviderError::Driver {
                phase,
                class,
                source,
            } => ProviderError::Driver {
                phase: *phase,
                class: *class,
                source: message(source),
            },
        }
    }

    /// Builds an [`InvalidDsn`](Self::InvalidDsn) error from a parser error, removing every
    /// occurrence of the DSN and of its password from the message.
    pub fn invalid_dsn(err: impl std::fmt::Display, dsn: &str) -> Self {
        let mut secrets = crate::redact::Secrets::new();
        secrets.add_dsn(dsn);
        ProviderError::InvalidDsn {
            reason: secrets.scrub(err.to_string()),
        }
    }

    /// `sslmode: strict` on an engine other than SQL Server (validation refuses it first;
    /// this guards direct use of the providers).
    pub fn strict_is_mssql() -> Self {
        ProviderError::InvalidSetting {
            field: "sslmode",
            reason: "`strict` (TDS 8.0) is a SQL Server mode".into(),
        }
    }

    /// A driver error on an open connection.
    pub fn driver(
        source: impl std::error::Error + Send + Sync + 'static,
        class: ErrorClass,
    ) -> Self {
        ProviderError::Driver {
            phase: Phase::Database,
            class,
            source: Box::new(source),
        }
    }

    /// A driver error while connecting.
    pub fn driver_connect(
        source: impl std::error::Error + Send + Sync + 'static,
        class: ErrorClass,
    ) -> Self {
        ProviderError::Driver {
            phase: Phase::Connect,
            class,
            source: Box::new(source),
        }
    }

    /// What this error means for the pool and for a retry (see [`crate::classify()`]).
    /// A timeout counts as a lost connection: a server that does not answer in time is
    /// treated like one that hung up.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Connect(e) | ProviderError::Database(e) => classify(e),
            ProviderError::Driver { class, .. } => *class,
            ProviderError::Timeout { .. } => ErrorClass::ConnectionLost,
            ProviderError::AcquireTimeout { .. } | ProviderError::Busy { .. } => {
                ErrorClass::Transient
            }
            ProviderError::Closed => ErrorClass::Permanent,
            ProviderError::InvalidDsn { .. } | ProviderError::InvalidSetting { .. } => {
                ErrorClass::Config
            }
        }
    }

    /// Whether retrying the same idempotent operation may succeed.
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }

    /// Classifies a sqlx error raised while *acquiring* a connection.
    pub(crate) fn from_acquire(err: sqlx::Error, waited: Duration) -> Self {
        match err {
            sqlx::Error::PoolTimedOut => ProviderError::AcquireTimeout { waited },
            sqlx::Error::PoolClosed => ProviderError::Closed,
            other => ProviderError::Connect(other),
        }
    }
}

impl crate::classify::Classify for ProviderError {
    fn class(&self) -> ErrorClass {
        ProviderError::class(self)
    }
}

/// A driver error's message, standing in for the error itself in [`ProviderError::duplicate`].
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}
