//! Pool statistics: live sizes plus counters of *why* connections were closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters a pool's hooks update. Cheap atomics; read with [`PoolCounters::snapshot`].
#[derive(Debug, Default)]
pub struct PoolCounters {
    pub(crate) opened: AtomicU64,
    pub(crate) closed_max_lifetime: AtomicU64,
    pub(crate) closed_idle_timeout: AtomicU64,
    pub(crate) closed_max_idle: AtomicU64,
    pub(crate) closed_broken: AtomicU64,
    pub(crate) acquire_count: AtomicU64,
    pub(crate) wait_nanos: AtomicU64,
    pub(crate) acquire_timeouts: AtomicU64,
    pub(crate) acquire_errors: AtomicU64,
    pub(crate) closed_shutdown: AtomicU64,
    pub(crate) closed_cleared: AtomicU64,
    pub(crate) clears: AtomicU64,
    /// Acquires in progress now (waiting for a connection or opening one).
    pub(crate) pending: AtomicU64,
    /// How many acquires waited at most each of [`WAIT_BUCKETS`] (not cumulative; the
    /// last slot counts the longer ones).
    pub(crate) wait_buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
}

/// Why a pool closed a connection: the `reason` label of metrics, the keys of `/stats`,
/// and the [`PoolStats`] counter each reads ([`PoolStats::closed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Older than `conn_max_lifetime`.
    MaxLifetime,
    /// Idle longer than `conn_max_idle_time`.
    IdleTimeout,
    /// Released while `max_idle_conns` were idle already.
    MaxIdle,
    /// Found broken (a failed liveness ping, a driver's broken flag).
    Broken,
    /// Closed with its pool (`close()`, a swap).
    Shutdown,
    /// Opened before the pool was cleared (server restart, failover).
    Cleared,
}

impl CloseReason {
    /// Every reason, in the order metrics and `/stats` list them.
    pub const ALL: [CloseReason; 6] = [
        CloseReason::MaxLifetime,
        CloseReason::IdleTimeout,
        CloseReason::MaxIdle,
        CloseReason::Broken,
        CloseReason::Shutdown,
        CloseReason::Cleared,
    ];

    /// Its name in metrics, `/stats` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::MaxLifetime => "max_lifetime",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::MaxIdle => "max_idle",
            CloseReason::Broken => "broken",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Cleared => "cleared",
        }
    }
}

/// The upper bounds (seconds) of the acquire-wait histogram's buckets: from half a
/// millisecond (a fast-path checkout) to five minutes, past the default `acquire_timeout`
/// (30 s), so a timed-out wait lands in a bucket of its own rather than in `+Inf`.
pub const WAIT_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// An acquire in progress, counted in [`PoolStats::pending`] until dropped.
pub(crate) struct Pending<'a>(&'a AtomicU64);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PoolCounters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection closed for `reason`.
    pub(crate) fn count_close(&self, reason: CloseReason) {
        Self::inc(match reason {
            CloseReason::MaxLifetime => &self.closed_max_lifetime,
            CloseReason::IdleTimeout => &self.closed_idle_timeout,
            CloseReason::MaxIdle => &self.closed_max_idle,
            CloseReason::Broken => &self.closed_broken,
            CloseReason::Shutdown => &self.closed_shutdown,
            CloseReason::Cleared => &self.closed_cleared,
        });
    }

    pub(crate) fn record_wait(&self, waited: Duration) {
        Self::inc(&self.acquire_count);
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        let secs = waited.as_secs_f64();
        let slot = WAIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(WAIT_BUCKETS.len());
        Self::inc(&self.wait_buckets[slot]);
    }

    /// Counts an acquire as pending until the guard is dropped.
    pub(crate) fn pending(&self) -> Pending<'_> {
        Self::inc(&self.pending);
        Pending(&self.pending)
    }

    /// A snapshot of the counters combined with the pool's live sizes.
    pub fn snapshot(&self, max_open: u32, open: u32, idle: u32) -> PoolStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let opened = get(&self.opened);
        let lifetime = get(&self.closed_max_lifetime);
        let max_idle = get(&self.closed_max_idle);
        let broken = get(&self.closed_broken);
        let counted_idle = get(&self.closed_idle_timeout);
        let shutdown = get(&self.closed_shutdown);
        let cleared = get(&self.closed_cleared);
        // Every connection ever opened is either still open or was closed. The ones closed
        // that no hook saw were closed by sqlx's background reaper, which (as configured by
        // `pool::SqlPool`) reaps for idle timeout only, or by sqlx's check on release.
        let closed_total = opened.saturating_sub(u64::from(open));
        let reaped = closed_total
            .saturating_sub(lifetime + max_idle + broken + counted_idle + shutdown + cleared);
        PoolStats {
            max_open,
            open,
            idle,
            in_use: open.saturating_sub(idle),
            acquire_count: get(&self.acquire_count),
            wait_duration: Duration::from_nanos(get(&self.wait_nanos)),
            acquire_timeouts: get(&self.acquire_timeouts),
            acquire_errors: get(&self.acquire_errors),
            opened_total: opened,
            closed_total,
            closed_max_lifetime: lifetime,
            closed_idle_timeout: counted_idle + reaped,
            closed_max_idle: max_idle,
            closed_broken: broken,
            closed_shutdown: shutdown,
            closed_cleared: cleared,
            pool_clears: get(&self.clears),
            pending: u32::try_from(get(&self.pending)).unwrap_or(u32::MAX),
            wait_buckets: std::array::from_fn(|i| get(&self.wait_buckets[i])),
        }
    }
}

