//! The supervisor: one task per connection that checks its health and brings it back.
//!
//! It holds only a `Weak` reference to the connection and the connection's cancellation
//! token, so it ends when the manager closes (at once, even mid-check) or when the last
//! handle to the connection is dropped. Each connection's checks run in their own task:
//! a database that hangs never delays another's.
//!
//! States and transitions (drawn in docs/resilience.md): `connecting` → `healthy` on the
//! first successful probe; `healthy` → `unhealthy` after `failure_threshold` failed probes
//! in a row (at once for an authentication or configuration error); `unhealthy` →
//! `healthy` on a successful probe; any → `closed` on close. While healthy it probes every
//! `health_check_interval` (and at once when a dead connection is found); while down, on
//! the backoff below.
//!
//! A probe is one real round trip (acquire + ping) bounded by `health_check_timeout`. A
//! failure that means the server dropped its connections (or did not answer) clears the
//! pool. An authentication or configuration error marks the connection unhealthy at once
//! and is retried only every `retry_max_delay`.

use crate::config::RetrySettings;
use crate::connection::{Connection, HealthState, Inner};
use crate::events::EventKind;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures_util::FutureExt;
use std::sync::Weak;
use std::time::Duration;

/// Reconnect delays: a first round of `attempts` delays doubling from `delay` to
/// `max_delay`, then rounds of `attempts` delays at `max_delay`, without end. Every delay
/// is jittered between half and all of its nominal value ("equal jitter"), so clients
/// that lost the same server do not come back in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    settings: RetrySettings,
    current: ExponentialBackoff,
    /// Round number, from 1.
    pub(crate) round: u32,
    /// Attempt within the round, from 1 (0 before the first delay).
    pub(crate) attempt: u32,
    endless: bool,
}

fn builder(min: Duration, max: Duration, times: u32) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_max_times(times as usize)
        .with_jitter()
        .build()
}

impl Backoff {
    /// Endless rounds (the supervisor).
    pub(crate) fn new(settings: &RetrySettings) -> Self {
        Backoff {
            settings: *settings,
            current: builder(settings.delay, settings.max_delay, settings.attempts),
            round: 1,
            attempt: 0,
            endless: true,
        }
    }

    /// One round of `attempts - 1` delays (`Connection::retry`: `attempts` tries in all).
    pub(crate) fn single_round(settings: &RetrySettings) -> Self {
        Backoff {
            settings: *settings,
            current: builder(
                settings.delay,
                settings.max_delay,
                settings.attempts.saturating_sub(1),
            ),
            round: 1,
            attempt: 0,
            endless: false,
        }
    }

    /// backon's jitter adds up to 100% of the delay; halve it to land in [d/2, d).
    fn jittered(d: Duration) -> Duration {
        d / 2
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if let Some(d) = self.current.next() {
            self.attempt += 1;
            return Some(Self::jittered(d));
        }
        if !self.endless {
            return None;
        }
        let max = self.settings.max_delay;
        self.current = builder(max, max, self.settings.attempts);
        self.round += 1;
        self.attempt = 1;
        Some(Self::jittered(self.current.next().unwrap_or(max * 2)))
    }
}

/// Starts the connection's supervisor on the manager's task tracker.
pub(crate) fn spawn(conn: &Connection) {
    let weak = std::sync::Arc::downgrade(&conn.inner);
    let ctx = &conn.inner.ctx;
    ctx.tasks.spawn(run(
        weak,
        ctx.cancel.clone(),
        std::sync::Arc::clone(&ctx.broken),
    ));
}

