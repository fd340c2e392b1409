//! [`ManagedPool`]: a pool for drivers that bring no pool of their own (tiberius for SQL
//! Server, diesel-async for the diesel view), with the same limits and counters as
//! [`crate::pool::SqlPool`].
//!
//! [`deadpool`] does the bounded, FIFO-fair checkout with a wait timeout; this module adds
//! what deadpool leaves to its user: `max_idle_conns`, `min_idle_conns`,
//! `conn_max_lifetime`, `conn_max_idle_time`, a ping only for connections idle longer than
//! `ping_idle_after`, pool clearing by generation, broken-connection detection and the
//! counters of [`PoolStats`]. A driver plugs in through [`Connector`].

use crate::context::PoolContext;
use crate::error::{ProviderError, TimeoutPhase};
use crate::settings::PoolSettings;
use crate::stats::{CloseReason, PoolCounters, PoolStats};
use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a driver opens, checks and tests one connection.
pub trait Connector: Send + Sync + 'static {
    /// The driver's connection.
    type Conn: Send + 'static;

    /// Opens one connection (the pool bounds it by `connect_timeout`).
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, ProviderError>> + Send;

    /// One round trip (the pool bounds it by a timeout and discards the connection when it
    /// fails).
    fn ping<'c>(
        &'c self,
        conn: &'c mut Self::Conn,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send + 'c;

    /// Whether the driver already knows the connection is unusable (no round trip).
    fn is_broken(&self, conn: &mut Self::Conn) -> bool;
}

/// A pooled connection: the driver's connection plus the pool generation it was opened in.
/// Dereferences to the driver's connection.
#[derive(Debug)]
pub struct Pooled<C> {
    conn: C,
    generation: u64,
    /// This connection's `conn_max_lifetime`, less its share of the jitter.
    lifetime: Option<Duration>,
}

impl<C> std::ops::Deref for Pooled<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> std::ops::DerefMut for Pooled<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

/// A checked-out connection; dropping it returns it to the pool. Dereferences to
/// [`Pooled`], which dereferences to the driver's connection.
pub type Object<K> = managed::Object<Manager<K>>;

/// The deadpool manager: opens connections through a [`Connector`] and decides whether an
/// idle one may be handed out again.
pub struct Manager<K: Connector> {
    connector: K,
    settings: PoolSettings,
    counters: Arc<PoolCounters>,
    generation: AtomicU64,
    /// Set when a background refill failed to connect, cleared by the next connect that
    /// succeeds: until then only callers and the supervisor (which follows the backoff)
    /// open connections, so a wrong password is not retried behind the backoff's back.
    refill_paused: AtomicBool,
}

impl<K: Connector> std::fmt::Debug for Manager<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connector holds the password: show only the settings.
        f.debug_struct("Manager")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<K: Connector> Manager<K> {
    /// The connector.
    pub fn connector(&self) -> &K {
        &self.connector
    }

    /// Why an idle connection may not be handed out again, if it may not (no round trip).
    fn stale(&self, conn: &Pooled<K::Conn>, metrics: &Metrics) -> Option<CloseReason> {
        let s = &self.settings;
        if conn.generation != self.generation.load(Ordering::Acquire) {
            Some(CloseReason::Cleared)
        } else if conn.lifetime.is_some_and(|l| metrics.age() >= l) {
            Some(CloseReason::MaxLifetime)
        } else if s.max_idle_time.is_some_and(|l| metrics.last_used() >= l) {
            Some(CloseReason::IdleTimeout)
        } else {
            None
        }
    }

    fn count_close(&self, reason: CloseReason) {
        self.counters.count_close(reason);
    }
}

impl<K: Connector> managed::Manager for Manager<K> {
    type Type = Pooled<K::Conn>;
    type Error = ProviderError;

    async fn create(&self) -> Result<Pooled<K::Conn>, ProviderError> {
        let timeout = self.settings.connect_timeout;
        let conn = match tokio::time::timeout(timeout, self.connector.connect()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ProviderError::Timeout {
                    phase: TimeoutPhase::Connect,
                    after: timeout,
                });
            }
        };
        PoolCounters::inc(&self.counters.opened);
        self.refill_paused.store(false, Ordering::Release);
        // One draw per connection, from a process-wide count (hashed in `lifetime_of`).
        static DRAWS: AtomicU64 = AtomicU64::new(0);
        Ok(Pooled {
            conn,
            generation: self.generation.load(Ordering::Acquire),
            lifetime: self
                .settings
                .lifetime_of(DRAWS.fetch_add(1, Ordering::Relaxed)),
        })
    }

    async fn recycle(
        &self,
        conn: &mut Pooled<K::Conn>,
        metrics: &Metrics,
    ) -> RecycleResult<ProviderError> {
        let reason = if self.connector.is_broken(&mut conn.conn) {
            Some(CloseReason::Broken)
        } else {
            self.stale(conn, metrics)
        };
        if let Some(reason) = reason {
            self.count_close(reason);
            return Err(RecycleError::message(reason.as_str()));
        }
        if self
            .settings
            .ping_idle_after
            .is_some_and(|after| metrics.last_used() >= after)
        {
            let timeout = self.settings.connect_timeout;
            let result =
                match tokio::time::timeout(timeout, self.connector.ping(&mut conn.conn)).await {
                    Ok(r) => r,
                    Err(_) => Err(ProviderError::Timeout {
                        phase: TimeoutPhase::HealthCheck,
                        after: timeout,
                    }),
                };
            if let Err(e) = result {
                self.count_close(CloseReason::Broken);
                return Err(RecycleError::Backend(e));
            }
        }
        Ok(())
    }
}

