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
//! The sqlx pool itself is what callers get from `Connection::postgres()` and friends, so
//! SeaORM and other views built from it share the same connections and limits.

use crate::error::ProviderError;
use crate::settings::PoolSettings;
use crate::stats::{PoolCounters, PoolStats};
use arc_swap::ArcSwapOption;
use futures_util::future::BoxFuture;
use sqlx::pool::{PoolConnection, PoolConnectionMetadata, PoolOptions};
use sqlx::{ConnectOptions, Connection, Database, Pool};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A per-connection setup step run on every new pooled connection (session settings).
pub type InitFn<DB> = Arc<
    dyn for<'c> Fn(&'c mut <DB as Database>::Connection) -> BoxFuture<'c, Result<(), sqlx::Error>>
        + Send
        + Sync,
>;

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
    settings: PoolSettings,
    /// The pool as seen by the `after_release` hook (for its idle count). Cleared on close
    /// and on drop, which breaks the pool -> hook -> pool cycle.
    slot: Arc<ArcSwapOption<Pool<DB>>>,
    /// A connection held outside the pool for its whole life (SQLite in-memory databases
    /// vanish when their last connection closes).
    anchor: tokio::sync::Mutex<Option<DB::Connection>>,
}

impl<DB: Database> Drop for Inner<DB> {
    fn drop(&mut self) {
        self.slot.store(None);
    }
}

impl<DB: Database> SqlPool<DB> {
    /// Builds the pool. With `eager`, opens `max(1, min_idle)` connections first and fails
    /// if that does not succeed within `connect_timeout`; otherwise connects on first use.
    pub(crate) async fn open(
        settings: PoolSettings,
        connect: <DB::Connection as Connection>::Options,
        init: Option<InitFn<DB>>,
        eager: bool,
        anchored: bool,
    ) -> Result<Self, ProviderError> {
        let counters = Arc::new(PoolCounters::default());
        let slot: Arc<ArcSwapOption<Pool<DB>>> = Arc::new(ArcSwapOption::empty());
        let options = pool_options(&settings, &counters, &slot, init);

        let anchor = if anchored {
            let conn = tokio::time::timeout(settings.connect_timeout, connect.connect())
                .await
                .map_err(|_| ProviderError::Timeout {
                    phase: "connect",
                    after: settings.connect_timeout,
                })?
                .map_err(ProviderError::Connect)?;
            Some(conn)
        } else {
            None
        };

        let pool = if eager {
            tokio::time::timeout(settings.connect_timeout, options.connect_with(connect))
                .await
                .map_err(|_| ProviderError::Timeout {
                    phase: "connect",
                    after: settings.connect_timeout,
                })?
                .map_err(ProviderError::Connect)?
        } else {
            options.connect_lazy_with(connect)
        };
        slot.store(Some(Arc::new(pool.clone())));

        let inner = Arc::new(Inner {
            pool,
            counters,
            settings,
            slot,
            anchor: tokio::sync::Mutex::new(anchor),
        });
        if inner.settings.max_idle < inner.settings.max_open {
            spawn_idle_trimmer(Arc::downgrade(&inner));
        }
        Ok(SqlPool { inner })
    }

    /// The sqlx pool. Every clone of it shares this pool's connections and limits.
    pub fn sqlx(&self) -> &Pool<DB> {
        &self.inner.pool
    }

