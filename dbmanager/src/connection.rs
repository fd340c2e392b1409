//! [`Connection`]: one named database, a cheap handle over its pool, with its health, its
//! outage policy, hot swap and retries. The supervisor that keeps it healthy is in
//! `supervisor.rs`; the state machine is drawn in docs/resilience.md.

#[cfg(feature = "sqlite")]
use crate::config::SqliteTarget;
use crate::config::{ConnectionConfig, DbType, Endpoint, OnUnavailable, Startup};
use crate::engine::{PoolSet, Pools, SqlEngine};
use crate::error::{Error, Result};
use crate::events::{ClearReason, Event, EventKind};
use crate::stats::{ConnectionStats, ViewStats};
use arc_swap::{ArcSwap, ArcSwapOption};
use dbmanager_providers::pool::{PoolContext, SqlPool};
use dbmanager_providers::{ErrorClass, ExposeSecret, ProviderError};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The health of a connection, as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthState {
    /// Not connected yet (a `lazy` connection coming up in the background).
    Connecting,
    /// The last round trip succeeded.
    Healthy,
    /// `failure_threshold` round trips in a row failed (or one failed with an
    /// authentication or configuration error); see [`Health::last_error`].
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
    /// The last error seen (redacted: never holds a password), if not healthy.
    pub last_error: Option<String>,
    /// What kind of error that was.
    pub error_class: Option<ErrorClass>,
    /// Consecutive failed round trips.
    pub failures: u32,
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
            error_class: None,
            failures: 0,
            latency: None,
            observed_at: Some(Instant::now()),
        }
    }

    /// Whether an authentication or configuration error keeps it down: waiting will not
    /// help until someone fixes the account or the settings.
    pub fn is_fatal(&self) -> bool {
        self.state != HealthState::Healthy && self.error_class.is_some_and(ErrorClass::is_fatal)
    }
}

/// What a connection shares with its manager: the event bus, the task tracker and the
/// cancellation token that ends every task on close.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) tasks: TaskTracker,
    pub(crate) cancel: CancellationToken,
}

/// One named connection. Cheap to clone; every clone sees the same pool.
///
/// Obtain it from `Manager::get` (a lock-free lookup) as often as you like, e.g. once per
/// request. Prefer calling `postgres()` & co. per request over keeping the returned sqlx
/// pool: after a [`reconnect`](Self::reconnect) the old pool is closed once drained.
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: ConnectionConfig,
    name: Arc<str>,
    pools: ArcSwapOption<PoolSet>,
    health: ArcSwap<Health>,
    /// Bumped on every health change; acquires waiting out an outage watch it.
    changed: watch::Sender<u64>,
    failures: AtomicU32,
    closed: AtomicBool,
    pub(crate) ctx: PoolContext,
    /// The diesel view's pools share the tasks, token and signal but count apart.
    #[cfg(feature = "diesel")]
    diesel_ctx: PoolContext,
    events: broadcast::Sender<Event>,
    /// One swap at a time.
    swap: tokio::sync::Mutex<()>,
    /// Strings that must never appear in an error kept or published (the password).
    secrets: Vec<String>,
    /// Acquires waiting for the connection to come back (`on_unavailable: wait`).
    pub(crate) waiters: std::sync::atomic::AtomicUsize,
    /// Signalled when the first waiter arrives, so the supervisor can probe sooner.
    pub(crate) waiter_arrived: tokio::sync::Notify,
}

/// Counts a waiting acquire for as long as it waits.
struct WaiterGuard<'a>(&'a Inner);

