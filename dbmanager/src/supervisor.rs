//! The supervisor: one task per connection that checks its health and brings it back.
//!
//! It sees the connection only through [`Supervised`], a narrow interface the connection
//! implements, and holds only a `Weak` reference plus the connection's cancellation token,
//! so it ends when the manager closes (at once, even mid-check) or when the last handle to
//! the connection is dropped. Each connection's checks run in their own task: a database
//! that hangs never delays another's.
//!
//! States and transitions (drawn in docs/resilience.md): `connecting` → `healthy` on the
//! first successful probe; `healthy` → `unhealthy` after `failure_threshold` failed probes
//! in a row (at once for an authentication or configuration error); `unhealthy` →
//! `healthy` on a successful probe; any → `closed` on close. While healthy it probes every
//! `health_check_interval` (and at once when a dead connection is found); while down, on
//! the backoff (see [`Backoff`]).
//!
//! A probe is one real round trip (a ping on an idle connection, or, when none is idle or
//! the connection is down, one connect through the pool, within its budget: see
//! docs/resilience.md) bounded by `health_check_timeout`. A
//! failure that means the server dropped its connections (or did not answer) clears the
//! pool. An authentication or configuration error marks the connection unhealthy at once
//! and is retried only every `retry_max_delay`.

use crate::backoff::Backoff;
use crate::config::RetrySettings;
use dbmanager_providers::{ErrorClass, ProviderError};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The pace settings of one connection's supervisor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// `health_check_interval`.
    pub(crate) interval: Duration,
    /// The reconnect backoff.
    pub(crate) retry: RetrySettings,
    /// `enable_auto_reconnect`.
    pub(crate) auto_reconnect: bool,
}

/// What the supervisor may ask of a connection, and nothing more.
pub(crate) trait Supervised: Send + Sync + 'static {
    /// Its pace settings.
    fn pace(&self) -> Pace;
    /// Whether it is healthy now.
    fn is_up(&self) -> bool;
    /// Whether it was closed.
    fn is_closed(&self) -> bool;
    /// Whether callers are waiting for it to come back (`on_unavailable: wait`).
    fn has_waiters(&self) -> bool;
    /// Notified when the first caller starts waiting.
    fn waiter_arrived(&self) -> &Notify;
    /// One round trip through the current pool, bounded by `health_check_timeout`.
    fn probe(&self) -> BoxFuture<'_, Result<Duration, ProviderError>>;
    /// Records the probe's outcome (health, pool clearing). Returns the error's class.
    fn observe(&self, result: &Result<Duration, ProviderError>) -> Option<ErrorClass>;
    /// Publishes a reconnect attempt (a probe made while the connection was down).
    fn attempted(
        &self,
        attempt: u32,
        round: u32,
        delay: Duration,
        next_delay: Option<Duration>,
        result: &Result<Duration, ProviderError>,
    );
}

/// Starts a connection's supervisor on `tasks`; it ends when `cancel` is cancelled or the
/// connection is dropped. `broken` is the pool's signal that a dead connection was found.
pub(crate) fn spawn(
    target: Weak<dyn Supervised>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
    broken: Arc<Notify>,
) {
    tasks.spawn(run(target, cancel, broken));
}

async fn run(weak: Weak<dyn Supervised>, cancel: CancellationToken, broken: Arc<Notify>) {
    let Some((pace, up)) = weak.upgrade().map(|t| (t.pace(), t.is_up())) else {
        return;
    };
    let Pace {
        mut interval,
        mut retry,
        ..
    } = pace;
    let mut backoff: Option<Backoff> = None;
    // A strict connection is up already; a lazy one is probed at once.
    let mut delay = if up { interval } else { Duration::ZERO };
    let mut fatal = false;
    let mut last_probe = tokio::time::Instant::now();
    loop {
        let Some((healthy, waiting)) = weak.upgrade().map(|t| (t.is_up(), t.has_waiters())) else {
            return;
        };
        // While callers wait for the connection, probe at least every half `retry_delay`
        // (a connect through the pool, with a socket check after 50 ms that a server that
        // is down refuses in microseconds): the server is then seen back within that, plus
        // one handshake, on average half.
        let pace = if !healthy && waiting && !fatal {
            delay.min(retry.delay / 2)
        } else {
            delay
        };
        let wake_at = tokio::time::Instant::from_std(dbmanager_providers::time::deadline(
            last_probe.into_std(),
            pace,
        ));
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(wake_at) => {}
            // A caller or a pool hook found a dead connection: check now rather than at the
            // next interval. While down, the backoff sets the pace, but callers stuck in the
            // pool may have arrived (the pool raises it for a slow borrow): recompute it.
            () = broken.notified() => if !healthy { continue },
            // The first caller started waiting: recompute the pace.
            () = waiter_arrived(&weak), if !healthy && !waiting && !fatal => continue,
        }
        last_probe = tokio::time::Instant::now();
        let Some(target) = weak.upgrade() else { return };
        if target.is_closed() {
            return;
        }
        let was_down = !target.is_up();
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            r = target.probe() => r,
        };
        let class = target.observe(&result);
        // A reload may have changed the settings.
        let now = target.pace();
        (interval, retry) = (now.interval, now.retry);
        let auto = now.auto_reconnect;
        // The clear above (if any) notified `broken` on our behalf; that is not news.
        let _ = broken.notified().now_or_never();
        let (attempt, round) = backoff
            .as_ref()
            .map_or((1, 1), |b| (b.attempt.max(1), b.round));
        let waited = delay;
        fatal = class.is_some_and(ErrorClass::is_fatal);
        delay = match (&result, class) {
            (Ok(_), _) => {
                backoff = None;
                interval
            }
            // Busy while up: callers' round trips are proof of life; check again at the
            // usual pace.
            (Err(ProviderError::Busy { .. }), _) if !was_down => interval,
            // Waiting will not fix credentials or settings: retry slowly.
            (Err(_), Some(c)) if c.is_fatal() => retry.max_delay,
            (Err(_), _) if !auto => interval,
            (Err(_), _) => {
                let b = backoff.get_or_insert_with(|| Backoff::new(&retry));
                b.next().unwrap_or(retry.max_delay)
            }
        };
        if was_down {
            let next = result.is_err().then_some(delay);
            target.attempted(attempt, round, waited, next, &result);
        }
    }
}

/// Resolves when the first caller starts waiting for the connection.
async fn waiter_arrived(weak: &Weak<dyn Supervised>) {
    match weak.upgrade() {
        Some(target) => target.waiter_arrived().notified().await,
        None => std::future::pending().await,
    }
}
