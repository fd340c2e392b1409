//! What the fast path hands out: [`PooledConnection`] and [`Transaction`], and their
//! release (one poll of `flush`, then back to the cache, to sqlx, or closed).

use super::{Cache, Entry};
use crate::stats::PoolCounters;
use futures_util::FutureExt;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database};
use std::sync::Arc;

/// A connection checked out through the manager's fast path. Dereferences to the driver's
/// connection, so `&mut *conn` is an executor (`query.execute(&mut *conn)`).
///
/// Dropping it returns it to the pool without a round trip when the connection is idle;
/// with work still pending (a transaction dropped without commit, a query cancelled
/// mid-flight), it goes back through the sqlx pool, which finishes that work first.
pub struct PooledConnection<DB: Database> {
    entry: Option<Entry<DB>>,
    cache: Arc<Cache<DB>>,
    /// Dropped with the checkout (a leak watch's timer, say).
    attached: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl<DB: Database> PooledConnection<DB> {
    pub(super) fn new(entry: Entry<DB>, cache: Arc<Cache<DB>>) -> Self {
        PooledConnection {
            entry: Some(entry),
            cache,
            attached: None,
        }
    }

    /// Attaches `guard` to this checkout: it is dropped when the connection goes back to
    /// the pool (or is taken out with [`into_sqlx`](Self::into_sqlx)). dbmanager's leak
    /// detection attaches its timer here.
    pub fn attach(&mut self, guard: impl std::any::Any + Send + Sync) {
        self.attached = Some(Box::new(guard));
    }

    /// Takes the connection out of the fast path as a plain sqlx `PoolConnection` (it goes
    /// back through sqlx's release when dropped), for an API that needs one.
    pub fn into_sqlx(mut self) -> PoolConnection<DB> {
        match self.entry.take() {
            Some(e) => e.conn,
            // Unreachable: `entry` is only taken by this method and by drop.
            None => unreachable_entry(),
        }
    }

    /// Closes the connection instead of returning it (a ping failed or did not answer),
    /// counted as broken.
    pub(crate) fn close_broken(self) {
        let counters = Arc::clone(&self.cache.counters);
        let mut conn = self.into_sqlx();
        conn.close_on_drop();
        PoolCounters::inc(&counters.closed_broken);
    }

    fn conn(&self) -> &PoolConnection<DB> {
        match &self.entry {
            Some(e) => &e.conn,
            None => unreachable_entry(),
        }
    }

    fn conn_mut(&mut self) -> &mut PoolConnection<DB> {
        match &mut self.entry {
            Some(e) => &mut e.conn,
            None => unreachable_entry(),
        }
    }
}

#[cold]
fn unreachable_entry() -> ! {
    unreachable!("a PooledConnection holds its connection until it is consumed or dropped")
}

impl<DB: Database> std::ops::Deref for PooledConnection<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        self.conn()
    }
}

impl<DB: Database> std::ops::DerefMut for PooledConnection<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn_mut()
    }
}

impl<DB: Database> AsMut<DB::Connection> for PooledConnection<DB> {
    fn as_mut(&mut self) -> &mut DB::Connection {
        self.conn_mut()
    }
}

impl<DB: Database> std::fmt::Debug for PooledConnection<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("database", &DB::NAME)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Drop for PooledConnection<DB> {
    fn drop(&mut self) {
        let Some(mut entry) = self.entry.take() else {
            return;
        };
        // Work written by the caller but not sent yet: a ROLLBACK queued by a dropped
        // transaction.
        let queued = entry.conn.should_flush();
        // Polled once: no I/O when nothing is pending.
        match entry.conn.flush().now_or_never() {
            Some(Ok(())) => return self.cache.put(entry),
            Some(Err(_)) => {
                entry.conn.close_on_drop();
                PoolCounters::inc(&self.cache.counters.closed_broken);
            }
            // The ROLLBACK is on its way; sqlx's release waits for its answer in the
            // background before the connection is handed out again.
            None if queued => drop(entry),
            // A reply still outstanding: an operation was cancelled mid-flight (a
            // `pg_sleep` given up by a timeout, say). The server runs that query to its
            // end whatever the client does, so the session exists until then.
            None => return drain(entry, Arc::clone(&self.cache)),
        }
        // Gone to the sqlx pool, or closed: a waiter may borrow now.
        self.cache.freed.notify_waiters();
    }
}

/// Waits in the background for the reply a cancelled operation left outstanding (a
/// ping waits for it first), holding the connection, and so its place in the budget, all
/// that time; then releases it to the sqlx pool, or closes it if the wait failed.
///
/// Not left to sqlx's release: its release hooks run before its ping, and a hook that
/// closes the connection (a clear, the lifetime, `max_idle_conns`) would close the socket
/// while the server still runs the query, freeing the place for a new session while the
/// old one is still on the server (seen under load: 6 sessions for a budget of 4).
pub(super) fn drain<DB: Database>(mut entry: Entry<DB>, cache: Arc<Cache<DB>>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime (dropped at shutdown): sqlx's release is all there is.
        drop(entry);
        return;
    };
    runtime.spawn(async move {
        if entry.conn.ping().await.is_err() {
            entry.conn.close_on_drop();
            PoolCounters::inc(&cache.counters.closed_broken);
        }
        drop(entry);
        cache.freed.notify_waiters();
    });
}

/// A transaction on a [`PooledConnection`]: what `Connection::begin` returns. Dereferences
/// to the driver's connection (`&mut *tx` is an executor), like `sqlx::Transaction`.
///
/// Dropped without [`commit`](Self::commit) or [`rollback`](Self::rollback), it rolls
/// back: the ROLLBACK is written to the server at once, and the connection goes back
/// through the sqlx pool, which waits for its answer before anyone else gets it.
pub struct Transaction<DB: Database> {
    conn: PooledConnection<DB>,
    open: bool,
}

impl<DB: Database> Transaction<DB> {
    /// Begins a transaction on `conn`.
    pub async fn begin(mut conn: PooledConnection<DB>) -> Result<Self, sqlx::Error> {
        <DB::TransactionManager as sqlx_core::transaction::TransactionManager>::begin(
            &mut conn, None,
        )
        .await?;
        Ok(Transaction { conn, open: true })
    }

    /// Commits, and returns the connection to the pool.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        <DB::TransactionManager as sqlx_core::transaction::TransactionManager>::commit(
            &mut self.conn,
        )
        .await?;
        self.open = false;
        Ok(())
    }

    /// Rolls back, and returns the connection to the pool.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        <DB::TransactionManager as sqlx_core::transaction::TransactionManager>::rollback(
            &mut self.conn,
        )
        .await?;
        self.open = false;
        Ok(())
    }
}

impl<DB: Database> std::ops::Deref for Transaction<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> std::ops::DerefMut for Transaction<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> AsMut<DB::Connection> for Transaction<DB> {
    fn as_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> std::fmt::Debug for Transaction<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("database", &DB::NAME)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Drop for Transaction<DB> {
    fn drop(&mut self) {
        if self.open {
            // Queues the ROLLBACK; the connection's drop (next) writes it.
            <DB::TransactionManager as sqlx_core::transaction::TransactionManager>::start_rollback(
                &mut self.conn,
            );
        }
    }
}
