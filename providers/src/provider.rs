//! The engine seam: a [`Provider`] turns typed settings into a live [`EnginePool`].
//!
//! Every engine implements it once (the built-in ones in this crate, one module each behind
//! a cargo feature), and so can a service for a kind of connection of its own (`type:
//! <name>` in YAML): it then gets the manager's pool limits, supervision (health checks,
//! reconnect with backoff, the outage policy), statistics, events and `dbmanager check`
//! without writing any of them. docs/adding-an-engine.md walks through both.
//!
//! The manager only ever sees `dyn EnginePool`; typed accessors (`Connection::postgres`,
//! `Connection::managed::<K>`) downcast it with [`EnginePool::as_any`].

use crate::classify::ErrorClass;
use crate::context::PoolContext;
use crate::error::ProviderError;
use crate::kind::DbType;
pub use crate::rules::{EndpointKind, Rules};
use crate::settings::{Endpoint, MongoSettings, PoolSettings, ServerSettings, SqliteSettings};
use crate::stats::PoolStats;
use futures_util::future::BoxFuture;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A live pool of one connection, whatever its engine. Cheap handles implement it (an
/// `Arc` inside), so the manager can keep it behind an `Arc<dyn EnginePool>`.
pub trait EnginePool: Send + Sync + std::fmt::Debug + 'static {
    /// Live sizes and counters.
    fn stats(&self) -> PoolStats;

    /// Connections checked out now (a swap waits for this to reach zero).
    fn in_use(&self) -> u32;

    /// Marks every open connection stale and closes the idle ones now; checked-out ones
    /// close when they come back. Returns how many idle connections it closed. A driver
    /// that clears its own pool returns 0.
    fn clear(&self) -> u32;

    /// One real round trip (acquire + the driver's ping), bounded by `timeout`. Returns
    /// its latency. A connection that fails it is not handed out again.
    fn ping(&self, timeout: Duration) -> BoxFuture<'_, Result<Duration, ProviderError>>;

    /// A probe while the connection is down, bounded by `timeout`: the SQL pools connect
    /// through the pool (within its budget) and, once the server's address accepts
    /// connections, let borrows waiting out the driver's connect backoff start again. The
    /// default is [`ping`](Self::ping).
    fn reconnect(&self, timeout: Duration) -> BoxFuture<'_, Result<Duration, ProviderError>> {
        self.ping(timeout)
    }

    /// Closes the pool: new acquires fail at once; waits up to `drain` for checked-out
    /// connections to come back. Returns whether everything closed in time. Idempotent.
    fn close(&self, drain: Duration) -> BoxFuture<'_, bool>;

    /// Whether the server behind the pool refuses writes now (a failover left it a
    /// replica), asked of the server within `timeout`. The manager asks before it clears
    /// the pool on a read-only error, so an application's own read-only transaction does
    /// not churn connections. An engine that cannot tell answers `Ok(true)` (clear).
    fn read_only(&self, timeout: Duration) -> BoxFuture<'_, Result<bool, ProviderError>> {
        let _ = timeout;
        Box::pin(async { Ok(true) })
    }

    /// Whether the server left recovery (a standby promoted) moments ago, asked within
    /// `timeout`: a write refused as read-only just now may then have run in a transaction
    /// begun before the promotion finished, and is worth a retry. The default is
    /// `Ok(false)` (the engine cannot tell).
    fn recently_promoted(&self, timeout: Duration) -> BoxFuture<'_, Result<bool, ProviderError>> {
        let _ = timeout;
        Box::pin(async { Ok(false) })
    }

    /// One sample of the server's replication state, for a replica's lag check; `None`
    /// when the engine cannot tell or the question failed. The default is `None`.
    fn replication_lag(&self) -> BoxFuture<'_, Option<LagSample>> {
        Box::pin(async { None })
    }

    /// The pool was replaced by a swap: the manager sends it no new work. A pool that
    /// keeps connections back for the manager's own checkouts (the SQL pools' fast path)
    /// hands them to whoever still holds the pool itself, so the drain that follows sees
    /// only real use. The default does nothing.
    fn retire(&self) {}

    /// Renews every session in place, within this pool's own budget: new connections
    /// take `fresh`'s settings (a pool of the same kind, built lazily from the new
    /// configuration, which never connected), and every connection open now is closed
    /// as it becomes idle. Returns `false`, changing nothing, when this pool cannot (the
    /// default): the manager then builds a new pool and drains this one.
    fn renew(&self, fresh: &dyn EnginePool) -> bool {
        let _ = fresh;
        false
    }

    /// The concrete pool, for typed accessors to downcast.
    fn as_any(&self) -> &dyn Any;
}

