//! [`SqlPool`]: the pool every SQL provider hands out, a [`sqlx::Pool`] plus the limits and
//! counters sqlx does not have.
//!
//! Why not sqlx's defaults:
//! - sqlx pings every idle connection before handing it out (`test_before_acquire`), one
//!   extra round trip per acquire. Here a connection is pinged only when it sat idle for
//!   longer than `ping_idle_after`; dead servers are otherwise caught by the supervisor.
//! - sqlx has no `max_idle_conns`: the `after_release` hook closes a released connection
//!   when that many are already idle.
//! - sqlx closes connections for lifetime and idle timeout without saying so. The lifetime
//!   is enforced by the hooks here instead (on acquire and on release), so every close is
//!   counted by reason (see [`PoolStats`]).
//!
//! - sqlx has no way to drop every idle connection at once. [`SqlPool::clear`] does (a pool
//!   *generation*, as the MongoDB driver has): every connection opened before the clear is
//!   closed when next seen, idle ones at once, checked-out ones when returned. The
//!   supervisor clears the pool when the server restarts or fails over, so no caller gets a
//!   second dead connection from it (sqlx #2763).
//!
//! The sqlx pool itself is what callers get from `Connection::postgres()` and friends, so
//! SeaORM and other views built from it share the same connections and limits.

mod failover;
mod hooks;
mod lifetimes;
mod password;
mod probe;

pub use probe::{Listener, ListenerFn};

use crate::error::{ProviderError, TimeoutPhase};
use crate::fast::{Cache, PooledConnection, sqlx_idle};
use crate::settings::PoolSettings;
use crate::stats::{PoolCounters, PoolStats};
use arc_swap::ArcSwapOption;
use futures_util::future::BoxFuture;
use hooks::{fill_min_idle, pool_options, spawn_maintenance};
use sqlx::{ConnectOptions, Connection, Database, Pool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use crate::context::{Hook, PoolContext};

/// A per-connection setup step run on every new pooled connection (session settings).
pub type InitFn<DB> = Arc<
    dyn for<'c> Fn(&'c mut <DB as Database>::Connection) -> BoxFuture<'c, Result<(), sqlx::Error>>
        + Send
        + Sync,
>;

/// Asks the server on one connection whether it refuses writes now (see
/// [`EnginePool::read_only`](crate::EnginePool::read_only)).
pub type ReadOnlyFn<DB> = Arc<
    dyn for<'c> Fn(&'c mut <DB as Database>::Connection) -> BoxFuture<'c, Result<bool, sqlx::Error>>
        + Send
        + Sync,
>;

/// Reads one replication-lag sample through the pool (see
/// [`EnginePool::replication_lag`](crate::EnginePool::replication_lag)).
pub type LagFn<DB> = Arc<
    dyn for<'p> Fn(&'p Pool<DB>) -> BoxFuture<'p, Option<crate::provider::LagSample>> + Send + Sync,
>;

/// What the pool asks an engine's server besides the caller's queries.
pub struct ServerChecks<DB: Database> {
    /// How to ask whether the server refuses writes (`None`: the engine cannot tell).
    pub read_only: Option<ReadOnlyFn<DB>>,
    /// How to ask whether the server was promoted moments ago (`None`: cannot tell).
    pub promoted: Option<ReadOnlyFn<DB>>,
    /// Where it listens, for the probe's reachability check (`None`: no network server).
    pub listener: Option<ListenerFn<DB>>,
    /// How to read a replica's lag (`None`: the engine cannot tell).
    pub lag: Option<LagFn<DB>>,
    /// Several servers to choose from, or a kind of server to insist on (`None`: one
    /// server, any role).
    pub failover: Option<Failover<DB>>,
    /// A password read from a file, followed when the file changes (`password_file`).
    pub password_file: Option<PasswordFile<DB>>,
    /// How to put a password into the connect options, for a credential provider
    /// (`None`: the engine takes none from one).
    pub set_credential: Option<password::SetCredential<DB>>,
}

