//! The connection as the supervisor sees it: [`Supervised`], nothing more.

use super::Inner;
use crate::events::EventKind;
use crate::health::HealthState;
use crate::supervisor::{Pace, Supervised};
use dbmanager_providers::{ErrorClass, ProviderError};
use futures_util::future::BoxFuture;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;

impl Supervised for Inner {
    fn pace(&self) -> Pace {
        let c = self.config.load();
        Pace {
            interval: c.health_check_interval,
            retry: c.retry,
            auto_reconnect: c.enable_auto_reconnect,
        }
    }

    fn is_up(&self) -> bool {
        self.health.load().state == HealthState::Healthy
    }

    fn is_closed(&self) -> bool {
        Inner::is_closed(self)
    }

    fn has_waiters(&self) -> bool {
        // Callers waiting for the connection to come back, or still inside the pool's own
        // acquire (which may be waiting out the driver's connect loop).
        self.waiters.load(Ordering::Acquire) > 0
            || self
                .pools
                .load()
                .as_ref()
                .is_some_and(|p| p.stats().pending > 0)
    }

    fn waiter_arrived(&self) -> &Notify {
        &self.waiter_arrived
    }

    fn probe(&self) -> BoxFuture<'_, Result<Duration, ProviderError>> {
        Box::pin(Inner::probe(self))
    }

    fn observe(&self, result: &Result<Duration, ProviderError>) -> Option<ErrorClass> {
        Inner::observe(self, result)
    }

    fn attempted(
        &self,
        attempt: u32,
        round: u32,
        delay: Duration,
        next_delay: Option<Duration>,
        result: &Result<Duration, ProviderError>,
    ) {
        self.emit(EventKind::ReconnectAttempt {
            attempt,
            round,
            delay,
            next_delay,
            result: result
                .as_ref()
                .map(|d| *d)
                .map_err(|e| self.redact(e.to_string())),
        });
    }
}
