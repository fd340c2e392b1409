//! The sqlx pool's hooks (connect, acquire, release: lifetime, generation, idle limits,
//! counting every close by reason) and the pool's maintenance task.

use super::{Generation, Inner, SharedInit};
use crate::classify::classify;
use crate::fast::sqlx_idle;
use crate::settings::PoolSettings;
use crate::stats::PoolCounters;
use arc_swap::ArcSwapOption;
use sqlx::pool::{PoolConnectionMetadata, PoolOptions};
use sqlx::{Connection, Database, Pool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the fast path's unused connections go back to the sqlx pool, surplus idle
/// connections (above `max_idle_conns`) are closed and `min_idle_conns` is refilled.
const TRIM_PERIOD: Duration = crate::fast::LINGER;

/// Opens connections until the pool holds `min_idle_conns`. sqlx's own `min_connections`
/// is not used: it refills after every close, whatever the supervisor's backoff says (a
/// rotated password made it try again after each cleared connection). This tries one
/// connect first; if it fails, no refill runs until some connect succeeds (a caller's,
/// or the supervisor's probe on its backoff).
pub(super) async fn fill_min_idle<DB: Database>(inner: &Inner<DB>) {
    let want = inner.settings.min_idle;
    let generation = &inner.generation;
    if want == 0 || inner.pool.is_closed() || generation.refill_paused.load(Ordering::Acquire) {
        return;
    }
    let open = inner.pool.size();
    if open >= want {
        return;
    }
    let limit = inner.settings.connect_timeout;
    let acquire = || tokio::time::timeout(limit, inner.pool.acquire());
    // Idle connections are handed out first: take them all, so the rest must be opened.
    let idle = sqlx_idle(&inner.pool);
    let mut held = Vec::new();
    for _ in 0..idle {
        match inner.pool.try_acquire() {
            Some(c) => held.push(c),
            None => break,
        }
    }
    let Ok(Ok(first)) = acquire().await else {
        generation.refill_paused.store(true, Ordering::Release);
        return;
    };
    held.push(first);
    let more = want.saturating_sub(open + 1);
    let rest = futures_util::future::join_all((0..more).map(|_| acquire())).await;
    if rest.iter().any(|r| !matches!(r, Ok(Ok(_)))) {
        generation.refill_paused.store(true, Ordering::Release);
    }
    held.extend(rest.into_iter().filter_map(|r| r.ok().and_then(Result::ok)));
}

/// The pool's maintenance task, every `TRIM_PERIOD`:
/// - returns connections unused in the fast path's cache for [`crate::fast::LINGER`] to the
///   sqlx pool (where raw-pool users can have them);
/// - refills `min_idle_conns`;
/// - closes idle connections above `max_idle_conns`. The release hook does this for
///   releases one at a time, but connections released together all see the same idle
///   count before any is back in the queue, so a burst can overshoot.
///
/// It holds only a `Weak` and ends when the pool closes, is dropped or its token is
/// cancelled.
pub(super) fn spawn_maintenance<DB: Database>(
    tasks: &TaskTracker,
    cancel: CancellationToken,
    weak: std::sync::Weak<Inner<DB>>,
) {
    let refreshes = tasks.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(TRIM_PERIOD) => {}
            }
            let Some(inner) = weak.upgrade() else { return };
            inner.follow_password_file();
            if inner.credential_due() {
                // In a task of its own: a slow provider must not hold up the pool's upkeep.
                let (weak, cancel) = (std::sync::Arc::downgrade(&inner), cancel.clone());
                refreshes.spawn(async move {
                    let Some(inner) = weak.upgrade() else { return };
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = inner.refresh_credential(false, inner.settings.connect_timeout) => {}
                    }
                });
            }
            inner.cache.trim();
            if inner.pool.is_closed() {
                return;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = fill_min_idle(&inner) => {}
            }
            let max_idle = inner.settings.max_idle as usize;
            while sqlx_idle(&inner.pool) + inner.cache.idle() > max_idle {
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

#[allow(clippy::too_many_arguments)] // one call site, each a distinct part of the pool
pub(super) fn pool_options<DB: Database>(
    s: &PoolSettings,
    counters: &Arc<PoolCounters>,
    generation: &Arc<Generation>,
    broken: &Arc<Notify>,
    slot: &Arc<ArcSwapOption<Pool<DB>>>,
    cache_idle: &Arc<AtomicUsize>,
    init: SharedInit<DB>,
    failover: Option<Arc<super::Failover<DB>>>,
) -> PoolOptions<DB> {
    let lifetimes = Arc::new(super::lifetimes::Lifetimes::new(s));
    let lifetime = Arc::clone(&lifetimes);
    let lifetime_connect = Arc::clone(&lifetimes);
    let lifetime_release = lifetimes;
    let idle_time = s.max_idle_time;
    let ping_after = s.ping_idle_after;
    let ping_limit = s.connect_timeout;
    let max_idle = s.max_idle as usize;

    let on_connect = Arc::clone(counters);
    let gen_connect = Arc::clone(generation);
    let on_acquire = Arc::clone(counters);
    let on_release = Arc::clone(counters);
    let gen_acquire = Arc::clone(generation);
    let gen_release = Arc::clone(generation);
    let broken = Arc::clone(broken);
    let slot = Arc::clone(slot);
    let slot_connect = Arc::clone(&slot);
    let cache_idle = Arc::clone(cache_idle);

    PoolOptions::<DB>::new()
        .max_connections(s.max_open)
        // Refilled by `fill_min_idle` instead, which follows the backoff.
        .min_connections(0)
        .acquire_timeout(s.acquire_timeout)
        // Lifetime is enforced by the hooks below so that each close is counted; sqlx's
        // reaper only handles the idle timeout.
        .max_lifetime(None)
        .idle_timeout(idle_time)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let counters = Arc::clone(&on_connect);
            let lifetimes = Arc::clone(&lifetime_connect);
            let failover = failover.clone();
            let pool = slot_connect.load_full();
            let generation = Arc::clone(&gen_connect);
            let init = init
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            Box::pin(async move {
                if let Some(init) = init {
                    init(conn).await?;
                }
                if let Some(failover) = failover {
                    failover.admit(conn, pool.as_deref()).await?;
                }
                PoolCounters::inc(&counters.opened);
                // Last: sqlx dates the connection right after this hook.
                lifetimes.opened();
                generation.refill_paused.store(false, Ordering::Release);
                Ok(())
            })
        })
        .before_acquire(move |conn, meta: PoolConnectionMetadata| {
            let counters = Arc::clone(&on_acquire);
            let generation = Arc::clone(&gen_acquire);
            let broken = Arc::clone(&broken);
            let expired = lifetime.expired(meta.age);
            Box::pin(async move {
                if generation.is_stale(meta.age) {
                    PoolCounters::inc(&counters.closed_cleared);
                    return Ok(false);
                }
                if expired {
                    PoolCounters::inc(&counters.closed_max_lifetime);
                    return Ok(false);
                }
                if idle_time.is_some_and(|t| meta.idle_for >= t) {
                    PoolCounters::inc(&counters.closed_idle_timeout);
                    return Ok(false);
                }
                if ping_after.is_some_and(|p| meta.idle_for >= p)
                    && let Err(e) = tokio::time::timeout(ping_limit, conn.ping())
                        .await
                        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
                {
                    PoolCounters::inc(&counters.closed_broken);
                    if classify(&e).clears_pool() {
                        // The others idled just as long on the same server: clear them all.
                        generation.clear();
                        broken.notify_one();
                    }
                    return Err(e);
                }
                Ok(true)
            })
        })
        .after_release(move |_conn, meta: PoolConnectionMetadata| {
            let counters = Arc::clone(&on_release);
            let idle_now = slot
                .load()
                .as_ref()
                .map(|p| sqlx_idle(p) + cache_idle.load(Ordering::Relaxed));
            let stale = gen_release.is_stale(meta.age);
            let expired = lifetime_release.expired(meta.age);
            Box::pin(async move {
                if stale {
                    PoolCounters::inc(&counters.closed_cleared);
                    return Ok(false);
                }
                if expired {
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