impl<DB: Database> ServerChecks<DB> {
    /// None of them (an embedded database).
    pub fn none() -> Self {
        ServerChecks {
            read_only: None,
            promoted: None,
            listener: None,
            failover: None,
            password_file: None,
            set_credential: None,
            lag: None,
        }
    }
}

/// A sqlx pool with dbmanager's limits, hooks and counters. Cheap to clone.
pub struct SqlPool<DB: Database> {
    inner: Arc<Inner<DB>>,
}

impl<DB: Database> Clone for SqlPool<DB> {
    fn clone(&self) -> Self {
        SqlPool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<DB: Database> std::fmt::Debug for SqlPool<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlPool")
            .field("database", &DB::NAME)
            .field("settings", &self.inner.settings)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner<DB: Database> {
    pool: Pool<DB>,
    counters: Arc<PoolCounters>,
    generation: Arc<Generation>,
    broken: Arc<Notify>,
    cancel: CancellationToken,
    settings: PoolSettings,
    /// The pool as seen by the `after_release` hook (for its idle count). Cleared on close
    /// and on drop, which breaks the pool -> hook -> pool cycle.
    slot: Arc<ArcSwapOption<Pool<DB>>>,
    /// A connection held outside the pool for its whole life (SQLite in-memory databases
    /// vanish when their last connection closes).
    anchor: tokio::sync::Mutex<Option<DB::Connection>>,
    /// How to ask the server whether it is read-only (`None`: the engine cannot tell).
    read_only: Option<ReadOnlyFn<DB>>,
    /// How to ask the server whether it was promoted moments ago.
    promoted: Option<ReadOnlyFn<DB>>,
    /// Where the server listens (`None`: no network server).
    listener: Option<ListenerFn<DB>>,
    /// How to read a replica's lag (`None`: the engine cannot tell).
    lag: Option<LagFn<DB>>,
    /// The servers to choose from (see [`Failover`]).
    failover: Option<Arc<Failover<DB>>>,
    /// The password file to follow (see [`PasswordFile`]).
    password_file: Option<PasswordFile<DB>>,
    /// The credential provider to ask ahead of expiry (see [`crate::credentials`]).
    credentials: Option<password::Provided<DB>>,
    /// The fast path: connections the manager's checkouts borrowed from `pool`.
    cache: Arc<Cache<DB>>,
    /// The session setup every new connection runs; replaced by [`SqlPool::renew`].
    init: SharedInit<DB>,
}

pub use failover::Failover;
pub use password::{PasswordFile, SetCredential, read_password_file};

/// The session setup step, shared with the connect hook so that a renew can replace it.
pub(crate) type SharedInit<DB> = Arc<std::sync::RwLock<Option<InitFn<DB>>>>;

/// The pool's clear mark: connections created at or before it are stale.
#[derive(Debug)]
struct Generation {
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last clear, plus one; 0 = never cleared.
    cleared: AtomicU64,
    count: AtomicU64,
    /// Set when a `min_idle_conns` refill failed to connect, cleared by the next connect
    /// that succeeds (see `fill_min_idle`).
    refill_paused: AtomicBool,
    /// Set by a renew while connects that began with the old connect options are still
    /// under way (see [`SqlPool::renew`]).
    settling: AtomicBool,
    /// While `settling`: whether any of those connects is still under way.
    old_connects: std::sync::Mutex<Option<OldConnects>>,
}

/// Tells whether connects that began with replaced connect options are still under way.
struct OldConnects(Box<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for OldConnects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OldConnects")
    }
}

impl Generation {
    fn new() -> Self {
        Generation {
            epoch: Instant::now(),
            cleared: AtomicU64::new(0),
            count: AtomicU64::new(0),
            refill_paused: AtomicBool::new(false),
            settling: AtomicBool::new(false),
            old_connects: std::sync::Mutex::new(None),
        }
    }

    fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn clear(&self) {
        let now = self.nanos_since_epoch(Instant::now()).saturating_add(1);
        self.cleared.fetch_max(now, Ordering::AcqRel);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Until `old_connects` says none is under way, every connection counts as stale: one
    /// opened since may have used the old connect options (sqlx reads them when a connect
    /// begins and dates the connection when it ends). Then the mark moves to now, after
    /// the last of them, and the connections still checked out close when returned.
    fn settle(&self, old_connects: OldConnects) {
        *self
            .old_connects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(old_connects);
        self.settling.store(true, Ordering::Release);
    }

    /// Whether connects begun with replaced options may still be under way (ends the
    /// settling, moving the clear mark, once none is).
    fn settling(&self) -> bool {
        if !self.settling.load(Ordering::Acquire) {
            return false;
        }
        let mut old = self
            .old_connects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if old.as_ref().is_some_and(|under_way| (under_way.0)()) {
            return true;
        }
        *old = None;
        let now = self.nanos_since_epoch(Instant::now()).saturating_add(1);
        self.cleared.fetch_max(now, Ordering::AcqRel);
        self.settling.store(false, Ordering::Release);
        false
    }

    /// Whether a connection of this `age` was opened before the last clear (or while a
    /// renew settles).
    fn is_stale(&self, age: Duration) -> bool {
        if self.settling() {
            return true;
        }
        let cleared = self.cleared.load(Ordering::Acquire);
        if cleared == 0 {
            return false;
        }
        let created = Instant::now().checked_sub(age).unwrap_or(self.epoch);
        self.nanos_since_epoch(created).saturating_add(1) <= cleared
    }
}

impl<DB: Database> Inner<DB> {
    /// When the password file changed: new connections log in with its new password.
    pub(super) fn follow_password_file(&self) {
        let Some(file) = &self.password_file else {
            return;
        };
        if self.credentials.is_some() {
            // A credential provider replaces the file.
            return;
        }
        let Some(password) = file.changed() else {
            return;
        };
        let options = file.apply(self.pool.connect_options().as_ref().clone(), &password);
        if let Some(failover) = &self.failover {
            failover.update(|o| file.apply(o, &password));
        }
        self.pool.set_connect_options(options);
        tracing::info!("password file changed: new connections use the new password");
    }
}

impl<DB: Database> Inner<DB> {
    /// Whether the credential provider should be asked for the next credential now.
    pub(super) fn credential_due(&self) -> bool {
        self.credentials
            .as_ref()
            .is_some_and(password::Provided::due)
    }

