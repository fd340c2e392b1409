//! Statistics for one connection and for the whole manager.

use crate::config::DbType;
use crate::health::HealthState;
pub use dbmanager_providers::stats::{CloseReason, PoolStats};
use std::time::Duration;

/// One named connection's statistics.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// The connection's name.
    pub name: String,
    /// Its engine.
    pub kind: DbType,
    /// Its last known health.
    pub health: HealthState,
    /// The error of the last failed health check while not healthy (redacted: no
    /// password or DSN), as `Health::last_error`.
    pub last_error: Option<String>,
    /// Its pools, every view summed (all zeros before `connect()`). `max_open` is the
    /// connection's whole budget, `max_open_conns`.
    pub pool: PoolStats,
    /// Per pool: [`View::Main`] (the sqlx pool, which the sqlx and SeaORM views share; or
    /// the MongoDB/SQL Server pool), then [`View::Diesel`] once that view was created.
    pub views: Vec<ViewStats>,
    /// Its read replicas (`replicas`), each with its own health and pool.
    pub replicas: Vec<ReplicaStats>,
}

/// A replica's state as `reader()` and the stats see it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// Its name.
    pub name: String,
    /// Its weight.
    pub weight: u32,
    /// Its replication lag at the last health check (`None` before the first one, or
    /// without `max_replica_lag`).
    pub lag: Option<Duration>,
    /// Whether it is past `max_replica_lag` (and so skipped).
    pub lagging: bool,
    /// Reads `reader()` has sent it.
    pub selected_total: u64,
    /// Its connection's statistics (health, pool).
    pub connection: ConnectionStats,
}

/// Which pool of a connection a [`ViewStats`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum View {
    /// The engine's own pool: on SQL engines the sqlx pool, shared by the sqlx and SeaORM
    /// views (SeaORM runs on the same sqlx pool, so it has no pool of its own).
    Main,
    /// The diesel-async view's pool.
    Diesel,
}

impl View {
    /// `main` or `diesel`.
    pub fn as_str(self) -> &'static str {
        match self {
            View::Main => "main",
            View::Diesel => "diesel",
        }
    }
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ViewStats {
    pub(crate) fn new(view: View, pool: PoolStats) -> Self {
        ViewStats { view, pool }
    }
}

/// One pool of a connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ViewStats {
    /// Which pool.
    pub view: View,
    /// Its statistics.
    pub pool: PoolStats,
}

/// Totals over every connection of a manager.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ManagerStats {
    /// Number of configured connections.
    pub total_connections: usize,
    /// How many are healthy.
    pub healthy: usize,
    /// How many are unhealthy.
    pub unhealthy: usize,
    /// Per connection, in configuration order.
    pub connections: Vec<ConnectionStats>,
}
