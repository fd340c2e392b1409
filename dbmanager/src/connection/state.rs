//! Health, events, pool clearing, error reports and the outage policy of a connection.

use super::{Connection, Inner, WaiterGuard};
use crate::config::OnUnavailable;
use crate::error::{Error, Result};
use crate::events::{ClearReason, Event, EventKind};
use crate::health::{Health, HealthState, Verdict, judge};
use dbmanager_providers::time::deadline;
use dbmanager_providers::{Classify, ErrorClass, ProviderError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

impl Inner {
    /// Publishes an event of this connection.
    pub(crate) fn emit(&self, kind: EventKind) {
        self.events.load().publish(Event {
            connection: Arc::clone(&self.name),
            replica: self.replica_of.clone(),
            at: SystemTime::now(),
            kind,
        });
    }

    /// Removes every secret of this connection from `text`.
    pub(crate) fn redact(&self, text: String) -> String {
        self.secrets.load().scrub(text)
    }

    pub(crate) fn set_health(&self, health: Health) {
        let from = self.health.load().state;
        let to = health.state;
        let error = health.last_error.clone();
        self.health.store(Arc::new(health));
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        if from != to {
            self.emit(EventKind::HealthChanged { from, to, error });
        }
    }

    /// Records the outcome of one round trip (a health check or a reconnect attempt) and
    /// moves the state machine. Returns the error's class.
    pub(crate) fn observe(&self, result: &Result<Duration, ProviderError>) -> Option<ErrorClass> {
        if self.is_closed() {
            return None;
        }
        let current = self.health.load_full();
        let verdict = judge(
            current.state,
            self.failures.load(Ordering::Relaxed),
            self.config.load().failure_threshold,
            result,
        );
        match (verdict, result) {
            (Verdict::Up { recovered }, Ok(latency)) => {
                self.failures.store(0, Ordering::Relaxed);
                let mut h = Health::new(HealthState::Healthy);
                h.latency = Some(*latency);
                self.set_health(h);
                if recovered {
                    self.emit(EventKind::Connected { latency: *latency });
                }
                None
            }
            (
                Verdict::Failed {
                    down,
                    clear,
                    failures,
                    class,
                },
                Err(e),
            ) => {
                if clear {
                    let reason = match e {
                        ProviderError::Timeout { .. } => ClearReason::HealthCheckTimeout,
                        _ => ClearReason::HealthCheckFailed(class),
                    };
                    self.clear_with(reason);
                }
                self.failures.store(failures, Ordering::Relaxed);
                let mut h = Health::new(if down {
                    HealthState::Unhealthy
                } else {
                    HealthState::Healthy
                });
                h.failures = failures;
                h.latency = current.latency;
                h.last_error = Some(self.redact(e.to_string()));
                h.error_class = Some(class);
                self.set_health(h);
                Some(class)
            }
            // No verdict (a busy pool); the other pairs cannot occur.
            _ => None,
        }
    }

    /// Marks the connection unhealthy after its pool failed to open.
    pub(crate) fn open_failed(&self, e: &Error) {
        let mut h = Health::new(HealthState::Unhealthy);
        h.last_error = Some(self.redact(e.to_string()));
        h.error_class = e.class();
        self.set_health(h);
    }

    pub(crate) fn clear_with(&self, reason: ClearReason) {
        if let Some(pools) = self.pools.load_full() {
            let span = self.span("dbmanager.pool_clear");
            if !span.is_disabled() {
                span.record("dbmanager.reason", reason.label());
            }
            let _in = span.enter();
            let closed_idle = pools.clear();
            // While the connection is down every failed probe clears, and the pool is
            // empty after the first: no news, so no event, count or log line (the
            // frequent-clears alert then fires for clears, not for an outage).
            if closed_idle == 0 && self.health.load().state != HealthState::Healthy {
                return;
            }
            self.emit(EventKind::PoolCleared {
                reason,
                closed_idle,
            });
        }
    }

    /// Reacts to an error a caller met: clears the pool when it means the server went
    /// away, or (after asking the server, in the background) that it failed over.
    pub(crate) fn report_class(&self, class: ErrorClass) -> ErrorClass {
        if self.is_closed() {
            return class;
        }
        if class == ErrorClass::ReadOnly {
            // A replica refuses writes by design: that is no failover.
            if self.replica_of.is_none() {
                self.check_read_only_in_background();
            }
        } else if class.clears_pool() {
            self.clear_with(ClearReason::ErrorReported(class));
        }
        class
    }

    /// Whether the server refuses writes now (a failover left the pool on a replica),
    /// asked of the server within `health_check_timeout`. A failed check counts as yes:
    /// clearing when unsure is what a failover needs.
    pub(crate) async fn server_is_read_only(&self) -> bool {
        let Some(pools) = self.pools.load_full() else {
            return false;
        };
        let answer = pools
            .main
            .read_only(self.config.load().health_check_timeout)
            .await;
        !matches!(answer, Ok(false))
    }

    /// Whether the server was promoted moments ago (a write refused as read-only may have
    /// run in a transaction begun before the promotion finished), asked within
    /// `health_check_timeout`. A failed check counts as no.
    pub(crate) async fn server_was_just_promoted(&self) -> bool {
        let Some(pools) = self.pools.load_full() else {
            return false;
        };
        let answer = pools
            .main
            .recently_promoted(self.config.load().health_check_timeout)
            .await;
        matches!(answer, Ok(true))
    }

    /// On a read-only error: asks the server, and clears the pool only when it really is
    /// read-only. An application's own `BEGIN READ ONLY` (or MySQL's `--secure-file-priv`,
    /// which shares error 1290) then costs no connection. One check at a time.
    fn check_read_only_in_background(&self) {
        if self.checking_read_only.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            self.checking_read_only.store(false, Ordering::Release);
            return;
        };
        let cancel = self.ctx.cancel.clone();
        self.ctx.tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                read_only = me.server_is_read_only() => {
                    if read_only && !me.is_closed() {
                        me.clear_with(ClearReason::ErrorReported(ErrorClass::ReadOnly));
                    }
                }
            }
            me.checking_read_only.store(false, Ordering::Release);
        });
    }
}

