//! The pools behind a connection, one variant per compiled-in SQL engine, and the
//! [`SqlEngine`] trait that lets `Connection::acquire::<Postgres>()` pick the right one.

use crate::config::DbType;
use dbmanager_providers::pool::SqlPool;
use dbmanager_providers::stats::PoolStats;
use std::time::Duration;

/// The live pool of one connection. `pub` only because the sealed [`SqlEngine`] trait
/// names it; the module is private, so users cannot reach it.
#[derive(Debug, Clone)]
#[allow(unreachable_pub)]
pub enum Pools {
    #[cfg(feature = "postgres")]
    Postgres(SqlPool<sqlx::Postgres>),
    #[cfg(feature = "mysql")]
    MySql(SqlPool<sqlx::MySql>),
    #[cfg(feature = "sqlite")]
    Sqlite(SqlPool<sqlx::Sqlite>),
    #[cfg(feature = "mongodb")]
    Mongo(dbmanager_providers::mongo::MongoPool),
    #[cfg(feature = "mssql")]
    MsSql(dbmanager_providers::mssql::MssqlPool),
    /// Built without any engine: no pool can exist.
    #[cfg(not(any(
        feature = "postgres",
        feature = "mysql",
        feature = "sqlite",
        feature = "mongodb",
        feature = "mssql"
    )))]
    Never(std::convert::Infallible),
}

/// Runs `$body` with `$p` bound to the `SqlPool` whatever its engine.
macro_rules! with_pool {
    ($pools:expr, $p:ident => $body:expr) => {
        match $pools {
            #[cfg(feature = "postgres")]
            $crate::engine::Pools::Postgres($p) => $body,
            #[cfg(feature = "mysql")]
            $crate::engine::Pools::MySql($p) => $body,
            #[cfg(feature = "sqlite")]
            $crate::engine::Pools::Sqlite($p) => $body,
            #[cfg(feature = "mongodb")]
            $crate::engine::Pools::Mongo($p) => $body,
            #[cfg(feature = "mssql")]
            $crate::engine::Pools::MsSql($p) => $body,
            #[cfg(not(any(
                feature = "postgres",
                feature = "mysql",
                feature = "sqlite",
                feature = "mongodb",
                feature = "mssql"
            )))]
            $crate::engine::Pools::Never(never) => match *never {},
        }
    };
}

#[cfg_attr(
    not(any(
        feature = "postgres",
        feature = "mysql",
        feature = "sqlite",
        feature = "mongodb",
        feature = "mssql"
    )),
    allow(unused_variables)
)]
impl Pools {
    pub(crate) fn stats(&self) -> PoolStats {
        with_pool!(self, p => p.stats())
    }

    pub(crate) async fn ping(
        &self,
        timeout: Duration,
    ) -> Result<Duration, dbmanager_providers::ProviderError> {
        with_pool!(self, p => p.ping(timeout).await)
    }

    pub(crate) fn clear(&self) -> u32 {
        with_pool!(self, p => p.clear())
    }

    pub(crate) fn in_use(&self) -> u32 {
        with_pool!(self, p => p.in_use())
    }

    pub(crate) async fn close(&self, drain: Duration) -> bool {
        with_pool!(self, p => p.close(drain).await)
    }
}

mod sealed {
    pub trait Sealed {
        fn select(pools: &super::Pools) -> Option<&super::SqlPool<Self>>
        where
            Self: sqlx::Database;
    }
}

/// A SQL engine dbmanager can pool: [`sqlx::Postgres`], [`sqlx::MySql`] or
/// [`sqlx::Sqlite`] (each behind its feature). Sealed.
pub trait SqlEngine: sqlx::Database + sealed::Sealed {
    /// The `type` a connection must have to serve this engine.
    const TYPE: DbType;
}

#[cfg(feature = "postgres")]
impl SqlEngine for sqlx::Postgres {
    const TYPE: DbType = DbType::Postgres;
}
#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx::Postgres {
    fn select(pools: &Pools) -> Option<&SqlPool<Self>> {
        #[allow(unreachable_patterns)]
        match pools {
            Pools::Postgres(p) => Some(p),
            _ => None,
        }
    }
}

#[cfg(feature = "mysql")]
impl SqlEngine for sqlx::MySql {
    const TYPE: DbType = DbType::MySql;
}
#[cfg(feature = "mysql")]
impl sealed::Sealed for sqlx::MySql {
    fn select(pools: &Pools) -> Option<&SqlPool<Self>> {
        #[allow(unreachable_patterns)]
        match pools {
            Pools::MySql(p) => Some(p),
            _ => None,
        }
    }
}

#[cfg(feature = "sqlite")]
impl SqlEngine for sqlx::Sqlite {
    const TYPE: DbType = DbType::Sqlite;
}
#[cfg(feature = "sqlite")]
impl sealed::Sealed for sqlx::Sqlite {
    fn select(pools: &Pools) -> Option<&SqlPool<Self>> {
        #[allow(unreachable_patterns)]
        match pools {
            Pools::Sqlite(p) => Some(p),
            _ => None,
        }
    }
}

