//! Logging as one [`Subscriber`] of the event stream: every connection with
//! `enable_logging: true` (the default) has it, so its lifecycle reaches `tracing` from
//! the same events that `Manager::subscribe` and metrics see.
//!
//! Levels: a connection going unhealthy and a close that timed out are `warn`; routine
//! per-request events (reconnect attempts, acquire timeouts, unavailable) are `debug`;
//! everything else is `info`. Event fields are already redacted.

use crate::events::{Event, EventKind, Subscriber};
use crate::health::HealthState;

/// Writes each event to `tracing`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Log;

impl Subscriber for Log {
    fn on_event(&self, event: &Event) {
        // A replica's events: `<connection>/<replica>`.
        let name = match &event.replica {
            Some(r) => std::borrow::Cow::Owned(format!("{}/{r}", event.connection)),
            None => std::borrow::Cow::Borrowed(&*event.connection),
        };
        let kind = &event.kind;
        match kind {
            EventKind::HealthChanged { from, to, error } => {
                if *to == HealthState::Unhealthy {
                    tracing::warn!(connection = %name, %from, %to, error = error.as_deref().unwrap_or(""), "connection health changed");
                } else {
                    tracing::info!(connection = %name, %from, %to, "connection health changed");
                }
            }
            EventKind::Opened { lazy } => {
                tracing::info!(connection = %name, lazy, "connection pool opened");
            }
            EventKind::CloseTimedOut { close_timeout } => {
                tracing::warn!(
                    connection = %name,
                    ?close_timeout,
                    "connections still in use when close_timeout expired; they close when returned"
                );
            }
            // One per probe: metrics want it, a log does not.
            EventKind::HealthChecked { .. } => {}
            EventKind::ReconnectAttempt { .. }
            | EventKind::AcquireTimedOut { .. }
            | EventKind::Unavailable { .. } => {
                tracing::debug!(connection = %name, event = kind.name(), ?kind, "connection event");
            }
            _ => {
                tracing::info!(connection = %name, event = kind.name(), ?kind, "connection event");
            }
        }
    }
}
