//! [`Event`]: what happened to a connection, the one stream every observer reads.
//!
//! Two kinds of observer:
//! - a [`Subscriber`] is called synchronously, on the task that caused the event, and so
//!   never misses one (logging is one; metrics are the next). It must be
//!   quick and must not block.
//! - `Manager::subscribe` gives a [`tokio::sync::broadcast`] receiver of
//!   [`EVENT_CAPACITY`] events: one that falls that far behind loses the oldest ones (its
//!   next `recv` reports how many) and never slows the connections down.
//!
//! No event carries a password or a DSN.

use crate::health::HealthState;
use arc_swap::ArcSwap;
use dbmanager_providers::ErrorClass;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// Receives every event of the connections it was registered for, synchronously, as it
/// happens. Must be quick and must not block (count, log, or forward to a channel).
pub trait Subscriber: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event);
}

/// Where a connection publishes its events: its own synchronous subscribers (logging),
/// the manager-wide ones (metrics, a service's own), then the broadcast channel.
#[derive(Clone)]
pub(crate) struct Bus {
    channel: broadcast::Sender<Event>,
    subscribers: Arc<[Arc<dyn Subscriber>]>,
    /// Shared by every connection of a manager; added to at any time.
    shared: Arc<ArcSwap<Vec<Arc<dyn Subscriber>>>>,
}

impl Bus {
    /// A bus with no subscribers and a fresh channel.
    pub(crate) fn new() -> Self {
        Bus {
            channel: broadcast::Sender::new(EVENT_CAPACITY),
            subscribers: Arc::from(Vec::new()),
            shared: Arc::new(ArcSwap::from_pointee(Vec::new())),
        }
    }

    /// The same channel and manager-wide subscribers, with `more` subscribers of its own.
    pub(crate) fn with(&self, more: impl IntoIterator<Item = Arc<dyn Subscriber>>) -> Self {
        let mut subscribers: Vec<_> = self.subscribers.iter().cloned().collect();
        subscribers.extend(more);
        Bus {
            channel: self.channel.clone(),
            subscribers: Arc::from(subscribers),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Adds a manager-wide subscriber: every connection's next events reach it.
    pub(crate) fn add(&self, subscriber: Arc<dyn Subscriber>) {
        self.shared.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(Arc::clone(&subscriber));
            list
        });
    }

    /// A receiver of every event published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.channel.subscribe()
    }

    /// Hands `event` to every subscriber, then to the channel.
    pub(crate) fn publish(&self, event: Event) {
        for s in self.subscribers.iter() {
            s.on_event(&event);
        }
        for s in self.shared.load().iter() {
            s.on_event(&event);
        }
        // An error only means no receiver is listening.
        let _ = self.channel.send(event);
    }
}

/// How many events a slow subscriber may fall behind before it loses the oldest.
pub const EVENT_CAPACITY: usize = 1024;

/// One thing that happened to one connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Event {
    /// The connection's name.
    pub connection: Arc<str>,
    /// For an event of one of the connection's read replicas, the replica's name.
    pub replica: Option<Arc<str>>,
    /// When it happened.
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// Why a pool was cleared (every idle connection dropped, the rest marked stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClearReason {
    /// A health check failed with this class of error (connection lost, timeout...).
    HealthCheckFailed(ErrorClass),
    /// A caller's query failed with this class of error (reported through
    /// `Connection::report_error`, `Connection::retry` or a failed acquire).
    ErrorReported(ErrorClass),
    /// A health check did not answer within `health_check_timeout`.
    HealthCheckTimeout,
    /// `Connection::clear()` was called.
    Requested,
    /// The driver cleared its own pool (MongoDB, after a network error or a failed
    /// heartbeat); `closed_idle` is 0 because the driver closes them itself.
    Driver,
}

impl ClearReason {
    /// Every kind of clear (the error class left out), as the `reason` label of
    /// `dbmanager_pool_clears_total`, in [`label_index`](Self::label_index) order.
    pub const LABELS: [&'static str; 5] = [
        "health_check_failed",
        "health_check_timeout",
        "error_reported",
        "requested",
        "driver",
    ];

    /// Its kind, as a label.
    pub fn label(self) -> &'static str {
        Self::LABELS[self.label_index()]
    }

    /// Its kind's place in [`LABELS`](Self::LABELS).
    pub fn label_index(self) -> usize {
        match self {
            ClearReason::HealthCheckFailed(_) => 0,
            ClearReason::HealthCheckTimeout => 1,
            ClearReason::ErrorReported(_) => 2,
            ClearReason::Requested => 3,
            ClearReason::Driver => 4,
        }
    }
}

