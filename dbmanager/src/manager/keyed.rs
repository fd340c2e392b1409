//! Keyed pools: [`KeyedPools`], one supervised connection per key (a tenant, a device),
//! created on first use from a template, evicted when idle or when the group is full.

use crate::config::KeyedConfig;
use crate::connection::{Connection, Shared};
use crate::error::Result;
use crate::stats::ConnectionStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// What a key's settings are built from, besides the file: a function from the key to
/// field overrides (`("host", "10.0.0.7")`), for keys the file does not list (devices
/// discovered at run time, tenants looked up in a directory).
pub type Resolver = Arc<dyn Fn(&str) -> Vec<(String, String)> + Send + Sync>;

/// One key's slot: its connection once opened (single-flight), and when it was last used.
struct Slot {
    conn: OnceCell<Connection>,
    /// Milliseconds since the group's epoch.
    last_used: AtomicU64,
}

/// A group of keyed connections (`keyed.<group>` in the file); get it with
/// [`Manager::keyed`](crate::Manager::keyed).
///
/// [`get(key)`](Self::get) returns the key's connection, opening it on first use:
/// concurrent first requests for one key open one pool. Each key's connection is a full
/// [`Connection`] (supervised, health-checked, reconnected with backoff) named
/// `<group>.<key>`. A background sweeper closes keys idle for `idle_evict_after`; opening
/// a key beyond `max_keys` first evicts the least recently used one (its work in flight
/// drains first).
pub struct KeyedPools {
    me: std::sync::Weak<KeyedPools>,
    config: KeyedConfig,
    shared: Shared,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
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
    /// How long since `get` last returned it.
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
            slots: Mutex::new(HashMap::new()),
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

    /// How many keys are open (or opening).
    pub fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Whether no key is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys evicted so far (idle, or to make room).
    pub fn evicted_total(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The connection of `key`, opened on first use from the template, the file's
    /// overrides for the key and the resolver's. Bad overrides fail with
    /// [`Error::Config`] naming `keyed.<group>.keys.<key>.<field>`; a key that cannot
    /// connect (`startup: strict`) fails with its error and is tried again on the next
    /// call.
    pub async fn get(&self, key: &str) -> Result<Connection> {
        self.start_sweeper();
        loop {
            let (slot, opened) = self.get_once(key).await;
            let conn = opened?;
            // Removed while it was opening: that open belongs to nobody. Close it and
            // open the key afresh.
            let current = lock(&self.slots)
                .get(key)
                .is_some_and(|s| Arc::ptr_eq(s, &slot));
            if current {
                return Ok(conn);
            }
            conn.close().await;
        }
    }

    async fn get_once(&self, key: &str) -> (Arc<Slot>, Result<Connection>) {
        let slot = {
            let mut slots = lock(&self.slots);
            if let Some(slot) = slots.get(key) {
                Arc::clone(slot)
            } else {
                let slot = Arc::new(Slot {
                    conn: OnceCell::new(),
                    last_used: AtomicU64::new(self.now_ms()),
                });
                slots.insert(key.to_owned(), Arc::clone(&slot));
                slot
            }
        };
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        let opened = slot.conn.get_or_try_init(|| self.open(key)).await.cloned();
        if opened.is_err() {
            // Forget the failed slot (unless someone else replaced it meanwhile).
            let mut slots = lock(&self.slots);
            if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) && slot.conn.get().is_none() {
                slots.remove(key);
            }
        }
        (slot, opened)
    }

    async fn open(&self, key: &str) -> Result<Connection> {
        let extra = lock(&self.resolver)
            .clone()
            .map(|r| r(key))
            .unwrap_or_default();
        let config = self.config.for_key(key, &extra)?;
        self.make_room(key).await;
        let conn = Connection::new(config, &self.shared);
        if let Err(e) = conn.open().await {
            conn.close().await;
            return Err(e);
        }
        Ok(conn)
    }

    /// Evicts least recently used keys until one more fits under `max_keys`.
    async fn make_room(&self, opening: &str) {
        loop {
            let victim = {
                let slots = lock(&self.slots);
                if slots.len() <= self.config.max_keys as usize {
                    return;
                }
                slots
                    .iter()
                    .filter(|(k, s)| k.as_str() != opening && s.conn.get().is_some())
                    .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
                    .map(|(k, _)| k.clone())
            };
            let Some(victim) = victim else { return };
            self.evict(&victim).await;
        }
    }

    /// Closes `key`'s connection (work in flight finishes first, up to its
    /// `close_timeout`) and forgets it. Returns whether it was open.
    pub async fn remove(&self, key: &str) -> bool {
        self.evict(key).await
    }

    async fn evict(&self, key: &str) -> bool {
        let Some(slot) = lock(&self.slots).remove(key) else {
            return false;
        };
        self.evicted.fetch_add(1, Ordering::Relaxed);
        if let Some(conn) = slot.conn.get() {
            tracing::info!(group = %self.config.name, key, "keyed connection evicted");
            conn.close().await;
            conn.emit_removed();
        }
        true
    }

    /// Statistics of every open key.
    pub fn stats(&self) -> Vec<KeyStats> {
        let now = self.now_ms();
        let mut out: Vec<KeyStats> = lock(&self.slots)
            .iter()
            .map(|(key, slot)| KeyStats {
                key: key.clone(),
                idle_for: Duration::from_millis(
                    now.saturating_sub(slot.last_used.load(Ordering::Relaxed)),
                ),
                connection: slot.conn.get().map(Connection::stats),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Keys whose pool has had nothing in use for `idle_evict_after`.
    fn idle_keys(&self, limit: Duration) -> Vec<String> {
        let now = self.now_ms();
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        lock(&self.slots)
            .iter()
            .filter(|(_, s)| {
                now.saturating_sub(s.last_used.load(Ordering::Relaxed)) >= limit
                    && s.conn.get().is_some_and(|c| c.in_use() == 0)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Starts the idle sweeper once (on first use): every quarter of `idle_evict_after`
    /// (at least 50 ms, at most 30 s) it evicts the keys idle that long, whether or not
    /// anything asks for a key.
    fn start_sweeper(&self) {
        let Some(limit) = self.config.idle_evict_after else {
            return;
        };
        // Every `get` passes here: a plain load first keeps that a read of a shared line.
        if self.sweeping.load(Ordering::Acquire) || self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let every = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let cancel = self.shared.cancel.clone();
        let weak = self.me.clone();
        self.shared.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let Some(group) = weak.upgrade() else { return };
                for key in group.idle_keys(limit) {
                    group.evict(&key).await;
                }
            }
        });
    }

    /// Closes every key (for `Manager::close`).
    pub(crate) async fn close_all(&self) {
        let keys: Vec<String> = lock(&self.slots).keys().cloned().collect();
        futures_util::future::join_all(keys.iter().map(|k| self.evict(k))).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