    /// Asks the credential provider for the next credential (within `limit`) when `now`
    /// or the one in use is due, and gives it to new connections.
    pub(super) async fn refresh_credential(&self, now: bool, limit: Duration) {
        let Some(provided) = &self.credentials else {
            return;
        };
        if !now && !provided.due() {
            return;
        }
        match provided.fetch(limit).await {
            Some(Ok(credential)) => {
                let options =
                    provided.apply(self.pool.connect_options().as_ref().clone(), &credential);
                if let Some(failover) = &self.failover {
                    failover.update(|o| provided.apply(o, &credential));
                }
                self.pool.set_connect_options(options);
                tracing::debug!("new connections use the credential provider's new credential");
            }
            Some(Err(e)) => tracing::warn!(error = %e, "the credential in use stays"),
            None => {}
        }
    }
}

impl<DB: Database> Drop for Inner<DB> {
    fn drop(&mut self) {
        self.slot.store(None);
    }
}

/// `connect` within `limit`: running out of time is a connect timeout, and a driver error
/// keeps its cause.
async fn connect_within<T>(
    limit: Duration,
    connect: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, ProviderError> {
    tokio::time::timeout(limit, connect)
        .await
        .map_err(|_| ProviderError::Timeout {
            phase: TimeoutPhase::Connect,
            after: limit,
        })?
        .map_err(ProviderError::Connect)
}

impl<DB: Database> SqlPool<DB> {
    /// Builds the pool. With `eager`, opens `max(1, min_idle)` connections first and fails
    /// if that does not succeed within `connect_timeout`; otherwise connects on first use.
    pub(crate) async fn open(
        settings: PoolSettings,
        connect: <DB::Connection as Connection>::Options,
        init: Option<InitFn<DB>>,
        checks: ServerChecks<DB>,
        eager: bool,
        anchored: bool,
        ctx: PoolContext,
    ) -> Result<Self, ProviderError> {
        let counters = ctx.counters;
        let generation = Arc::new(Generation::new());
        let slot: Arc<ArcSwapOption<Pool<DB>>> = Arc::new(ArcSwapOption::empty());
        let cache_idle = Arc::new(AtomicUsize::new(0));
        let init = Arc::new(std::sync::RwLock::new(init));
        let failover = checks.failover.map(Arc::new);
        let options = pool_options(
            &settings,
            &counters,
            &generation,
            &ctx.broken,
            &slot,
            &cache_idle,
            Arc::clone(&init),
            failover.clone(),
        );

        let limit = settings.connect_timeout;
        let credentials = match (&ctx.credentials, checks.set_credential) {
            (Some(c), Some(apply)) => Some(password::Provided::new(Arc::clone(&c.0), apply)),
            _ => None,
        };
        let mut connect = connect;
        if let Some(provided) = &credentials {
            match provided.fetch(limit).await {
                Some(Ok(credential)) => {
                    connect = provided.apply(connect, &credential);
                    if let Some(f) = &failover {
                        f.update(|o| provided.apply(o, &credential));
                    }
                }
                Some(Err(e)) if eager => return Err(e),
                // Lazy: the next reconnect attempt asks again.
                Some(Err(e)) => tracing::warn!(error = %e, "no credential yet"),
                None => {}
            }
        }
        let connect = match &failover {
            // Strict: a server that will do, found now (its error, with its cause, if none).
            Some(f) if eager => f.search(limit).await?,
            Some(f) => f.current(),
            None => connect,
        };
        let anchor = if anchored {
            Some(connect_within(limit, connect.connect()).await?)
        } else {
            None
        };

        if eager && anchor.is_none() {
            // One connection opened directly first, and closed: sqlx's pool retries a
            // refused connect in its own loop until the time limit and then reports only
            // the timeout, so the cause (refused, unknown host, a rejected password) would
            // be lost. Opened here, a failure comes back at once, with its cause.
            let first = connect_within(limit, connect.connect()).await?;
            let _ = first.close().await;
        }
        let pool = if eager {
            connect_within(limit, options.connect_with(connect)).await?
        } else {
            options.connect_lazy_with(connect)
        };
        slot.store(Some(Arc::new(pool.clone())));
        let cache = Cache::new(
            pool.clone(),
            settings.max_idle,
            settings.max_idle_time,
            settings.ping_idle_after,
            settings.connect_timeout,
            Arc::clone(&counters),
            cache_idle,
            Arc::clone(&ctx.broken),
        );

        let inner = Arc::new(Inner {
            pool,
            counters,
            generation,
            broken: ctx.broken,
            cancel: ctx.cancel.child_token(),
            settings,
            slot,
            anchor: tokio::sync::Mutex::new(anchor),
            read_only: checks.read_only,
            promoted: checks.promoted,
            listener: checks.listener,
            lag: checks.lag,
            failover,
            password_file: checks.password_file,
            credentials,
            cache,
            init,
        });
        if inner.password_file.is_some() {
            let weak = Arc::downgrade(&inner);
            inner.cache.before_connect(Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.follow_password_file();
                }
            }));
        }
        if eager {
            fill_min_idle(&inner).await;
        }
        spawn_maintenance(&ctx.tasks, inner.cancel.clone(), Arc::downgrade(&inner));
        Ok(SqlPool { inner })
    }

