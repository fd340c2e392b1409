//! A connection's life: open (strict or lazy), hot swap with drain, close; plus health
//! checks and statistics, which read the current pool generation.

use super::{Connection, Inner};
use crate::config::{ConnectionConfig, DefaultOrm, Startup};
use crate::error::Result;
use crate::events::EventKind;
use crate::health::{Health, HealthState};
use crate::pools::PoolSet;
use crate::stats::{ConnectionStats, ViewStats};
use dbmanager_providers::settings::{Endpoint, PoolSettings};
use dbmanager_providers::{OpenRequest, ProviderError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How long a replaced pool keeps serving callers that still hold it before the drain
/// starts counting: a task that loaded the old pool just before the swap still gets a
/// connection from it.
const SWAP_GRACE: Duration = Duration::from_millis(250);

impl Inner {
    /// One round trip through the current pool, bounded by `health_check_timeout`.
    /// Publishes `HealthChecked` with how long it took, whatever the outcome.
    pub(crate) async fn probe(&self) -> Result<Duration, ProviderError> {
        let op = if self.health.load().state == HealthState::Healthy {
            "dbmanager.health_check"
        } else {
            "dbmanager.reconnect_attempt"
        };
        let span = self.span(op);
        let started = Instant::now();
        let result = self.probe_once().instrument(span.clone()).await;
        if result.is_ok() {
            self.check_lag().await;
        }
        span.record("dbmanager.ok", result.is_ok());
        if let Err(e) = &result {
            span.record("error.type", e.class().as_str());
        }
        if !self.is_closed() {
            self.emit(EventKind::HealthChecked {
                took: started.elapsed(),
                ok: result.is_ok(),
            });
        }
        result
    }

    /// A pool closed by user code (`conn.postgres()?.close()`) is replaced first.
    async fn probe_once(&self) -> Result<Duration, ProviderError> {
        let Some(pools) = self.pools.load_full() else {
            return Err(ProviderError::Closed);
        };
        let timeout = self.config.load().health_check_timeout;
        let down = self.health.load().state != HealthState::Healthy;
        let result = if down {
            pools.reconnect(timeout).await
        } else {
            pools.ping(timeout).await
        };
        if !matches!(result, Err(ProviderError::Closed)) || self.is_closed() {
            return result;
        }
        let Some(me) = self.me.upgrade() else {
            return result;
        };
        let conn = Connection { inner: me };
        if conn.replace_closed(&pools).await.is_err() {
            return result;
        }
        match self.pools.load_full() {
            Some(fresh) => fresh.ping(self.config.load().health_check_timeout).await,
            None => result,
        }
    }
}

impl Connection {
    /// Starts the connection's supervisor (once its pool is open).
    fn supervise(&self) {
        let target: std::sync::Weak<dyn crate::supervisor::Supervised> =
            Arc::downgrade(&self.inner) as _;
        let ctx = &self.inner.ctx;
        crate::supervisor::spawn(
            target,
            &ctx.tasks,
            ctx.cancel.clone(),
            Arc::clone(&ctx.broken),
        );
    }

    /// Opens the pool and starts the supervisor, once however many callers race. Strict:
    /// connects now (bounded by `connect_timeout`) and fails if it cannot. Lazy: builds the
    /// pool without connecting; the supervisor connects it.
    ///
    /// Every change of the pool generation (open, swap, replacing a closed pool) holds
    /// the swap lock, and `close()` takes it too: a build that `close()` interrupts is
    /// abandoned (its connections dropped) and nothing it built outlives `close()`.
    pub(crate) async fn open(&self) -> Result<()> {
        let _one_at_a_time = self.inner.swap.lock().await;
        if self.is_closed() {
            return Err(self.closed());
        }
        if self.is_open() {
            return Ok(());
        }
        let eager = self.config().startup == Startup::Strict;
        let started = Instant::now();
        let span = self.inner.span("dbmanager.connect");
        let built = self
            .build_unless_closed(eager, false)
            .instrument(span.clone())
            .await;
        if let Err(e) = &built {
            span.record("error.type", super::checkout::error_type(e));
        }
        match built {
            Ok(pools) => {
                self.inner.pools.store(Some(pools));
                self.emit(EventKind::Opened { lazy: !eager });
                if eager {
                    self.inner.observe(&Ok(started.elapsed()));
                }
                self.supervise();
                self.open_replicas().await;
                Ok(())
            }
            Err(e) => {
                self.inner.open_failed(&e);
                Err(e)
            }
        }
    }

    /// [`build`](Self::build), abandoned when the connection is closed meanwhile.
    async fn build_unless_closed(&self, eager: bool, fresh: bool) -> Result<Arc<PoolSet>> {
        let cancel = self.inner.ctx.cancel.clone();
        let built = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(self.closed()),
            built = self.build(eager, fresh) => Arc::new(built?),
        };
        if self.is_closed() {
            built.close(Duration::ZERO).await;
            return Err(self.closed());
        }
        Ok(built)
    }

    /// Builds one pool generation through the connection's provider: the main pool with
    /// its share of the budget, then the view `default_orm` names (which is then the one
    /// connected `eager`ly). `fresh`: the endpoint changed, so open the new one rather than
    /// the one the current generation has open.
    async fn build(&self, eager: bool, fresh: bool) -> Result<PoolSet> {
        let c = self.config();
        let diesel_first = c.default_orm == DefaultOrm::Diesel;
        let (main, endpoint) = self.open_main(eager && !diesel_first, fresh).await?;
        let set = PoolSet::new(main, endpoint, diesel_first);
        super::views::prepare(self, &set, eager).await?;
        Ok(set)
    }

    /// Opens the main pool through the connection's provider, with the current settings:
    /// connected now when `eager`, else lazily (no session until first use).
    async fn open_main(
        &self,
        eager: bool,
        fresh: bool,
    ) -> Result<(Arc<dyn dbmanager_providers::EnginePool>, Endpoint)> {
        let c = self.config();
        let Some(provider) = &c.provider else {
            return Err(self.wrong_kind(c.kind));
        };
        // A new generation opens the database the current one has open: for an in-memory
        // SQLite database that is what keeps its data across a swap (the new pool holds it
        // before the old one lets go).
        let endpoint = match self.inner.pools.load_full() {
            Some(current) if !fresh => current.endpoint.clone(),
            _ => c.endpoint.instance(),
        };
        let mut ctx = self.inner.ctx.clone();
        ctx.credentials = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut request = OpenRequest::new(&c.name, &endpoint, self.main_settings(), eager, ctx);
        request.mongo = &c.mongo;
        request.options = &c.options;
        let main = provider
            .open(request)
            .await
            .map_err(|source| self.connect_failed(source))?;
        Ok((main, endpoint))
    }

    /// Renews the current generation's sessions in place, within its one budget, when its
    /// pool can ([`EnginePool::renew`](dbmanager_providers::EnginePool::renew): the SQL
    /// pools, while no diesel pool was created): a pool built lazily with the current
    /// settings (no session) hands over its connect options, every open session is
    /// marked stale, and this waits (within `drain_timeout`) until the sessions open
    /// before have closed. Publishes `Swapped` and `Drained` as a swap does. `None` when
    /// the pool cannot renew: the caller swaps pools then.
    async fn renew_in_place(&self, fresh: bool) -> Option<Result<()>> {
        let current = self.inner.pools.load_full()?;
        if current.diesel.get().is_some() {
            return None;
        }
        let started = Instant::now();
        let (lazy, endpoint) = match self.open_main(false, fresh).await {
            Ok(built) => built,
            Err(e) => return Some(Err(e)),
        };
        let before = current.main.stats();
        let renewed = current.main.renew(&*lazy);
        // It never connected: nothing to drain.
        lazy.close(Duration::ZERO).await;
        if !renewed {
            return None;
        }
        if fresh {
            // Same pool, new endpoint: views made from now on open the new one.
            let set = PoolSet::new(Arc::clone(&current.main), endpoint, current.diesel_first);
            self.inner.pools.store(Some(Arc::new(set)));
        }
        self.emit(EventKind::Swapped {
            connect: started.elapsed(),
        });
        let drain_started = Instant::now();
        let complete = self
            .renewed_sessions_closed(current.main.as_ref(), &before)
            .instrument(self.inner.span("dbmanager.drain"))
            .await;
        if self.is_closed() {
            // `close()` ran meanwhile: the swap did not complete.
            return Some(Err(self.closed()));
        }
        self.emit(EventKind::Drained {
            complete,
            took: drain_started.elapsed(),
        });
        Some(Ok(()))
    }

    /// Waits (within `drain_timeout`, until `close()`) for the sessions that were open
    /// at the renew (`before`: fully open then; a connect still under way finishes as a
    /// new session) to close. Returns whether they all did.
    async fn renewed_sessions_closed(
        &self,
        main: &dyn dbmanager_providers::EnginePool,
        before: &dbmanager_providers::stats::PoolStats,
    ) -> bool {
        let deadline = dbmanager_providers::time::deadline_in(self.config().drain_timeout);
        let live_before = before
            .opened_total
            .saturating_sub(before.closed_by_reason());
        let gone = || {
            main.stats()
                .closed_by_reason()
                .saturating_sub(before.closed_by_reason())
                >= live_before
        };
        let mut complete = gone();
        while !complete && Instant::now() < deadline && !self.inner.ctx.cancel.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            complete = gone();
        }
        complete
    }

    /// The main pool's settings: `max_open_conns` less the diesel view's part.
    fn main_settings(&self) -> PoolSettings {
        let c = self.config();
        let mut p = c.pool.clone();
        if c.diesel_conns > 0 {
            p.max_open = p.max_open.saturating_sub(c.diesel_conns).max(1);
            p.max_idle = p.max_idle.min(p.max_open);
            p.min_idle = if c.default_orm == DefaultOrm::Diesel {
                0
            } else {
                p.min_idle.min(p.max_idle)
            };
        }
        p
    }

    /// One real round trip to the database (acquire + ping), bounded by
    /// `health_check_timeout`. Updates [`Self::health`] as the supervisor's checks do and
    /// returns the latency.
    pub async fn health_check(&self) -> Result<Duration> {
        self.pools()?;
        let result = self.inner.probe().await;
        if self.is_closed() {
            return Err(self.closed());
        }
        self.inner.observe(&result);
        result.map_err(|e| self.provider_error(e))
    }

    /// Replaces every session without dropping work in flight, within `max_open_conns`.
    ///
    /// On PostgreSQL, MySQL/MariaDB and file SQLite (while the diesel view has no pool of
    /// its own), the sessions are renewed in place: the pool keeps its one budget, idle
    /// sessions close at once, sessions in use close when returned, and new ones open
    /// with the current settings as callers need them. The server never sees the old and
    /// the new sessions together beyond the budget, and a raw sqlx pool or SeaORM handle
    /// kept from before keeps working. Returns once the old sessions have closed (or
    /// `drain_timeout` passed).
    ///
    /// Other pools (SQL Server, MongoDB, custom providers, a created diesel pool) are
    /// swapped within the budget too: a new pool is built without connecting, checkouts
    /// wait while work on the old pool finishes (up to `drain_timeout`), the old pool
    /// closes, the new one takes the waiting checkouts, and one round trip on a new
    /// session (bounded by `connect_timeout`) checks it; its error is returned. An
    /// in-memory SQLite database (no server, and it lives only while a connection holds
    /// it) gets its new pool connected first, and the old one drains after.
    pub async fn reconnect(&self) -> Result<()> {
        let _one_at_a_time = self.inner.swap.lock().await;
        if self.is_closed() {
            return Err(self.closed());
        }
        if let Some(renewed) = self
            .renew_in_place(false)
            .instrument(self.inner.span("dbmanager.swap"))
            .await
        {
            return renewed;
        }
        if self.swap_pools(true, false).await? {
            // Built lazily after the drain: connected now, as a strict connect would be.
            self.verify_sessions().await?;
        }
        Ok(())
    }

    /// Replaces the pool generation with one built from the current settings. Returns
    /// `Err` only when the new generation could not be built (nothing changed then), and
    /// `Ok(true)` when it was built lazily and is not verified yet.
    ///
    /// For a network server, the new generation is built lazily, and opens only once the
    /// old one has drained ([`drain_then_open`](Self::drain_then_open)): the server
    /// never sees the old and the new sessions beyond the budget. SQLite has no server
    /// to overload, and an in-memory database lives only while a connection holds it, so
    /// there the new generation is built (connected when `eager`) before the old one
    /// drains.
    async fn swap_pools(&self, eager: bool, fresh: bool) -> Result<bool> {
        let started = Instant::now();
        let span = self.inner.span("dbmanager.swap");
        if !matches!(self.config().endpoint, Endpoint::Server(_)) {
            let new = self
                .build_unless_closed(eager, fresh)
                .instrument(span)
                .await?;
            self.swap_in(new, started.elapsed()).await;
            return Ok(false);
        }
        let new = self
            .build_unless_closed(false, fresh)
            .instrument(span)
            .await?;
        self.drain_then_open(new, started).await;
        Ok(eager)
    }

    /// Makes `new` (built lazily: no session yet) the current generation once the old
    /// one has drained. Checkouts wait meanwhile (`past_swap`, within their own
    /// `acquire_timeout`); work in flight on the old pool finishes, up to
    /// `drain_timeout`; then the old pool closes and `new` takes callers. A connection
    /// still checked out after `drain_timeout` closes when it is returned, and until then
    /// counts beside the new generation's.
    async fn drain_then_open(&self, new: Arc<PoolSet>, started: Instant) {
        let gate = Gate::close(&self.inner);
        let old = self.inner.pools.load_full();
        let drain_started = Instant::now();
        let complete = match &old {
            Some(old) => {
                self.drain(old, Duration::ZERO)
                    .instrument(self.inner.span("dbmanager.drain"))
                    .await
            }
            None => true,
        };
        self.inner.pools.store(Some(new));
        drop(gate);
        self.emit(EventKind::Swapped {
            connect: started.elapsed(),
        });
        if old.is_some() {
            self.emit(EventKind::Drained {
                complete,
                took: drain_started.elapsed(),
            });
        }
    }

    /// Makes `new` the current generation and drains the one it replaces.
    async fn swap_in(&self, new: Arc<PoolSet>, connect: Duration) {
        let old = self.inner.pools.swap(Some(new));
        self.emit(EventKind::Swapped { connect });
        self.inner.observe(&Ok(connect));
        if let Some(old) = old {
            let drain_started = Instant::now();
            let complete = self
                .drain(&old, SWAP_GRACE)
                .instrument(self.inner.span("dbmanager.drain"))
                .await;
            self.emit(EventKind::Drained {
                complete,
                took: drain_started.elapsed(),
            });
        }
    }

    /// Takes new settings in place (a reload that changed them): builds a pool generation
    /// with them (connected now unless `startup: lazy`), switches new acquires to it and
    /// drains the old one, as [`reconnect`](Self::reconnect) does. Handles keep working.
    /// If the new pool cannot be built or connect, the old settings and pool stay and the
    /// error is returned.
    pub(crate) async fn reconfigure(&self, new: ConnectionConfig) -> Result<()> {
        let _one_at_a_time = self.inner.swap.lock().await;
        if self.is_closed() {
            return Err(self.closed());
        }
        let new = Arc::new(new);
        let replicas_changed = !super::replicas::same_replicas(&self.config(), &new);
        let fresh = self.config().endpoint != new.endpoint;
        // Errors from the new settings are scrubbed of their secrets too, and the old
        // ones stay scrubbed (a drained pool may still report).
        let mut secrets = self.inner.secrets.load().as_ref().clone();
        secrets.extend(&new.endpoint.secrets());
        self.inner.secrets.store(Arc::new(secrets));
        let only_replicas = super::replicas::same_but_replicas(&self.config(), &new);
        let old = self.inner.config.swap(Arc::clone(&new));
        if self.is_open() && only_replicas {
            // The connection's own pool stays as it is.
            self.replace_replicas(&new, &self.inner.shared).await;
            return Ok(());
        }
        if !self.is_open() {
            // Not opened yet: `open` will use the new settings.
            self.after_reconfigure(&new);
            if replicas_changed {
                self.inner.replicas.store(Arc::new(super::replicas::build(
                    &new.replicas,
                    &self.inner.shared,
                    &self.inner.me,
                )));
                self.credentials_to_replicas();
            }
            return Ok(());
        }
        if !sessions_change(&old, &new) {
            // Tags, health, retry, outage and timeout settings: read where they are used,
            // so they apply in place; no session changes.
            self.after_reconfigure(&new);
            if replicas_changed {
                self.replace_replicas(&new, &self.inner.shared).await;
            }
            // The supervisor takes the new pace at its next probe: make that now.
            self.inner.ctx.broken.notify_one();
            return Ok(());
        }
        if let Some(renewed) = self.renew_in_place(fresh).await {
            let verified = match renewed {
                Ok(()) if fresh => self.verify_sessions().await,
                other => other,
            };
            if let Err(e) = verified {
                // Back to the settings that worked (their sessions were renewed too).
                self.inner.config.store(old);
                let _ = self.renew_in_place(fresh).await;
                return Err(e);
            }
            self.after_reconfigure(&new);
            if replicas_changed {
                self.replace_replicas(&new, &self.inner.shared).await;
            }
            self.inner.ctx.broken.notify_one();
            return Ok(());
        }
        let eager = new.startup == Startup::Strict;
        let verified = match self.swap_pools(eager, fresh).await {
            Ok(true) => self.verify_sessions().await,
            Ok(false) => Ok(()),
            Err(e) => {
                // Nothing changed.
                self.inner.config.store(old);
                return Err(e);
            }
        };
        if let Err(e) = verified {
            // The old pool has drained already: back to the settings that worked, in a
            // new pool that connects on first use.
            self.inner.config.store(old);
            let _ = self.swap_pools(false, fresh).await;
            return Err(e);
        }
        self.after_reconfigure(&new);
        if replicas_changed {
            self.replace_replicas(&new, &self.inner.shared).await;
        }
        // The supervisor takes the new pace at its next probe: make that now.
        self.inner.ctx.broken.notify_one();
        Ok(())
    }

    /// One round trip through the renewed or new pool (a new session with the new
    /// endpoint or credentials), bounded by `connect_timeout`. A pool busy the whole time
    /// cannot be checked and passes: callers' connects will show a wrong setting.
    async fn verify_sessions(&self) -> Result<()> {
        let Some(pools) = self.inner.pools.load_full() else {
            return Ok(());
        };
        match pools.main.ping(self.config().pool.connect_timeout).await {
            Ok(_) | Err(ProviderError::Busy { .. }) => Ok(()),
            Err(source) => Err(self.connect_failed(source)),
        }
    }

    /// What the settings decide besides the pool: spans and the event log.
    fn after_reconfigure(&self, new: &ConnectionConfig) {
        self.inner
            .target
            .store(Arc::new(crate::spans::Target::of(new)));
        self.inner
            .events
            .store(Arc::new(super::event_bus(&self.inner.shared.events, new)));
    }

    /// Replaces `seen`, a pool generation closed by something other than
    /// [`close`](Self::close) (user code closing the raw pool or a view), with a new one
    /// built lazily: the next acquire connects it. Does nothing when `seen` was replaced
    /// already.
    pub(crate) async fn replace_closed(&self, seen: &Arc<PoolSet>) -> Result<()> {
        let _one_at_a_time = self.inner.swap.lock().await;
        if self.is_closed() {
            return Err(self.closed());
        }
        let current = self.inner.pools.load_full();
        if !current.is_some_and(|c| Arc::ptr_eq(&c, seen)) {
            return Ok(());
        }
        let fresh = self.build_unless_closed(false, false).await?;
        self.inner.pools.store(Some(fresh));
        self.emit(EventKind::Opened { lazy: true });
        // Its views (if any) may still be open.
        seen.close(Duration::ZERO).await;
        Ok(())
    }

    /// Waits for a replaced pool's checked-out connections to come back (after `grace`,
    /// within `drain_timeout`), then closes it. When the connection is closed meanwhile,
    /// the old pool gets `close_timeout` like the current one, and is closed before
    /// `close()` returns (which waits for the swap lock this runs under).
    async fn drain(&self, old: &PoolSet, grace: Duration) -> bool {
        let limit = self.config().drain_timeout;
        let deadline = dbmanager_providers::time::deadline_in(limit);
        let cancel = self.inner.ctx.cancel.clone();
        old.retire();
        let waited = async {
            tokio::time::sleep(grace.min(limit)).await;
            while old.in_use() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            () = waited => {
                old.close(deadline.saturating_duration_since(Instant::now())).await
            }
            () = cancel.cancelled() => old.close(self.config().close_timeout).await,
        }
    }

    /// Pool statistics and health.
    pub fn stats(&self) -> ConnectionStats {
        let set = self.inner.pools.load_full();
        let views: Vec<ViewStats> = set
            .as_ref()
            .map(|p| p.views())
            .unwrap_or_default()
            .into_iter()
            .map(|(view, pool)| ViewStats::new(view, pool))
            .collect();
        let mut pool = set.as_ref().map(|p| p.stats()).unwrap_or_default();
        // The budget, whether or not every view was created.
        pool.max_open = self.config().pool.max_open;
        let health = self.health();
        ConnectionStats {
            name: self.name().to_owned(),
            kind: self.kind(),
            health: health.state,
            last_error: health.last_error,
            pool,
            views,
            replicas: self.replica_stats(),
        }
    }

    /// Closes the pool: new acquires fail with [`Error::Closed`], in-flight work may finish
    /// for up to `close_timeout`, the supervisor and the pool's background task end.
    /// Returns whether everything drained in time.
    pub(crate) async fn close(&self) -> bool {
        let replicas = self.replicas();
        let closing = futures_util::future::join_all(replicas.iter().map(|r| Box::pin(r.close())));
        let (replicas_drained, drained) = tokio::join!(closing, self.close_self());
        drained && replicas_drained.into_iter().all(|d| d)
    }

    /// After [`close`](Self::close), for a connection the manager removed: frees what it
    /// held (its pools, its replicas, its settings' secrets and extras) and publishes
    /// `Removed` for it and each replica, so their metric series go too. What is left is
    /// a closed shell (name, type, scalar settings, counters) that a handle taken
    /// earlier still answers from.
    pub(crate) fn shed(&self) {
        let inner = &self.inner;
        inner.pools.store(None);
        for replica in inner.replicas.swap(Arc::new(Vec::new())).iter() {
            replica.conn.shed();
        }
        inner
            .secrets
            .store(Arc::new(dbmanager_providers::Secrets::default()));
        inner.config.store(Arc::new(self.config().shell()));
        self.emit(EventKind::Removed);
    }

    async fn close_self(&self) -> bool {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.ctx.cancel.cancel();
        let was = self.inner.health.load().state;
        if was != HealthState::Closed {
            self.inner.set_health(Health::new(HealthState::Closed));
            self.emit(EventKind::Closed);
        }
        // Wait for an open or swap in progress: the token above makes it give up its
        // build, or end its drain by closing the old pool.
        let _no_swap = self.inner.swap.lock().await;
        let Some(pools) = self.inner.pools.load_full() else {
            return true;
        };
        let close_timeout = self.config().close_timeout;
        let drained = pools.close(close_timeout).await;
        if !drained {
            self.emit(EventKind::CloseTimedOut { close_timeout });
        }
        drained
    }
}

/// Holds checkouts back while it lives (see `Connection::past_swap`).
struct Gate<'a>(&'a Inner);

impl<'a> Gate<'a> {
    fn close(inner: &'a Inner) -> Self {
        inner.gated.store(true, Ordering::Release);
        inner.draining.send_replace(true);
        Gate(inner)
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        // A checkout that saw `gated` subscribes and then reads `draining` first.
        self.0.draining.send_replace(false);
        self.0.gated.store(false, Ordering::Release);
    }
}

/// Whether going from `a` to `b` needs new sessions (or a new pool): what a session is
/// opened with (engine, address, credentials, TLS, session options, the pool's limits
/// and the views' split). Everything else is read where it is used and applies in place.
fn sessions_change(a: &ConnectionConfig, b: &ConnectionConfig) -> bool {
    a.kind != b.kind
        || a.endpoint != b.endpoint
        || a.endpoint.secrets() != b.endpoint.secrets()
        || a.pool != b.pool
        || a.application_name != b.application_name
        || a.options != b.options
        || a.mongo != b.mongo
        || a.default_orm != b.default_orm
        || a.diesel_conns != b.diesel_conns
}
