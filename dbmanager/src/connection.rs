//! [`Connection`]: one named database, a cheap handle over its pool.

#[cfg(feature = "sqlite")]
use crate::config::SqliteTarget;
use crate::config::{ConnectionConfig, DbType, Endpoint, Startup};
use crate::engine::{Pools, SqlEngine};
use crate::error::{Error, Result};
use crate::stats::{ConnectionStats, PoolStats};
use arc_swap::{ArcSwap, ArcSwapOption};
use dbmanager_providers::pool::SqlPool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The health of a connection, as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthState {
    /// Not connected yet, or connecting.
    Connecting,
    /// The last round trip succeeded.
    Healthy,
    /// The last round trip (or connect) failed; see [`Health::last_error`].
    Unhealthy,
    /// Closed by `Manager::close`.
    Closed,
}

impl HealthState {
    /// Lower-case name (`healthy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Connecting => "connecting",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Closed => "closed",
        }
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection's health with the details of the last observation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// The state.
    pub state: HealthState,
    /// The last error seen (redacted: never holds a password), if unhealthy.
    pub last_error: Option<String>,
    /// Latency of the last successful round trip.
    pub latency: Option<Duration>,
    /// When it was last observed.
    pub observed_at: Option<Instant>,
}

impl Health {
    fn new(state: HealthState) -> Self {
        Health {
            state,
            last_error: None,
            latency: None,
            observed_at: Some(Instant::now()),
        }
    }
}

/// One named connection. Cheap to clone; every clone sees the same pool.
///
/// Obtain it from `Manager::get` (a lock-free lookup) as often as you like, e.g. once per
/// request.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    config: ConnectionConfig,
    pools: ArcSwapOption<Pools>,
    health: ArcSwap<Health>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name())
            .field("kind", &self.kind())
            .field("health", &self.health().state)
            .field("config", &self.inner.config)
            .finish()
    }
}