/// A pool of connections opened by a [`Connector`], with dbmanager's limits. Cheap to
/// clone.
pub struct ManagedPool<K: Connector> {
    pool: managed::Pool<Manager<K>>,
    inner: Arc<Inner>,
}

impl<K: Connector> Clone for ManagedPool<K> {
    fn clone(&self) -> Self {
        ManagedPool {
            pool: self.pool.clone(),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Connector> std::fmt::Debug for ManagedPool<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedPool")
            .field("settings", &self.inner.settings)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    counters: Arc<PoolCounters>,
    broken: Arc<tokio::sync::Notify>,
    cancel: tokio_util::sync::CancellationToken,
    settings: PoolSettings,
}

impl<K: Connector> ManagedPool<K> {
    /// Builds the pool. With `eager`, opens one connection now (bounded by
    /// `connect_timeout`) so a wrong address or password fails here, and fills
    /// `min_idle_conns`. Spawns the maintenance task on `ctx.tasks`.
    pub async fn open(
        connector: K,
        settings: PoolSettings,
        eager: bool,
        ctx: PoolContext,
    ) -> Result<Self, ProviderError> {
        let manager = Manager {
            connector,
            settings: settings.clone(),
            counters: Arc::clone(&ctx.counters),
            generation: AtomicU64::new(0),
            refill_paused: AtomicBool::new(false),
        };
        let max = usize::try_from(settings.max_open).unwrap_or(usize::MAX);
        let pool = managed::Pool::builder(manager)
            .max_size(max)
            .queue_mode(managed::QueueMode::Fifo)
            .runtime(deadpool::Runtime::Tokio1)
            .create_timeout(Some(settings.connect_timeout))
            .build()
            .map_err(|e| ProviderError::InvalidSetting {
                field: "max_open_conns",
                reason: e.to_string(),
            })?;
        let this = ManagedPool {
            pool,
            inner: Arc::new(Inner {
                counters: ctx.counters,
                broken: ctx.broken,
                cancel: ctx.cancel.child_token(),
                settings,
            }),
        };
        if eager {
            let conn = this
                .acquire_within(this.inner.settings.connect_timeout)
                .await?;
            drop(conn);
            this.fill_min_idle().await;
        }
        ctx.tasks.spawn(maintain(this.clone()));
        Ok(this)
    }

    /// The connector the pool opens connections with.
    pub fn connector(&self) -> &K {
        self.pool.manager().connector()
    }

    /// The settings the pool was built with.
    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
    }

    /// Checks out a connection, waiting at most `limit`, and counts the wait.
    pub async fn acquire_within(&self, limit: Duration) -> Result<Object<K>, ProviderError> {
        let _pending = self.inner.counters.pending();
        let started = Instant::now();
        let timeouts = managed::Timeouts {
            wait: Some(limit),
            create: Some(
                self.inner
                    .settings
                    .connect_timeout
                    .min(limit.max(Duration::from_millis(1))),
            ),
            recycle: Some(self.inner.settings.connect_timeout),
        };
        let result = self.pool.timeout_get(&timeouts).await;
        let waited = started.elapsed();
        self.inner.counters.record_wait(waited);
        result.map_err(|e| {
            let c = &self.inner.counters;
            match e {
                PoolError::Timeout(managed::TimeoutType::Create) => {
                    PoolCounters::inc(&c.acquire_errors);
                    ProviderError::Timeout {
                        phase: TimeoutPhase::Connect,
                        after: self.inner.settings.connect_timeout,
                    }
                }
                PoolError::Timeout(_) => {
                    PoolCounters::inc(&c.acquire_timeouts);
                    ProviderError::AcquireTimeout { waited }
                }
                PoolError::Backend(e) => {
                    PoolCounters::inc(&c.acquire_errors);
                    e
                }
                PoolError::Closed => ProviderError::Closed,
                other => {
                    PoolCounters::inc(&c.acquire_errors);
                    ProviderError::InvalidSetting {
                        field: "max_open_conns",
                        reason: other.to_string(),
                    }
                }
            }
        })
    }

    /// Checks out a connection within `acquire_timeout`.
    pub async fn acquire(&self) -> Result<Object<K>, ProviderError> {
        self.acquire_within(self.inner.settings.acquire_timeout)
            .await
    }

    /// Closes idle connections that may not be reused and those beyond `max_idle_conns`.
    fn trim(&self) {
        let manager = self.pool.manager();
        let max_idle = self.inner.settings.max_idle as usize;
        let mut kept = 0usize;
        let removed = self.pool.retain(|conn, metrics| {
            if let Some(reason) = manager.stale(conn, &metrics) {
                manager.count_close(reason);
                return false;
            }
            if kept >= max_idle {
                manager.count_close(CloseReason::MaxIdle);
                return false;
            }
            kept += 1;
            true
        });
        drop(removed);
    }

    /// Opens connections up to `min_idle_conns`. Not counted as acquires. After a failed
    /// connect it does nothing until some other connect succeeds.
    async fn fill_min_idle(&self) {
        let want = self.inner.settings.min_idle as usize;
        let manager = self.pool.manager();
        if want == 0
            || self.pool.status().size >= want
            || self.pool.is_closed()
            || manager.refill_paused.load(Ordering::Acquire)
        {
            return;
        }
        let timeouts = managed::Timeouts {
            wait: Some(self.inner.settings.connect_timeout),
            create: Some(self.inner.settings.connect_timeout),
            recycle: Some(self.inner.settings.connect_timeout),
        };
        // One connect first: if it fails, that is the only failed login of this round.
        let Ok(first) = self.pool.timeout_get(&timeouts).await else {
            manager.refill_paused.store(true, Ordering::Release);
            return;
        };
        let held =
            futures_util::future::join_all((1..want).map(|_| self.pool.timeout_get(&timeouts)))
                .await;
        if held.iter().any(Result::is_err) {
            manager.refill_paused.store(true, Ordering::Release);
        }
        drop((first, held));
    }

    /// Marks every open connection stale and closes the idle ones now; checked-out ones are
    /// closed when they come back. Returns how many idle connections it closed.
    pub fn clear(&self) -> u32 {
        let manager = self.pool.manager();
        manager.generation.fetch_add(1, Ordering::AcqRel);
        PoolCounters::inc(&self.inner.counters.clears);
        self.inner.broken.notify_one();
        let result = self.pool.retain(|conn, metrics| {
            if let Some(reason) = manager.stale(conn, &metrics) {
                manager.count_close(reason);
                return false;
            }
            true
        });
        u32::try_from(result.removed.len()).unwrap_or(u32::MAX)
    }

    /// Connections checked out now.
    pub fn in_use(&self) -> u32 {
        let s = self.pool.status();
        u32::try_from(s.size.saturating_sub(s.available)).unwrap_or(u32::MAX)
    }

    /// Live sizes and counters.
    pub fn stats(&self) -> PoolStats {
        let s = self.pool.status();
        let open = u32::try_from(s.size).unwrap_or(u32::MAX);
        let idle = u32::try_from(s.available).unwrap_or(u32::MAX);
        self.inner
            .counters
            .snapshot(self.inner.settings.max_open, open, idle)
    }

    /// One round trip on a pooled connection, bounded by `timeout`. A failure discards
    /// that connection; clearing the pool is the caller's decision (see
    /// [`SqlPool::ping`](crate::pool::SqlPool::ping)).
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        let started = Instant::now();
        let mut conn = self.acquire_within(timeout).await.map_err(|e| match e {
            // Every connection in use the whole time: busy, not dead (no verdict).
            ProviderError::AcquireTimeout { waited } => {
                let s = self.pool.status();
                if s.size >= s.max_size && s.available == 0 {
                    ProviderError::Busy { waited }
                } else {
                    ProviderError::Timeout {
                        phase: TimeoutPhase::HealthCheck,
                        after: timeout,
                    }
                }
            }
            other => other,
        })?;
        let left = timeout.saturating_sub(started.elapsed());
        let connector = self.pool.manager().connector();
        let result = match tokio::time::timeout(left, connector.ping(&mut conn.conn)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Timeout {
                phase: TimeoutPhase::HealthCheck,
                after: timeout,
            }),
        };
        match result {
            Ok(()) => Ok(started.elapsed()),
            Err(e) => {
                // Never hand this one out again.
                drop(managed::Object::take(conn));
                PoolCounters::inc(&self.inner.counters.closed_broken);
                Err(e)
            }
        }
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Closes the pool: new acquires fail at once; waits up to `drain` for checked-out
    /// connections to come back, then closes everything. Returns whether it drained.
    pub async fn close(&self, drain: Duration) -> bool {
        self.inner.cancel.cancel();
        if !self.pool.is_closed() {
            let open = self.pool.status().size as u64;
            self.inner
                .counters
                .closed_shutdown
                .fetch_add(open, Ordering::Relaxed);
            // Fails waiting and new acquires at once and drops the idle connections; those
            // in use are dropped when they come back.
            self.pool.close();
        }
        let deadline = crate::time::deadline_in(drain);
        while self.pool.status().size > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.pool.status().size == 0
    }
}

/// Every 250 ms: closes idle connections that expired or were cleared, trims idle ones
/// beyond `max_idle_conns`, and opens connections up to `min_idle_conns`.
async fn maintain<K: Connector>(pool: ManagedPool<K>) {
    let tick = Duration::from_millis(250);
    loop {
        tokio::select! {
            () = pool.inner.cancel.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        if pool.pool.is_closed() {
            return;
        }
        pool.trim();
        pool.fill_min_idle().await;
    }
}

crate::provider::engine_pool!(ManagedPool<K>, K: Connector);

#[cfg(test)]
mod tests;
