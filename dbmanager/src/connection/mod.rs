//! [`Connection`]: one named database, a cheap handle over its pool.
//!
//! Split by role, one file each:
//! - this file: the handle, its shared state and its getters;
//! - `state.rs`: health, events, pool clearing, error reports and the outage policy;
//! - `checkout.rs`: acquire, begin and the checkout loop every pooled view uses;
//! - `retry.rs`: `retry` and `retry_idempotent`;
//! - `accessors.rs`: the typed accessors (`postgres()`, `mongo()`, `managed::<K>()`...);
//! - `lifecycle.rs`: open, hot swap with drain, close, health checks and stats;
//! - `supervised.rs`: the narrow interface the supervisor sees;
//! - `views/`: the ORM views (SeaORM, diesel), each in its own module behind its feature.
//!
//! The state machine is drawn in docs/resilience.md, the whole picture in
//! docs/architecture.md.

mod accessors;
mod checkout;
mod handle;
mod lifecycle;
mod replicas;

mod retry;
mod state;
mod supervised;
mod views;

pub use handle::Db;
#[cfg(feature = "mysql")]
pub use handle::MySqlDb;
#[cfg(feature = "postgres")]
pub use handle::PgDb;
#[cfg(feature = "sqlite")]
pub use handle::SqliteDb;

use crate::config::{ConnectionConfig, DbType};
use crate::events::{Bus, ClearReason, EventKind};
use crate::health::{Health, HealthState};
use crate::pools::PoolSet;
use arc_swap::{ArcSwap, ArcSwapOption};
use dbmanager_providers::Secrets;
use dbmanager_providers::pool::{Hook, PoolContext};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a connection shares with its manager: the event bus, the task tracker and the
/// cancellation token that ends every task on close.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) events: Bus,
    pub(crate) tasks: TaskTracker,
    pub(crate) cancel: CancellationToken,
}

/// One named connection. Cheap to clone; every clone sees the same pool.
///
/// Obtain it from `Manager::get` (a lock-free lookup) as often as you like, e.g. once per
/// request. Prefer calling `postgres()` & co. per request over keeping the returned sqlx
/// pool: after a [`reconnect`](Self::reconnect) the old pool is closed once drained.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

