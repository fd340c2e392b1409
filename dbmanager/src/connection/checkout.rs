//! Checkout: the loop every pooled view goes through (outage policy, the pool's own
//! acquire, connect errors reported and waited out), and `acquire`, `begin`, `retry` on it.

use super::Connection;
use crate::config::DbType;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::pools::{PoolSet, SqlEngine, TimedAcquire};
use dbmanager_providers::fast::{PooledConnection, Transaction};
use dbmanager_providers::pool::SqlPool;
use dbmanager_providers::{Phase, ProviderError, TimeoutPhase};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Whether an acquire failed because a new connection could not be opened.
fn is_connect_failure(e: &ProviderError) -> bool {
    match e {
        ProviderError::Connect(_) => true,
        ProviderError::Driver { phase, .. } => *phase == Phase::Connect,
        ProviderError::Timeout { phase, .. } => *phase == TimeoutPhase::Connect,
        _ => false,
    }
}

impl Connection {
    /// The current pool generation, or why there is none.
    pub(crate) fn pools(&self) -> Result<Arc<PoolSet>> {
        if self.is_closed() {
            return Err(self.closed());
        }
        self.inner
            .pools
            .load_full()
            .ok_or_else(|| Error::NotConnected {
                name: self.name().to_owned(),
            })
    }

    /// A connect failure, named with the connection (and replica) and its address.
    pub(crate) fn connect_failed(&self, source: ProviderError) -> Error {
        Error::Connect {
            name: self.error_name(),
            address: self.config().endpoint.address(),
            source,
        }
    }

    /// A provider error met while using the pool; a connect failure gets its address.
    pub(crate) fn provider_error(&self, e: ProviderError) -> Error {
        match Error::from_provider(self.name(), e) {
            Error::Connect { source, .. } => self.connect_failed(source),
            other => other,
        }
    }

    /// The name errors give: the connection's, and the replica's after a `/`.
    pub(crate) fn error_name(&self) -> String {
        match self.replica_name() {
            Some(r) => format!("{}/{r}", self.name()),
            None => self.name().to_owned(),
        }
    }

    pub(crate) fn wrong_kind(&self, expected: DbType) -> Error {
        let actual = self.kind();
        if actual == expected {
            // Same engine, but its feature is off: the pool could not have been built.
            Error::NotBuilt {
                name: self.name().to_owned(),
                kind: actual,
                feature: actual.feature(),
            }
        } else {
            Error::WrongKind {
                name: self.name().to_owned(),
                expected,
                actual,
            }
        }
    }