/// The diesel view's pool of one connection (feature `diesel`).
#[cfg(feature = "diesel")]
#[derive(Debug, Clone)]
#[allow(unreachable_pub)]
pub enum DieselPools {
    #[cfg(feature = "postgres")]
    Postgres(ManagedPool<diesel::PgConnector>),
    #[cfg(feature = "mysql")]
    MySql(ManagedPool<diesel::MysqlConnector>),
    #[cfg(feature = "sqlite")]
    Sqlite(ManagedPool<diesel::SqliteConnector>),
    /// Built without a SQL engine: no diesel pool can exist.
    #[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
    Never(std::convert::Infallible),
}

#[cfg(feature = "diesel")]
use dbmanager_providers::{diesel, managed::ManagedPool};

#[cfg(feature = "diesel")]
macro_rules! with_diesel {
    ($pools:expr, $p:ident => $body:expr) => {
        match $pools {
            #[cfg(feature = "postgres")]
            DieselPools::Postgres($p) => $body,
            #[cfg(feature = "mysql")]
            DieselPools::MySql($p) => $body,
            #[cfg(feature = "sqlite")]
            DieselPools::Sqlite($p) => $body,
            #[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
            DieselPools::Never(never) => match *never {},
        }
    };
}

#[cfg(feature = "diesel")]
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(unused_variables)
)]
impl DieselPools {
    pub(crate) fn stats(&self) -> PoolStats {
        with_diesel!(self, p => p.stats())
    }
    async fn ping(
        &self,
        timeout: Duration,
    ) -> Result<Duration, dbmanager_providers::ProviderError> {
        with_diesel!(self, p => p.ping(timeout).await)
    }
    fn clear(&self) -> u32 {
        with_diesel!(self, p => p.clear())
    }
    fn in_use(&self) -> u32 {
        with_diesel!(self, p => p.in_use())
    }
    async fn close(&self, drain: Duration) -> bool {
        with_diesel!(self, p => p.close(drain).await)
    }
    pub(crate) async fn close_now(&self) {
        self.close(Duration::ZERO).await;
    }
}

/// Everything behind one connection for one pool generation: the engine's pool (which the
/// sqlx and SeaORM views share) and, on SQL engines, the diesel view's pool once created. A
/// swap replaces the whole set.
#[derive(Debug)]
pub(crate) struct PoolSet {
    pub(crate) main: Pools,
    /// Created at connect with `default_orm: diesel`, else on first use.
    #[cfg(feature = "diesel")]
    pub(crate) diesel: tokio::sync::OnceCell<DieselPools>,
    /// Health checks go through the diesel pool (`default_orm: diesel`).
    #[cfg(feature = "diesel")]
    pub(crate) diesel_first: bool,
    /// The SQLite settings the main pool was opened with (the `:memory:` name is unique
    /// per open, and the diesel view must use the same one).
    #[cfg(feature = "sqlite")]
    pub(crate) sqlite: Option<dbmanager_providers::settings::SqliteSettings>,
    #[cfg(feature = "sea-orm")]
    pub(crate) sea_orm: std::sync::OnceLock<sea_orm::DatabaseConnection>,
}

impl PoolSet {
    pub(crate) fn new(main: Pools) -> Self {
        PoolSet {
            main,
            #[cfg(feature = "diesel")]
            diesel: tokio::sync::OnceCell::new(),
            #[cfg(feature = "diesel")]
            diesel_first: false,
            #[cfg(feature = "sqlite")]
            sqlite: None,
            #[cfg(feature = "sea-orm")]
            sea_orm: std::sync::OnceLock::new(),
        }
    }

    /// Per view: the sqlx pool (shared by the sqlx and SeaORM views), then the diesel pool
    /// if it was created.
    pub(crate) fn views(&self) -> Vec<(crate::stats::View, PoolStats)> {
        #[allow(unused_mut)]
        let mut out = vec![(crate::stats::View::Main, self.main.stats())];
        #[cfg(feature = "diesel")]
        if let Some(d) = self.diesel.get() {
            out.push((crate::stats::View::Diesel, d.stats()));
        }
        out
    }

    /// Every view's pool summed.
    pub(crate) fn stats(&self) -> PoolStats {
        self.views()
            .into_iter()
            .map(|(_, s)| s)
            .reduce(|a, b| a.merge(&b))
            .unwrap_or_default()
    }

    pub(crate) async fn ping(
        &self,
        timeout: Duration,
    ) -> Result<Duration, dbmanager_providers::ProviderError> {
        #[cfg(feature = "diesel")]
        if self.diesel_first
            && let Some(d) = self.diesel.get()
        {
            return d.ping(timeout).await;
        }
        self.main.ping(timeout).await
    }

    pub(crate) fn clear(&self) -> u32 {
        #[allow(unused_mut)]
        let mut closed = self.main.clear();
        #[cfg(feature = "diesel")]
        if let Some(d) = self.diesel.get() {
            closed += d.clear();
        }
        closed
    }

    pub(crate) fn in_use(&self) -> u32 {
        #[allow(unused_mut)]
        let mut n = self.main.in_use();
        #[cfg(feature = "diesel")]
        if let Some(d) = self.diesel.get() {
            n += d.in_use();
        }
        n
    }

    pub(crate) async fn close(&self, drain: Duration) -> bool {
        #[cfg(feature = "diesel")]
        {
            let (main, diesel) = tokio::join!(self.main.close(drain), async {
                match self.diesel.get() {
                    Some(d) => d.close(drain).await,
                    None => true,
                }
            });
            main && diesel
        }
        #[cfg(not(feature = "diesel"))]
        self.main.close(drain).await
    }
}