    /// The settings the pool was built with.
    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
    }

    /// Checks a connection out, counting the wait and any timeout in [`PoolStats`].
    pub async fn acquire(&self) -> Result<PoolConnection<DB>, ProviderError> {
        let started = Instant::now();
        let result = self.inner.pool.acquire().await;
        let waited = started.elapsed();
        let counters = &self.inner.counters;
        counters.record_wait(waited);
        result.map_err(|e| {
            match e {
                sqlx::Error::PoolTimedOut => PoolCounters::inc(&counters.acquire_timeouts),
                _ => PoolCounters::inc(&counters.acquire_errors),
            }
            ProviderError::from_acquire(e, waited)
        })
    }

    /// One real round trip to the server (acquire, then the driver's ping), bounded by
    /// `timeout`. Returns the round trip's latency.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        let work = async {
            let mut conn = self.acquire().await?;
            let started = Instant::now();
            conn.ping().await.map_err(ProviderError::Database)?;
            Ok(started.elapsed())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| ProviderError::Timeout {
                phase: "health check",
                after: timeout,
            })?
    }

    /// Live sizes and counters.
    pub fn stats(&self) -> PoolStats {
        let pool = &self.inner.pool;
        let open = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(open);
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

/// How often surplus idle connections (above `max_idle_conns`) are closed.
const TRIM_PERIOD: Duration = Duration::from_millis(250);

/// Closes idle connections above `max_idle_conns`. The release hook does this for releases
/// one at a time, but connections released together all see the same idle count before
/// any is back in the queue, so a burst can overshoot; this task takes the surplus back
/// within `TRIM_PERIOD`. It holds only a `Weak` and ends when the pool closes or is dropped.
fn spawn_idle_trimmer<DB: Database>(weak: std::sync::Weak<Inner<DB>>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TRIM_PERIOD).await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.pool.is_closed() {
                return;
            }
            let max_idle = inner.settings.max_idle as usize;
            while inner.pool.num_idle() > max_idle {
                // `try_acquire` gives up if a caller is waiting: that caller needs it more.
                let Some(conn) = inner.pool.try_acquire() else {
                    break;
                };
                PoolCounters::inc(&inner.counters.closed_max_idle);
                if let Err(error) = conn.close().await {
                    tracing::debug!(%error, "closing a surplus idle connection failed");
                }
            }
        }
    });
}

fn pool_options<DB: Database>(
    s: &PoolSettings,
    counters: &Arc<PoolCounters>,
    slot: &Arc<ArcSwapOption<Pool<DB>>>,
    init: Option<InitFn<DB>>,
) -> PoolOptions<DB> {
    let lifetime = s.max_lifetime;
    let idle_time = s.max_idle_time;
    let ping_after = s.ping_idle_after;
    let max_idle = s.max_idle as usize;

    let on_connect = Arc::clone(counters);
    let on_acquire = Arc::clone(counters);
    let on_release = Arc::clone(counters);
    let slot = Arc::clone(slot);

    PoolOptions::<DB>::new()
        .max_connections(s.max_open)
        .min_connections(s.min_idle)
        .acquire_timeout(s.acquire_timeout)
        // Lifetime is enforced by the hooks below so that each close is counted; sqlx's
        // reaper only handles the idle timeout.
        .max_lifetime(None)
        .idle_timeout(idle_time)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let counters = Arc::clone(&on_connect);
            let init = init.clone();
            Box::pin(async move {
                if let Some(init) = init {
                    init(conn).await?;
                }
                PoolCounters::inc(&counters.opened);
                Ok(())
            })
        })
        .before_acquire(move |conn, meta: PoolConnectionMetadata| {
            let counters = Arc::clone(&on_acquire);
            Box::pin(async move {
                if lifetime.is_some_and(|l| meta.age >= l) {
                    PoolCounters::inc(&counters.closed_max_lifetime);
                    return Ok(false);
                }
                if idle_time.is_some_and(|t| meta.idle_for >= t) {
                    PoolCounters::inc(&counters.closed_idle_timeout);
                    return Ok(false);
                }
                if ping_after.is_some_and(|p| meta.idle_for >= p)
                    && let Err(e) = conn.ping().await
                {
                    PoolCounters::inc(&counters.closed_broken);
                    return Err(e);
                }
                Ok(true)
            })
        })
        .after_release(move |_conn, meta: PoolConnectionMetadata| {
            let counters = Arc::clone(&on_release);
            let idle_now = slot.load().as_ref().map(|p| p.num_idle());
            Box::pin(async move {
                if lifetime.is_some_and(|l| meta.age >= l) {
                    PoolCounters::inc(&counters.closed_max_lifetime);
                    return Ok(false);
                }
                if idle_now.is_some_and(|n| n >= max_idle) {
                    PoolCounters::inc(&counters.closed_max_idle);
                    return Ok(false);
                }
                Ok(true)
            })
        })
}
