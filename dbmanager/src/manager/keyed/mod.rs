//! Keyed pools: [`KeyedPools`], one supervised connection per key (a tenant, a device),
//! created on first use from a template, evicted when idle or when the group is full.

mod attempt;
mod sweep;

use crate::config::KeyedConfig;
use crate::connection::{Connection, Shared};
use crate::error::{Error, Result};
use crate::stats::ConnectionStats;
use attempt::Attempt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// What a key's settings are built from, besides the file: a function from the key to
/// field overrides (`("host", "10.0.0.7")`), for keys the file does not list (devices
/// discovered at run time, tenants looked up in a directory).
pub type Resolver = Arc<dyn Fn(&str) -> Vec<(String, String)> + Send + Sync>;

/// How one attempt to open a key stands, as every caller waiting on it sees it.
enum Outcome {
    /// Still being opened (or waiting for room under `max_keys`).
    Opening,
    /// Open.
    Ready(Connection),
    /// The attempt failed: every caller that waited on it gets this error.
    Failed(Error),
    /// The key was removed (evicted, `remove`, `close`) before the attempt finished: its
    /// connection was closed; callers ask again.
    Dropped,
}

/// One key's slot: one attempt to open it (single-flight, successful or not) and, once
/// open, its connection.
struct Slot {
    /// Published once by the task that opens the key.
    outcome: watch::Receiver<Outcome>,
    /// The last `get`, or the last sweep that found it in use: ms since the group's
    /// epoch. The connection's own checkouts are read from it (`activity`).
    last_used: AtomicU64,
    /// The sweeper found a connection in use at its last pass.
    was_busy: AtomicBool,
    /// Holds one of the `max_keys` places. Changed under the group lock only.
    placed: AtomicBool,
}

impl Slot {
    /// Its connection, once open.
    fn conn(&self) -> Option<Connection> {
        match &*self.outcome.borrow() {
            Outcome::Ready(conn) => Some(conn.clone()),
            _ => None,
        }
    }