#[cfg(feature = "sqlite")]
static MEMORY_DB_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Connection {
    pub(crate) fn new(config: ConnectionConfig) -> Self {
        Connection {
            inner: Arc::new(Inner {
                config,
                pools: ArcSwapOption::empty(),
                health: ArcSwap::from_pointee(Health::new(HealthState::Connecting)),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The connection's name (its key under `connections`).
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Its engine.
    pub fn kind(&self) -> DbType {
        self.inner.config.kind
    }

    /// Its tags.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.inner.config.tags
    }

    /// Its validated settings.
    pub fn config(&self) -> &ConnectionConfig {
        &self.inner.config
    }

    /// Its last observed health (no lock, no I/O).
    pub fn health(&self) -> Health {
        Health::clone(&self.inner.health.load())
    }

    fn set_health(&self, health: Health) {
        self.inner.health.store(Arc::new(health));
    }

    fn set_unhealthy(&self, error: &Error) {
        let mut h = Health::new(HealthState::Unhealthy);
        h.last_error = Some(error.to_string());
        self.set_health(h);
    }

    /// Whether the manager has been closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Opens the pool. Strict: connects now (bounded by `connect_timeout`). Lazy: builds
    /// the pool, which connects on first use.
    pub(crate) async fn open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(self.closed());
        }
        if self.inner.pools.load().is_some() {
            return Ok(());
        }
        let c = &self.inner.config;
        let eager = c.startup == Startup::Strict;
        let started = Instant::now();
        let result = self.build(eager).await;
        match result {
            Ok(pools) => {
                self.inner.pools.store(Some(Arc::new(pools)));
                if eager {
                    let mut h = Health::new(HealthState::Healthy);
                    h.latency = Some(started.elapsed());
                    self.set_health(h);
                }
                if c.enable_logging {
                    tracing::info!(connection = %c.name, kind = %c.kind, lazy = !eager, "connection pool opened");
                }
                Ok(())
            }
            Err(e) => {
                self.set_unhealthy(&e);
                if c.enable_logging {
                    tracing::warn!(connection = %c.name, kind = %c.kind, error = %e, "connection failed to open");
                }
                Err(e)
            }
        }
    }

    #[allow(unused_variables)]
    async fn build(&self, eager: bool) -> Result<Pools> {
        let c = &self.inner.config;
        let name = &c.name;
        let connect_err = |source| Error::Connect {
            name: name.clone(),
            source,
        };
        let not_built = || Error::NotBuilt {
            name: name.clone(),
            kind: c.kind,
            feature: c.kind.feature(),
        };
        match (c.kind, &c.endpoint) {
            (DbType::Postgres, Endpoint::Server(s)) => {
                #[cfg(feature = "postgres")]
                {
                    dbmanager_providers::postgres::open(s, c.pool.clone(), eager)
                        .await
                        .map(Pools::Postgres)
                        .map_err(connect_err)
                }
                #[cfg(not(feature = "postgres"))]
                Err(not_built())
            }
            (DbType::MySql, Endpoint::Server(s)) => {
                #[cfg(feature = "mysql")]
                {
                    dbmanager_providers::mysql::open(s, c.pool.clone(), eager)
                        .await
                        .map(Pools::MySql)
                        .map_err(connect_err)
                }
                #[cfg(not(feature = "mysql"))]
                Err(not_built())
            }
            (DbType::Sqlite, Endpoint::Sqlite(s)) => {
                #[cfg(feature = "sqlite")]
                {
                    let mut s = s.clone();
                    if let SqliteTarget::Memory { name } = &mut s.target {
                        // Unique per open, so two managers never share a database.
                        let seq = MEMORY_DB_SEQ.fetch_add(1, Ordering::Relaxed);
                        *name = format!("dbmanager-{name}-{}-{seq}", std::process::id());
                    }
                    dbmanager_providers::sqlite::open(&s, c.pool.clone(), eager)
                        .await
                        .map(Pools::Sqlite)
                        .map_err(connect_err)
                }
                #[cfg(not(feature = "sqlite"))]
                Err(not_built())
            }
            (DbType::MsSql | DbType::MongoDb, _) => Err(Error::NotSupported {
                name: name.clone(),
                kind: c.kind,
            }),
            _ => Err(Error::NotSupported {
                name: name.clone(),
                kind: c.kind,
            }),
        }
    }

    fn closed(&self) -> Error {
        Error::Closed {
            name: self.name().to_owned(),
        }
    }

    fn pools(&self) -> Result<Arc<Pools>> {
        if self.is_closed() {
            return Err(self.closed());
        }
        self.inner
            .pools
            .load_full()
            .ok_or_else(|| Error::NotConnected {
                name: self.name().to_owned(),
            })
    }

    fn wrong_kind(&self, expected: DbType) -> Error {
        let actual = self.kind();
        if actual == expected {
            // Same engine, but its feature is off: the pool could not have been built.
            Error::NotBuilt {
                name: self.name().to_owned(),
                kind: actual,
                feature: actual.feature(),
            }
        } else {
            Error::WrongKind {
                name: self.name().to_owned(),
                expected,
                actual,
            }
        }
    }

    /// The managed pool for engine `DB`, or a [`Error::WrongKind`] error.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let pool = mgr.get("primary")?.pool::<sqlx::Postgres>()?;
    /// println!("{:?}", pool.stats());
    /// # Ok(()) }
    /// ```
    pub fn pool<DB: SqlEngine>(&self) -> Result<SqlPool<DB>> {
        if self.kind() != DB::TYPE {
            return Err(self.wrong_kind(DB::TYPE));
        }
        let pools = self.pools()?;
        DB::select(&pools)
            .cloned()
            .ok_or_else(|| self.wrong_kind(DB::TYPE))
    }

    /// Checks out one connection of engine `DB`, counting the wait in the stats.
    /// Dropping it returns it to the pool.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let mut conn = mgr.get("primary")?.acquire::<sqlx::Postgres>().await?;
    /// sqlx::query("select 1").execute(&mut *conn).await.unwrap();
    /// # Ok(()) }
    /// ```
    pub async fn acquire<DB: SqlEngine>(&self) -> Result<sqlx::pool::PoolConnection<DB>> {
        let pool = self.pool::<DB>()?;
        pool.acquire()
            .await
            .map_err(|e| Error::from_provider(self.name(), e))
    }

    /// Checks out one connection and begins a transaction on it.
    pub async fn begin<DB: SqlEngine>(&self) -> Result<sqlx::Transaction<'static, DB>> {
        let conn = self.acquire::<DB>().await?;
        sqlx::Transaction::begin(sqlx::pool::MaybePoolConnection::from(conn), None)
            .await
            .map_err(|e| Error::Database {
                name: self.name().to_owned(),
                source: dbmanager_providers::ProviderError::Database(e),
            })
    }

    /// The sqlx `PgPool` behind this name. It shares this connection's pool, limits and
    /// `close()`; queries run on it directly are not counted in `wait_*` stats.
    #[cfg(feature = "postgres")]
    pub fn postgres(&self) -> Result<sqlx::PgPool> {
        Ok(self.pool::<sqlx::Postgres>()?.sqlx().clone())
    }

    /// The sqlx `MySqlPool` behind this name (MySQL and MariaDB). See [`Self::postgres`].
    #[cfg(feature = "mysql")]
    pub fn mysql(&self) -> Result<sqlx::MySqlPool> {
        Ok(self.pool::<sqlx::MySql>()?.sqlx().clone())
    }

    /// The sqlx `SqlitePool` behind this name. See [`Self::postgres`].
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&self) -> Result<sqlx::SqlitePool> {
        Ok(self.pool::<sqlx::Sqlite>()?.sqlx().clone())
    }

    /// One real round trip to the database (acquire + ping), bounded by
    /// `health_check_timeout`. Updates [`Self::health`] and returns the latency.
    pub async fn health_check(&self) -> Result<Duration> {
        let pools = self.pools()?;
        let result = pools
            .ping(self.inner.config.health_check_timeout)
            .await
            .map_err(|e| Error::from_provider(self.name(), e));
        if self.is_closed() {
            return Err(self.closed());
        }
        match &result {
            Ok(latency) => {
                let mut h = Health::new(HealthState::Healthy);
                h.latency = Some(*latency);
                self.set_health(h);
            }
            Err(e) => self.set_unhealthy(e),
        }
        result
    }

    /// Pool statistics and health.
    pub fn stats(&self) -> ConnectionStats {
        let pool = self
            .inner
            .pools
            .load()
            .as_ref()
            .map(|p| p.stats())
            .unwrap_or_else(|| {
                let mut s = PoolStats::default();
                s.max_open = self.inner.config.pool.max_open;
                s
            });
        ConnectionStats {
            name: self.name().to_owned(),
            kind: self.kind(),
            health: self.health().state,
            pool,
        }
    }

    /// Closes the pool: new acquires fail with [`Error::Closed`], in-flight work may finish
    /// for up to `close_timeout`. Returns whether everything drained in time.
    pub(crate) async fn close(&self) -> bool {
        self.inner.closed.store(true, Ordering::Release);
        self.set_health(Health::new(HealthState::Closed));
        let Some(pools) = self.inner.pools.load_full() else {
            return true;
        };
        let drained = pools.close(self.inner.config.close_timeout).await;
        if !drained && self.inner.config.enable_logging {
            tracing::warn!(
                connection = %self.name(),
                close_timeout = ?self.inner.config.close_timeout,
                "connections still in use when close_timeout expired; they close when returned"
            );
        }
        drained
    }
}
