//! The pool's side of the supervisor's probes: the health check, the reconnect attempt
//! while down, and the read-only question after a failover.

use super::SqlPool;
use crate::error::ProviderError;
use sqlx::{Connection, Database};
use std::time::{Duration, Instant};

impl<DB: Database> SqlPool<DB> {
    /// One real round trip to the server, bounded by `timeout`. Returns its latency.
    ///
    /// The probe takes a connection the way a caller does (an idle one first; a new one
    /// through the pool while it has room, within its budget; otherwise it queues for a
    /// released one) and pings it. It never opens a connection outside the pool, so the
    /// server never sees more sessions than `max_open_conns` (a probe that connected on
    /// its own after checking for room could race a caller for the last place).
    ///
    /// A probe that finds every connection in use for its whole `timeout` is not a
    /// failure: the server may be answering callers as fast as they ask. It returns
    /// [`ProviderError::Busy`], which the supervisor takes as no news. Only a failed
    /// connect or a failed (or unanswered) round trip is a failure. A connection whose
    /// ping does not answer in time is closed rather than returned.
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
        if inner.pool.is_closed() {
            return Err(ProviderError::Closed);
        }
        let started = Instant::now();
        // Not through `acquire_within`: a probe's wait is not a caller's, and does not
        // count in the acquire statistics.
        let mut conn = match tokio::time::timeout_at(deadline, inner.cache.acquire(timeout)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(ProviderError::AcquireTimeout { .. })) | Err(_) => {
                // Every place taken the whole time: busy, not dead. With room left, a
                // connect that did not finish in time is a failure.
                return Err(if inner.cache.has_room() {
                    elapsed()
                } else {
                    ProviderError::Busy {
                        waited: started.elapsed(),
                    }
                });
            }
            Ok(Err(e)) => return Err(e),
        };
        let pinged = Instant::now();
        match tokio::time::timeout_at(deadline, conn.ping()).await {
            Ok(Ok(())) => Ok(pinged.elapsed()),
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

    /// A probe while the connection is down: [`ping`](Self::ping), through the pool and
    /// within its budget. On success, borrows still waiting out sqlx's connect backoff
    /// start again (see `Cache::kick`), so callers waiting for the server get a
    /// connection as soon as it is back.
    pub async fn reconnect(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        let result = self.ping(timeout).await;
        if result.is_ok() {
            self.inner.cache.kick();
        }
        result
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
