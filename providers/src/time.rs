//! Deadlines that cannot panic: `Instant + Duration` panics on overflow, and a duration
//! comes from user configuration (or a caller's argument).

use std::time::{Duration, Instant};

/// About a century: later than any deadline that matters.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `from + d`, or as far in the future as the clock allows when that would overflow.
pub fn deadline(from: Instant, d: Duration) -> Instant {
    from.checked_add(d)
        .or_else(|| from.checked_add(FAR))
        .unwrap_or(from)
}

/// [`deadline`] from now.
pub fn deadline_in(d: Duration) -> Instant {
    deadline(Instant::now(), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_duration_gives_a_far_deadline_instead_of_a_panic() {
        let now = Instant::now();
        assert!(deadline(now, Duration::MAX) > now + Duration::from_secs(3600));
        assert_eq!(
            deadline(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
