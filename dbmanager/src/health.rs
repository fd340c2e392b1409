//! [`HealthState`] and [`Health`]: what the last round trip to a connection's database
//! said. A leaf module: events, stats, the supervisor and the connection all read it.

use dbmanager_providers::ErrorClass;
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