    /// The checkout loop shared by every pooled view: the outage policy, then the pool's
    /// own acquire (`get`, which returns `None` when the pool is not the one the caller
    /// wants, answered with `mismatch`), with connect errors reported and, under `wait`,
    /// waited out.
    ///
    /// On a replica with `fallback: primary`, a checkout the replica cannot serve (it is
    /// down, goes down meanwhile, or cannot connect) is made on the primary instead.
    pub(crate) async fn checkout<T, Fut>(
        &self,
        get: impl Fn(&PoolSet, Duration) -> Option<Fut>,
        mismatch: impl Fn() -> Error,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, ProviderError>>,
    {
        match self.checkout_here(&get, &mismatch).await {
            Err(e) => match self.fallback_for(&e) {
                Some(primary) => primary.checkout_here(&get, &mismatch).await,
                None => Err(e),
            },
            ok => ok,
        }
    }

    /// Where a checkout that failed with `e` goes instead: on a replica with
    /// `fallback: primary`, the primary, when the replica is down, went down or cannot
    /// connect. Not after a timeout: a replica that is up but busy is not taken for
    /// gone (its waiters would wait twice, and its load would move to the primary).
    pub(crate) fn fallback_for(&self, e: &Error) -> Option<Connection> {
        if self.inner.replica_of.is_none()
            || !matches!(
                e,
                Error::Unavailable { .. } | Error::Connect { .. } | Error::NotConnected { .. }
            )
        {
            return None;
        }
        let primary = self.falls_back_to()?;
        tracing::debug!(connection = %self.name(), replica = self.replica_name().unwrap_or(""), error = %e, "read falls back to the primary");
        Some(primary)
    }

    /// [`checkout`](Self::checkout) on this connection's own pool, without the fallback.
    pub(crate) async fn checkout_here<T, Fut>(
        &self,
        get: &impl Fn(&PoolSet, Duration) -> Option<Fut>,
        mismatch: &impl Fn() -> Error,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, ProviderError>>,
    {
        let _checkout = super::CheckoutGuard::new(&self.inner);
        let span = self.inner.span("dbmanager.acquire");
        let started = Instant::now();
        let result = async {
            let c = self.config();
            let deadline = dbmanager_providers::time::deadline(started, c.pool.acquire_timeout);
            loop {
                self.ready(started, deadline).await?;
                self.past_swap(started, deadline).await?;
                let pools = self.pools()?;
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(acquiring) = get(&pools, left) else {
                    return Err(mismatch());
                };
                let fail_fast = self.fails_fast();
                let acquired = if fail_fast {
                    // sqlx keeps retrying a refused connect until its deadline; under
                    // fail_fast an acquire stuck there fails as soon as the circuit opens.
                    tokio::select! {
                        r = acquiring => r,
                        () = self.went_down() => return Err(self.unavailable_after(started)),
                    }
                } else {
                    acquiring.await
                };
                match acquired {
                    Ok(conn) => return Ok(conn),
                    // Swapped under us: the next loop takes the new pool. Closed by user code
                    // (the raw pool or a view): replace it, within the deadline.
                    Err(ProviderError::Closed) if !self.is_closed() => {
                        let replaced =
                            tokio::time::timeout_at(deadline.into(), self.replace_closed(&pools));
                        match replaced.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Err(e),
                            Err(_) => return Err(self.acquire_timed_out(started)),
                        }
                        tokio::task::yield_now().await;
                        if Instant::now() >= deadline {
                            return Err(self.acquire_timed_out(started));
                        }
                    }
                    Err(ProviderError::AcquireTimeout { .. }) => {
                        return Err(self.acquire_timed_out(started));
                    }
                    Err(e) if is_connect_failure(&e) => {
                        let class = self.inner.report_class(e.class());
                        let waiting = !fail_fast && class.is_transient();
                        if !waiting || Instant::now() >= deadline {
                            return Err(self.connect_failed(e));
                        }
                        // Give the supervisor a moment to notice, then wait by the policy.
                        self.pause_after_connect_failure(deadline).await;
                    }
                    Err(e) => return Err(self.provider_error(e)),
                }
            }
        }
        .instrument(span.clone())
        .await;
        span.record("dbmanager.wait_seconds", started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            span.record("error.type", error_type(e));
        }
        result
    }

    /// The checkout loop over one pool of the current generation: `pick` finds it in the
    /// generation (`None` when it has no such pool, answered with `mismatch`).
    pub(crate) async fn checkout_from<P: TimedAcquire>(
        &self,
        pick: impl Fn(&PoolSet) -> Option<&P>,
        mismatch: impl Fn() -> Error,
    ) -> Result<P::Conn> {
        self.checkout(
            |set, left| {
                let pool = pick(set)?.clone();
                Some(async move { pool.acquire_within(left).await })
            },
            mismatch,
        )
        .await
    }

    /// [`checkout_from`](Self::checkout_from) without the replica's fallback (a view
    /// whose pool the primary may not have built falls back itself).
    #[cfg(feature = "diesel")]
    pub(crate) async fn checkout_from_here<P: TimedAcquire>(
        &self,
        pick: impl Fn(&PoolSet) -> Option<&P>,
        mismatch: impl Fn() -> Error,
    ) -> Result<P::Conn> {
        self.checkout_here(
            &|set: &PoolSet, left| {
                let pool = pick(set)?.clone();
                Some(async move { pool.acquire_within(left).await })
            },
            &mismatch,
        )
        .await
    }

    /// Waits while a swap drains the old pool generation before it opens the new one
    /// (a session opened meanwhile, in either, would put the server over the budget).
    /// A timeout once `deadline` passes.
    async fn past_swap(&self, started: Instant, deadline: Instant) -> Result<()> {
        if !self.inner.gated.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let mut rx = self.inner.draining.subscribe();
        let past = tokio::time::timeout_at(deadline.into(), rx.wait_for(|d| !*d)).await;
        match past {
            Ok(_) => Ok(()),
            Err(_) => Err(self.acquire_timed_out(started)),
        }
    }

    fn acquire_timed_out(&self, started: Instant) -> Error {
        let waited = started.elapsed();
        self.emit(EventKind::AcquireTimedOut { waited });
        Error::AcquireTimeout {
            name: self.error_name(),
            waited,
        }
    }

    /// Checks out one connection of engine `DB`, counting the wait in the stats.
    /// Dropping it returns it to the pool, without a round trip unless work is pending
    /// (docs/pool.md).
    ///
    /// While the connection is down, `on_unavailable` decides: `wait` waits for it to come
    /// back (within `acquire_timeout`), `fail_fast` fails at once; both fail with
    /// [`Error::Unavailable`]. A connect error met while the connection still looked
    /// healthy is reported (the pool is cleared and the supervisor checks at once) and,
    /// under `wait`, waited out the same way.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let mut conn = mgr.get("primary")?.acquire::<sqlx::Postgres>().await?;
    /// sqlx::query("select 1").execute(&mut *conn).await.unwrap();
    /// # Ok(()) }
    /// ```
    ///
    /// With `leak_detection_threshold` set, a checkout held longer is reported once,
    /// naming the line that called this.
    #[track_caller]
    pub fn acquire<DB: SqlEngine>(
        &self,
    ) -> impl Future<Output = Result<PooledConnection<DB>>> + Send + '_ {
        self.acquire_from::<DB>(std::panic::Location::caller())
    }

