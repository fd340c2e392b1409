//! [`PoolContext`]: what a pool shares with whoever supervises it, whatever the engine.

use crate::stats::PoolCounters;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a pool shares with whoever supervises it: counters that outlive a pool swap, the
/// tracker its background task is spawned on, the token that ends it, and the signal it
/// raises when it finds a broken connection. `PoolContext::default()` suits standalone use.
#[derive(Debug, Clone, Default)]
pub struct PoolContext {
    /// Counters, shared by every pool built with this context (a swap keeps the totals).
    pub counters: Arc<PoolCounters>,
    /// Where the pool spawns its background task (so its owner can count and await it).
    pub tasks: TaskTracker,
    /// Cancelling this ends the pool's background task (so does closing the pool).
    pub cancel: CancellationToken,
    /// Notified when a hook finds a connection that the server dropped, and on every
    /// clear of the pool: the supervisor's cue to check the server now.
    pub broken: Arc<Notify>,
    /// Called when a driver that manages its own pool (MongoDB) clears it, so the owner
    /// can publish the event.
    pub on_driver_clear: Option<Hook>,
    /// Where new connections' passwords come from, when the service registered a
    /// provider for this connection (PostgreSQL, MySQL/MariaDB).
    pub credentials: Option<Credentials>,
}

/// A connection's [`CredentialProvider`](crate::credentials::CredentialProvider), shared.
#[derive(Clone)]
pub struct Credentials(pub Arc<dyn crate::credentials::CredentialProvider>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// A callback a provider calls from a driver's event handler. Must not block.
#[derive(Clone)]
pub struct Hook(Arc<dyn Fn() + Send + Sync>);

impl Hook {
    /// Wraps `f`.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Self {
        Hook(Arc::new(f))
    }

    /// Calls it.
    pub fn call(&self) {
        (self.0)();
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}
