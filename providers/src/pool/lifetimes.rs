//! Each sqlx connection's own lifetime (`conn_max_lifetime` less its share of
//! `conn_max_lifetime_jitter`).
//!
//! sqlx keeps nothing of ours per connection, and its hooks see only the connection's age.
//! So the draw is recorded when the connection opens (the connect hook, which sqlx runs
//! just before it dates the connection) under that instant, and a check finds it again
//! from the opening time its age implies (now less the age sqlx just measured), which is
//! microseconds from the recorded one. A hash of the opening time alone would not do:
//! connections opened together open microseconds apart, and a check's reading of the
//! opening time is off by about as much, so draws would change from one check to the next
//! and the earliest would win.

use crate::settings::PoolSettings;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How far a check's reading of the opening time may be from the recorded one.
const TOLERANCE: Duration = Duration::from_micros(500);

/// The draws of the connections opened in the last `max_lifetime` (and a little more).
#[derive(Debug)]
pub(super) struct Lifetimes {
    settings: PoolSettings,
    epoch: Instant,
    /// (opened, nanoseconds after `epoch`; lifetime), oldest first.
    opened: Mutex<VecDeque<(u64, Duration)>>,
    draws: AtomicU64,
}

impl Lifetimes {
    pub(super) fn new(settings: &PoolSettings) -> Self {
        Lifetimes {
            settings: settings.clone(),
            epoch: Instant::now(),
            opened: Mutex::new(VecDeque::new()),
            draws: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn jittered(&self) -> bool {
        self.settings.max_lifetime.is_some() && !self.settings.max_lifetime_jitter.is_zero()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Duration)>> {
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection opens now: draws its lifetime.
    pub(super) fn opened(&self) {
        if !self.jittered() {
            return;
        }
        let draw = self.draws.fetch_add(1, Ordering::Relaxed);
        let Some(lifetime) = self.settings.lifetime_of(draw) else {
            return;
        };
        let now = self.nanos(Instant::now());
        let keep = self.settings.max_lifetime.unwrap_or_default() + Duration::from_secs(60);
        let mut opened = self.lock();
        while opened
            .front()
            .is_some_and(|&(at, _)| now.saturating_sub(at) > keep.as_nanos() as u64)
        {
            opened.pop_front();
        }
        // Hooks of connections opened together may run out of order: keep it sorted.
        let at = opened.partition_point(|&(t, _)| t <= now);
        opened.insert(at, (now, lifetime));
    }

    /// Whether a connection of this `age` has outlived its lifetime.
    pub(super) fn expired(&self, age: Duration) -> bool {
        self.expired_at(Instant::now(), age)
    }

    /// As [`expired`](Self::expired), with the age measured at `now`.
    fn expired_at(&self, now: Instant, age: Duration) -> bool {
        let Some(max) = self.settings.max_lifetime else {
            return false;
        };
        if age < max.saturating_sub(self.settings.max_lifetime_jitter) {
            return false;
        }
        if age >= max || !self.jittered() {
            return age >= max;
        }
        let opened = self.nanos(now.checked_sub(age).unwrap_or(self.epoch));
        let table = self.lock();
        // The nearest record at or before the reading (the record comes first).
        let at = table.partition_point(|&(t, _)| t <= opened);
        let nearest = [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|i| table.get(i))
            .min_by_key(|&&(t, _)| t.abs_diff(opened));
        match nearest {
            Some(&(t, lifetime)) if t.abs_diff(opened) <= TOLERANCE.as_nanos() as u64 => {
                age >= lifetime
            }
            // Not recorded (opened before this pool knew, say): the full lifetime.
            _ => age >= max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first age, in steps of 10 ms, at which the connection recorded just before
    /// `opened` counts as expired; its age read `skew` late.
    fn expiry(lifetimes: &Lifetimes, opened: Instant, skew: Duration) -> Duration {
        (0..=400)
            .map(|n| Duration::from_millis(n * 10))
            .find(|&age| lifetimes.expired_at(opened + age + skew, age + skew))
            .unwrap()
    }

    #[test]
    fn connections_opened_together_keep_their_own_draws_across_the_window() {
        let mut s = PoolSettings::with_max_open(20);
        s.max_lifetime = Some(Duration::from_secs(3));
        s.max_lifetime_jitter = Duration::from_secs(2);
        let lifetimes = Lifetimes::new(&s);
        let opened: Vec<Instant> = (0..20)
            .map(|_| {
                lifetimes.opened();
                let at = Instant::now();
                std::thread::sleep(Duration::from_millis(2));
                at
            })
            .collect();
        let ages: Vec<Duration> = opened
            .iter()
            .map(|&at| expiry(&lifetimes, at, Duration::ZERO))
            .collect();
        // Asked again, with the age read a little later, the same answer.
        for (&at, &age) in opened.iter().zip(&ages) {
            assert_eq!(expiry(&lifetimes, at, Duration::from_micros(30)), age);
        }
        assert!(
            ages.iter()
                .all(|a| (Duration::from_secs(1)..=Duration::from_secs(3)).contains(a))
        );
        let (min, max) = (ages.iter().min().unwrap(), ages.iter().max().unwrap());
        assert!(*max - *min >= Duration::from_secs(1), "{ages:?}");
        let mut distinct = ages.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() >= 15, "{ages:?}");
    }

    #[test]
    fn without_jitter_every_connection_lives_the_full_lifetime() {
        let mut s = PoolSettings::with_max_open(2);
        s.max_lifetime = Some(Duration::from_secs(3));
        s.max_lifetime_jitter = Duration::ZERO;
        let lifetimes = Lifetimes::new(&s);
        lifetimes.opened();
        let at = Instant::now();
        assert_eq!(
            expiry(&lifetimes, at, Duration::ZERO),
            Duration::from_secs(3)
        );
    }
}
