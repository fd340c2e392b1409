//! [`Manager`]: every named connection of a service, built from one configuration.
//! Changing the set while it runs (add, remove, reload) is in `runtime.rs`.

mod keyed;
mod runtime;
#[cfg(feature = "watch")]
mod watch;

pub use keyed::{KeyStats, KeyedPools, Resolver};
pub use runtime::ReloadReport;
#[cfg(feature = "watch")]
pub use watch::{ConfigWatcher, WatchOutcome};

use crate::config::Config;
use crate::connection::{Connection, Shared};
use crate::error::{Error, Result};
use crate::events::{Bus, Event};
use crate::health::HealthState;
use crate::stats::ManagerStats;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The named connections of a service. Cheap to clone; share it freely.
///
/// ```no_run
/// # async fn f() -> dbmanager::Result<()> {
/// let mgr = dbmanager::Manager::from_yaml_file("config.yaml")?;
/// mgr.connect().await?;
/// let pool = mgr.get("primary")?.postgres()?;
/// sqlx::query("select 1").execute(&pool).await.ok();
/// mgr.close().await;
/// # Ok(()) }
/// ```
///
/// The set of connections is an immutable index behind an atomic pointer over an
/// append-only list, so [`get`](Self::get) is a lock-free lookup, and
/// [`add`](Self::add), [`remove`](Self::remove) and [`reload`](Self::reload) swap the index
/// without blocking readers.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The live connections: which slot holds each name, in configuration order.
    index: ArcSwap<Index>,
    /// Every connection this manager has held. Append-only, so [`Manager::connection`]
    /// can lend a `&Connection` for as long as the manager is borrowed without touching a
    /// shared counter. A removed connection's slot keeps a closed shell (name, type,
    /// scalar settings, counters: `Connection::shed` frees the rest) until the manager is
    /// dropped.
    slots: boxcar::Vec<Connection>,
    /// One change of the set (add, remove, reload) at a time.
    changing: tokio::sync::Mutex<()>,
    /// The `keyed:` groups, fixed at startup.
    keyed: HashMap<String, Arc<keyed::KeyedPools>>,
    default: ArcSwapOption<String>,
    closed: AtomicBool,
    shared: Shared,
    /// `monitor_interval`, and whether its task was started.
    monitor: Option<Duration>,
    monitoring: AtomicBool,
}

impl Drop for Inner {
    /// A manager dropped without `close()` still stops its supervisors and pool tasks.
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// The live connections' names, each with its slot.
#[derive(Default, Clone)]
struct Index {
    by_name: HashMap<String, usize, foldhash::fast::FixedState>,
    /// In configuration order (then in the order they were added).
    order: Vec<String>,
}

impl Index {
    fn with(&self, name: &str, slot: usize) -> Index {
        let mut next = self.clone();
        if next.by_name.insert(name.to_owned(), slot).is_none() {
            next.order.push(name.to_owned());
        }
        next
    }

    fn without(&self, name: &str) -> Index {
        let mut next = self.clone();
        next.by_name.remove(name);
        next.order.retain(|n| n != name);
        next
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = self.connections();
        list.sort_by(|a, b| a.name().cmp(b.name()));
        f.debug_struct("Manager")
            .field("default", &self.inner.default.load().as_deref())
            .field("closed", &self.inner.closed.load(Ordering::Acquire))
            .field("connections", &list)
            .finish()
    }
}

impl Manager {
    /// A weak handle (metrics and the monitor hold one, so they do not keep the manager
    /// alive).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The manager behind a handle from [`downgrade`](Self::downgrade).
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Manager { inner }
    }

    /// Builds a manager from a validated configuration. Opens nothing: call
    /// [`connect`](Self::connect). Logs the configuration's warnings.
    pub fn new(config: Config) -> Self {
        for w in &config.warnings {
            tracing::warn!(path = %w.path, "{}", w.message);
        }
        let monitor = config.monitor_interval;
        let shared = Shared {
            events: Bus::new(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        };
        let keyed = config
            .keyed
            .into_iter()
            .map(|k| (k.name.clone(), keyed::KeyedPools::new(k, shared.clone())))
            .collect();
        let slots = boxcar::Vec::new();
        let mut index = Index::default();
        for c in config.connections {
            let name = c.name.clone();
            index = index.with(&name, slots.push(Connection::new(c, &shared)));
        }
        Manager {
            inner: Arc::new(Inner {
                index: ArcSwap::from_pointee(index),
                slots,
                changing: tokio::sync::Mutex::new(()),
                keyed,
                default: ArcSwapOption::new(config.default_connection.map(Arc::new)),
                closed: AtomicBool::new(false),
                shared,
                monitor,
                monitoring: AtomicBool::new(false),
            }),
        }
    }

    /// Subscribes to every connection's [`Event`]s (health changes, reconnect attempts,
    /// pool clears, swaps, acquire timeouts, close). Subscribe before
    /// [`connect`](Self::connect) to see the first ones.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.shared.events.subscribe()
    }