/// The shared state behind every clone of a [`Connection`].
pub(crate) struct Inner {
    /// Itself, so the supervisor's probe can rebuild a pool user code closed.
    me: std::sync::Weak<Inner>,
    /// Replaced in place by a reload that changes the settings (`reconfigure`).
    config: ArcSwap<ConnectionConfig>,
    name: Arc<str>,
    pools: ArcSwapOption<PoolSet>,
    health: ArcSwap<Health>,
    /// Bumped on every health change; acquires waiting out an outage watch it.
    changed: watch::Sender<u64>,
    failures: AtomicU32,
    closed: AtomicBool,
    ctx: PoolContext,
    /// The manager's bus, tasks and token: to rebuild `events` when `enable_logging`
    /// changes, and to build replicas.
    shared: Shared,
    /// The service's credential provider (`Manager::set_credential_provider`), given to
    /// every pool built from now on.
    credentials: std::sync::Mutex<Option<dbmanager_providers::context::Credentials>>,
    /// Read replicas (each a connection of its own), replaced whole by a reload.
    replicas: ArcSwap<Vec<Arc<replicas::Replica>>>,
    /// Set on a replica's own connection: its replica name.
    replica_of: Option<Arc<str>>,
    /// On a replica: the connection it belongs to, where its reads go when it is down
    /// (`fallback: primary`). Weak: the connection owns its replicas.
    primary: std::sync::Weak<Inner>,
    /// `reader()`'s round-robin position.
    next_read: AtomicUsize,
    /// On a replica: reads `reader()` sent it.
    selected: AtomicU64,
    /// On a replica: its lag at the last check, in ms (`LAG_UNKNOWN` before one).
    lag_ms: AtomicU64,
    /// On a replica: past `max_replica_lag`.
    lagging: AtomicBool,
    /// On a replica behind its primary: the applied position last seen and since when it
    /// has not moved.
    stalled: std::sync::Mutex<Option<(String, std::time::Instant)>>,
    /// The diesel view's pools share the tasks, token and signal but count apart.
    #[cfg_attr(not(feature = "diesel"), allow(dead_code))]
    view_ctx: PoolContext,
    events: ArcSwap<Bus>,
    /// One swap at a time.
    swap: tokio::sync::Mutex<()>,
    /// `true` while a swap drains the old pool generation before it opens the new one:
    /// checkouts wait (see `Connection::past_swap`). `gated` is the same, read with one
    /// atomic load on every checkout (a watch read takes a lock).
    draining: watch::Sender<bool>,
    gated: AtomicBool,
    /// What must never appear in an error kept or published: the current settings'
    /// secrets and every earlier one's (a reload may change a password).
    secrets: ArcSwap<Secrets>,
    /// Acquires waiting for the connection to come back (`on_unavailable: wait`).
    waiters: AtomicUsize,
    /// Signalled when the first waiter arrives, so the supervisor can probe sooner.
    waiter_arrived: Notify,
    /// A read-only check is running (see `report_class`).
    checking_read_only: AtomicBool,
    /// What its tracing spans say about it (`enable_tracing`).
    target: ArcSwap<crate::spans::Target>,
    /// Checkouts in progress, and when one last started or ended (ms after `created`):
    /// the keyed sweeper's idle clock (`last_checkout`).
    checkouts: AtomicU32,
    last_checkout_ms: AtomicU64,
    created: std::time::Instant,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name())
            .field("kind", &self.kind())
            .field("health", &self.health().state)
            .field("config", &self.inner.config.load())
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(config: ConnectionConfig, shared: &Shared) -> Self {
        Connection::with_role(config, shared, None)
    }

    /// A connection, or (with `replica_of`: its name and the connection it belongs to) a
    /// replica's own connection.
    pub(crate) fn with_role(
        config: ConnectionConfig,
        shared: &Shared,
        replica_of: Option<(Arc<str>, std::sync::Weak<Inner>)>,
    ) -> Self {
        let (replica_of, primary) = match replica_of {
            Some((name, primary)) => (Some(name), primary),
            None => (None, std::sync::Weak::new()),
        };
        let inner = Arc::new_cyclic(|me: &std::sync::Weak<Inner>| {
            let replicas = replicas::build(&config.replicas, shared, me);
            let weak = me.clone();
            // A driver that clears its own pool (MongoDB) tells the connection's subscribers.
            let on_driver_clear = Hook::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.emit(EventKind::PoolCleared {
                        reason: ClearReason::Driver,
                        closed_idle: 0,
                    });
                }
            });
            let ctx = PoolContext {
                tasks: shared.tasks.clone(),
                cancel: shared.cancel.child_token(),
                on_driver_clear: Some(on_driver_clear),
                ..PoolContext::default()
            };
            let view_ctx = PoolContext {
                counters: Arc::default(),
                tasks: ctx.tasks.clone(),
                cancel: ctx.cancel.clone(),
                broken: Arc::clone(&ctx.broken),
                on_driver_clear: None,
                // The diesel view logs in with the connection's configured password.
                credentials: None,
            };
            let events = event_bus(&shared.events, &config);
            let target = crate::spans::Target::of(&config);
            Inner {
                me: me.clone(),
                view_ctx,
                name: Arc::from(config.name.as_str()),
                secrets: ArcSwap::from_pointee(config.endpoint.secrets()),
                config: ArcSwap::from_pointee(config),
                shared: shared.clone(),
                replicas: ArcSwap::from_pointee(replicas),
                credentials: std::sync::Mutex::new(None),
                replica_of,
                primary,
                next_read: AtomicUsize::new(0),
                selected: AtomicU64::new(0),
                lag_ms: AtomicU64::new(replicas::LAG_UNKNOWN),
                lagging: AtomicBool::new(false),
                stalled: std::sync::Mutex::new(None),
                pools: ArcSwapOption::empty(),
                health: ArcSwap::from_pointee(Health::new(HealthState::Connecting)),
                changed: watch::Sender::new(0),
                failures: AtomicU32::new(0),
                closed: AtomicBool::new(false),
                ctx,
                events: ArcSwap::from_pointee(events),
                swap: tokio::sync::Mutex::new(()),
                draining: watch::Sender::new(false),
                gated: AtomicBool::new(false),
                waiters: AtomicUsize::new(0),
                waiter_arrived: Notify::new(),
                checking_read_only: AtomicBool::new(false),
                target: ArcSwap::from_pointee(target),
                checkouts: AtomicU32::new(0),
                last_checkout_ms: AtomicU64::new(0),
                created: std::time::Instant::now(),
            }
        });
        Connection { inner }
    }

    /// The connection's name (its key under `connections`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its engine.
    pub fn kind(&self) -> DbType {
        self.inner.config.load().kind
    }

    /// Its tags.
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.inner.config.load().tags.clone()
    }

    /// Its validated settings: the current ones (a [`Manager::reload`](crate::Manager::reload)
    /// that changes them replaces them in place).
    pub fn config(&self) -> Arc<ConnectionConfig> {
        self.inner.config.load_full()
    }

    /// Its last observed health: an atomic load, no lock, no I/O.
    pub fn health(&self) -> Health {
        Health::clone(&self.inner.health.load())
    }

    /// Whether the manager has been closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.inner.pools.load().is_some()
    }

    /// Connections of the current pool generation in use now (every view): an atomic
    /// load, for `reader()` and the keyed sweeper rather than the full `stats()`.
    pub(crate) fn in_use(&self) -> u32 {
        self.inner.pools.load().as_ref().map_or(0, |p| p.in_use())
    }

    /// When a checkout (any view) last started or ended, or now while one is in
    /// progress; its creation before any. The keyed sweeper's idle clock.
    pub(crate) fn last_checkout(&self) -> std::time::Instant {
        let inner = &self.inner;
        if inner.checkouts.load(Ordering::Acquire) > 0 {
            return std::time::Instant::now();
        }
        let ms = inner.last_checkout_ms.load(Ordering::Acquire);
        inner.created + std::time::Duration::from_millis(ms)
    }

    /// The diesel view's pool context (its own counters, the connection's tasks).
    #[cfg_attr(not(feature = "diesel"), allow(dead_code))]
    pub(crate) fn view_ctx(&self) -> &PoolContext {
        &self.inner.view_ctx
    }
}