/// A point-in-time view of one pool.
///
/// `wait_*` and `acquire_*` count the acquires made through the manager
/// (`Connection::acquire`, `Connection::begin`, health checks); queries run directly on the
/// raw `sqlx::Pool` still obey every limit but are not timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// `max_open_conns`: the most connections this pool may hold open.
    pub max_open: u32,
    /// Connections open now (idle + in use).
    pub open: u32,
    /// Connections checked out now.
    pub in_use: u32,
    /// Connections open and waiting in the pool.
    pub idle: u32,
    /// Acquires through the manager (each one counted, whether it had to wait or not).
    pub acquire_count: u64,
    /// Total time those acquires spent waiting.
    pub wait_duration: Duration,
    /// Acquires that gave up after `acquire_timeout`.
    pub acquire_timeouts: u64,
    /// Acquires that failed for another reason (connect error, pool closed).
    pub acquire_errors: u64,
    /// Connections opened since the pool was built.
    pub opened_total: u64,
    /// Connections closed since the pool was built (`opened_total - open`).
    pub closed_total: u64,
    /// Closed because they outlived `conn_max_lifetime` (checked on acquire and on release).
    pub closed_max_lifetime: u64,
    /// Closed because they sat idle longer than `conn_max_idle_time` (on acquire, or by the
    /// background reaper; also includes the rare connection sqlx found broken on release,
    /// which it does not report separately).
    pub closed_idle_timeout: u64,
    /// Closed on release because `max_idle_conns` connections were already idle.
    pub closed_max_idle: u64,
    /// Closed because a liveness ping on a long-idle connection failed.
    pub closed_broken: u64,
    /// Closed by `close()` or by a swap (open when their pool was closed).
    pub closed_shutdown: u64,
    /// Closed because the pool was cleared after they were opened (server restart,
    /// failover): see `SqlPool::clear`.
    pub closed_cleared: u64,
    /// Times the pool was cleared: by the manager after a lost connection or a failover
    /// (SQL pools, SQL Server), or by the MongoDB driver itself.
    pub pool_clears: u64,
    /// Acquires through the manager in progress now (waiting, or opening a connection).
    pub pending: u32,
    /// The acquires of `acquire_count` by how long they waited: slot `i` counts those that
    /// waited at most [`WAIT_BUCKETS`]`[i]` seconds (and more than the bound before it);
    /// the last slot, longer ones.
    pub wait_buckets: [u64; WAIT_BUCKETS.len() + 1],
}

impl PoolStats {
    /// Connections closed for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        match reason {
            CloseReason::MaxLifetime => self.closed_max_lifetime,
            CloseReason::IdleTimeout => self.closed_idle_timeout,
            CloseReason::MaxIdle => self.closed_max_idle,
            CloseReason::Broken => self.closed_broken,
            CloseReason::Shutdown => self.closed_shutdown,
            CloseReason::Cleared => self.closed_cleared,
        }
    }

    /// Connections closed, counted by reason (unlike `closed_total`, which is derived
    /// from the open count and so also moves with connects under way).
    pub fn closed_by_reason(&self) -> u64 {
        CloseReason::ALL.iter().map(|r| self.closed(*r)).sum()
    }

    /// Two pools' statistics added up (the views of one connection): sizes, limits and
    /// counters are summed.
    pub fn merge(&self, other: &PoolStats) -> PoolStats {
        PoolStats {
            max_open: self.max_open + other.max_open,
            open: self.open + other.open,
            in_use: self.in_use + other.in_use,
            idle: self.idle + other.idle,
            acquire_count: self.acquire_count + other.acquire_count,
            wait_duration: self.wait_duration + other.wait_duration,
            acquire_timeouts: self.acquire_timeouts + other.acquire_timeouts,
            acquire_errors: self.acquire_errors + other.acquire_errors,
            opened_total: self.opened_total + other.opened_total,
            closed_total: self.closed_total + other.closed_total,
            closed_max_lifetime: self.closed_max_lifetime + other.closed_max_lifetime,
            closed_idle_timeout: self.closed_idle_timeout + other.closed_idle_timeout,
            closed_max_idle: self.closed_max_idle + other.closed_max_idle,
            closed_broken: self.closed_broken + other.closed_broken,
            closed_shutdown: self.closed_shutdown + other.closed_shutdown,
            closed_cleared: self.closed_cleared + other.closed_cleared,
            pool_clears: self.pool_clears + other.pool_clears,
            pending: self.pending + other.pending,
            wait_buckets: std::array::from_fn(|i| self.wait_buckets[i] + other.wait_buckets[i]),
        }
    }
}
