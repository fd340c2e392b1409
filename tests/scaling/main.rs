//! Scale-out: PgBouncer, connections added and removed at runtime, config
//! reload, keyed pools and read replicas, each against real servers.

#[path = "../support/mod.rs"]
mod support;

mod config;
mod keyed;
mod pgbouncer;
mod reload;
mod replicas;
mod runtime;
