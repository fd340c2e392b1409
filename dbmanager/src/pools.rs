//! What one pool generation of a connection holds, whatever its engine, and the
//! [`SqlEngine`] trait that lets `Connection::acquire::<Postgres>()` find its sqlx pool.

use crate::config::DbType;
use crate::stats::View;
use dbmanager_providers::settings::Endpoint;
use dbmanager_providers::stats::PoolStats;
use dbmanager_providers::{EnginePool, ProviderError};
use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

mod sealed {
    pub trait Sealed {}
}

/// A SQL engine dbmanager can pool with sqlx: [`sqlx::Postgres`], [`sqlx::MySql`] or
/// [`sqlx::Sqlite`] (each behind its feature). Sealed.
pub trait SqlEngine: sqlx::Database + sealed::Sealed {
    /// The `type` a connection must have to serve this engine.
    const TYPE: DbType;
}

/// Implements [`SqlEngine`] for a sqlx database type (the types differ per feature).
macro_rules! sql_engine {
    ($feature:literal, $db:ty, $kind:expr) => {
        #[cfg(feature = $feature)]
        impl sealed::Sealed for $db {}
        #[cfg(feature = $feature)]
        impl SqlEngine for $db {
            const TYPE: DbType = $kind;
        }
    };
}
sql_engine!("postgres", sqlx::Postgres, DbType::Postgres);
sql_engine!("mysql", sqlx::MySql, DbType::MySql);
sql_engine!("sqlite", sqlx::Sqlite, DbType::Sqlite);

/// A pool the checkout loop acquires from within a time limit: what every typed
/// checkout (`acquire`, `mssql`, `managed`, the diesel view) has in common.
pub(crate) trait TimedAcquire: Clone + 'static {
    /// What an acquire hands out.
    type Conn;
    /// Acquires within `limit`.
    fn acquire_within(
        &self,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<Self::Conn, ProviderError>>;
}

impl<DB: sqlx::Database> TimedAcquire for dbmanager_providers::pool::SqlPool<DB> {
    type Conn = dbmanager_providers::fast::PooledConnection<DB>;
    fn acquire_within(
        &self,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<Self::Conn, ProviderError>> {
        dbmanager_providers::pool::SqlPool::acquire_within(self, limit)
    }
}

impl<K: dbmanager_providers::managed::Connector> TimedAcquire
    for dbmanager_providers::managed::ManagedPool<K>
{
    type Conn = dbmanager_providers::managed::Object<K>;
    fn acquire_within(
        &self,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<Self::Conn, ProviderError>> {
        dbmanager_providers::managed::ManagedPool::acquire_within(self, limit)
    }
}

#[cfg(feature = "mssql")]
impl TimedAcquire for dbmanager_providers::mssql::MssqlPool {
    type Conn = dbmanager_providers::mssql::PooledClient;
    fn acquire_within(
        &self,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<Self::Conn, ProviderError>> {
        dbmanager_providers::mssql::MssqlPool::acquire_within(self, limit)
    }
}

/// Everything behind one connection for one pool generation: the engine's pool (which the
/// sqlx and SeaORM views share) and, on SQL engines, the diesel view's pool once created.
/// A swap replaces the whole set. View types are erased here so this module knows no
/// view; each view module downcasts its own slot.
#[derive(Debug)]
pub(crate) struct PoolSet {
    pub(crate) main: Arc<dyn EnginePool>,
    /// The endpoint this generation opened (an in-memory SQLite name is unique to it, and
    /// the diesel view must open the same database).
    #[cfg_attr(not(feature = "diesel"), allow(dead_code))]
    pub(crate) endpoint: Endpoint,
    /// The diesel view's pool: created at connect with `default_orm: diesel`, else on
    /// first use.
    pub(crate) diesel: tokio::sync::OnceCell<Arc<dyn EnginePool>>,
    /// Health checks go through the diesel pool (`default_orm: diesel`).
    pub(crate) diesel_first: bool,
    /// The SeaORM handle over `main`, once made.
    #[cfg_attr(not(feature = "sea-orm"), allow(dead_code))]
    pub(crate) sea_orm: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl PoolSet {
    pub(crate) fn new(main: Arc<dyn EnginePool>, endpoint: Endpoint, diesel_first: bool) -> Self {
        PoolSet {
            main,
            endpoint,
            diesel: tokio::sync::OnceCell::new(),
            diesel_first,
            sea_orm: OnceLock::new(),
        }
    }

    /// The main pool as its concrete type, if it is one.
    pub(crate) fn main_as<P: Any>(&self) -> Option<&P> {
        self.main.as_any().downcast_ref::<P>()
    }

    /// Every pool of this generation: the main one, then the diesel one if created.
    fn all(&self) -> impl Iterator<Item = &Arc<dyn EnginePool>> {
        std::iter::once(&self.main).chain(self.diesel.get())
    }

    /// Per view: the main pool (shared by the sqlx and SeaORM views), then the diesel pool
    /// if it was created.
    pub(crate) fn views(&self) -> Vec<(View, PoolStats)> {
        let mut out = vec![(View::Main, self.main.stats())];
        if let Some(d) = self.diesel.get() {
            out.push((View::Diesel, d.stats()));
        }
        out
    }

    /// Every view's pool summed.
    pub(crate) fn stats(&self) -> PoolStats {
        self.all()
            .map(|p| p.stats())
            .reduce(|a, b| a.merge(&b))
            .unwrap_or_default()
    }

    pub(crate) async fn ping(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        match self.diesel.get() {
            Some(d) if self.diesel_first => d.ping(timeout).await,
            _ => self.main.ping(timeout).await,
        }
    }

    /// As [`ping`](Self::ping), for a connection that is down (see
    /// `EnginePool::reconnect`).
    pub(crate) async fn reconnect(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        match self.diesel.get() {
            Some(d) if self.diesel_first => d.reconnect(timeout).await,
            _ => self.main.reconnect(timeout).await,
        }
    }

    pub(crate) fn clear(&self) -> u32 {
        self.all().map(|p| p.clear()).sum()
    }

    pub(crate) fn in_use(&self) -> u32 {
        self.all().map(|p| p.in_use()).sum()
    }

    /// Tells every pool of this generation that it was replaced.
    pub(crate) fn retire(&self) {
        self.all().for_each(|p| p.retire());
    }

    pub(crate) async fn close(&self, drain: Duration) -> bool {
        let closing = self.all().map(|p| p.close(drain));
        futures_util::future::join_all(closing)
            .await
            .into_iter()
            .all(|ok| ok)
    }
}