impl<'a> WaiterGuard<'a> {
    fn new(inner: &'a Inner) -> Self {
        if inner.waiters.fetch_add(1, Ordering::AcqRel) == 0 {
            inner.waiter_arrived.notify_one();
        }
        WaiterGuard(inner)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
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

/// How long a replaced pool keeps serving callers that still hold it before the drain
/// starts counting: a task that loaded the old pool just before the swap still gets a
/// connection from it.
const SWAP_GRACE: Duration = Duration::from_millis(250);

fn secrets_of(config: &ConnectionConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Endpoint::Server(s) = &config.endpoint {
        if let Some(p) = &s.password {
            out.push(p.expose_secret().to_owned());
        }
        if let Some(dsn) = &s.dsn {
            let dsn = dsn.expose_secret();
            out.push(dsn.to_owned());
            out.extend(
                dbmanager_providers::dsn_secrets(dsn)
                    .into_iter()
                    .map(str::to_owned),
            );
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

impl Connection {
    pub(crate) fn new(config: ConnectionConfig, shared: &Shared) -> Self {
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            // A driver that clears its own pool (MongoDB) tells the connection's subscribers.
            let on_driver_clear = dbmanager_providers::pool::Hook::new(move || {
                if let Some(inner) = weak.upgrade() {
                    Connection { inner }.emit(EventKind::PoolCleared {
                        reason: ClearReason::Driver,
                        closed_idle: 0,
                    });
                }
            });
            let ctx = PoolContext {
                tasks: shared.tasks.clone(),
                cancel: shared.cancel.child_token(),
                on_driver_clear: Some(on_driver_clear),
                ..PoolContext::default()
            };
            #[cfg(feature = "diesel")]
            let diesel_ctx = PoolContext {
                counters: Arc::default(),
                tasks: ctx.tasks.clone(),
                cancel: ctx.cancel.clone(),
                broken: Arc::clone(&ctx.broken),
                on_driver_clear: None,
            };
            Inner {
                #[cfg(feature = "diesel")]
                diesel_ctx,
                name: Arc::from(config.name.as_str()),
                secrets: secrets_of(&config),
                config,
                pools: ArcSwapOption::empty(),
                health: ArcSwap::from_pointee(Health::new(HealthState::Connecting)),
                changed: watch::Sender::new(0),
                failures: AtomicU32::new(0),
                closed: AtomicBool::new(false),
                ctx,
                events: shared.events.clone(),
                swap: tokio::sync::Mutex::new(()),
                waiters: std::sync::atomic::AtomicUsize::new(0),
                waiter_arrived: tokio::sync::Notify::new(),
            }
        });
        Connection { inner }
    }

    /// The connection's name (its key under `connections`).
    pub fn name(&self) -> &str {
        &self.inner.name
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

    /// Its last observed health: an atomic load, no lock, no I/O.
    pub fn health(&self) -> Health {
        Health::clone(&self.inner.health.load())
    }

    pub(crate) fn is_open(&self) -> bool {
        self.inner.pools.load().is_some()
    }

    /// Whether the manager has been closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    // ---- events and health ----------------------------------------------------------------

    pub(crate) fn emit(&self, kind: EventKind) {
        let c = &self.inner.config;
        if c.enable_logging {
            match &kind {
                EventKind::HealthChanged { from, to, error } => {
                    if *to == HealthState::Unhealthy {
                        tracing::warn!(connection = %c.name, %from, %to, error = error.as_deref().unwrap_or(""), "connection health changed");
                    } else {
                        tracing::info!(connection = %c.name, %from, %to, "connection health changed");
                    }
                }
                EventKind::ReconnectAttempt { .. }
                | EventKind::AcquireTimedOut { .. }
                | EventKind::Unavailable { .. } => {
                    tracing::debug!(connection = %c.name, event = kind.name(), ?kind, "connection event");
                }
                _ => {
                    tracing::info!(connection = %c.name, event = kind.name(), ?kind, "connection event");
                }
            }
        }
        // An error only means nobody is subscribed.
        let _ = self.inner.events.send(Event {
            connection: Arc::clone(&self.inner.name),
            at: SystemTime::now(),
            kind,
        });
    }

    /// Removes every secret of this connection from `text`.
    pub(crate) fn redact(&self, text: String) -> String {
        let mut text = text;
        for s in &self.inner.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "<redacted>");
            }
        }
        text
    }

    fn set_health(&self, health: Health) {
        let from = self.inner.health.load().state;
        let to = health.state;
        let error = health.last_error.clone();
        self.inner.health.store(Arc::new(health));
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
        if from != to {
            self.emit(EventKind::HealthChanged { from, to, error });
        }
    }

    /// Records the outcome of one round trip (a health check or a reconnect attempt) and
    /// moves the state machine. Returns the error's class.
    pub(crate) fn observe(&self, result: &Result<Duration, ProviderError>) -> Option<ErrorClass> {
        if self.is_closed() {
            return None;
        }
        match result {
            Ok(latency) => {
                self.inner.failures.store(0, Ordering::Relaxed);
                let was = self.inner.health.load().state;
                let mut h = Health::new(HealthState::Healthy);
                h.latency = Some(*latency);
                self.set_health(h);
                if was != HealthState::Healthy {
                    self.emit(EventKind::Connected { latency: *latency });
                }
                None
            }
            Err(e) => {
                let class = e.class();
                if class.clears_pool() {
                    let reason = match e {
                        ProviderError::Timeout { .. } => ClearReason::HealthCheckTimeout,
                        _ => ClearReason::HealthCheckFailed(class),
                    };
                    self.clear_with(reason);
                }
                let failures = self.inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let current = self.inner.health.load_full();
                let message = self.redact(e.to_string());
                let down = class.is_fatal()
                    || failures >= self.inner.config.failure_threshold
                    || current.state != HealthState::Healthy;
                let state = if down {
                    HealthState::Unhealthy
                } else {
                    HealthState::Healthy
                };
                let mut h = Health::new(state);
                h.failures = failures;
                h.latency = current.latency;
                h.last_error = Some(message);
                h.error_class = Some(class);
                self.set_health(h);
                Some(class)
            }
        }
    }

    /// Drops every idle connection of the pool now and marks the others stale, so no caller
    /// gets a connection opened before this moment. The supervisor does this by itself
    /// when the server restarts or fails over; call it after you changed something on the
    /// server that open sessions would not see.
    pub fn clear(&self) {
        self.clear_with(ClearReason::Requested);
    }

    fn clear_with(&self, reason: ClearReason) {
        if let Some(pools) = self.inner.pools.load_full() {
            let closed_idle = pools.clear();
            self.emit(EventKind::PoolCleared {
                reason,
                closed_idle,
            });
        }
    }

    /// Tells the connection that a query on it failed, so it can react as it would to a
    /// failed health check: on a lost connection or a read-only server (a failover) the
    /// pool is cleared and the supervisor checks the server at once. Returns the error's
    /// class; [`ErrorClass::is_transient`] says whether a retry may succeed.
    ///
    /// [`retry`](Self::retry) and `acquire` call this themselves; call it when you run
    /// queries on the raw sqlx pool and want the same reaction.
    pub fn report_error(&self, error: &sqlx::Error) -> ErrorClass {
        self.report_class(dbmanager_providers::classify(error))
    }

    /// As [`report_error`](Self::report_error), for a MongoDB error. The driver already
    /// clears its own pool on network errors; this also makes the supervisor check now.
    #[cfg(feature = "mongodb")]
    pub fn report_mongo_error(&self, error: &mongodb::error::Error) -> ErrorClass {
        self.report_class(dbmanager_providers::mongo::classify(error))
    }

    /// As [`report_error`](Self::report_error), for a SQL Server (tiberius) error.
    #[cfg(feature = "mssql")]
    pub fn report_mssql_error(&self, error: &tiberius::error::Error) -> ErrorClass {
        self.report_class(dbmanager_providers::mssql::classify(error))
    }

    fn report_class(&self, class: ErrorClass) -> ErrorClass {
        if class.clears_pool() && !self.is_closed() {
            self.clear_with(ClearReason::ErrorReported(class));
        }
        class
    }

    /// Opens the pool. Strict: connects now (bounded by `connect_timeout`) and fails if it
    /// cannot. Lazy: builds the pool without connecting; the supervisor connects it.
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
        match self.build(eager).await {
            Ok(pools) => {
                self.inner.pools.store(Some(Arc::new(pools)));
                if eager {
                    self.observe(&Ok(started.elapsed()));
                }
                if c.enable_logging {
                    tracing::info!(connection = %c.name, kind = %c.kind, lazy = !eager, "connection pool opened");
                }
                Ok(())
            }
            Err(e) => {
                let mut h = Health::new(HealthState::Unhealthy);
                h.last_error = Some(self.redact(e.to_string()));
                h.error_class = e.class();
                self.set_health(h);
                if c.enable_logging {
                    tracing::warn!(connection = %c.name, kind = %c.kind, error = %e, "connection failed to open");
                }
                Err(e)
            }
        }
    }