/// Everything a provider needs to open one pool generation.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpenRequest<'a> {
    /// The connection's name (for the provider's own logs; never put it in SQL).
    pub name: &'a str,
    /// Where the database is. For an in-memory SQLite database, already given a name
    /// unique to this pool generation.
    pub endpoint: &'a Endpoint,
    /// MongoDB-only settings.
    pub mongo: &'a MongoSettings,
    /// Free-form `options` of the connection (for a service's own providers).
    pub options: &'a BTreeMap<String, String>,
    /// This pool's share of the connection's budget, and its timeouts.
    pub pool: PoolSettings,
    /// Connect before returning (bounded by `connect_timeout`), so a wrong address or
    /// password fails here; otherwise connect on first use.
    pub eager: bool,
    /// Counters, task tracker, cancellation token and broken-connection signal shared
    /// with the manager.
    pub ctx: PoolContext,
}

impl<'a> OpenRequest<'a> {
    /// A request with empty MongoDB settings and options (tests and standalone use).
    pub fn new(
        name: &'a str,
        endpoint: &'a Endpoint,
        pool: PoolSettings,
        eager: bool,
        ctx: PoolContext,
    ) -> Self {
        static NO_MONGO: std::sync::LazyLock<MongoSettings> =
            std::sync::LazyLock::new(MongoSettings::default);
        static NO_OPTIONS: BTreeMap<String, String> = BTreeMap::new();
        OpenRequest {
            name,
            endpoint,
            mongo: &NO_MONGO,
            options: &NO_OPTIONS,
            pool,
            eager,
            ctx,
        }
    }

    /// The server settings, or an error if the endpoint is a file.
    pub fn server(&self) -> Result<&'a ServerSettings, ProviderError> {
        match self.endpoint {
            Endpoint::Server(s) => Ok(s),
            Endpoint::Sqlite(_) => Err(ProviderError::InvalidSetting {
                field: "filepath",
                reason: "this engine needs a server endpoint (host or dsn)".into(),
            }),
        }
    }

    /// The SQLite settings, or an error if the endpoint is a server.
    pub fn sqlite(&self) -> Result<&'a SqliteSettings, ProviderError> {
        match self.endpoint {
            Endpoint::Sqlite(s) => Ok(s),
            Endpoint::Server(_) => Err(ProviderError::InvalidSetting {
                field: "filepath",
                reason: "this engine needs `filepath`".into(),
            }),
        }
    }
}

/// A future that opens a pool.
pub type OpenFuture<'a> = BoxFuture<'a, Result<Arc<dyn EnginePool>, ProviderError>>;

/// An engine: opens pools from typed settings, and declares its configuration rules.
///
/// Implement it for a kind of connection of your own and register it with
/// `Config::loader().provider(...)`; see `examples/custom_provider.rs`. A provider that
/// pools connections of a driver without a pool implements
/// [`Connector`](crate::managed::Connector) and returns a
/// [`ManagedPool`](crate::managed::ManagedPool) from [`open`](Self::open).
pub trait Provider: Send + Sync + 'static {
    /// The engine (`DbType::Custom("name")` for a service's own provider).
    fn kind(&self) -> DbType;

    /// Every `type` spelling it answers to (the first is its canonical name).
    fn names(&self) -> &'static [&'static str];

    /// Its configuration rules.
    fn rules(&self) -> Rules;

    /// Checks the endpoint without any I/O (a DSN that does not parse, say). Called once
    /// at validation; the error is reported at `connections.NAME.dsn`.
    fn check(&self, endpoint: &Endpoint) -> Result<(), ProviderError> {
        let _ = endpoint;
        Ok(())
    }

    /// Opens one pool generation.
    fn open<'a>(&'a self, request: OpenRequest<'a>) -> OpenFuture<'a>;

    /// What an error of this engine means, when it is only known as a
    /// [`ProviderError`]. The default reads the error's own class.
    fn classify(&self, error: &ProviderError) -> ErrorClass {
        error.class()
    }
}