    /// The sqlx pool. Every clone of it shares this pool's connections and limits (with
    /// the fast path too: see [`crate::fast`]).
    ///
    /// When the sqlx pool has nothing left to give at that moment, the fast path's idle
    /// connections go back to it at once, so the caller about to use it does not wait for
    /// the maintenance task.
    pub fn sqlx(&self) -> &Pool<DB> {
        self.inner.cache.raw_used.store(true, Ordering::Relaxed);
        self.inner.cache.give_back_if_exhausted();
        &self.inner.pool
    }

    /// One sample of the server's replication state, asked through the raw pool (so it
    /// waits in the same line as the raw pool's callers); `None` when the engine cannot
    /// tell or the question failed.
    pub async fn replication_lag(&self) -> Option<crate::provider::LagSample> {
        let lag = self.inner.lag.clone()?;
        lag(self.sqlx()).await
    }

    /// The settings the pool was built with.
    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
    }

    /// Checks a connection out through the fast path (see [`crate::fast`]), counting the
    /// wait and any timeout in [`PoolStats`].
    pub async fn acquire(&self) -> Result<PooledConnection<DB>, ProviderError> {
        self.acquire_within(self.inner.settings.acquire_timeout)
            .await
    }

    /// As [`acquire`](Self::acquire), giving up after `limit` if that is shorter than
    /// `acquire_timeout` (a caller that already spent part of its budget waiting).
    pub async fn acquire_within(
        &self,
        limit: Duration,
    ) -> Result<PooledConnection<DB>, ProviderError> {
        let counters = &self.inner.counters;
        let _pending = counters.pending();
        let started = Instant::now();
        let result = self
            .inner
            .cache
            .acquire(limit.min(self.inner.settings.acquire_timeout))
            .await;
        counters.record_wait(started.elapsed());
        if let Err(e) = &result {
            match e {
                ProviderError::AcquireTimeout { .. } => {
                    PoolCounters::inc(&counters.acquire_timeouts);
                }
                _ => PoolCounters::inc(&counters.acquire_errors),
            }
        }
        result
    }

    /// Drops every idle connection now and marks every connection open now as stale: a
    /// checked-out one is closed when it is returned, never handed out again. Use it when
    /// the server restarted or failed over. Returns how many idle connections were closed.
    pub fn clear(&self) -> u32 {
        let inner = &self.inner;
        inner.generation.clear();
        // The fast path's idle ones go back to sqlx, whose release hook closes them; before
        // the supervisor is woken, so its probe cannot take one of them.
        let mut closed = inner.cache.clear();
        PoolCounters::inc(&inner.counters.clears);
        inner.broken.notify_one();
        // `try_acquire` pops idle connections without running the hooks (no ping).
        for _ in 0..sqlx_idle(&inner.pool) {
            let Some(mut conn) = inner.pool.try_acquire() else {
                break;
            };
            // sqlx closes it in the background, bounded by its close timeout, so a
            // black-holed socket cannot stall the clear.
            conn.close_on_drop();
            PoolCounters::inc(&inner.counters.closed_cleared);
            closed += 1;
        }
        closed
    }

    /// Renews every session in place, within this pool's budget: new connections use
    /// `fresh`'s connect options and session setup (a pool built lazily with the new
    /// settings, which never connected), and every connection open now is marked stale
    /// (idle ones close at once, checked-out ones when returned), as by
    /// [`clear`](Self::clear). One sqlx pool, and so one semaphore, serves before and
    /// after: the server never sees the old and the new sessions together beyond
    /// `max_open_conns`. Returns `false`, changing nothing, when `fresh` is not a pool of
    /// the same engine with the same limits (or this one anchors an in-memory SQLite
    /// database): the caller then swaps pools.
    pub fn renew(&self, fresh: &dyn crate::EnginePool) -> bool {
        let Some(fresh) = fresh.as_any().downcast_ref::<SqlPool<DB>>() else {
            return false;
        };
        let anchored = match self.inner.anchor.try_lock() {
            Ok(anchor) => anchor.is_some(),
            Err(_) => true,
        };
        // A multi-host pool's options follow its servers: a new pool takes over instead.
        let multi_host = self.inner.failover.is_some() || fresh.inner.failover.is_some();
        if anchored || multi_host || fresh.inner.settings != self.inner.settings || self.is_closed()
        {
            return false;
        }
        let options = fresh.inner.pool.connect_options().as_ref().clone();
        let old = self.inner.pool.connect_options();
        self.inner.pool.set_connect_options(options);
        // A connect under way holds a clone of the options it began with: while one does,
        // the connection it makes may be a session of the old configuration, dated after
        // the clear below. Decided before the clear, so no such connection is reused in
        // between.
        if Arc::strong_count(&old) > 1 {
            self.inner
                .generation
                .settle(OldConnects(Box::new(move || Arc::strong_count(&old) > 1)));
        }
        let init = fresh
            .inner
            .init
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        *self
            .inner
            .init
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = init;
        self.clear();
        true
    }

    /// The pool was replaced: the fast path gives its idle connections back to the sqlx
    /// pool and takes no more, so callers still holding the sqlx pool get them.
    pub fn retire(&self) {
        self.inner.cache.retire();
    }

    /// How many times [`clear`](Self::clear) has run on this pool.
    pub fn clears(&self) -> u64 {
        self.inner.generation.count.load(Ordering::Relaxed)
    }

    /// Idle connections: in the sqlx pool, and in the fast path's cache.
    fn idle(&self) -> u32 {
        let n = sqlx_idle(&self.inner.pool) + self.inner.cache.idle();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Connections checked out right now.
    pub fn in_use(&self) -> u32 {
        self.inner.pool.size().saturating_sub(self.idle())
    }

    /// Live sizes and counters.
    pub fn stats(&self) -> PoolStats {
        let open = self.inner.pool.size();
        let idle = self.idle().min(open);
        self.inner
            .counters
            .snapshot(self.inner.settings.max_open, open, idle)
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.pool.is_closed()
    }

    /// Closes the pool: new acquires fail at once, idle connections close, and connections
    /// in use close as they are returned. Waits up to `drain` for them; returns `true` if
    /// every connection was closed in time. Calling it again is harmless.
    pub async fn close(&self, drain: Duration) -> bool {
        let pool = &self.inner.pool;
        if !pool.is_closed() {
            self.inner
                .counters
                .closed_shutdown
                .fetch_add(u64::from(pool.size()), Ordering::Relaxed);
        }
        self.inner.cancel.cancel();
        self.inner.cache.close();
        let drained = tokio::time::timeout(drain, pool.close()).await.is_ok();
        self.inner.slot.store(None);
        let anchor = self.inner.anchor.lock().await.take();
        if let Some(Err(error)) = match anchor {
            Some(conn) => Some(conn.close().await),
            None => None,
        } {
            tracing::debug!(%error, "closing the anchor connection failed");
        }
        drained
    }
}

crate::provider::engine_pool!(read_only; SqlPool<DB>, DB: Database);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_counts_every_connection_stale_until_the_old_connects_end() {
        let generation = Generation::new();
        assert!(!generation.is_stale(Duration::from_secs(1)));
        let under_way = Arc::new(AtomicBool::new(true));
        let seen = Arc::clone(&under_way);
        generation.settle(OldConnects(Box::new(move || seen.load(Ordering::Acquire))));
        // Even one opened just now: it may be the old connect's.
        assert!(generation.is_stale(Duration::ZERO));
        assert!(generation.is_stale(Duration::ZERO));
        under_way.store(false, Ordering::Release);
        std::thread::sleep(Duration::from_millis(2));
        // The settling ends: the mark moves to now, after the last old connect.
        assert!(generation.is_stale(Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(2));
        assert!(!generation.is_stale(Duration::ZERO));
        assert!(!generation.settling.load(Ordering::Acquire));
    }
}