/// The kinds of [`Event`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// The connection answered its first round trip, or answered again after being down.
    Connected {
        /// The round trip's latency.
        latency: Duration,
    },
    /// The health state changed.
    HealthChanged {
        /// The previous state.
        from: HealthState,
        /// The new state.
        to: HealthState,
        /// The error that caused it (redacted), when the new state is `unhealthy`.
        error: Option<String>,
    },
    /// The supervisor tried to reach a connection that is down (or not up yet).
    ReconnectAttempt {
        /// The attempt's number within its round, from 1.
        attempt: u32,
        /// The round's number, from 1 (rounds after the first run at `retry_max_delay`).
        round: u32,
        /// How long the supervisor waited before this attempt.
        delay: Duration,
        /// After a failed attempt, how long until the next one.
        next_delay: Option<Duration>,
        /// The round trip's latency, or the error (redacted).
        result: Result<Duration, String>,
    },
    /// Every idle connection was dropped and the open ones marked stale.
    PoolCleared {
        /// Why.
        reason: ClearReason,
        /// How many idle connections were closed at once.
        closed_idle: u32,
    },
    /// An acquire gave up after `acquire_timeout` while the connection was up.
    AcquireTimedOut {
        /// How long it waited.
        waited: Duration,
    },
    /// A checkout has been held longer than `leak_detection_threshold` (reported once per
    /// checkout; it may be a leak, or only slow work).
    LeakSuspected {
        /// How long it had been held (the threshold).
        held: Duration,
        /// Where it was checked out.
        caller: &'static std::panic::Location<'static>,
    },
    /// An acquire failed because the connection is down (`Error::Unavailable`).
    Unavailable {
        /// How long it waited (zero under `fail_fast`).
        waited: Duration,
    },
    /// A new pool replaced the old one (`Connection::reconnect`).
    Swapped {
        /// How long the new pool took to connect.
        connect: Duration,
    },
    /// The replaced pool was closed after its in-flight work finished (or the drain
    /// deadline passed).
    Drained {
        /// Whether every connection was returned before `drain_timeout`.
        complete: bool,
        /// How long the drain took.
        took: Duration,
    },
    /// The connection's pool was opened (`Manager::connect`); a lazy one connects in the
    /// background.
    Opened {
        /// Whether it was opened without connecting (`startup: lazy`, or a lazy view).
        lazy: bool,
    },
    /// One health check (the supervisor's probe, or `Connection::health_check`) ended.
    HealthChecked {
        /// How long it took (until the answer, the error or the timeout).
        took: Duration,
        /// Whether the server answered.
        ok: bool,
    },
    /// The connection was closed (`Manager::close`).
    Closed,
    /// `Manager::remove` (or a reload that dropped it) took the connection out: it has
    /// drained and closed, and its metrics series are gone.
    Removed,
    /// A reload changed the connection's settings: a pool with the new ones replaced the
    /// old one (which then drained).
    Reconfigured {
        /// The YAML fields whose values changed (secrets by name only).
        changed: Vec<&'static str>,
    },
    /// A replica's replication lag crossed `max_replica_lag`: it is skipped by
    /// `reader()` (`lagging`) or serves reads again.
    ReplicaLag {
        /// The lag measured.
        lag: Duration,
        /// Whether it is now past the limit.
        lagging: bool,
    },
    /// `close()` gave up waiting for connections still in use after `close_timeout`; they
    /// close when they are returned.
    CloseTimedOut {
        /// The `close_timeout` that expired.
        close_timeout: Duration,
    },
}

impl EventKind {
    /// A short lower-case name (`health_changed`, ...), for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Connected { .. } => "connected",
            EventKind::HealthChanged { .. } => "health_changed",
            EventKind::ReconnectAttempt { .. } => "reconnect_attempt",
            EventKind::PoolCleared { .. } => "pool_cleared",
            EventKind::AcquireTimedOut { .. } => "acquire_timed_out",
            EventKind::LeakSuspected { .. } => "leak_suspected",
            EventKind::Unavailable { .. } => "unavailable",
            EventKind::Swapped { .. } => "swapped",
            EventKind::Drained { .. } => "drained",
            EventKind::Opened { .. } => "opened",
            EventKind::HealthChecked { .. } => "health_checked",
            EventKind::Closed => "closed",
            EventKind::CloseTimedOut { .. } => "close_timed_out",
            EventKind::Removed => "removed",
            EventKind::ReplicaLag { .. } => "replica_lag",
            EventKind::Reconfigured { .. } => "reconfigured",
        }
    }
}
