//! Logging as one [`Subscriber`] of the event stream: every connection with
//! `enable_logging: true` (the default) has it, so its lifecycle reaches `tracing` from
//! the same events that `Manager::subscribe` and metrics see.
//!
//! Levels: a connection going unhealthy, a failed reconnect attempt (with the delay before
//! the next) and a close that timed out are `warn`; routine per-request events (acquire
//! timeouts, unavailable) are `debug`; everything else is `info`. Each event's values are
//! flat fields (durations in milliseconds, names as text), never Rust `Debug` output.
//! Event fields are already redacted.

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
                    close_timeout_ms = ms(*close_timeout),
                    "connections still in use when close_timeout expired; they close when returned"
                );
            }
            // One per probe: metrics want it, a log does not.
            EventKind::HealthChecked { .. } => {}
            EventKind::ReconnectAttempt {
                attempt,
                round,
                delay,
                next_delay,
                result,
            } => match result {
                Err(error) => tracing::warn!(
                    connection = %name,
                    attempt,
                    round,
                    waited_ms = ms(*delay),
                    next_attempt_in_ms = next_delay.map_or(0, ms),
                    error = %error,
                    "reconnect attempt failed"
                ),
                Ok(latency) => tracing::info!(
                    connection = %name,
                    attempt,
                    round,
                    latency_ms = ms(*latency),
                    "reconnect attempt succeeded"
                ),
            },
            EventKind::AcquireTimedOut { waited } => {
                tracing::debug!(connection = %name, waited_ms = ms(*waited), "acquire timed out");
            }
            EventKind::LeakSuspected { held, caller } => {
                tracing::warn!(
                    connection = %name,
                    held_ms = ms(*held),
                    caller = %caller,
                    "connection checked out longer than leak_detection_threshold (a leak, or slow work)"
                );
            }
            EventKind::Unavailable { waited } => {
                tracing::debug!(connection = %name, waited_ms = ms(*waited), "acquire failed: the connection is down");
            }
            EventKind::Connected { latency } => {
                tracing::info!(connection = %name, latency_ms = ms(*latency), "connected");
            }
            EventKind::PoolCleared {
                reason,
                closed_idle,
            } => {
                tracing::info!(connection = %name, reason = reason.label(), closed_idle, "pool cleared");
            }
            EventKind::Swapped { connect } => {
                tracing::info!(connection = %name, connect_ms = ms(*connect), "pool swapped");
            }
            EventKind::Drained { complete, took } => {
                tracing::info!(connection = %name, complete, took_ms = ms(*took), "replaced pool drained");
            }
            EventKind::Closed => tracing::info!(connection = %name, "connection closed"),
            EventKind::Removed => tracing::info!(connection = %name, "connection removed"),
            EventKind::Reconfigured { changed } => {
                tracing::info!(connection = %name, changed = %changed.join(","), "connection reconfigured");
            }
            EventKind::ReplicaLag { lag, lagging } => {
                tracing::info!(connection = %name, lag_ms = ms(*lag), lagging, "replica lag crossed max_replica_lag");
            }
            #[allow(unreachable_patterns)]
            _ => tracing::info!(connection = %name, event = kind.name(), "connection event"),
        }
    }
}

/// A duration in whole milliseconds, for a log field.
fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
