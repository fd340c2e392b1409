//! The pool's side of the supervisor's probes: the health check, the reconnect attempt
//! while down, and the read-only question after a failover.

use super::SqlPool;
use crate::error::ProviderError;
use crate::fast::sqlx_idle;
use sqlx::{Connection, Database};
use std::time::{Duration, Instant};

impl<DB: Database> SqlPool<DB> {
    /// One real round trip to the server, bounded by `timeout`. Returns its latency.
    ///
    /// An idle connection (the fast path's or sqlx's) is pinged when there is one. A
    /// connection whose ping does not answer in time is closed rather than returned (sqlx
    /// would ping it again on release and could hang there). When none is idle and the
    /// pool has room, the probe connects once, straight to the server (see
    /// [`reconnect`](Self::reconnect)); when the pool is full, it waits for a connection
    /// to come back. It never connects through the sqlx pool: an acquire that finds the
    /// server refusing connections loops inside sqlx with a growing sleep between
    /// attempts, so a probe that went through it would neither see the server go down
    /// nor see it come back until that sleep ended.
    ///
    /// A failed ping does not clear the pool: the caller decides from the error's class
    /// (the connection's supervisor does, once, so a failed probe counts one clear and one
    /// event).
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        let deadline = tokio::time::Instant::from_std(crate::time::deadline_in(timeout));
        let elapsed = || ProviderError::Timeout {
            phase: "health check",
            after: timeout,
        };
        let inner = &self.inner;
        let mut conn = loop {
            if inner.pool.is_closed() {
                return Err(ProviderError::Closed);
            }
            let freed = inner.cache.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(conn) = inner.cache.try_acquire() {
                break conn;
            }
            // Idle in sqlx: through its acquire, whose hooks drop stale connections (its
            // `try_acquire` runs none).
            if sqlx_idle(&inner.pool) > 0 {
                break tokio::time::timeout_at(deadline, self.acquire_within(timeout))
                    .await
                    .map_err(|_| elapsed())??;
            }
            // Room in the pool: the direct connect stays within the budget.
            if inner.cache.has_room() {
                return self.connect_probe(timeout, deadline).await;
            }
            let recheck = tokio::time::Instant::now() + Duration::from_millis(5);
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep_until(recheck.min(deadline)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                // Every connection in use the whole time: busy, not dead (no verdict).
                return Err(ProviderError::Busy { waited: timeout });
            }
        };
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, conn.ping()).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => {
                conn.close_broken();
                Err(ProviderError::Database(e))
            }
            Err(_) => {
                conn.close_broken();
                Err(elapsed())
            }
        }
    }

    /// A probe while the connection is down: one connect straight to the server (not
    /// through the pool), its ping and a close, all within `timeout`. On success, borrows
    /// still waiting out sqlx's connect backoff start again (see `Cache::kick`), so
    /// callers waiting for the server get a connection as soon as it is back.
    pub async fn reconnect(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        let deadline = tokio::time::Instant::from_std(crate::time::deadline_in(timeout));
        self.connect_probe(timeout, deadline).await
    }

    /// Connects once, outside the pool, pings and closes; kicks the fast path's borrows
    /// on success. The connection lives for one round trip after the handshake, while the
    /// pool has room (the health check) or is down (reconnect).
    async fn connect_probe(
        &self,
        timeout: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<Duration, ProviderError> {
        use sqlx::ConnectOptions;
        let elapsed = || ProviderError::Timeout {
            phase: "health check",
            after: timeout,
        };
        let started = Instant::now();
        let options = self.inner.pool.connect_options();
        let mut conn = tokio::time::timeout_at(deadline, options.connect())
            .await
            .map_err(|_| elapsed())?
            .map_err(ProviderError::Connect)?;
        let pinged = tokio::time::timeout_at(deadline, conn.ping()).await;
        let took = started.elapsed();
        match pinged {
            Ok(Ok(())) => {
                // A polite close, within the probe's deadline.
                let _ = tokio::time::timeout_at(deadline, conn.close()).await;
                self.inner.cache.kick();
                Ok(took)
            }
            Ok(Err(e)) => Err(ProviderError::Database(e)),
            Err(_) => Err(elapsed()),
        }
    }

    /// Whether the server refuses writes now, asked on one pooled connection within
    /// `timeout`; `Ok(true)` when the engine has no way to tell.
    pub async fn read_only(&self, timeout: Duration) -> Result<bool, ProviderError> {
        let Some(check) = &self.inner.read_only else {
            return Ok(true);
        };
        let ask = async {
            let mut conn = self.acquire_within(timeout).await?;
            check(&mut *conn).await.map_err(ProviderError::Database)
        };
        tokio::time::timeout(timeout, ask)
            .await
            .unwrap_or(Err(ProviderError::Timeout {
                phase: "read-only check",
                after: timeout,
            }))
    }
}
