//! The integration tests, in one binary so that every dependency is linked once: one
//! module per area, each built when the features it needs are on (CI builds them all).
//! One area: `cargo test -p dbmanager --all-features --test integration -- pool::`.

mod support;

/// The line-protocol device of `examples/custom_provider.rs`, a provider of a service's
/// own (used by `custom_provider` and `metrics_engines`).
#[path = "../examples/line_device/mod.rs"]
mod line_device;

mod architecture;

#[cfg(feature = "cli")]
mod cli;
mod config;
mod custom_provider;
#[cfg(all(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod handle;
#[cfg(all(
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite",
    feature = "mongodb",
    feature = "mssql",
    feature = "cli"
))]
mod hardening;
#[cfg(all(feature = "postgres", feature = "sqlite", feature = "http"))]
mod http;
#[cfg(all(feature = "postgres", feature = "sqlite", feature = "metrics"))]
mod metrics;
#[cfg(all(
    feature = "postgres",
    feature = "mongodb",
    feature = "mssql",
    feature = "diesel",
    feature = "metrics"
))]
mod metrics_engines;
#[cfg(all(
    feature = "mongodb",
    feature = "mssql",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
mod mongodb;
#[cfg(all(feature = "mssql", feature = "postgres", feature = "mysql"))]
mod mssql;
#[cfg(all(feature = "mysql", feature = "sqlite"))]
mod mysql;
#[cfg(all(feature = "postgres", feature = "otlp"))]
mod otlp;
#[cfg(all(feature = "postgres", feature = "mysql", feature = "sea-orm"))]
mod pool;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod postgres;
#[cfg(all(
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite",
    feature = "http",
    feature = "cli"
))]
mod prometheus;
#[cfg(all(feature = "postgres", feature = "mysql"))]
mod resilience;
#[cfg(all(
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite",
    feature = "sea-orm",
    feature = "diesel",
    feature = "metrics",
    feature = "watch",
    feature = "cli"
))]
mod scaling;
#[cfg(all(
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite",
    feature = "cli"
))]
mod secrets;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod tracing;
#[cfg(all(
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite",
    feature = "mongodb",
    feature = "mssql",
    feature = "sea-orm",
    feature = "diesel"
))]
mod views;