    fn touch(&self, now_ms: u64) {
        self.last_used.fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// The group's keys, behind its lock.
#[derive(Default)]
struct Keys {
    map: HashMap<String, Arc<Slot>>,
    /// Keys removed from `map` whose pools are not closed yet: each keeps its place
    /// under `max_keys` until it is.
    closing: usize,
}

impl Keys {
    fn current(&self, key: &str, slot: &Arc<Slot>) -> bool {
        self.map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// Keys open, being opened or still closing.
    fn places_taken(&self) -> usize {
        self.map
            .values()
            .filter(|s| s.placed.load(Ordering::Relaxed))
            .count()
            + self.closing
    }
}

/// The task of one attempt to open a key: its connection, `None` if the key was removed
/// before it opened.
type OpenTask = tokio::task::JoinHandle<Result<Option<Connection>>>;

/// Whether an attempt found its place under `max_keys`, and what it must close first.
enum Place {
    /// Placed; the evicted key's connection (given its place) to close before
    /// connecting.
    Taken(Option<(String, Connection)>),
    /// The key was removed while it waited for room.
    Gone,
}

/// A group of keyed connections (`keyed.<group>` in the file); get it with
/// [`Manager::keyed`](crate::Manager::keyed).
///
/// [`get(key)`](Self::get) returns the key's connection, opening it on first use:
/// concurrent first requests for one key share one attempt, whether it succeeds or fails.
/// Each key's connection is a full [`Connection`] (supervised, health-checked,
/// reconnected with backoff) named `<group>.<key>`. A background sweeper closes keys
/// with no checkout and nothing in use for `idle_evict_after`. At most `max_keys` keys
/// are open or being opened at once: opening one more first evicts the least recently
/// used open key, one with nothing in use if there is one (else its work in flight
/// drains first), and waits for a key to finish opening when every place is taken by
/// keys still being opened.
pub struct KeyedPools {
    me: std::sync::Weak<KeyedPools>,
    config: KeyedConfig,
    shared: Shared,
    keys: Mutex<Keys>,
    /// Signalled when a place may have come free, or a key became open (evictable).
    room: Notify,
    resolver: Mutex<Option<Resolver>>,
    epoch: Instant,
    sweeping: AtomicBool,
    evicted: AtomicU64,
}

impl std::fmt::Debug for KeyedPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedPools")
            .field("group", &self.config.name)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

/// One key's statistics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeyStats {
    /// The key.
    pub key: String,
    /// How long since it was last used: asked for with `get`, or a checkout of its
    /// connection started, ended or was held.
    pub idle_for: Duration,
    /// Its connection's statistics (`None` while it is being opened).
    pub connection: Option<ConnectionStats>,
}

impl KeyedPools {
    pub(crate) fn new(config: KeyedConfig, shared: Shared) -> Arc<Self> {
        Arc::new_cyclic(|me| KeyedPools {
            me: me.clone(),
            config,
            shared,
            keys: Mutex::new(Keys::default()),
            room: Notify::new(),
            resolver: Mutex::new(None),
            epoch: Instant::now(),
            sweeping: AtomicBool::new(false),
            evicted: AtomicU64::new(0),
        })
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its settings.
    pub fn config(&self) -> &KeyedConfig {
        &self.config
    }

    /// Sets the function that gives a key's overrides (applied after the file's
    /// `keys.<key>`).
    pub fn set_resolver(
        &self,
        resolver: impl Fn(&str) -> Vec<(String, String)> + Send + Sync + 'static,
    ) {
        *lock(&self.resolver) = Some(Arc::new(resolver));
    }

    /// How many keys are open or being opened: at most `max_keys`. Keys waiting for
    /// room are not counted.
    pub fn len(&self) -> usize {
        lock(&self.keys)
            .map
            .values()
            .filter(|s| s.placed.load(Ordering::Relaxed))
            .count()
    }

    /// Whether no key is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys evicted so far (idle, to make room, or removed).
    pub fn evicted_total(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn conn_name(&self, key: &str) -> String {
        format!("{}.{key}", self.config.name)
    }

    /// The connection of `key`, opened on first use from the template, the file's
    /// overrides for the key and the resolver's. Bad overrides fail with
    /// [`Error::Config`] naming `keyed.<group>.keys.<key>.<field>`; a key that cannot
    /// connect (`startup: strict`) fails with its error. Concurrent callers share one
    /// attempt and its outcome: one connect, and on failure the same error for each of
    /// them (the first caller gets the original, the others a copy with the same message
    /// and class). The next call after a failure tries again.
    ///
    /// With `max_keys` keys open or being opened, a new key evicts the least recently
    /// used open key, preferring one with nothing in use (a busy one's work in flight
    /// drains first), or, if none is open yet, waits for one to be.
    pub async fn get(&self, key: &str) -> Result<Connection> {
        self.start_sweeper();
        loop {
            if self.shared.cancel.is_cancelled() {
                return Err(Error::Closed {
                    name: self.conn_name(key),
                });
            }
            let (slot, task) = self.slot(key)?;
            let got = match task {
                // The caller that started the attempt gets its result as is.
                Some(task) => match task.await {
                    Ok(opened) => opened?,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => {
                        return Err(Error::Closed {
                            name: self.conn_name(key),
                        });
                    }
                },
                None => {
                    let mut outcome = slot.outcome.clone();
                    let ended = outcome.wait_for(|o| !matches!(o, Outcome::Opening)).await;
                    match ended.as_deref() {
                        Ok(Outcome::Ready(conn)) => Some(conn.clone()),
                        Ok(Outcome::Failed(e)) => return Err(e.duplicate()),
                        // Removed while opening, or its task ended without an answer
                        // (it panicked): ask again.
                        Ok(Outcome::Dropped | Outcome::Opening) | Err(_) => None,
                    }
                }
            };
            if let Some(conn) = got {
                slot.touch(self.now_ms());
                return Ok(conn);
            }
        }
    }

    /// The slot of `key`, and (when this call created it) the task opening it.
    fn slot(&self, key: &str) -> Result<(Arc<Slot>, Option<OpenTask>)> {
        let now = self.now_ms();
        let mut keys = lock(&self.keys);
        if let Some(slot) = keys.map.get(key) {
            slot.touch(now);
            return Ok((Arc::clone(slot), None));
        }
        let Some(me) = self.me.upgrade() else {
            return Err(Error::Closed {
                name: self.conn_name(key),
            });
        };
        let (publish, outcome) = watch::channel(Outcome::Opening);
        let slot = Arc::new(Slot {
            outcome,
            last_used: AtomicU64::new(now),
            was_busy: AtomicBool::new(false),
            placed: AtomicBool::new(false),
        });
        keys.map.insert(key.to_owned(), Arc::clone(&slot));
        drop(keys);
        let attempt = Attempt {
            group: me,
            key: key.to_owned(),
            slot: Arc::clone(&slot),
            publish,
            finished: false,
        };
        let task = self.shared.tasks.spawn(attempt.run());
        Ok((slot, Some(task)))
    }

    /// Waits for a place under `max_keys` for `slot`: a free one, or the least recently
    /// used open key's, which is removed here and returned to be closed.
    async fn reserve(&self, key: &str, slot: &Arc<Slot>) -> Result<Place> {
        let max = usize::try_from(self.config.max_keys).unwrap_or(usize::MAX);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut keys = lock(&self.keys);
                if !keys.current(key, slot) {
                    return Ok(Place::Gone);
                }
                if keys.places_taken() < max {
                    slot.placed.store(true, Ordering::Relaxed);
                    return Ok(Place::Taken(None));
                }
                // The least recently used open key, one with nothing in use first.
                let victim = keys
                    .map
                    .iter()
                    .filter_map(|(k, s)| Some((k, self.activity(s, &s.conn()?))))
                    .min_by_key(|(_, in_use_and_last)| *in_use_and_last)
                    .map(|(k, _)| k.clone());
                if let Some(victim) = victim
                    && let Some(evicted) = keys.map.remove(&victim)
                {
                    // Its place passes to this key, which closes it before connecting.
                    slot.placed.store(true, Ordering::Relaxed);
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                    return Ok(Place::Taken(evicted.conn().map(|c| (victim, c))));
                }
            }
            tokio::select! {
                () = room => {}
                () = self.shared.cancel.cancelled() => {
                    return Err(Error::Closed { name: self.conn_name(key) });
                }
            }
        }
    }

    /// One attempt to open `key`: its settings, a place under `max_keys`, the connect.
    /// `Ok(None)`: the key was removed while it waited for room.
    async fn open(&self, key: &str, slot: &Arc<Slot>) -> Result<Option<Connection>> {
        let extra = lock(&self.resolver)
            .clone()
            .map(|r| r(key))
            .unwrap_or_default();
        let config = self.config.for_key(key, &extra)?;
        let evicted = match self.reserve(key, slot).await? {
            Place::Gone => return Ok(None),
            Place::Taken(evicted) => evicted,
        };
        if let Some((victim, conn)) = evicted {
            tracing::info!(group = %self.config.name, key = %victim, "keyed connection evicted to make room");
            conn.close().await;
            conn.emit_removed();
        }
        let conn = Connection::new(config, &self.shared);
        if let Err(e) = conn.open().await {
            conn.close().await;
            return Err(e);
        }
        Ok(Some(conn))
    }

    /// Closes `key`'s connection (work in flight finishes first, up to its
    /// `close_timeout`) and forgets it. Returns whether it was there (open or being
    /// opened).
    pub async fn remove(&self, key: &str) -> bool {
        self.evict(key, |_| true).await
    }

    /// Removes `key` if `still` holds for its slot, checked under the group lock, then
    /// closes its connection. A key still being opened is closed by its attempt.
    async fn evict(&self, key: &str, still: impl Fn(&Slot) -> bool) -> bool {
        let conn = {
            let mut keys = lock(&self.keys);
            match keys.map.get(key) {
                Some(slot) if still(slot) => {}
                _ => return false,
            }
            let Some(slot) = keys.map.remove(key) else {
                return false;
            };
            self.evicted.fetch_add(1, Ordering::Relaxed);
            if slot.placed.load(Ordering::Relaxed) {
                // Its place stays taken until its pool is closed: here if it is open,
                // else by its attempt.
                keys.closing += 1;
            }
            slot.conn()
        };
        if let Some(conn) = conn {
            tracing::info!(group = %self.config.name, key, "keyed connection evicted");
            conn.close().await;
            conn.emit_removed();
            let mut keys = lock(&self.keys);
            keys.closing = keys.closing.saturating_sub(1);
        }
        self.room.notify_waiters();
        true
    }

    /// Statistics of every key open or being opened.
    pub fn stats(&self) -> Vec<KeyStats> {
        let now = self.now_ms();
        let mut out: Vec<KeyStats> = lock(&self.keys)
            .map
            .iter()
            .filter(|(_, s)| s.placed.load(Ordering::Relaxed))
            .map(|(key, slot)| {
                let conn = slot.conn();
                let last = match &conn {
                    Some(c) => match self.activity(slot, c) {
                        (true, _) => now,
                        (false, last) => last,
                    },
                    None => slot.last_used.load(Ordering::Relaxed),
                };
                KeyStats {
                    key: key.clone(),
                    idle_for: Duration::from_millis(now.saturating_sub(last)),
                    connection: conn.as_ref().map(Connection::stats),
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Closes every key (for `Manager::close`).
    pub(crate) async fn close_all(&self) {
        let keys: Vec<String> = lock(&self.keys).map.keys().cloned().collect();
        futures_util::future::join_all(keys.iter().map(|k| self.evict(k, |_| true))).await;
        self.room.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
