//! Typed accessors: each hands out the engine's own handle on the current pool. The ones
//! whose types exist only with an engine's feature are gated on it; the rest are generic.

use super::Connection;
use crate::config::DbType;
use crate::error::{Error, Result};
use crate::pools::SqlEngine;
use dbmanager_providers::managed::{Connector, ManagedPool, Object};
use dbmanager_providers::pool::SqlPool;
use std::any::Any;

impl Connection {
    /// The main pool of the current generation as type `P`, if the connection is of
    /// engine `expected` and its pool is a `P`.
    fn typed_pool<P: Any + Clone>(&self, expected: DbType) -> Result<P> {
        if self.kind() != expected {
            return Err(self.wrong_kind(expected));
        }
        self.pools()?
            .main_as::<P>()
            .cloned()
            .ok_or_else(|| self.wrong_kind(expected))
    }

    /// The managed pool for engine `DB`, or a [`Error::WrongKind`] error.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let pool = mgr.get("primary")?.pool::<sqlx::Postgres>()?;
    /// println!("{:?}", pool.stats());
    /// # Ok(()) }
    /// ```
    pub fn pool<DB: SqlEngine>(&self) -> Result<SqlPool<DB>> {
        self.typed_pool::<SqlPool<DB>>(DB::TYPE)
    }

    /// The sqlx `PgPool` behind this name. It shares this connection's pool, limits and
    /// `close()`; queries run on it directly are not counted in `wait_*` stats and do not
    /// wait out outages. Call it per use rather than keeping the pool: after a
    /// [`reconnect`](Self::reconnect) the old one is closed once drained.
    #[cfg(feature = "postgres")]
    pub fn postgres(&self) -> Result<sqlx::PgPool> {
        Ok(self.pool::<sqlx::Postgres>()?.sqlx().clone())
    }

    /// The sqlx `MySqlPool` behind this name (MySQL and MariaDB). See [`Self::postgres`].
    #[cfg(feature = "mysql")]
    pub fn mysql(&self) -> Result<sqlx::MySqlPool> {
        Ok(self.pool::<sqlx::MySql>()?.sqlx().clone())
    }

    /// The sqlx `SqlitePool` behind this name. See [`Self::postgres`].
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&self) -> Result<sqlx::SqlitePool> {
        Ok(self.pool::<sqlx::Sqlite>()?.sqlx().clone())
    }

    /// The MongoDB client behind this name (cheap to clone; it shares this connection's
    /// pool). The driver waits for a usable server up to `acquire_timeout` by itself; call
    /// [`available`](Self::available) first for the `on_unavailable` policy. Call it per use
    /// rather than keeping the client: after a [`reconnect`](Self::reconnect) the old one is
    /// shut down once drained.
    #[cfg(feature = "mongodb")]
    pub fn mongo(&self) -> Result<mongodb::Client> {
        Ok(self.mongo_pool()?.client().clone())
    }

    /// A handle to this connection's configured `database` (or the one the DSN names).
    #[cfg(feature = "mongodb")]
    pub fn mongo_database(&self) -> Result<mongodb::Database> {
        self.mongo_pool()?
            .database()
            .ok_or_else(|| Error::NoDatabase {
                name: self.name().to_owned(),
            })
    }

    #[cfg(feature = "mongodb")]
    fn mongo_pool(&self) -> Result<dbmanager_providers::mongo::MongoPool> {
        self.typed_pool(DbType::MongoDb)
    }

    /// Checks out a pooled SQL Server connection (it dereferences to
    /// [`tiberius::Client`]); dropping it returns it. Follows the outage policy and counts
    /// the wait like [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// let mut client = mgr.get("legacy")?.mssql().await?;
    /// let row = client.query("SELECT 1", &[]).await.unwrap().into_row().await.unwrap();
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "mssql")]
    pub async fn mssql(&self) -> Result<dbmanager_providers::mssql::PooledClient> {
        use dbmanager_providers::mssql::MssqlPool;
        if self.kind() != DbType::MsSql {
            return Err(self.wrong_kind(DbType::MsSql));
        }
        self.checkout_from(
            |set| set.main_as::<MssqlPool>(),
            || self.wrong_kind(DbType::MsSql),
        )
        .await
    }

    /// Checks out a connection of a pool built on a [`Connector`] (a provider of your
    /// own, see `examples/custom_provider.rs`), through the outage policy and counting the
    /// wait like [`acquire`](Self::acquire). Dropping it returns it to the pool. Fails with
    /// [`Error::WrongPool`] if this connection's pool is not a `ManagedPool<K>`.
    pub async fn managed<K: Connector>(&self) -> Result<Object<K>> {
        let mismatch = || Error::WrongPool {
            name: self.name().to_owned(),
            kind: self.kind(),
            requested: std::any::type_name::<ManagedPool<K>>(),
        };
        self.checkout_from(|set| set.main_as::<ManagedPool<K>>(), mismatch)
            .await
    }
}
