//! `retry` and `retry_idempotent`: an operation re-run on a fresh connection, when that
//! is safe.

use super::Connection;
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::events::ClearReason;
use crate::pools::SqlEngine;
use dbmanager_providers::{Classify, ErrorClass, ProviderError};
use std::future::Future;
use tracing::Instrument;

impl Connection {
    /// Runs an operation on a fresh connection, and runs it again (with the connection's
    /// backoff: `retry_attempts`, `retry_delay`, `retry_max_delay`) only when the failure
    /// says the server did not apply it:
    ///
    /// - a serialization failure or a deadlock (`40001`, `40P01`, MySQL 1213), a lock
    ///   timeout, too many connections, SQLite busy ([`ErrorClass::Transient`]): the
    ///   server rolled the work back, or never started it;
    /// - a write refused because a failover left the pool on a replica
    ///   ([`ErrorClass::ReadOnly`], once the server confirms it is read-only; the pool is
    ///   cleared first), or because it ran in a transaction begun while the server was
    ///   still being promoted (PostgreSQL: out of recovery, and its last replayed
    ///   transaction less than a minute old). An application's own `READ ONLY`
    ///   transaction is returned at once, but for the minute after a promotion.
    ///
    /// A **lost connection** is returned, not retried: the statement (or its COMMIT) may
    /// have reached the server, and running a write twice is worse than failing. Use
    /// [`retry_idempotent`](Self::retry_idempotent) for work that is safe to run twice
    /// (reads, upserts keyed by a request id). Failures to connect never reach `op`:
    /// `acquire` handles them (under `on_unavailable: wait` it waits out the outage).
    /// Errors are reported (see [`report_error`](Self::report_error)).
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// mgr.get("primary")?.retry(|mut conn: dbmanager::PooledConnection<sqlx::Postgres>| async move {
    ///     let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    ///     sqlx::query("update accounts set balance = balance - 10 where id = 1")
    ///         .execute(&mut *tx).await?;
    ///     tx.commit().await
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn retry<DB, T, F, Fut>(&self, op: F) -> Result<T>
    where
        DB: SqlEngine,
        F: FnMut(dbmanager_providers::fast::PooledConnection<DB>) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let span = self.inner.span("dbmanager.retry");
        self.retry_with(op, false, &span)
            .instrument(span.clone())
            .await
    }

    /// As [`retry`](Self::retry), and also after a lost connection, whose outcome is
    /// unknown: you say the operation is idempotent (a read, an upsert keyed by a request
    /// id), so running it twice is harmless. The lost connection clears the pool before
    /// the next attempt.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let n: i64 = mgr.get("primary")?.retry_idempotent(|mut conn: dbmanager::PooledConnection<sqlx::Postgres>| async move {
    ///     sqlx::query_scalar("select count(*) from users").fetch_one(&mut *conn).await
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn retry_idempotent<DB, T, F, Fut>(&self, op: F) -> Result<T>
    where
        DB: SqlEngine,
        F: FnMut(dbmanager_providers::fast::PooledConnection<DB>) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let span = self.inner.span("dbmanager.retry");
        self.retry_with(op, true, &span)
            .instrument(span.clone())
            .await
    }

    async fn retry_with<DB, T, F, Fut>(
        &self,
        mut op: F,
        idempotent: bool,
        span: &tracing::Span,
    ) -> Result<T>
    where
        DB: SqlEngine,
        F: FnMut(dbmanager_providers::fast::PooledConnection<DB>) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let mut delays = Backoff::single_round(&self.config().retry);
        let mut attempts = 0u32;
        let started = std::time::Instant::now();
        loop {
            attempts += 1;
            span.record("dbmanager.attempts", attempts);
            let conn = self.acquire::<DB>().await?;
            let e = match op(conn).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let class = e.class();
            // The server the write reached is a standby: a failover is under way.
            let mut on_a_standby = false;
            let again = match class {
                // A failover clears the pool and is worth a retry; a read-only
                // transaction of the caller's own is not.
                // A replica refuses writes by design: no failover, nothing to clear, and
                // the same write would be refused again.
                ErrorClass::ReadOnly if self.inner.replica_of.is_some() => false,
                ErrorClass::ReadOnly => {
                    let failover = self.inner.server_is_read_only().await;
                    on_a_standby = failover;
                    if failover {
                        self.inner
                            .clear_with(ClearReason::ErrorReported(ErrorClass::ReadOnly));
                    }
                    // Not read-only now, but promoted moments ago: the write ran in a
                    // transaction begun while the server was still a standby (a proxy
                    // routes to a new primary a moment before it finishes promoting). A
                    // refusal rolls the transaction back, so a retry is safe.
                    failover || self.inner.server_was_just_promoted().await
                }
                ErrorClass::ConnectionLost => {
                    self.report_error(&e);
                    idempotent
                }
                // The connect failed: the statement was never sent.
                ErrorClass::Unreachable => {
                    self.report_error(&e);
                    true
                }
                other => {
                    self.report_error(&e);
                    other == ErrorClass::Transient
                }
            };
            // Past the attempts, a write refused by a standby waits out the failover
            // (within `acquire_timeout`, as a checkout waits out an outage): a proxy may
            // route to the new primary before it has finished promoting, or to the old
            // one a moment after it was demoted. Refused, the write did not happen.
            let next = delays.next().or_else(|| {
                let c = self.config();
                (on_a_standby && started.elapsed() < c.pool.acquire_timeout)
                    .then(|| c.retry.max_delay.min(std::time::Duration::from_millis(500)))
            });
            if again
                && !self.is_closed()
                && let Some(delay) = next
            {
                tokio::time::sleep(delay).await;
                continue;
            }
            span.record("error.type", class.as_str());
            return Err(Error::Database {
                name: self.name().to_owned(),
                source: ProviderError::Database(e),
            });
        }
    }
}