impl std::fmt::Debug for dyn Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provider({})", self.kind())
    }
}

/// What one lag check reads off a replica's server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LagSample {
    /// Everything received is applied (or the server is no replica at all).
    pub caught_up: bool,
    /// How far it has applied (PostgreSQL: the replay LSN), so a stalled replica can be
    /// told from a moving one.
    pub applied: Option<String>,
    /// The server's own figure (PostgreSQL: age of the last replayed transaction;
    /// MySQL: `Seconds_Behind_Master`, `Duration::MAX` while replication is stopped),
    /// when it has one.
    pub server_lag: Option<Duration>,
}

impl LagSample {
    /// A sample with these values.
    pub fn new(caught_up: bool, applied: Option<String>, server_lag: Option<Duration>) -> Self {
        LagSample {
            caught_up,
            applied,
            server_lag,
        }
    }
}

/// Implements [`EnginePool`] for a pool type whose inherent methods have the same names
/// (`read_only` and `retire` too when the invocation starts with `read_only;`).
macro_rules! engine_pool {
    (read_only; $ty:ty $(, $($bound:tt)+)?) => {
        $crate::provider::engine_pool!(@impl {
            fn read_only(
                &self,
                timeout: std::time::Duration,
            ) -> futures_util::future::BoxFuture<'_, Result<bool, $crate::ProviderError>> {
                Box::pin(Self::read_only(self, timeout))
            }
            fn recently_promoted(
                &self,
                timeout: std::time::Duration,
            ) -> futures_util::future::BoxFuture<'_, Result<bool, $crate::ProviderError>> {
                Box::pin(Self::recently_promoted(self, timeout))
            }
            fn retire(&self) {
                Self::retire(self);
            }
            fn replication_lag(
                &self,
            ) -> futures_util::future::BoxFuture<'_, Option<$crate::provider::LagSample>> {
                Box::pin(Self::replication_lag(self))
            }
            fn renew(&self, fresh: &dyn $crate::provider::EnginePool) -> bool {
                Self::renew(self, fresh)
            }
            fn reconnect(
                &self,
                timeout: std::time::Duration,
            ) -> futures_util::future::BoxFuture<'_, Result<std::time::Duration, $crate::ProviderError>> {
                Box::pin(Self::reconnect(self, timeout))
            }
        } $ty $(, $($bound)+)?);
    };
    ($ty:ty $(, $($bound:tt)+)?) => {
        $crate::provider::engine_pool!(@impl {} $ty $(, $($bound)+)?);
    };
    (@impl { $($extra:tt)* } $ty:ty $(, $($bound:tt)+)?) => {
        impl$(<$($bound)+>)? $crate::provider::EnginePool for $ty {
            fn stats(&self) -> $crate::stats::PoolStats {
                Self::stats(self)
            }
            fn in_use(&self) -> u32 {
                Self::in_use(self)
            }
            fn clear(&self) -> u32 {
                Self::clear(self)
            }
            fn ping(
                &self,
                timeout: std::time::Duration,
            ) -> futures_util::future::BoxFuture<'_, Result<std::time::Duration, $crate::ProviderError>> {
                Box::pin(Self::ping(self, timeout))
            }
            fn close(&self, drain: std::time::Duration) -> futures_util::future::BoxFuture<'_, bool> {
                Box::pin(Self::close(self, drain))
            }
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
            $($extra)*
        }
    };
}
pub(crate) use engine_pool;
