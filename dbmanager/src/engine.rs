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