    /// Adds a synchronous [`Subscriber`](crate::Subscriber): it sees every event of every
    /// connection from now on, on the task that caused it, and never misses one (metrics
    /// are one). It must be quick and must not block.
    pub fn add_subscriber(&self, subscriber: std::sync::Arc<dyn crate::Subscriber>) {
        self.inner.shared.events.add(subscriber);
    }

    /// How many background tasks this manager has running now: one supervisor per open
    /// connection, plus one maintenance task per SQL pool whose `max_idle_conns` is below
    /// `max_open_conns` or whose `min_idle_conns` is above zero, plus the monitor when
    /// `monitor_interval` is set. Zero after [`close`](Self::close) returns.
    pub fn task_count(&self) -> usize {
        self.inner.shared.tasks.len()
    }

    /// Loads and validates a YAML file (environment overrides applied), then builds the
    /// manager.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Manager::new(Config::from_yaml_file(path)?))
    }

    /// As [`from_yaml_file`](Self::from_yaml_file), from YAML text.
    pub fn from_yaml_str(text: &str) -> Result<Self> {
        Ok(Manager::new(Config::from_yaml_str(text)?))
    }

    /// Opens every connection, all at once rather than one after another.
    ///
    /// `startup: strict` connections connect now; if any fails, the error names each one
    /// that did ([`Error::Startup`]) and the others stay open. `startup: lazy` connections
    /// build their pool without connecting and come up in the background, retried with
    /// the reconnect backoff. Every opened connection gets its supervisor. Calling it again
    /// retries only the connections that are not open.
    pub async fn connect(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed { name: "*".into() });
        }
        let conns = self.connections();
        let results = futures_util::future::join_all(conns.iter().map(|c| c.open())).await;
        self.start_monitor();
        let failures: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Startup { failures })
        }
    }

    /// Starts the `monitor_interval` task once: every interval, one `tracing` line per
    /// connection with its health and pool statistics. Ends on close.
    fn start_monitor(&self) {
        let Some(every) = self.inner.monitor else {
            return;
        };
        if self.inner.monitoring.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = self.downgrade();
        let cancel = self.inner.shared.cancel.clone();
        self.inner.shared.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                for c in Manager::from_inner(inner).connections() {
                    let s = c.stats();
                    let p = &s.pool;
                    tracing::info!(
                        connection = %s.name,
                        r#type = %s.kind,
                        health = %s.health,
                        open = p.open,
                        idle = p.idle,
                        in_use = p.in_use,
                        max_open = p.max_open,
                        pending = p.pending,
                        acquire_count = p.acquire_count,
                        acquire_timeouts = p.acquire_timeouts,
                        opened_total = p.opened_total,
                        closed_total = p.closed_total,
                        "pool stats"
                    );
                }
            }
        });
    }

    /// The storable handle of the PostgreSQL connection called `name` ([`Db`]): keep it in
    /// the service's state; it survives `reconnect()` and reloads, and `&db` is a sqlx
    /// executor with the outage policy.
    ///
    /// [`Db`]: crate::Db
    #[cfg(feature = "postgres")]
    pub fn postgres(&self, name: &str) -> Result<crate::PgDb> {
        self.connection(name)?.db()
    }

    /// The storable handle of the MySQL or MariaDB connection called `name` (as
    /// [`postgres`](Self::postgres)).
    #[cfg(feature = "mysql")]
    pub fn mysql(&self, name: &str) -> Result<crate::MySqlDb> {
        self.connection(name)?.db()
    }

    /// The storable handle of the SQLite connection called `name` (as
    /// [`postgres`](Self::postgres)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> dbmanager::Result<()> {
    /// let mgr = dbmanager::Manager::from_yaml_str(
    ///     "connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\n",
    /// )?;
    /// mgr.connect().await?;
    /// let db = mgr.sqlite("cache")?;
    /// // `?` on the handle's calls and on sqlx's: one error type in the handler.
    /// let one: i64 = dbmanager::sqlx::query_scalar("select 1").fetch_one(&db).await?;
    /// let mut tx = db.begin().await?;
    /// dbmanager::sqlx::query("select 2").execute(&mut *tx).await?;
    /// tx.commit().await?;
    /// assert_eq!(one, 1);
    /// mgr.close().await;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&self, name: &str) -> Result<crate::SqliteDb> {
        self.connection(name)?.db()
    }

    /// Gives the connection `name`'s new sessions (and its replicas') passwords from
    /// `provider`, a service's own source such as a cloud IAM token
    /// ([`CredentialProvider`](crate::CredentialProvider)). Call it before
    /// [`connect`](Self::connect): the provider is asked when the pool opens, again once
    /// a quarter of the credential's validity is left, and at every reconnect attempt
    /// while the connection is down. It replaces `password` and `password_file`.
    /// PostgreSQL and MySQL/MariaDB; the diesel view keeps the configured password.
    pub fn set_credential_provider(
        &self,
        name: &str,
        provider: impl crate::CredentialProvider,
    ) -> Result<()> {
        let conn = self.get(name)?;
        let kind = conn.kind();
        if !matches!(kind, crate::DbType::Postgres | crate::DbType::MySql) {
            return Err(Error::NoCredentialProvider {
                name: name.to_owned(),
                kind,
            });
        }
        conn.set_credentials(dbmanager_providers::context::Credentials(
            std::sync::Arc::new(provider),
        ));
        Ok(())
    }

    /// The connection called `name`, as a handle of its own (a `Clone` of a shared
    /// `Arc`: keep it, move it into a task). A lookup: no lock, no I/O. On a hot path where
    /// a borrow will do, [`connection`](Self::connection) skips the shared counter.
    pub fn get(&self, name: &str) -> Result<Connection> {
        self.connection(name).cloned()
    }

    /// The connection called `name`, borrowed from the manager: an atomic load and a
    /// hash lookup, no shared counter touched, so it costs the same on every thread
    /// (docs/BENCHMARKS.md, `get`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> dbmanager::Result<()> {
    /// let mgr = dbmanager::Manager::from_yaml_str(
    ///     "connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\n",
    /// )?;
    /// mgr.connect().await?;
    /// let mut conn = mgr.connection("cache")?.acquire::<sqlx::Sqlite>().await?;
    /// sqlx::query("select 1").execute(&mut *conn).await.unwrap();
    /// # drop(conn); mgr.close().await; Ok(()) }
    /// ```
    pub fn connection(&self, name: &str) -> Result<&Connection> {
        if self.is_closed() {
            return Err(Error::Closed { name: name.into() });
        }
        match self.inner.index.load().by_name.get(name) {
            Some(&slot) => Ok(&self.inner.slots[slot]),
            None => Err(Error::UnknownConnection {
                name: name.to_owned(),
                known: self.names(),
            }),
        }
    }

    /// The keyed group `name` (`keyed.<name>` in the file): connections created per key
    /// on first use ([`KeyedPools`]).
    pub fn keyed(&self, name: &str) -> Result<&KeyedPools> {
        if self.is_closed() {
            return Err(Error::Closed { name: name.into() });
        }
        self.inner.keyed.get(name).map(|k| &**k).ok_or_else(|| {
            let mut known: Vec<String> = self.inner.keyed.keys().cloned().collect();
            known.sort();
            Error::UnknownGroup {
                name: name.to_owned(),
                known,
            }
        })
    }

    /// The default connection (`default_connection`, or the only one).
    pub fn default(&self) -> Result<Connection> {
        match self.inner.default.load_full() {
            Some(name) => self.get(&name),
            None => Err(Error::NoDefault {
                known: self.names(),
            }),
        }
    }

    /// Makes `name` the default connection. Fails, changing nothing, if it is unknown.
    pub fn set_default(&self, name: &str) -> Result<()> {
        self.get(name)?;
        self.inner.default.store(Some(Arc::new(name.to_owned())));
        Ok(())
    }

    /// The default connection's name, if any.
    pub fn default_name(&self) -> Option<String> {
        self.inner.default.load_full().map(|n| n.as_ref().clone())
    }

    /// Connection names, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.inner.index.load().order.clone()
    }

    /// Every connection, in configuration order.
    pub fn connections(&self) -> Vec<Connection> {
        let index = self.inner.index.load();
        index
            .order
            .iter()
            .filter_map(|n| index.by_name.get(n))
            .map(|&slot| self.inner.slots[slot].clone())
            .collect()
    }

    /// Statistics of every connection, plus health totals.
    pub fn stats(&self) -> ManagerStats {
        let connections: Vec<_> = self.connections().iter().map(Connection::stats).collect();
        ManagerStats {
            total_connections: connections.len(),
            healthy: connections
                .iter()
                .filter(|c| c.health == HealthState::Healthy)
                .count(),
            unhealthy: connections
                .iter()
                .filter(|c| c.health == HealthState::Unhealthy)
                .count(),
            connections,
        }
    }

    /// Health-checks every connection concurrently (one real round trip each).
    /// Returns each connection's latency or error, in configuration order.
    pub async fn health_check(&self) -> Vec<(String, Result<Duration>)> {
        let conns = self.connections();
        let results = futures_util::future::join_all(conns.iter().map(|c| c.health_check())).await;
        conns
            .iter()
            .map(|c| c.name().to_owned())
            .zip(results)
            .collect()
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Closes every connection, concurrently. New acquires fail with [`Error::Closed`] at
    /// once; work in flight finishes (each connection waits up to its `close_timeout`);
    /// then every pool is closed. Every task the manager spawned (supervisors, pool
    /// trimmers) has ended when it returns ([`task_count`](Self::task_count) is zero).
    /// Returns whether everything drained in time. Calling it twice is harmless.
    pub async fn close(&self) -> bool {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.shared.cancel.cancel();
        // An add or reload under way gives up (the token above ends its connects).
        let _no_change = self.inner.changing.lock().await;
        let conns = self.connections();
        let keyed =
            futures_util::future::join_all(self.inner.keyed.values().map(|k| k.close_all()));
        let (results, _) = tokio::join!(
            futures_util::future::join_all(conns.iter().map(|c| c.close())),
            keyed
        );
        let tasks = &self.inner.shared.tasks;
        tasks.close();
        // Every task watches the cancellation token, so this is quick.
        tasks.wait().await;
        results.into_iter().all(|ok| ok)
    }
}
