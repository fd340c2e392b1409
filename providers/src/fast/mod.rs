//! The fast path of [`SqlPool`](crate::pool::SqlPool): one round trip per use.
//!
//! sqlx's pool pings every connection it takes back (unconditionally, in
//! `PoolConnection::return_to_pool`, as a guard against futures cancelled mid-query) and
//! spawns a task to do it. That release costs a round trip and a task per use. This module
//! keeps connections that the manager's own checkouts (`acquire`, `begin`, `retry`, health
//! checks) have borrowed from the sqlx pool, and hands them out again without going
//! through sqlx:
//!
//! - **One budget.** Every connection here is a sqlx `PoolConnection`, checked out of the
//!   one sqlx pool and counted by its semaphore. Raw-pool users (`postgres()`, SeaORM)
//!   and this cache share `max_open_conns` exactly, with no static split. A connection
//!   idle here for `LINGER` goes back to the sqlx pool, so a raw-pool caller waits at
//!   most that long (plus one maintenance tick) for one the cache is not using.
//! - **Release without a round trip, unless one is needed.** On drop, the connection's
//!   own `flush()` is polled once, which does no I/O when nothing is pending. No task is
//!   spawned in that common case. Otherwise:
//!   - a transaction dropped without commit has its ROLLBACK queued. The poll writes it
//!     at once, and the connection goes back through sqlx's release, which waits for the
//!     answer in the background before anyone else gets the connection;
//!   - a query cancelled mid-flight still has a reply outstanding, and the server runs
//!     that query to its end whatever the client does. The connection goes back through
//!     sqlx's release, which waits for the reply in the background; it keeps its place
//!     in the budget until then, so the server never sees more than `max_open_conns`
//!     sessions (closing it instead let the pool open one replacement per
//!     cancellation while the server still ran the old session).
//! - **Checkout without a round trip,** unless the connection sat idle past
//!   `ping_idle_after`.
//! - **FIFO waiters.** A waiting caller registers here and, at the same time, borrows
//!   from the sqlx pool in a task (which may open a connection, or get one a raw-pool
//!   user returned). A released connection goes to the oldest waiter first; whatever the
//!   borrow brings after that goes to the cache, so no connect is cut off half-way. Only
//!   a miss spawns that task.
//! - **Clear and lifetime.** A clear empties the cache, and connections borrowed before
//!   it go back to sqlx when released, where the pool's hooks close them as cleared. A
//!   connection goes back to sqlx after `RECHECK` in the cache, where `conn_max_lifetime`
//!   is checked. So a connection may outlive its lifetime by at most that long.
//!
//! Why not deadpool (which [`crate::managed::ManagedPool`] uses): a deadpool pool has a
//! size of its own. Here the sqlx pool's semaphore must stay the only limit, so that the
//! raw pool, SeaORM and this path share one budget.

mod handle;

pub use handle::{PooledConnection, Transaction};

use crate::error::ProviderError;
use crate::stats::PoolCounters;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Pool};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a connection may sit unused in the cache, while the sqlx pool has none left to
/// give, before it goes back there (where a raw-pool user may be waiting for it).
pub(crate) const LINGER: Duration = Duration::from_millis(100);

/// A borrow from the sqlx pool that has not brought a connection this long, while the
/// pool is not full (so it is connecting, not waiting for a permit), may be sleeping in
/// sqlx's connect loop against a server that refuses connections: the supervisor is told
/// to look (one probe, whose reachability check sees a refusal at once).
pub(crate) const SLOW_BORROW: Duration = Duration::from_millis(100);

/// While the raw pool is in use and the sqlx pool has nothing left to give, a released
/// connection goes back to the sqlx pool at most this often instead of to the next
/// fast-path waiter. sqlx's fair semaphore then hands it to whoever waits longest there:
/// a raw-pool or SeaORM caller (invisible to the fast path) if one waits, else a
/// fast-path borrow. Without it, fast-path load that keeps every connection busy starved
/// raw callers for as long as it lasted.
pub(crate) const RAW_TURN: Duration = Duration::from_millis(10);