impl Connection {
    /// Drops every idle connection of the pool now and marks the others stale, so no caller
    /// gets a connection opened before this moment. The supervisor does this by itself
    /// when the server restarts or fails over; call it after you changed something on the
    /// server that open sessions would not see.
    pub fn clear(&self) {
        self.inner.clear_with(ClearReason::Requested);
    }

    /// Tells the connection that an operation on it failed, so it can react as it would to
    /// a failed health check: on a lost connection or a read-only server (a failover) the
    /// pool is cleared and the supervisor checks the server at once. Returns the error's
    /// class; [`ErrorClass::is_transient`] says whether a retry may succeed.
    ///
    /// Takes any error dbmanager can classify: `sqlx::Error`, `mongodb::error::Error`,
    /// `tiberius::error::Error`, `diesel::result::Error`, a
    /// [`ProviderError`](dbmanager_providers::ProviderError), or a custom provider's error
    /// that implements [`Classify`]. [`retry`](Self::retry) and `acquire` call this
    /// themselves; call it when you run queries on a raw pool or client and want the same
    /// reaction.
    pub fn report_error<E: Classify + ?Sized>(&self, error: &E) -> ErrorClass {
        self.inner.report_class(error.class())
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        self.inner.emit(kind);
    }

    pub(crate) fn closed(&self) -> Error {
        Error::Closed {
            name: self.name().to_owned(),
        }
    }

    fn unavailable(&self, waited: Duration) -> Error {
        let h = self.inner.health.load();
        self.emit(EventKind::Unavailable { waited });
        Error::Unavailable {
            name: self.error_name(),
            waited,
            last_error: h.last_error.clone(),
            class: h.error_class,
        }
    }

    /// Applies the outage policy before an acquire: returns at once when healthy; under
    /// `fail_fast` fails at once when not; under `wait` waits for the supervisor to bring
    /// the connection back, until `deadline`.
    pub(crate) async fn ready(&self, started: Instant, deadline: Instant) -> Result<()> {
        let mut changes = self.inner.changed.subscribe();
        loop {
            if self.is_closed() {
                return Err(self.closed());
            }
            let health = self.inner.health.load();
            match health.state {
                HealthState::Healthy => return Ok(()),
                HealthState::Closed => return Err(self.closed()),
                HealthState::Connecting | HealthState::Unhealthy => {
                    if self.fails_fast() || health.is_fatal() {
                        return Err(self.unavailable(started.elapsed()));
                    }
                }
            }
            drop(health);
            // Waiting callers make the supervisor probe at `retry_delay` pace.
            let _waiting = WaiterGuard::new(&self.inner);
            let wait = tokio::time::timeout_at(deadline.into(), changes.changed()).await;
            if !matches!(wait, Ok(Ok(()))) {
                return Err(self.unavailable(started.elapsed()));
            }
        }
    }

    /// Whether an acquire fails at once while the connection is down: under
    /// `on_unavailable: fail_fast`, and on a replica whose reads fall back to the primary
    /// (waiting for the replica would only delay a read the primary can serve).
    pub(crate) fn fails_fast(&self) -> bool {
        self.inner.config.load().on_unavailable == OnUnavailable::FailFast
            || (self.inner.replica_of.is_some() && self.falls_back_to().is_some())
    }

    /// Resolves when the connection stops being healthy (the circuit opens).
    pub(crate) async fn went_down(&self) {
        let mut changes = self.inner.changed.subscribe();
        loop {
            if self.inner.health.load().state != HealthState::Healthy {
                return;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Fails with [`Error::Unavailable`] as the outage policy says, after `waited`.
    pub(crate) fn unavailable_after(&self, started: Instant) -> Error {
        self.unavailable(started.elapsed())
    }

    /// Pauses a caller whose connect just failed, until the health changes or
    /// `retry_delay` (at most until `deadline`) passes, so the supervisor can notice.
    pub(crate) async fn pause_after_connect_failure(&self, deadline: Instant) {
        let mut changes = self.inner.changed.subscribe();
        let pause = self
            .inner
            .config
            .load()
            .retry
            .delay
            .min(deadline.saturating_duration_since(Instant::now()));
        let _ = tokio::time::timeout(pause, changes.changed()).await;
    }

    /// Waits until the connection may be used, by its `on_unavailable` policy: returns at
    /// once when it is healthy; when it is down, fails at once under `fail_fast` and waits
    /// (up to `acquire_timeout`) for the supervisor to bring it back under `wait`. Fails
    /// with [`Error::Unavailable`].
    ///
    /// `acquire`, `begin`, `retry` and `mssql()` do this themselves. Call it before work on
    /// a handle that has no checkout, such as the MongoDB client from `mongo()`, to give
    /// that work the same outage behaviour.
    pub async fn available(&self) -> Result<()> {
        let started = Instant::now();
        self.ready(
            started,
            deadline(started, self.inner.config.load().pool.acquire_timeout),
        )
        .await
    }
}
