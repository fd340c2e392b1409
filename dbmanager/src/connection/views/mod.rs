//! The ORM views of a SQL connection, each in its own module behind its feature:
//! `sea_orm` (a `sea_orm::DatabaseConnection` over the connection's sqlx pool) and
//! `diesel` (pooled diesel-async connections within `diesel_conns` of the budget).
//! docs/views.md explains the budget split.
//!
//! A view plugs into the connection's lifecycle through [`View`]: the connection calls
//! [`prepare`] on every new pool generation, and the view whose `default_orm` it is
//! creates itself eagerly.

use crate::config::DefaultOrm;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::pools::PoolSet;
use futures_util::future::BoxFuture;

#[cfg(feature = "diesel")]
mod diesel;
#[cfg(feature = "sea-orm")]
mod sea_orm;

/// A view's part in a pool generation's life.
trait View: Sync {
    /// The `default_orm` that makes it eager.
    fn orm(&self) -> DefaultOrm;
    /// Creates the view on a new pool generation (connecting it with `eager`).
    fn prepare<'a>(
        &'a self,
        conn: &'a Connection,
        set: &'a PoolSet,
        eager: bool,
    ) -> BoxFuture<'a, Result<()>>;
}

/// The views compiled in.
static VIEWS: &[&dyn View] = &[
    #[cfg(feature = "sea-orm")]
    &sea_orm::SeaOrm,
    #[cfg(feature = "diesel")]
    &diesel::Diesel,
];

/// Creates, on a new pool generation, the view `default_orm` names.
pub(crate) async fn prepare(conn: &Connection, set: &PoolSet, eager: bool) -> Result<()> {
    let orm = conn.config().default_orm;
    for view in VIEWS.iter().filter(|v| v.orm() == orm) {
        view.prepare(conn, set, eager).await?;
    }
    Ok(())
}

impl Connection {
    /// Fails with [`Error::NoView`] unless this engine serves the ORM views.
    #[cfg_attr(not(any(feature = "sea-orm", feature = "diesel")), allow(dead_code))]
    fn check_view(&self, view: &'static str) -> Result<()> {
        if self.config().rules().sql_views {
            Ok(())
        } else {
            Err(self.no_view(view))
        }
    }

    #[cfg_attr(not(any(feature = "sea-orm", feature = "diesel")), allow(dead_code))]
    fn no_view(&self, view: &'static str) -> Error {
        Error::NoView {
            name: self.name().to_owned(),
            view,
            kind: self.kind(),
        }
    }
}