    /// [`acquire`](Self::acquire), for a checkout made at `caller`.
    pub(crate) async fn acquire_from<DB: SqlEngine>(
        &self,
        caller: &'static std::panic::Location<'static>,
    ) -> Result<PooledConnection<DB>> {
        if self.kind() != DB::TYPE {
            return Err(self.wrong_kind(DB::TYPE));
        }
        let mut conn = self
            .checkout_from(
                |set| set.main_as::<SqlPool<DB>>(),
                || self.wrong_kind(DB::TYPE),
            )
            .await?;
        // A guard, not an `Arc` clone: this runs on every checkout.
        if let Some(threshold) = self.inner.config.load().leak_detection_threshold {
            conn.attach(self.watch_for_leak(threshold, caller));
        }
        Ok(conn)
    }

    /// A timer that reports the checkout made at `caller` once it has been held for
    /// `threshold`; dropping it (the connection went back) stops it.
    fn watch_for_leak(
        &self,
        threshold: std::time::Duration,
        caller: &'static std::panic::Location<'static>,
    ) -> impl std::any::Any + Send + Sync {
        let conn = self.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(threshold).await;
            conn.emit(EventKind::LeakSuspected {
                held: threshold,
                caller,
            });
        });
        // Stops the timer when dropped.
        struct Watch(tokio::task::AbortHandle);
        impl Drop for Watch {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        Watch(timer.abort_handle())
    }

    /// Checks out one connection and begins a transaction on it. Dropped without
    /// `commit()`, the transaction rolls back (the ROLLBACK is sent at once).
    #[track_caller]
    pub fn begin<DB: SqlEngine>(
        &self,
    ) -> impl Future<Output = Result<Transaction<DB>>> + Send + '_ {
        self.begin_from::<DB>(std::panic::Location::caller())
    }

    /// [`begin`](Self::begin), for a checkout made at `caller`.
    pub(crate) async fn begin_from<DB: SqlEngine>(
        &self,
        caller: &'static std::panic::Location<'static>,
    ) -> Result<Transaction<DB>> {
        let span = self.inner.span("dbmanager.begin");
        let begun = async {
            let conn = self.acquire_from::<DB>(caller).await?;
            Transaction::begin(conn).await.map_err(|e| {
                self.report_error(&e);
                Error::Database {
                    name: self.name().to_owned(),
                    source: ProviderError::Database(e),
                }
            })
        };
        let result = begun.instrument(span.clone()).await;
        if let Err(e) = &result {
            span.record("error.type", error_type(e));
        }
        result
    }
}

/// An error's class for a span's `error.type` (never its message).
pub(crate) fn error_type(e: &Error) -> &'static str {
    e.class().map_or("error", |c| c.as_str())
}
