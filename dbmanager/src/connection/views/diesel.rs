//! The diesel-async view (feature `diesel`): pooled diesel-async connections in a pool of
//! their own, sized `diesel_conns` out of the connection's `max_open_conns`.

use super::View;
use crate::config::{DbType, DefaultOrm};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::pools::PoolSet;
use dbmanager_providers::managed::{Connector, ManagedPool, Object};
use dbmanager_providers::pool::PoolContext;
use dbmanager_providers::settings::{Endpoint, PoolSettings};
use dbmanager_providers::{EnginePool, ProviderError};
use futures_util::future::BoxFuture;
use std::sync::Arc;

pub(super) struct Diesel;

impl View for Diesel {
    fn orm(&self) -> DefaultOrm {
        DefaultOrm::Diesel
    }

    fn prepare<'a>(
        &'a self,
        conn: &'a Connection,
        set: &'a PoolSet,
        eager: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let pool = conn.build_diesel(set, eager).await?;
            let _ = set.diesel.set(pool);
            Ok(())
        })
    }
}

/// Opens the diesel pool of `endpoint`'s engine (the connector differs per engine).
async fn open(
    kind: DbType,
    endpoint: &Endpoint,
    settings: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Option<std::result::Result<Arc<dyn EnginePool>, ProviderError>> {
    use dbmanager_providers::diesel as d;
    fn erase<P: EnginePool>(
        r: std::result::Result<P, ProviderError>,
    ) -> std::result::Result<Arc<dyn EnginePool>, ProviderError> {
        r.map(|p| Arc::new(p) as Arc<dyn EnginePool>)
    }
    let _ = (&settings, eager, &ctx);
    match (kind, endpoint) {
        #[cfg(feature = "postgres")]
        (DbType::Postgres, Endpoint::Server(s)) => {
            Some(erase(d::open_postgres(s, settings, eager, ctx).await))
        }
        #[cfg(feature = "mysql")]
        (DbType::MySql, Endpoint::Server(s)) => {
            Some(erase(d::open_mysql(s, settings, eager, ctx).await))
        }
        #[cfg(feature = "sqlite")]
        (DbType::Sqlite, Endpoint::Sqlite(s)) => {
            Some(erase(d::open_sqlite(s, settings, eager, ctx).await))
        }
        _ => None,
    }
}

impl Connection {
    /// The diesel pool's settings: `diesel_conns` of the budget.
    fn diesel_settings(&self) -> PoolSettings {
        let c = self.config();
        let mut p = c.pool.clone();
        p.max_open = c.diesel_conns;
        p.max_idle = p.max_idle.min(p.max_open);
        p.min_idle = if c.default_orm == DefaultOrm::Diesel {
            p.min_idle.min(p.max_idle)
        } else {
            0
        };
        p
    }

    async fn build_diesel(&self, set: &PoolSet, eager: bool) -> Result<Arc<dyn EnginePool>> {
        let c = self.config();
        if c.diesel_conns == 0 {
            return Err(Error::NoBudget {
                name: self.name().to_owned(),
            });
        }
        let ctx = self.view_ctx().clone();
        match open(c.kind, &set.endpoint, self.diesel_settings(), eager, ctx).await {
            Some(r) => r.map_err(|source| self.connect_failed(source)),
            None => Err(self.no_view("diesel")),
        }
    }

    /// The diesel pool of the current generation, created on first use.
    async fn diesel_pool(&self, set: &PoolSet) -> Result<Arc<dyn EnginePool>> {
        let pool = set
            .diesel
            .get_or_try_init(|| self.build_diesel(set, false))
            .await?
            .clone();
        if self.is_closed() {
            // `close()` may have run before the pool existed.
            pool.close(std::time::Duration::ZERO).await;
            return Err(self.closed());
        }
        Ok(pool)
    }

    /// Checks out a diesel-async connection of connector `K` for engine `expected`, through
    /// the outage policy, counting the wait (as [`acquire`](Self::acquire) does). On a
    /// replica that is down, the primary's (`fallback: primary`).
    async fn diesel_checkout<K: Connector>(&self, expected: DbType) -> Result<Object<K>> {
        match self.diesel_checkout_here::<K>(expected).await {
            Err(e) => match self.fallback_for(&e) {
                Some(primary) => primary.diesel_checkout_here::<K>(expected).await,
                None => Err(e),
            },
            ok => ok,
        }
    }

    /// [`diesel_checkout`](Self::diesel_checkout) on this connection's own diesel pool.
    async fn diesel_checkout_here<K: Connector>(&self, expected: DbType) -> Result<Object<K>> {
        self.check_view("diesel")?;
        if self.kind() != expected {
            return Err(self.wrong_kind(expected));
        }
        // A swap between creating the pool and checking out makes `get` find a set without
        // a diesel pool: create it on the new set and go again.
        for _ in 0..3 {
            // Create the pool first (no connect), so the checkout below can borrow it.
            let set = self.pools()?;
            self.diesel_pool(&set).await?;
            let missing = std::sync::atomic::AtomicBool::new(false);
            let got = self
                .checkout_from_here(
                    |set| set.diesel.get()?.as_any().downcast_ref::<ManagedPool<K>>(),
                    || {
                        missing.store(true, std::sync::atomic::Ordering::Relaxed);
                        self.no_view("diesel")
                    },
                )
                .await;
            if !missing.load(std::sync::atomic::Ordering::Relaxed) {
                return got;
            }
        }
        Err(self.no_view("diesel"))
    }

    /// Checks out a pooled diesel-async PostgreSQL connection (use it as `&mut conn` with
    /// diesel-async's `RunQueryDsl`; dropping it returns it). The diesel view opens its own
    /// sockets within `diesel_conns` of the budget; it follows the outage policy and counts
    /// its waits as [`acquire`](Self::acquire) does.
    ///
    /// ```no_run
    /// # async fn f(mgr: dbmanager::Manager) -> dbmanager::Result<()> {
    /// use dbmanager::diesel::r#async::RunQueryDsl;
    /// let mut conn = mgr.get("primary")?.diesel_postgres().await?;
    /// dbmanager::diesel::orm::sql_query("select 1").execute(&mut conn).await.unwrap();
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    pub async fn diesel_postgres(&self) -> Result<crate::diesel::PgConn> {
        self.diesel_checkout(DbType::Postgres).await
    }

    /// As [`diesel_postgres`](Self::diesel_postgres), for MySQL and MariaDB.
    #[cfg(feature = "mysql")]
    pub async fn diesel_mysql(&self) -> Result<crate::diesel::MysqlConn> {
        self.diesel_checkout(DbType::MySql).await
    }

    /// As [`diesel_postgres`](Self::diesel_postgres), for SQLite (diesel's SQLite on a
    /// blocking thread, on the same database as the sqlx pool, `:memory:` included).
    #[cfg(feature = "sqlite")]
    pub async fn diesel_sqlite(&self) -> Result<crate::diesel::SqliteConn> {
        self.diesel_checkout(DbType::Sqlite).await
    }
}
