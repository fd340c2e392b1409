//! The SeaORM view (feature `sea-orm`): a `sea_orm::DatabaseConnection` built from the
//! connection's own sqlx pool, so it shares its connections, limits and statistics.

use super::View;
use crate::config::DefaultOrm;
use crate::connection::Connection;
use crate::error::Result;
use crate::pools::PoolSet;
use dbmanager_providers::pool::SqlPool;
use futures_util::future::BoxFuture;
use sea_orm::DatabaseConnection;

pub(super) struct SeaOrm;

impl View for SeaOrm {
    fn orm(&self) -> DefaultOrm {
        DefaultOrm::SeaOrm
    }

    fn prepare<'a>(
        &'a self,
        conn: &'a Connection,
        set: &'a PoolSet,
        _eager: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { conn.sea_orm_of(set).map(drop) })
    }
}

/// The SeaORM connection over a sqlx pool, if `set`'s main pool is one (the connector
/// differs per engine).
fn over(set: &PoolSet) -> Option<DatabaseConnection> {
    #[cfg(feature = "postgres")]
    if let Some(p) = set.main_as::<SqlPool<sqlx::Postgres>>() {
        return Some(sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(
            p.sqlx().clone(),
        ));
    }
    #[cfg(feature = "mysql")]
    if let Some(p) = set.main_as::<SqlPool<sqlx::MySql>>() {
        return Some(sea_orm::SqlxMySqlConnector::from_sqlx_mysql_pool(
            p.sqlx().clone(),
        ));
    }
    #[cfg(feature = "sqlite")]
    if let Some(p) = set.main_as::<SqlPool<sqlx::Sqlite>>() {
        return Some(sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(
            p.sqlx().clone(),
        ));
    }
    None
}

impl Connection {
    /// A SeaORM connection over this connection's sqlx pool: the same connections, limits
    /// and stats as [`postgres`](Self::postgres) & co. (SeaORM checks connections out of
    /// that pool itself). Cheap; created at connect with `default_orm: sea_orm`, else on
    /// first call. Like the raw sqlx pool it does not wait out outages: call
    /// [`available`](Self::available) first for the `on_unavailable` policy. Call it per
    /// use rather than keeping it: after a [`reconnect`](Self::reconnect) the old one
    /// fails with a closed-pool error once drained.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// use dbmanager::sea_orm::ConnectionTrait;
    /// let db = mgr.get("primary")?.sea_orm()?;
    /// db.execute_unprepared("select 1").await.unwrap();
    /// # Ok(()) }
    /// ```
    pub fn sea_orm(&self) -> Result<DatabaseConnection> {
        self.check_view("SeaORM")?;
        let set = self.pools()?;
        self.sea_orm_of(&set)
    }

    fn sea_orm_of(&self, set: &PoolSet) -> Result<DatabaseConnection> {
        if let Some(db) = set
            .sea_orm
            .get()
            .and_then(|b| b.downcast_ref::<DatabaseConnection>())
        {
            return Ok(db.clone());
        }
        let db = over(set).ok_or_else(|| self.no_view("SeaORM"))?;
        let cached = set.sea_orm.get_or_init(|| Box::new(db));
        cached
            .downcast_ref::<DatabaseConnection>()
            .cloned()
            .ok_or_else(|| self.no_view("SeaORM"))
    }
}