impl Inner {
    /// A tracing span of this connection (disabled unless `enable_tracing`).
    pub(crate) fn span(&self, op: &'static str) -> tracing::Span {
        self.target.load().span(op)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// The connection's event bus: the manager's, plus a log line per event with
/// `enable_logging`.
fn event_bus(shared: &Bus, config: &ConnectionConfig) -> Bus {
    if config.enable_logging {
        shared.with([Arc::new(crate::logging::Log) as _])
    } else {
        shared.clone()
    }
}

/// Counts a waiting acquire for as long as it waits.
struct WaiterGuard<'a>(&'a Inner);

impl<'a> WaiterGuard<'a> {
    fn new(inner: &'a Inner) -> Self {
        if inner.waiters.fetch_add(1, Ordering::AcqRel) == 0 {
            inner.waiter_arrived.notify_one();
        }
        WaiterGuard(inner)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a checkout in progress and stamps `last_checkout` when it starts and ends.
struct CheckoutGuard<'a>(&'a Inner);

impl<'a> CheckoutGuard<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.checkouts.fetch_add(1, Ordering::AcqRel);
        inner.stamp_checkout();
        CheckoutGuard(inner)
    }
}

impl Drop for CheckoutGuard<'_> {
    fn drop(&mut self) {
        self.0.stamp_checkout();
        self.0.checkouts.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Inner {
    fn stamp_checkout(&self) {
        let ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_checkout_ms.fetch_max(ms, Ordering::AcqRel);
    }
}