/// How long a connection stays in the cache, in use or not, before it goes back through
/// the sqlx pool once (where its lifetime is checked).
pub(crate) const RECHECK: Duration = Duration::from_secs(30);

/// The sqlx pool's idle count. sqlx counts a release after putting the connection in its
/// queue, so an acquire that pops it in between counts down first and the count wraps
/// below zero for a moment (seen as `usize::MAX`, which overflowed a sum here). Such a
/// reading is taken as none idle.
pub(crate) fn sqlx_idle<DB: Database>(pool: &Pool<DB>) -> usize {
    let n = pool.num_idle();
    let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX);
    if n > max { 0 } else { n }
}

/// One borrowed connection.
struct Entry<DB: Database> {
    conn: PoolConnection<DB>,
    borrowed_at: Instant,
    idle_since: Instant,
    generation: u64,
}

struct State<DB: Database> {
    /// Most recently released last: checkout takes from the back (the warmest), the
    /// maintenance task returns the front (the coldest) to sqlx.
    idle: VecDeque<Entry<DB>>,
    waiters: VecDeque<oneshot::Sender<Entry<DB>>>,
    closed: bool,
}

/// The cache. Shared by the pool and every handle it gave out.
pub(crate) struct Cache<DB: Database> {
    pool: Pool<DB>,
    state: Mutex<State<DB>>,
    generation: AtomicU64,
    max_idle: usize,
    max_idle_time: Option<Duration>,
    ping_idle_after: Option<Duration>,
    /// How long the ping of a connection that sat idle past `ping_idle_after` may take
    /// (`connect_timeout`) before the connection counts as broken.
    ping_limit: Duration,
    counters: Arc<PoolCounters>,
    /// Set once someone took the sqlx pool itself (the raw accessor, SeaORM): only then
    /// can a caller be waiting in the sqlx pool for a connection this cache holds.
    pub(crate) raw_used: std::sync::atomic::AtomicBool,
    /// Ends borrows still running when the cache closes.
    cancel: tokio_util::sync::CancellationToken,
    /// Interrupts borrows under way when the server is back (see [`Cache::kick`]).
    kick: tokio::sync::Notify,
    /// Borrows from the sqlx pool under way.
    borrowing: AtomicUsize,
    /// Woken when a connection leaves the cache for the sqlx pool (or closes): a waiter
    /// may borrow then.
    freed: tokio::sync::Notify,
    /// How many connections are idle here (shared with the sqlx pool's release hook, which
    /// counts them against `max_idle_conns` too).
    idle_count: Arc<AtomicUsize>,
    /// The supervisor's "look now" signal (see [`SLOW_BORROW`]).
    broken: Arc<tokio::sync::Notify>,
    /// When a released connection last went to the sqlx pool's waiters ([`RAW_TURN`]):
    /// microseconds after `epoch`.
    last_raw_turn: AtomicU64,
    epoch: Instant,
    /// Run before a borrow that will likely open a connection (sqlx has none idle): the
    /// pool's look at its password file.
    before_connect: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl<DB: Database> Cache<DB> {
    #[allow(clippy::too_many_arguments)] // one call site, each a distinct pool setting
    pub(crate) fn new(
        pool: Pool<DB>,
        max_idle: u32,
        max_idle_time: Option<Duration>,
        ping_idle_after: Option<Duration>,
        ping_limit: Duration,
        counters: Arc<PoolCounters>,
        idle_count: Arc<AtomicUsize>,
        broken: Arc<tokio::sync::Notify>,
    ) -> Arc<Self> {
        Arc::new(Cache {
            pool,
            state: Mutex::new(State {
                idle: VecDeque::new(),
                waiters: VecDeque::new(),
                closed: false,
            }),
            generation: AtomicU64::new(0),
            max_idle: usize::try_from(max_idle).unwrap_or(usize::MAX),
            max_idle_time,
            ping_idle_after,
            ping_limit,
            counters,
            raw_used: std::sync::atomic::AtomicBool::new(false),
            cancel: tokio_util::sync::CancellationToken::new(),
            kick: tokio::sync::Notify::new(),
            borrowing: AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
            idle_count,
            broken,
            last_raw_turn: AtomicU64::new(0),
            epoch: Instant::now(),
            before_connect: std::sync::OnceLock::new(),
        })
    }

    fn lock(&self) -> Guard<'_, DB> {
        Guard {
            state: self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            count: &self.idle_count,
        }
    }

