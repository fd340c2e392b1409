//! [`Db`]: the handle a service keeps for one SQL connection. Typed by engine, cheap to
//! clone, and bound to the connection rather than to one of its pools, so it keeps working
//! across `reconnect()`, pool swaps and reloads; usable directly as a sqlx executor.

use super::Connection;
use crate::error::{Error, Result};
use crate::pools::SqlEngine;
use dbmanager_providers::fast::{PooledConnection, Transaction};
use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use std::future::Future;
use std::marker::PhantomData;

/// A storable handle to one SQL connection: what a service keeps in its state, the way a
/// sqlx user keeps a `PgPool`. Get it once (`mgr.postgres("primary")?`); it stays valid
/// while the connection exists, whatever happens to its pools (`reconnect()`, a reload
/// that changes its settings, a server restart).
///
/// `&Db` is a sqlx executor: each query checks out a connection through the fast path,
/// with the outage policy (`on_unavailable`), and returns it when done. For several
/// statements on one connection, [`acquire`](Self::acquire) or [`begin`](Self::begin).
/// Errors are `sqlx::Error`s, as from a pool; `?` turns them into [`Error`] (a checkout
/// failure inside a query comes back as the [`Error`] it was).
///
/// ```no_run
/// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
/// let db: dbmanager::PgDb = mgr.postgres("primary")?;
/// let one: i32 = sqlx::query_scalar("select 1").fetch_one(&db).await?;
/// let mut tx = db.begin().await?;
/// sqlx::query("select 2").execute(&mut *tx).await?;
/// tx.commit().await?;
/// let n: i64 = sqlx::query_scalar("select count(*) from pg_class")
///     .fetch_one(&db.reader()?)
///     .await?;
/// # let _ = (one, n); Ok(()) }
/// ```
pub struct Db<DB: SqlEngine> {
    conn: Connection,
    _db: PhantomData<fn() -> DB>,
}

/// A handle to a PostgreSQL connection.
#[cfg(feature = "postgres")]
pub type PgDb = Db<sqlx::Postgres>;
/// A handle to a MySQL or MariaDB connection.
#[cfg(feature = "mysql")]
pub type MySqlDb = Db<sqlx::MySql>;
/// A handle to a SQLite connection.
#[cfg(feature = "sqlite")]
pub type SqliteDb = Db<sqlx::Sqlite>;

impl<DB: SqlEngine> Clone for Db<DB> {
    fn clone(&self) -> Self {
        Db {
            conn: self.conn.clone(),
            _db: PhantomData,
        }
    }
}

impl<DB: SqlEngine> std::fmt::Debug for Db<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("name", &self.conn.name())
            .field("kind", &self.conn.kind())
            .finish()
    }
}

impl Connection {
    /// This connection's storable handle for engine `DB` ([`Db`]); fails with
    /// [`Error::WrongKind`] when the connection is another engine.
    pub fn db<DB: SqlEngine>(&self) -> Result<Db<DB>> {
        if self.kind() != DB::TYPE {
            return Err(self.wrong_kind(DB::TYPE));
        }
        Ok(Db {
            conn: self.clone(),
            _db: PhantomData,
        })
    }
}

impl<DB: SqlEngine> Db<DB> {
    /// The connection behind the handle (its name, stats, health, events, other views).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        self.conn.name()
    }

    /// Checks out one connection ([`Connection::acquire`]); `&mut *conn` is the driver's
    /// connection (`&mut PgConnection`), for helpers that take one.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<PooledConnection<DB>>> + Send + '_ {
        self.conn.acquire_from::<DB>(std::panic::Location::caller())
    }

    /// Begins a transaction on a connection of its own ([`Connection::begin`]); `&mut *tx`
    /// is the driver's connection, for helpers that take `&mut PgConnection`.
    #[track_caller]
    pub fn begin(&self) -> impl Future<Output = Result<Transaction<DB>>> + Send + '_ {
        self.conn.begin_from::<DB>(std::panic::Location::caller())
    }

    /// A handle for reads: a healthy replica within `max_replica_lag`, or the connection
    /// itself ([`Connection::reader`]). Pick one per read (or per request): the choice
    /// follows the replicas' health.
    pub fn reader(&self) -> Result<Db<DB>> {
        self.conn.reader()?.db::<DB>()
    }

    /// Runs `op` on a checked-out connection, retrying only when the failure happened
    /// before the statement could have run ([`Connection::retry`]).
    pub async fn retry<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut(PooledConnection<DB>) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        self.conn.retry::<DB, T, F, Fut>(op).await
    }

    /// Runs an idempotent `op`, retrying after any connection-level failure
    /// ([`Connection::retry_idempotent`]).
    pub async fn retry_idempotent<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut(PooledConnection<DB>) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        self.conn.retry_idempotent::<DB, T, F, Fut>(op).await
    }
}

/// A checkout failure inside a query, carried through sqlx's error type (and given back
/// by `From<sqlx::Error> for Error`).
fn checkout_failed(e: Error) -> sqlx::Error {
    sqlx::Error::AnyDriverError(Box::new(e))
}

impl<'h, DB: SqlEngine> sqlx::Executor<'h> for &'h Db<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, std::result::Result<sqlx::Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'h: 'e,
        E: 'q + sqlx::Execute<'q, DB>,
    {
        Box::pin(async_stream::try_stream! {
            let mut conn = self.acquire().await.map_err(checkout_failed)?;
            let mut rows = conn.fetch_many(query);
            while let Some(row) = rows.try_next().await? {
                yield row;
            }
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, std::result::Result<Option<DB::Row>, sqlx::Error>>
    where
        'h: 'e,
        E: 'q + sqlx::Execute<'q, DB>,
    {
        Box::pin(async move {
            let mut conn = self.acquire().await.map_err(checkout_failed)?;
            conn.fetch_optional(query).await
        })
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, std::result::Result<DB::Statement, sqlx::Error>>
    where
        'h: 'e,
    {
        Box::pin(async move {
            let mut conn = self.acquire().await.map_err(checkout_failed)?;
            conn.prepare_with(sql, parameters).await
        })
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, std::result::Result<sqlx::Describe<DB>, sqlx::Error>>
    where
        'h: 'e,
    {
        Box::pin(async move {
            let mut conn = self.acquire().await.map_err(checkout_failed)?;
            conn.describe(sql).await
        })
    }
}