async fn run(
    weak: Weak<Inner>,
    cancel: tokio_util::sync::CancellationToken,
    broken: std::sync::Arc<tokio::sync::Notify>,
) {
    let Some((interval, retry, auto, up)) = weak.upgrade().map(|inner| {
        let conn = Connection { inner };
        let c = conn.config();
        let up = conn.health().state == HealthState::Healthy;
        (
            c.health_check_interval,
            c.retry,
            c.enable_auto_reconnect,
            up,
        )
    }) else {
        return;
    };
    let mut backoff: Option<Backoff> = None;
    // A strict connection is up already; a lazy one is probed at once.
    let mut delay = if up { interval } else { Duration::ZERO };
    let mut fatal = false;
    let mut last_probe = tokio::time::Instant::now();
    loop {
        let (healthy, waiting) = match weak.upgrade() {
            Some(inner) => {
                let waiting = inner.waiters.load(std::sync::atomic::Ordering::Acquire) > 0;
                (
                    Connection { inner }.health().state == HealthState::Healthy,
                    waiting,
                )
            }
            None => return,
        };
        // While callers wait for the connection, probe at least every `retry_delay`
        // instead of following the backoff up to `retry_max_delay`.
        let pace = if !healthy && waiting && !fatal {
            delay.min(retry.delay)
        } else {
            delay
        };
        let wake_at = last_probe + pace;
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(wake_at) => {}
            // A caller or a pool hook found a dead connection: check now rather than at the
            // next interval. Only while healthy: when down, the backoff sets the pace.
            () = broken.notified(), if healthy => {}
            // The first caller started waiting: recompute the pace.
            () = waiter_arrived(&weak), if !healthy && !waiting && !fatal => continue,
        }
        last_probe = tokio::time::Instant::now();
        let Some(inner) = weak.upgrade() else { return };
        let conn = Connection { inner };
        if conn.is_closed() {
            return;
        }
        let was_down = conn.health().state != HealthState::Healthy;
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            r = conn.probe() => r,
        };
        let class = conn.observe(&result);
        // The clear above (if any) notified `broken` on our behalf; that is not news.
        let _ = broken.notified().now_or_never();
        if was_down {
            let (attempt, round) = backoff
                .as_ref()
                .map_or((1, 1), |b| (b.attempt.max(1), b.round));
            conn.emit(EventKind::ReconnectAttempt {
                attempt,
                round,
                delay,
                result: result
                    .as_ref()
                    .map(|d| *d)
                    .map_err(|e| conn.redact(e.to_string())),
            });
        }
        fatal = class.is_some_and(|c| c.is_fatal());
        delay = match (result, class) {
            (Ok(_), _) => {
                backoff = None;
                interval
            }
            // Waiting will not fix credentials or settings: retry slowly.
            (Err(_), Some(c)) if c.is_fatal() => retry.max_delay,
            (Err(_), _) if !auto => interval,
            (Err(_), _) => {
                let b = backoff.get_or_insert_with(|| Backoff::new(&retry));
                b.next().unwrap_or(retry.max_delay)
            }
        };
    }
}

/// Resolves when the first caller starts waiting for the connection.
async fn waiter_arrived(weak: &Weak<Inner>) {
    match weak.upgrade() {
        Some(inner) => inner.waiter_arrived.notified().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(attempts: u32, delay_ms: u64, max_ms: u64) -> RetrySettings {
        RetrySettings {
            attempts,
            delay: Duration::from_millis(delay_ms),
            max_delay: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn first_round_doubles_then_rounds_stay_at_the_cap() {
        let mut b = Backoff::new(&settings(3, 100, 1000));
        let first: Vec<Duration> = (&mut b).take(3).collect();
        // nominal 100, 200, 400 ms; each jittered into [d/2, d)
        for (d, nominal) in first.iter().zip([100u64, 200, 400]) {
            let n = Duration::from_millis(nominal);
            assert!(*d >= n / 2 && *d < n, "{d:?} not in [{:?}, {n:?})", n / 2);
        }
        assert_eq!(b.round, 1);
        for _ in 0..6 {
            let d = b.next().expect("endless");
            assert!(d >= Duration::from_millis(500) && d < Duration::from_millis(1000));
        }
        assert_eq!(b.round, 3);
    }

    #[test]
    fn single_round_ends() {
        let b = Backoff::single_round(&settings(3, 10, 100));
        assert_eq!(b.count(), 2);
        assert_eq!(Backoff::single_round(&settings(1, 10, 100)).count(), 0);
    }
}