    fn usable(&self, e: &Entry<DB>) -> bool {
        e.generation == self.generation.load(Ordering::Acquire) && e.borrowed_at.elapsed() < RECHECK
    }

    /// Connections idle in the cache now (checked out of sqlx, not in use).
    pub(crate) fn idle(&self) -> usize {
        self.idle_count.load(Ordering::Relaxed)
    }

    /// A connection: from the cache, from a releasing handle, or borrowed from sqlx;
    /// within `limit`.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        limit: Duration,
    ) -> Result<PooledConnection<DB>, ProviderError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(crate::time::deadline(started, limit));
        loop {
            let mut entry = match self.take_or_wait() {
                Taken::Closed => return Err(ProviderError::Closed),
                Taken::Entry(e) => e,
                Taken::Borrow => self.borrow(deadline, started).await?,
                Taken::Wait(mut rx) => {
                    let got = self.wait(&mut rx, deadline, started).await;
                    // A connection handed over while a borrow won goes back to the cache.
                    rx.close();
                    if let Ok(e) = rx.try_recv() {
                        self.put(e);
                    }
                    got?
                }
            };
            if self
                .ping_idle_after
                .is_some_and(|p| entry.idle_since.elapsed() >= p)
            {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left.min(self.ping_limit), entry.conn.ping()).await {
                    Ok(Ok(())) => {}
                    // The caller's wait ran out, not the ping's limit: the connection may
                    // well be healthy. It finishes its ping in the background (holding its
                    // place in the budget) and goes back to the pool if it answers.
                    Err(_) if left < self.ping_limit => {
                        handle::drain(entry, Arc::clone(self));
                        return Err(ProviderError::AcquireTimeout {
                            waited: started.elapsed(),
                        });
                    }
                    _ => {
                        entry.conn.close_on_drop();
                        PoolCounters::inc(&self.counters.closed_broken);
                        drop(entry);
                        self.freed.notify_waiters();
                        continue;
                    }
                }
            }
            return Ok(PooledConnection::new(entry, Arc::clone(self)));
        }
    }

    /// What the sqlx pool could give now: connections it may still open, plus its idle
    /// ones.
    fn sqlx_available(&self) -> usize {
        let max = self.pool.options().get_max_connections();
        let open = self.pool.size();
        usize::try_from(max.saturating_sub(open)).unwrap_or(0) + sqlx_idle(&self.pool)
    }

    /// Whether the sqlx pool may open another connection within `max_open_conns` (its
    /// size counts connects under way).
    pub(crate) fn has_room(&self) -> bool {
        self.pool.size() < self.pool.options().get_max_connections()
    }

    /// Waits for a connection: one a release hands over (FIFO), or one borrowed from the
    /// sqlx pool while it has some to give. A borrow runs in a task of its own, so that
    /// when a released connection reaches this caller first, a connect the borrow started
    /// is not cut off half-way (the server would log each one as a failed login); what it
    /// brings goes to the cache. No more borrows run than the sqlx pool can serve: when it
    /// has nothing to give (everything is borrowed, the common case under load), waiting
    /// is only for a release, rechecked every few milliseconds in case a raw-pool user
    /// returns one to sqlx.
    async fn wait(
        self: &Arc<Self>,
        rx: &mut oneshot::Receiver<Entry<DB>>,
        deadline: tokio::time::Instant,
        started: Instant,
    ) -> Result<Entry<DB>, ProviderError> {
        loop {
            // Registered before the check, so a connection freed in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            // Once the raw pool is in use, waiters also queue in the sqlx pool (one borrow
            // per waiter at most), so that sqlx's fair semaphore orders fast-path and
            // raw-pool callers in one line (see [`RAW_TURN`]).
            let borrowing = self.borrowing.load(Ordering::Acquire);
            if borrowing < self.sqlx_available()
                || (self.raw_used.load(Ordering::Relaxed) && borrowing < self.waiting())
            {
                self.borrowing.fetch_add(1, Ordering::AcqRel);
                let (done, mut borrowed) = oneshot::channel();
                let cache = Arc::clone(self);
                tokio::spawn(async move {
                    let r = cache.borrow_for_waiter(deadline, started).await;
                    cache.borrowing.fetch_sub(1, Ordering::AcqRel);
                    if let Err(Some(Ok(e))) = done.send(r) {
                        cache.put(e);
                    }
                });
                let outcome = tokio::select! {
                    biased;
                    handed = &mut *rx => match handed {
                        Ok(e) => Some(Ok(e)),
                        // Retired or closed: the borrow decides, or sqlx directly.
                        Err(_) => match (&mut borrowed).await {
                            Ok(Some(r)) => Some(r),
                            Ok(None) => Some(self.borrow(deadline, started).await),
                            Err(_) => Some(Err(ProviderError::Closed)),
                        },
                    },
                    r = &mut borrowed => r.unwrap_or(Some(Err(ProviderError::Closed))),
                };
                match outcome {
                    Some(r) => return r,
                    None => continue,
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ProviderError::AcquireTimeout {
                    waited: started.elapsed(),
                });
            }
            // A raw-pool user may return a connection to sqlx without telling the cache:
            // look again now and then while anyone uses the raw pool.
            let recheck = if self.raw_used.load(Ordering::Relaxed) {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(100)
            };
            tokio::select! {
                biased;
                handed = &mut *rx => match handed {
                    Ok(e) => return Ok(e),
                    // Retired or closed: straight from the sqlx pool.
                    Err(_) => return self.borrow(deadline, started).await,
                },
                () = &mut freed => {}
                () = tokio::time::sleep_until(deadline.min(now + recheck)) => {}
            }
        }
    }

    fn take_or_wait(&self) -> Taken<DB> {
        if self.pool.is_closed() {
            // Closed by user code: hand nothing out, give everything back.
            self.close();
            return Taken::Closed;
        }
        let mut stale = Vec::new();
        let mut state = self.lock();
        if state.closed {
            // Retired by a swap, the sqlx pool still open: straight from it.
            return Taken::Borrow;
        }
        if let Some(e) = self.pop_usable(&mut state, &mut stale) {
            drop(state);
            return Taken::Entry(e);
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.push_back(tx);
        drop(state);
        // Back to sqlx, outside the lock (its release hooks close the cleared ones).
        drop(stale);
        Taken::Wait(rx)
    }

    /// A waiter's borrow, run in a task of its own: `None` when a kick interrupted it (the
    /// waiter borrows again). A borrow still connecting after [`SLOW_BORROW`] while the
    /// pool has room (so it is not waiting for a permit, which is normal under load) asks
    /// the supervisor to look.
    async fn borrow_for_waiter(
        &self,
        deadline: tokio::time::Instant,
        started: Instant,
    ) -> Option<Result<Entry<DB>, ProviderError>> {
        let borrow = self.borrow(deadline, started);
        tokio::pin!(borrow);
        let slow = tokio::time::sleep(SLOW_BORROW);
        tokio::pin!(slow);
        let kicked = self.kick.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        let mut told = false;
        loop {
            tokio::select! {
                r = &mut borrow => return Some(r),
                () = &mut kicked => return None,
                () = self.cancel.cancelled() => return Some(Err(ProviderError::Closed)),
                () = &mut slow, if !told => {
                    told = true;
                    if self.has_room() {
                        self.broken.notify_one();
                    }
                }
            }
        }
    }

    /// Takes the warmest usable idle connection off `state`. Stale ones go to `stale`, for
    /// the caller to drop outside the lock (sqlx's release hooks close them).
    fn pop_usable(&self, state: &mut State<DB>, stale: &mut Vec<Entry<DB>>) -> Option<Entry<DB>> {
        while let Some(e) = state.idle.pop_back() {
            if self.usable(&e) {
                return Some(e);
            }
            stale.push(e);
        }
        None
    }

    /// Sets what runs before a borrow that will likely connect (once).
    pub(crate) fn before_connect(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.before_connect.set(f);
    }

    /// Borrows a connection from the sqlx pool, by `deadline`.
    async fn borrow(
        &self,
        deadline: tokio::time::Instant,
        started: Instant,
    ) -> Result<Entry<DB>, ProviderError> {
        // The generation before the borrow: a clear while sqlx hands the connection over
        // (after its acquire hook found it fresh) leaves the entry stale, so it goes back
        // to sqlx, whose release hook judges it, instead of into the idle list.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(look) = self.before_connect.get()
            && sqlx_idle(&self.pool) == 0
        {
            look();
        }
        let conn = tokio::time::timeout_at(deadline, self.pool.acquire())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
            .map_err(|e| ProviderError::from_acquire(e, started.elapsed()))?;
        let now = Instant::now();
        Ok(Entry {
            conn,
            borrowed_at: now,
            idle_since: now,
            generation,
        })
    }

    /// Takes a released connection back: to the oldest waiter, else to the idle list
    /// (unless stale or beyond `max_idle_conns`: then back to sqlx).
    fn put(&self, mut entry: Entry<DB>) {
        if !self.usable(&entry) {
            drop(entry);
            self.freed.notify_waiters();
            return;
        }
        entry.idle_since = Instant::now();
        if self.raw_turn() {
            // Through sqlx's release, to its longest waiter.
            drop(entry);
            self.freed.notify_waiters();
            return;
        }
        let mut state = self.lock();
        if state.closed {
            return;
        }
        while let Some(w) = state.waiters.pop_front() {
            match w.send(entry) {
                Ok(()) => return,
                Err(back) => entry = back,
            }
        }
        if state.idle.len() < self.max_idle {
            state.idle.push_back(entry);
        } else {
            drop(state);
            entry.conn.close_on_drop();
            PoolCounters::inc(&self.counters.closed_max_idle);
            drop(entry);
            self.freed.notify_waiters();
        }
    }

    /// Callers waiting in the cache now (some may have given up since).
    fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    /// Whether this release is the sqlx pool's turn (see [`RAW_TURN`]): the raw pool is in
    /// use, the sqlx pool has nothing to give, and its last turn was long enough ago.
    fn raw_turn(&self) -> bool {
        if !self.raw_used.load(Ordering::Relaxed) || self.has_room() || sqlx_idle(&self.pool) > 0 {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let last = self.last_raw_turn.load(Ordering::Relaxed);
        let every = u64::try_from(RAW_TURN.as_micros()).unwrap_or(u64::MAX);
        now.saturating_sub(last) >= every
            && self
                .last_raw_turn
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Returns every idle connection of the cache to the sqlx pool now if that pool has
    /// none left to give (someone is about to use the sqlx pool itself).
    pub(crate) fn give_back_if_exhausted(&self) {
        if self.has_room() || sqlx_idle(&self.pool) > 0 {
            return;
        }
        let idle: Vec<Entry<DB>> = self.lock().idle.drain(..).collect();
        if !idle.is_empty() {
            // Outside the lock: sqlx's release runs its hooks.
            drop(idle);
            self.freed.notify_waiters();
        }
    }

    /// The maintenance step: gives waiters that gave up no more thought; closes
    /// connections idle here past `conn_max_idle_time`; returns to the sqlx pool those due
    /// a recheck or cleared, and, while the sqlx pool has none left to give, those unused
    /// for [`LINGER`]. Everything goes back once the sqlx pool is closed.
    pub(crate) fn trim(&self) {
        if self.pool.is_closed() {
            self.close();
            return;
        }
        let pressure = self.raw_used.load(Ordering::Relaxed)
            && self.pool.size() >= self.pool.options().get_max_connections()
            && sqlx_idle(&self.pool) == 0;
        let mut back = Vec::new();
        {
            let mut state = self.lock();
            state.waiters.retain(|w| !w.is_closed());
            let entries: Vec<Entry<DB>> = state.idle.drain(..).collect();
            for mut e in entries {
                let idle = e.idle_since.elapsed();
                if self.max_idle_time.is_some_and(|t| idle >= t) {
                    e.conn.close_on_drop();
                    PoolCounters::inc(&self.counters.closed_idle_timeout);
                    back.push(e);
                } else if !self.usable(&e) || (pressure && idle >= LINGER) {
                    back.push(e);
                } else {
                    state.idle.push_back(e);
                }
            }
        }
        // Outside the lock: sqlx's release runs its hooks.
        if !back.is_empty() {
            drop(back);
            self.freed.notify_waiters();
        }
    }

    /// An idle connection of the cache now, without waiting or connecting (the health
    /// check). sqlx's own idle connections are not taken here: its `try_acquire` runs no
    /// hooks, so it could hand out one a clear made stale.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<PooledConnection<DB>> {
        let mut stale = Vec::new();
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        let entry = self.pop_usable(&mut state, &mut stale);
        drop(state);
        drop(stale);
        Some(PooledConnection::new(entry?, Arc::clone(self)))
    }

    /// Resolves when a connection leaves the cache for the sqlx pool (or closes).
    pub(crate) fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// The server is back after an outage: borrows under way stop and start again.
    ///
    /// A borrow that found the server refusing connections sits in sqlx's own connect
    /// loop, which sleeps 10 ms, 20 ms, 40 ms, ... (up to a fifth of the pool's
    /// `acquire_timeout`) between attempts and cannot be told the server is back. Without
    /// this, callers that waited out an outage would wait for that sleep too (hundreds of
    /// milliseconds after a 2 s outage). A fresh borrow connects at once.
    pub(crate) fn kick(&self) {
        self.kick.notify_waiters();
    }

    /// Marks every connection borrowed now as stale and returns the idle ones to sqlx.
    /// Returns how many idle connections it gave back (the sqlx pool's release hook closes
    /// and counts them as cleared).
    pub(crate) fn clear(&self) -> u32 {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let idle: Vec<_> = self.lock().idle.drain(..).collect();
        let n = u32::try_from(idle.len()).unwrap_or(u32::MAX);
        drop(idle);
        self.freed.notify_waiters();
        n
    }

    /// Closes the cache: idle connections go back to sqlx, waiters fall through to the
    /// sqlx pool, released ones go straight back to sqlx, and new checkouts borrow from
    /// sqlx directly until it closes too (a pool retired by a swap keeps serving callers
    /// that still hold it).
    pub(crate) fn close(&self) {
        self.cancel.cancel();
        self.retire();
    }

    /// As [`close`](Self::close), but borrows under way go on (for a pool a swap replaced,
    /// which keeps serving until it is drained).
    pub(crate) fn retire(&self) {
        let (idle, waiters) = {
            let mut state = self.lock();
            state.closed = true;
            (
                state.idle.drain(..).collect::<Vec<_>>(),
                state.waiters.drain(..).collect::<Vec<_>>(),
            )
        };
        drop((idle, waiters));
    }
}

/// The locked state; publishes the idle count when released.
struct Guard<'a, DB: Database> {
    state: MutexGuard<'a, State<DB>>,
    count: &'a AtomicUsize,
}

impl<DB: Database> std::ops::Deref for Guard<'_, DB> {
    type Target = State<DB>;
    fn deref(&self) -> &State<DB> {
        &self.state
    }
}

impl<DB: Database> std::ops::DerefMut for Guard<'_, DB> {
    fn deref_mut(&mut self) -> &mut State<DB> {
        &mut self.state
    }
}

impl<DB: Database> Drop for Guard<'_, DB> {
    fn drop(&mut self) {
        self.count.store(self.state.idle.len(), Ordering::Relaxed);
    }
}

enum Taken<DB: Database> {
    Closed,
    Borrow,
    Entry(Entry<DB>),
    Wait(oneshot::Receiver<Entry<DB>>),
}
