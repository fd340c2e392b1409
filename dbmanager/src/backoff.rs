//! [`Backoff`]: the reconnect and retry delays, on backon's exponential backoff.

use crate::config::RetrySettings;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
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
