//! # dbmanager
//!
//! Named database connections for a service, described once in YAML and reached anywhere
//! with `mgr.get("primary")`. Behind each name sits one pool; the typed accessors
//! ([`Connection::postgres`], [`Connection::mysql`], [`Connection::sqlite`]) hand out
//! views of it that share its connection budget.
//!
//! ```no_run
//! # async fn f() -> dbmanager::Result<()> {
//! let mgr = dbmanager::Manager::from_yaml_file("config.yaml")?;
//! mgr.connect().await?;
//! let primary = mgr.get("primary")?;        // cheap handle, clone freely
//! let pool = primary.postgres()?;           // the sqlx PgPool behind that name
//! sqlx::query("select 1").execute(&pool).await.ok();
//! mgr.close().await;                        // graceful
//! # Ok(()) }
//! ```
//!
//! Modules by role: [`config`] (YAML format and validation), [`Manager`] (the set of
//! connections), [`Connection`] (one name), [`events`], [`stats`], [`Error`]. Engines are
//! [`Provider`]s in the `dbmanager-providers` crate, one module per engine behind a cargo
//! feature, listed once in the [`Registry`]; a service registers its own the same way.
//! docs/architecture.md has the map.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod backoff;
pub mod config;
mod connection;
mod error;
pub mod events;
mod health;
#[cfg(feature = "http")]
pub mod http;
mod logging;
mod manager;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
mod pools;
mod registry;
mod spans;
pub mod stats;
mod supervisor;

pub use config::{Config, DbType, OnUnavailable};
#[cfg(feature = "mysql")]
pub use connection::MySqlDb;
#[cfg(feature = "postgres")]
pub use connection::PgDb;
#[cfg(feature = "sqlite")]
pub use connection::SqliteDb;
pub use connection::{Connection, Db};
pub use dbmanager_providers::credentials::{Credential, CredentialError, CredentialProvider};
pub use dbmanager_providers::fast::{PooledConnection, Transaction};
pub use dbmanager_providers::managed::{self, Connector, ManagedPool};
pub use dbmanager_providers::pool::{PoolContext, SqlPool};
pub use dbmanager_providers::provider::{self, EnginePool, OpenRequest, Provider, Rules};
pub use dbmanager_providers::{
    Classify, ErrorClass, ExposeSecret, ProviderError, SecretString, Secrets, classify,
};
pub use error::{Error, Result};
pub use events::{Event, EventKind, Subscriber};
pub use health::{Health, HealthState};
#[cfg(feature = "watch")]
pub use manager::{ConfigWatcher, WatchOutcome};
pub use manager::{KeyStats, KeyedPools, Manager, ReloadReport, Resolver};
pub use pools::SqlEngine;
pub use registry::Registry;
pub use stats::{CloseReason, ReplicaStats, View, ViewStats};

/// sqlx, re-exported so a service writes `dbmanager::sqlx::query(...)` with the version and
/// the database features dbmanager was built with (a second sqlx in the tree would not
/// share its pool types).
pub use sqlx;

/// prometheus-client, re-exported so a service builds its `Registry` with the version
/// [`Manager::register_metrics`] takes.
#[cfg(feature = "metrics")]
pub use prometheus_client;

/// axum, re-exported so a service merges [`http::router`] with the version it was built
/// with.
#[cfg(feature = "http")]
pub use axum;

/// The README's Rust snippets, compiled as doctests so they stay true (they use the
/// PostgreSQL engine and the HTTP router).
#[cfg(all(doctest, feature = "postgres", feature = "http"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// docs/guide.md's Rust snippets, compiled as doctests so they stay true.
#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../../docs/guide.md")]
pub struct GuideDoctests;

/// The MongoDB provider's types (the pool, its error classification) and the driver itself,
/// so a service uses the same `mongodb` version dbmanager was built with.
#[cfg(feature = "mongodb")]
pub use dbmanager_providers::mongo;
/// The SQL Server provider's types (the pooled client, its error classification) and
/// `tiberius` itself.
#[cfg(feature = "mssql")]
pub use dbmanager_providers::mssql;
#[cfg(feature = "mongodb")]
pub use mongodb;
#[cfg(feature = "mssql")]
pub use tiberius;

/// The SeaORM crate, re-exported so services use the version dbmanager was built with.
#[cfg(feature = "sea-orm")]
pub use sea_orm;

/// The diesel and diesel-async crates and the diesel view's pooled connection types.
#[cfg(feature = "diesel")]
pub mod diesel {
    pub use ::diesel as orm;
    pub use dbmanager_providers::diesel::PooledConnection;
    pub use dbmanager_providers::diesel::classify;
    #[cfg(feature = "mysql")]
    pub use dbmanager_providers::diesel::{AsyncMysqlConnection, MysqlConnector};
    #[cfg(feature = "postgres")]
    pub use dbmanager_providers::diesel::{AsyncPgConnection, PgConnector};
    #[cfg(feature = "sqlite")]
    pub use dbmanager_providers::diesel::{AsyncSqliteConnection, SqliteConnector};
    pub use diesel_async as r#async;

    /// A pooled diesel-async PostgreSQL connection (use it as `&mut conn`).
    #[cfg(feature = "postgres")]
    pub type PgConn = PooledConnection<PgConnector>;
    /// A pooled diesel-async MySQL connection (use it as `&mut conn`).
    #[cfg(feature = "mysql")]
    pub type MysqlConn = PooledConnection<MysqlConnector>;
    /// A pooled diesel-async SQLite connection (use it as `&mut conn`).
    #[cfg(feature = "sqlite")]
    pub type SqliteConn = PooledConnection<SqliteConnector>;
}
