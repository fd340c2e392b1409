//! Statistics for one connection and for the whole manager.

use crate::config::DbType;
use crate::connection::HealthState;
pub use dbmanager_providers::stats::PoolStats;

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
    /// Its pool (all zeros before `connect()`).
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
