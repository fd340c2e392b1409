//! Scale-out: PgBouncer, connections added and removed at runtime, config
//! reload, keyed pools and read replicas, each against real servers.

mod config;
mod failover;
mod keyed;
mod mariadb_replica;
mod patroni;
mod pgbouncer;
mod reload;
mod replicas;
mod runtime;
