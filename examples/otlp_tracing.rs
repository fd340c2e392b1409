//! The manager's spans exported over OTLP to a collector (feature `otlp`). Needs no database
//! server (embedded SQLite); a collector is optional: without one the spans are dropped
//! after the exporter's timeout.
//!
//! ```sh
//! # an OpenTelemetry Collector, Jaeger or Tempo listening for OTLP/HTTP on :4318
//! OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces \
//!   cargo run --example otlp_tracing --features otlp
//! ```
//!
//! Spans: `connect`, `acquire` (with `dbmanager.wait_seconds`), `begin`, `health_check`,
//! `retry`, `swap` and `drain`, each with `db.system.name`, `db.namespace` and
//! `dbmanager.connection` (docs/tracing.md).

use dbmanager::{Manager, otlp};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;

const CONFIG: &str = r#"
connections:
  cache:
    type: sqlite
    filepath: ":memory:"
    enable_tracing: true
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4318/v1/traces".to_owned());
    let provider = otlp::tracer_provider(&endpoint, "dbmanager-example")?;
    let subscriber = tracing_subscriber::registry()
        .with(otlp::layer(&provider))
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        );
    tracing::subscriber::set_global_default(subscriber)?;

    let mgr = Manager::from_yaml_str(CONFIG)?;
    mgr.connect().await?;
    let cache = mgr.get("cache")?;
    let mut tx = cache.begin::<sqlx::Sqlite>().await?;
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    cache.health_check().await?;
    let n: i64 = cache
        .retry(
            |mut conn: dbmanager::PooledConnection<sqlx::Sqlite>| async move {
                sqlx::query_scalar("SELECT count(*) FROM t")
                    .fetch_one(&mut *conn)
                    .await
            },
        )
        .await?;
    cache.reconnect().await?;
    mgr.close().await;
    println!("rows: {n}; spans sent to {endpoint}");
    provider.shutdown()?;
    Ok(())
}