    #[allow(unused_variables)]
    /// Builds one pool generation: the main pool with its share of the budget and, with
    /// `default_orm: diesel`, the diesel pool (which is then the one connected `eager`ly).
    async fn build(&self, eager: bool) -> Result<PoolSet> {
        let c = &self.inner.config;
        let diesel_first = c.default_orm == crate::config::DefaultOrm::Diesel;
        #[allow(unused_mut)]
        let mut sqlite = None;
        let main = self.build_main(eager && !diesel_first, &mut sqlite).await?;
        #[allow(unused_mut)]
        let mut set = PoolSet::new(main);
        #[cfg(feature = "sqlite")]
        {
            set.sqlite = sqlite;
        }
        #[cfg(feature = "sea-orm")]
        if c.default_orm == crate::config::DefaultOrm::SeaOrm {
            let _ = set.sea_orm.set(self.sea_orm_of(&set.main)?);
        }
        #[cfg(feature = "diesel")]
        if diesel_first {
            set.diesel_first = true;
            let pool = self.build_diesel(&set, eager).await?;
            let _ = set.diesel.set(pool);
        }
        Ok(set)
    }

    /// The main pool's settings: `max_open_conns` less the diesel view's part.
    #[cfg_attr(
        not(any(
            feature = "postgres",
            feature = "mysql",
            feature = "sqlite",
            feature = "mongodb",
            feature = "mssql"
        )),
        allow(dead_code)
    )]
    fn main_settings(&self) -> dbmanager_providers::settings::PoolSettings {
        let c = &self.inner.config;
        let mut p = c.pool.clone();
        if c.diesel_conns > 0 {
            p.max_open = p.max_open.saturating_sub(c.diesel_conns).max(1);
            p.max_idle = p.max_idle.min(p.max_open);
            p.min_idle = if c.default_orm == crate::config::DefaultOrm::Diesel {
                0
            } else {
                p.min_idle.min(p.max_idle)
            };
        }
        p
    }

    #[allow(unused_variables)]
    async fn build_main(
        &self,
        eager: bool,
        sqlite_out: &mut Option<dbmanager_providers::settings::SqliteSettings>,
    ) -> Result<Pools> {
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
                    dbmanager_providers::postgres::open(
                        s,
                        self.main_settings(),
                        eager,
                        self.inner.ctx.clone(),
                    )
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
                    dbmanager_providers::mysql::open(
                        s,
                        self.main_settings(),
                        eager,
                        self.inner.ctx.clone(),
                    )
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
                    *sqlite_out = Some(s.clone());
                    dbmanager_providers::sqlite::open(
                        &s,
                        self.main_settings(),
                        eager,
                        self.inner.ctx.clone(),
                    )
                    .await
                    .map(Pools::Sqlite)
                    .map_err(connect_err)
                }
                #[cfg(not(feature = "sqlite"))]
                Err(not_built())
            }
            (DbType::MongoDb, Endpoint::Server(s)) => {
                #[cfg(feature = "mongodb")]
                {
                    dbmanager_providers::mongo::open(
                        s,
                        &c.mongo,
                        self.main_settings(),
                        eager,
                        self.inner.ctx.clone(),
                    )
                    .await
                    .map(Pools::Mongo)
                    .map_err(connect_err)
                }
                #[cfg(not(feature = "mongodb"))]
                Err(not_built())
            }
            (DbType::MsSql, Endpoint::Server(s)) => {
                #[cfg(feature = "mssql")]
                {
                    dbmanager_providers::mssql::open(
                        s,
                        self.main_settings(),
                        eager,
                        self.inner.ctx.clone(),
                    )
                    .await
                    .map(Pools::MsSql)
                    .map_err(connect_err)
                }
                #[cfg(not(feature = "mssql"))]
                Err(not_built())
            }
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

    fn pools(&self) -> Result<Arc<PoolSet>> {
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
        DB::select(&pools.main)
            .cloned()
            .ok_or_else(|| self.wrong_kind(DB::TYPE))
    }

    fn unavailable(&self, waited: Duration) -> Error {
        let h = self.inner.health.load();
        self.emit(EventKind::Unavailable { waited });
        Error::Unavailable {
            name: self.name().to_owned(),
            waited,
            last_error: h.last_error.clone(),
            class: h.error_class,
        }
    }

    /// Applies the outage policy before an acquire: returns at once when healthy; under
    /// `fail_fast` fails at once when not; under `wait` waits for the supervisor to bring
    /// the connection back, until `deadline`.
    async fn ready(&self, started: Instant, deadline: Instant) -> Result<()> {
        let mut changes = self.inner.changed.subscribe();
        loop {
            if self.is_closed() {
                return Err(self.closed());
            }
            let health = self.inner.health.load();
            match health.state {
                HealthState::Healthy => return Ok(()),
                HealthState::Closed => return Err(self.closed()),
                HealthState::Connecting | HealthState::Unhealthy => {
                    if self.inner.config.on_unavailable == OnUnavailable::FailFast
                        || health.is_fatal()
                    {
                        return Err(self.unavailable(started.elapsed()));
                    }
                }
            }
            drop(health);
            // Waiting callers make the supervisor probe at `retry_delay` pace.
            let _waiting = WaiterGuard::new(&self.inner);
            let wait = tokio::time::timeout_at(deadline.into(), changes.changed()).await;
            if !matches!(wait, Ok(Ok(()))) {
                return Err(self.unavailable(started.elapsed()));
            }
        }
    }

    /// Resolves when the connection stops being healthy (the circuit opens).
    async fn went_down(&self) {
        let mut changes = self.inner.changed.subscribe();
        loop {
            if self.inner.health.load().state != HealthState::Healthy {
                return;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Checks out one connection of engine `DB`, counting the wait in the stats.
    /// Dropping it returns it to the pool.
    ///
    /// While the connection is down, `on_unavailable` decides: `wait` waits for it to come
    /// back (within `acquire_timeout`), `fail_fast` fails at once; both fail with
    /// [`Error::Unavailable`]. A connect error met while the connection still looked
    /// healthy is reported (the pool is cleared and the supervisor checks at once) and,
    /// under `wait`, waited out the same way.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let mut conn = mgr.get("primary")?.acquire::<sqlx::Postgres>().await?;
    /// sqlx::query("select 1").execute(&mut *conn).await.unwrap();
    /// # Ok(()) }
    /// ```
    pub async fn acquire<DB: SqlEngine>(&self) -> Result<sqlx::pool::PoolConnection<DB>> {
        self.checkout(DB::TYPE, |pools, left| {
            DB::select(&pools.main)
                .cloned()
                .map(|pool| async move { pool.acquire_within(left).await })
        })
        .await
    }

    /// Waits until the connection may be used, by its `on_unavailable` policy: returns at
    /// once when it is healthy; when it is down, fails at once under `fail_fast` and waits
    /// (up to `acquire_timeout`) for the supervisor to bring it back under `wait`. Fails
    /// with [`Error::Unavailable`].
    ///
    /// `acquire`, `begin`, `retry` and `mssql()` do this themselves. Call it before work on
    /// a handle that has no checkout, such as the MongoDB client from
    /// [`mongo`](Self::mongo), to give that work the same outage behaviour.
    pub async fn available(&self) -> Result<()> {
        let started = Instant::now();
        self.ready(started, started + self.inner.config.pool.acquire_timeout)
            .await
    }

    /// The checkout loop shared by every pooled engine: the outage policy, then the pool's
    /// own acquire (`get`, which returns `None` when the pool is not of the `expected`
    /// engine), with connect errors reported and, under `wait`, waited out.
    async fn checkout<T, Fut>(
        &self,
        expected: DbType,
        get: impl Fn(&PoolSet, Duration) -> Option<Fut>,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, ProviderError>>,
    {
        let c = &self.inner.config;
        if self.kind() != expected {
            return Err(self.wrong_kind(expected));
        }
        let started = Instant::now();
        let deadline = started + c.pool.acquire_timeout;
        loop {
            self.ready(started, deadline).await?;
            let pools = self.pools()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(acquiring) = get(&pools, left) else {
                return Err(self.wrong_kind(expected));
            };
            let acquired = if c.on_unavailable == OnUnavailable::FailFast {
                // sqlx keeps retrying a refused connect until its deadline; under
                // fail_fast an acquire stuck there fails as soon as the circuit opens.
                tokio::select! {
                    r = acquiring => r,
                    () = self.went_down() => return Err(self.unavailable(started.elapsed())),
                }
            } else {
                acquiring.await
            };
            match acquired {
                Ok(conn) => return Ok(conn),
                // Swapped under us: the next loop takes the new pool.
                Err(ProviderError::Closed) if !self.is_closed() => {}
                Err(e @ ProviderError::AcquireTimeout { .. }) => {
                    let waited = started.elapsed();
                    self.emit(EventKind::AcquireTimedOut { waited });
                    return Err(match e {
                        ProviderError::AcquireTimeout { .. } => Error::AcquireTimeout {
                            name: self.name().to_owned(),
                            waited,
                        },
                        other => Error::from_provider(self.name(), other),
                    });
                }
                Err(e) if is_connect_failure(&e) => {
                    let class = self.report_class(e.class());
                    let waiting = c.on_unavailable == OnUnavailable::Wait && class.is_transient();
                    if !waiting || Instant::now() >= deadline {
                        return Err(Error::Connect {
                            name: self.name().to_owned(),
                            source: e,
                        });
                    }
                    // Give the supervisor a moment to notice, then wait by the policy.
                    let mut changes = self.inner.changed.subscribe();
                    let pause = c.retry.delay.min(deadline - Instant::now());
                    let _ = tokio::time::timeout(pause, changes.changed()).await;
                }
                Err(e) => return Err(Error::from_provider(self.name(), e)),
            }
        }
    }

    /// Checks out one connection and begins a transaction on it.
    pub async fn begin<DB: SqlEngine>(&self) -> Result<sqlx::Transaction<'static, DB>> {
        let conn = self.acquire::<DB>().await?;
        sqlx::Transaction::begin(sqlx::pool::MaybePoolConnection::from(conn), None)
            .await
            .map_err(|e| {
                self.report_error(&e);
                Error::Database {
                    name: self.name().to_owned(),
                    source: ProviderError::Database(e),
                }
            })
    }

    /// Runs an idempotent operation, retrying it with the connection's backoff
    /// (`retry_attempts`, `retry_delay`, `retry_max_delay`) when it fails with a transient
    /// error ([`ErrorClass::is_transient`]): a lost connection, a failover, a deadlock...
    /// Each attempt gets a fresh connection through [`acquire`](Self::acquire), so it waits
    /// out an outage under `on_unavailable: wait`. Errors are reported (see
    /// [`report_error`](Self::report_error)), so a lost connection clears the pool before
    /// the next attempt. Only use it for work that is safe to run twice.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let n: i64 = mgr.get("primary")?.retry(|mut conn: sqlx::pool::PoolConnection<sqlx::Postgres>| async move {
    ///     sqlx::query_scalar("select count(*) from users").fetch_one(&mut *conn).await
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn retry<DB, T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        DB: SqlEngine,
        F: FnMut(sqlx::pool::PoolConnection<DB>) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let mut delays = crate::supervisor::Backoff::single_round(&self.inner.config.retry);
        loop {
            let conn = self.acquire::<DB>().await?;
            match op(conn).await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let class = self.report_error(&e);
                    if class.is_transient()
                        && !self.is_closed()
                        && let Some(delay) = delays.next()
                    {
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(Error::Database {
                        name: self.name().to_owned(),
                        source: ProviderError::Database(e),
                    });
                }
            }
        }
    }

    /// The sqlx `PgPool` behind this name. It shares this connection's pool, limits and
    /// `close()`; queries run on it directly are not counted in `wait_*` stats and do not
    /// wait out outages. Call it per use rather than keeping the pool: after a
    /// [`reconnect`](Self::reconnect) the old one is closed once drained.
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

    /// The MongoDB client behind this name (cheap to clone; it shares this connection's
    /// pool). The driver waits for a usable server up to `acquire_timeout` by itself; call
    /// [`available`](Self::available) first for the `on_unavailable` policy. Call it per use
    /// rather than keeping the client: after a [`reconnect`](Self::reconnect) the old one is
    /// shut down once drained.
    #[cfg(feature = "mongodb")]
    pub fn mongo(&self) -> Result<mongodb::Client> {
        Ok(self.mongo_pool()?.client().clone())
    }

    /// A handle to this connection's configured `database` (or the one the DSN names).
    #[cfg(feature = "mongodb")]
    pub fn mongo_database(&self) -> Result<mongodb::Database> {
        self.mongo_pool()?
            .database()
            .ok_or_else(|| Error::NoDatabase {
                name: self.name().to_owned(),
            })
    }

    #[cfg(feature = "mongodb")]
    fn mongo_pool(&self) -> Result<dbmanager_providers::mongo::MongoPool> {
        if self.kind() != DbType::MongoDb {
            return Err(self.wrong_kind(DbType::MongoDb));
        }
        match &self.pools()?.main {
            Pools::Mongo(p) => Ok(p.clone()),
            #[allow(unreachable_patterns)]
            _ => Err(self.wrong_kind(DbType::MongoDb)),
        }
    }

    /// Checks out a pooled SQL Server connection (it dereferences to
    /// [`tiberius::Client`]); dropping it returns it. Follows the outage policy and counts
    /// the wait like [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let mut client = mgr.get("legacy")?.mssql().await?;
    /// let row = client.query("SELECT 1", &[]).await.unwrap().into_row().await.unwrap();
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "mssql")]
    pub async fn mssql(&self) -> Result<dbmanager_providers::mssql::PooledClient> {
        self.checkout(DbType::MsSql, |pools, left| match &pools.main {
            Pools::MsSql(p) => {
                let pool = p.clone();
                Some(async move { pool.acquire_within(left).await })
            }
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .await
    }

    /// One round trip through the current pool, bounded by `health_check_timeout`.
    pub(crate) async fn probe(&self) -> Result<Duration, ProviderError> {
        let Some(pools) = self.inner.pools.load_full() else {
            return Err(ProviderError::Closed);
        };
        pools.ping(self.inner.config.health_check_timeout).await
    }

    /// One real round trip to the database (acquire + ping), bounded by
    /// `health_check_timeout`. Updates [`Self::health`] as the supervisor's checks do and
    /// returns the latency.
    pub async fn health_check(&self) -> Result<Duration> {
        self.pools()?;
        let result = self.probe().await;
        if self.is_closed() {
            return Err(self.closed());
        }
        self.observe(&result);
        result.map_err(|e| Error::from_provider(self.name(), e))
    }

    /// Replaces the pool without dropping work in flight: builds and connects a new pool
    /// (one connect, bounded by `connect_timeout`), switches new acquires to it atomically,
    /// lets work on the old pool finish (up to `drain_timeout`), then closes the old pool.
    /// If the new pool cannot connect, the old one stays and the error is returned.
    ///
    /// Returns once the old pool is closed. Callers see no error and no pause beyond what
    /// the swap itself takes; a raw sqlx pool kept from before the swap fails with
    /// `PoolClosed` once drained (take it from the connection per use instead).
    pub async fn reconnect(&self) -> Result<()> {
        let _one_at_a_time = self.inner.swap.lock().await;
        if self.is_closed() {
            return Err(self.closed());
        }
        let started = Instant::now();
        let new = Arc::new(self.build(true).await?);
        let connect = started.elapsed();
        let old = self.inner.pools.swap(Some(Arc::clone(&new)));
        if self.is_closed() {
            // `close()` ran meanwhile and may have missed the new pool.
            new.close(Duration::ZERO).await;
            return Err(self.closed());
        }
        self.emit(EventKind::Swapped { connect });
        self.observe(&Ok(connect));
        if let Some(old) = old {
            let drain_started = Instant::now();
            let complete = self.drain(&old).await;
            self.emit(EventKind::Drained {
                complete,
                took: drain_started.elapsed(),
            });
        }
        Ok(())
    }

    /// Waits for a replaced pool's checked-out connections to come back (after a short
    /// grace, within `drain_timeout`), then closes it.
    async fn drain(&self, old: &PoolSet) -> bool {
        let limit = self.inner.config.drain_timeout;
        let deadline = Instant::now() + limit;
        tokio::time::sleep(SWAP_GRACE.min(limit)).await;
        while old.in_use() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        old.close(deadline.saturating_duration_since(Instant::now()))
            .await
    }

    /// Pool statistics and health.
    pub fn stats(&self) -> ConnectionStats {
        let set = self.inner.pools.load_full();
        let views: Vec<ViewStats> = set
            .as_ref()
            .map(|p| p.views())
            .unwrap_or_default()
            .into_iter()
            .map(|(view, pool)| ViewStats::new(view, pool))
            .collect();
        let mut pool = set.as_ref().map(|p| p.stats()).unwrap_or_default();
        // The budget, whether or not every view was created.
        pool.max_open = self.inner.config.pool.max_open;
        ConnectionStats {
            name: self.name().to_owned(),
            kind: self.kind(),
            health: self.health().state,
            pool,
            views,
        }
    }

    // ---- ORM views ------------------------------------------------------------------------

    #[cfg_attr(not(any(feature = "sea-orm", feature = "diesel")), allow(dead_code))]
    fn no_view(&self, view: &'static str) -> Error {
        Error::NoView {
            name: self.name().to_owned(),
            view,
            kind: self.kind(),
        }
    }

    /// A SeaORM connection over this connection's sqlx pool: the same connections, limits
    /// and stats as [`postgres`](Self::postgres) & co. (SeaORM checks connections out of
    /// that pool itself). Cheap; created at connect with `default_orm: sea_orm`, else on
    /// first call. Like the raw sqlx pool it does not wait out outages: call
    /// [`available`](Self::available) first for the `on_unavailable` policy. Call it per
    /// use rather than keeping it: after a [`reconnect`](Self::reconnect) the old one
    /// fails with a closed-pool error once drained.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// use dbmanager::sea_orm::ConnectionTrait;
    /// let db = mgr.get("primary")?.sea_orm()?;
    /// db.execute_unprepared("select 1").await.unwrap();
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sea-orm")]
    pub fn sea_orm(&self) -> Result<sea_orm::DatabaseConnection> {
        if !matches!(
            self.kind(),
            DbType::Postgres | DbType::MySql | DbType::Sqlite
        ) {
            return Err(self.no_view("SeaORM"));
        }
        let set = self.pools()?;
        if let Some(db) = set.sea_orm.get() {
            return Ok(db.clone());
        }
        let db = self.sea_orm_of(&set.main)?;
        Ok(set.sea_orm.get_or_init(|| db).clone())
    }

    #[cfg(feature = "sea-orm")]
    fn sea_orm_of(&self, main: &Pools) -> Result<sea_orm::DatabaseConnection> {
        match main {
            #[cfg(feature = "postgres")]
            Pools::Postgres(p) => Ok(sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(
                p.sqlx().clone(),
            )),
            #[cfg(feature = "mysql")]
            Pools::MySql(p) => Ok(sea_orm::SqlxMySqlConnector::from_sqlx_mysql_pool(
                p.sqlx().clone(),
            )),
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(p) => Ok(sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(
                p.sqlx().clone(),
            )),
            #[allow(unreachable_patterns)]
            _ => Err(self.no_view("SeaORM")),
        }
    }

    /// The diesel pool's settings: `diesel_conns` of the budget.
    #[cfg(feature = "diesel")]
    fn diesel_settings(&self) -> dbmanager_providers::settings::PoolSettings {
        let c = &self.inner.config;
        let mut p = c.pool.clone();
        p.max_open = c.diesel_conns;
        p.max_idle = p.max_idle.min(p.max_open);
        p.min_idle = if c.default_orm == crate::config::DefaultOrm::Diesel {
            p.min_idle.min(p.max_idle)
        } else {
            0
        };
        p
    }

    #[cfg(feature = "diesel")]
    #[allow(unused_variables)]
    async fn build_diesel(&self, set: &PoolSet, eager: bool) -> Result<crate::engine::DieselPools> {
        use crate::engine::DieselPools;
        let c = &self.inner.config;
        if c.diesel_conns == 0 {
            return Err(Error::NoBudget {
                name: self.name().to_owned(),
            });
        }
        let settings = self.diesel_settings();
        let ctx = self.inner.diesel_ctx.clone();
        let connect_err = |source| Error::Connect {
            name: self.name().to_owned(),
            source,
        };
        match (c.kind, &c.endpoint) {
            #[cfg(feature = "postgres")]
            (DbType::Postgres, Endpoint::Server(s)) => {
                dbmanager_providers::diesel::open_postgres(s, settings, eager, ctx)
                    .await
                    .map(DieselPools::Postgres)
                    .map_err(connect_err)
            }
            #[cfg(feature = "mysql")]
            (DbType::MySql, Endpoint::Server(s)) => {
                dbmanager_providers::diesel::open_mysql(s, settings, eager, ctx)
                    .await
                    .map(DieselPools::MySql)
                    .map_err(connect_err)
            }
            #[cfg(feature = "sqlite")]
            (DbType::Sqlite, Endpoint::Sqlite(_)) => {
                let Some(sqlite) = &set.sqlite else {
                    return Err(self.no_view("diesel"));
                };
                dbmanager_providers::diesel::open_sqlite(sqlite, settings, eager, ctx)
                    .await
                    .map(DieselPools::Sqlite)
                    .map_err(connect_err)
            }
            _ => Err(self.no_view("diesel")),
        }
    }

    /// The diesel pool of the current generation, created on first use.
    #[cfg(feature = "diesel")]
    async fn diesel_pools(&self, set: &PoolSet) -> Result<crate::engine::DieselPools> {
        let pools = set
            .diesel
            .get_or_try_init(|| self.build_diesel(set, false))
            .await?
            .clone();
        if self.is_closed() {
            // `close()` may have run before the pool existed.
            pools.close_now().await;
            return Err(self.closed());
        }
        Ok(pools)
    }

    /// Checks out a diesel-async connection of the engine `select` picks, through the
    /// outage policy, counting the wait (as [`acquire`](Self::acquire) does).
    #[cfg(feature = "diesel")]
    async fn diesel_checkout<K: dbmanager_providers::managed::Connector>(
        &self,
        expected: DbType,
        select: fn(
            &crate::engine::DieselPools,
        ) -> Option<&dbmanager_providers::managed::ManagedPool<K>>,
    ) -> Result<dbmanager_providers::managed::Object<K>> {
        if self.kind() != expected {
            return Err(if matches!(self.kind(), DbType::MongoDb | DbType::MsSql) {
                self.no_view("diesel")
            } else {
                self.wrong_kind(expected)
            });
        }
        // A swap between creating the pool and checking out makes `get` find a set without
        // a diesel pool (it answers "not built"): create it on the new set and go again.
        let mut last = None;
        for _ in 0..3 {
            // Create the pool first (no connect), so the checkout below can borrow it.
            let set = self.pools()?;
            self.diesel_pools(&set).await?;
            match self
                .checkout(expected, |set, left| {
                    let pool = set.diesel.get().and_then(select)?.clone();
                    Some(async move { pool.acquire_within(left).await })
                })
                .await
            {
                Err(e @ Error::NotBuilt { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| self.no_view("diesel")))
    }

    /// Checks out a pooled diesel-async PostgreSQL connection (use it as `&mut conn` with
    /// diesel-async's `RunQueryDsl`; dropping it returns it). The diesel view opens its own
    /// sockets within `diesel_conns` of the budget; it follows the outage policy and counts
    /// its waits as [`acquire`](Self::acquire) does.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// use dbmanager::diesel::r#async::RunQueryDsl;
    /// let mut conn = mgr.get("primary")?.diesel_postgres().await?;
    /// dbmanager::diesel::orm::sql_query("select 1").execute(&mut conn).await.unwrap();
    /// # Ok(()) }
    /// ```
    #[cfg(all(feature = "diesel", feature = "postgres"))]
    pub async fn diesel_postgres(&self) -> Result<crate::diesel::PgConn> {
        self.diesel_checkout(DbType::Postgres, |p| match p {
            crate::engine::DieselPools::Postgres(p) => Some(p),
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .await
    }

    /// As [`diesel_postgres`](Self::diesel_postgres), for MySQL and MariaDB.
    #[cfg(all(feature = "diesel", feature = "mysql"))]
    pub async fn diesel_mysql(&self) -> Result<crate::diesel::MysqlConn> {
        self.diesel_checkout(DbType::MySql, |p| match p {
            crate::engine::DieselPools::MySql(p) => Some(p),
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .await
    }

    /// As [`diesel_postgres`](Self::diesel_postgres), for SQLite (diesel's SQLite on a
    /// blocking thread, on the same database as the sqlx pool, `:memory:` included).
    #[cfg(all(feature = "diesel", feature = "sqlite"))]
    pub async fn diesel_sqlite(&self) -> Result<crate::diesel::SqliteConn> {
        self.diesel_checkout(DbType::Sqlite, |p| match p {
            crate::engine::DieselPools::Sqlite(p) => Some(p),
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .await
    }

    /// As [`report_error`](Self::report_error), for a diesel error.
    #[cfg(feature = "diesel")]
    pub fn report_diesel_error(&self, error: &::diesel::result::Error) -> ErrorClass {
        self.report_class(dbmanager_providers::diesel::classify(error))
    }

    /// Closes the pool: new acquires fail with [`Error::Closed`], in-flight work may finish
    /// for up to `close_timeout`, the supervisor and the pool's background task end.
    /// Returns whether everything drained in time.
    pub(crate) async fn close(&self) -> bool {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.ctx.cancel.cancel();
        let was = self.inner.health.load().state;
        if was != HealthState::Closed {
            self.set_health(Health::new(HealthState::Closed));
            self.emit(EventKind::Closed);
        }
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

/// Whether an acquire failed because a new connection could not be opened.
fn is_connect_failure(e: &ProviderError) -> bool {
    match e {
        ProviderError::Connect(_) => true,
        ProviderError::Driver { phase, .. } => *phase == dbmanager_providers::Phase::Connect,
        ProviderError::Timeout { phase, .. } => *phase == "connect",
        _ => false,
    }
}
