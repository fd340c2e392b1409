//! [`HealthState`] and [`Health`]: what the last round trip to a connection's database
//! said. A leaf module: events, stats, the supervisor and the connection all read it.

use dbmanager_providers::{ErrorClass, ProviderError};
use std::time::{Duration, Instant};

/// The health of a connection, as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthState {
    /// Not connected yet (a `lazy` connection coming up in the background).
    Connecting,
    /// The last round trip succeeded.
    Healthy,
    /// `failure_threshold` round trips in a row failed (or one failed with an
    /// authentication or configuration error); see [`Health::last_error`].
    Unhealthy,
    /// Closed by `Manager::close`.
    Closed,
}

impl HealthState {
    /// Lower-case name (`healthy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Connecting => "connecting",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Closed => "closed",
        }
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection's health with the details of the last observation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// The state.
    pub state: HealthState,
    /// The last error seen (redacted: never holds a password), if not healthy.
    pub last_error: Option<String>,
    /// What kind of error that was.
    pub error_class: Option<ErrorClass>,
    /// Consecutive failed round trips.
    pub failures: u32,
    /// Latency of the last successful round trip.
    pub latency: Option<Duration>,
    /// When it was last observed.
    pub observed_at: Option<Instant>,
}

impl Health {
    pub(crate) fn new(state: HealthState) -> Self {
        Health {
            state,
            last_error: None,
            error_class: None,
            failures: 0,
            latency: None,
            observed_at: Some(Instant::now()),
        }
    }

    /// Whether an authentication or configuration error keeps it down: waiting will not
    /// help until someone fixes the account or the settings.
    pub fn is_fatal(&self) -> bool {
        self.state != HealthState::Healthy && self.error_class.is_some_and(ErrorClass::is_fatal)
    }
}

/// What one probe's outcome does to a connection's health: the decision of the health
/// state machine (drawn in docs/resilience.md), apart from carrying it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server answered: healthy, failures reset. `recovered`: it was not healthy.
    Up {
        /// It was down (or connecting) before.
        recovered: bool,
    },
    /// Every connection was in use for the whole check: busy is not dead, nothing
    /// changes.
    Busy,
    /// A connect or a round trip failed.
    Failed {
        /// The state becomes (or stays) unhealthy.
        down: bool,
        /// The pool's connections are suspect: clear them.
        clear: bool,
        /// Failures in a row, this one included.
        failures: u32,
        /// What the error means.
        class: ErrorClass,
    },
}

/// The health state machine: from the current state, the failures in a row so far and
/// `failure_threshold`, what `outcome` (a probe's) makes of it. Healthy stays healthy
/// until `threshold` failures in a row, or one authentication/configuration error; once
/// down, every failure keeps it down and one success brings it back; a busy pool is no
/// verdict.
pub(crate) fn judge(
    current: HealthState,
    failures: u32,
    threshold: u32,
    outcome: &Result<Duration, ProviderError>,
) -> Verdict {
    match outcome {
        Ok(_) => Verdict::Up {
            recovered: current != HealthState::Healthy,
        },
        Err(ProviderError::Busy { .. }) => Verdict::Busy,
        Err(e) => {
            let class = e.class();
            let failures = failures.saturating_add(1);
            Verdict::Failed {
                down: class.is_fatal() || failures >= threshold || current != HealthState::Healthy,
                clear: class.clears_pool(),
                failures,
                class,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbmanager_providers::TimeoutPhase;

    fn lost() -> Result<Duration, ProviderError> {
        Err(ProviderError::Timeout {
            phase: TimeoutPhase::HealthCheck,
            after: Duration::from_secs(1),
        })
    }

    #[test]
    fn healthy_goes_down_after_threshold_failures_in_a_row() {
        let (mut state, mut failures) = (HealthState::Healthy, 0);
        for n in 1..=3 {
            match judge(state, failures, 3, &lost()) {
                Verdict::Failed {
                    down,
                    clear,
                    failures: f,
                    ..
                } => {
                    assert_eq!(down, n == 3, "failure {n}");
                    assert!(clear, "a lost connection clears the pool");
                    failures = f;
                    if down {
                        state = HealthState::Unhealthy;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(state, HealthState::Unhealthy);
        assert_eq!(
            judge(state, failures, 3, &Ok(Duration::from_millis(1))),
            Verdict::Up { recovered: true }
        );
    }

    #[test]
    fn a_busy_pool_is_no_verdict_in_any_state() {
        let busy = Err(ProviderError::Busy {
            waited: Duration::from_secs(1),
        });
        for state in [
            HealthState::Healthy,
            HealthState::Unhealthy,
            HealthState::Connecting,
        ] {
            assert_eq!(judge(state, 0, 1, &busy), Verdict::Busy, "{state}");
        }
    }

    #[test]
    fn a_fatal_error_takes_it_down_at_once_without_clearing() {
        let config = Err(ProviderError::InvalidSetting {
            field: "sslmode",
            reason: "bad".into(),
        });
        assert!(matches!(
            judge(HealthState::Healthy, 0, 5, &config),
            Verdict::Failed {
                down: true,
                clear: false,
                failures: 1,
                class: ErrorClass::Config
            }
        ));
    }

    #[test]
    fn down_stays_down_on_any_failure_and_connecting_counts_as_down() {
        for state in [HealthState::Unhealthy, HealthState::Connecting] {
            assert!(matches!(
                judge(state, 0, 10, &lost()),
                Verdict::Failed { down: true, .. }
            ));
        }
        assert_eq!(
            judge(HealthState::Healthy, 2, 3, &Ok(Duration::ZERO)),
            Verdict::Up { recovered: false }
        );
    }
}
