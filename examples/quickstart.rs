//! Quickstart: a manager with one embedded SQLite connection. Needs no database server.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Creates a table, writes and reads rows through the connection's handle, prints the
//! stats. sqlx comes through `dbmanager::sqlx`, so this file needs no sqlx line of its
//! own in Cargo.toml.

use dbmanager::Manager;
use dbmanager::sqlx::{self, Row};

const CONFIG: &str = r#"
default_connection: cache
max_open_conns: 4
connections:
  cache:
    type: sqlite
    filepath: ":memory:"
    tags:
      role: quickstart
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Usually Manager::from_yaml_file("config.yaml"); inline here so it runs anywhere.
    let mgr = Manager::from_yaml_str(CONFIG)?;
    mgr.connect().await?;

    let cache = mgr.default()?;
    // The handle a service keeps in its state: it survives reconnects and reloads, and
    // `&db` runs queries through the manager (outage policy, stats).
    let db = mgr.sqlite("cache")?;
    println!(
        "connection `{}` ({}) is {}",
        cache.name(),
        cache.kind(),
        cache.health().state
    );

    sqlx::query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&db)
        .await?;
    for body in ["first note", "second note", "third note"] {
        sqlx::query("INSERT INTO notes (body) VALUES (?)")
            .bind(body)
            .execute(&db)
            .await?;
    }

    // A transaction: several statements on one connection.
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE notes SET body = body || ' (edited)' WHERE id = 2")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    let rows = sqlx::query("SELECT id, body FROM notes ORDER BY id")
        .fetch_all(&db)
        .await?;
    for row in &rows {
        let id: i64 = row.get("id");
        let body: String = row.get("body");
        println!("  note {id}: {body}");
    }
    assert_eq!(rows.len(), 3);

    let latency = cache.health_check().await?;
    println!("health check round trip: {latency:?}");

    // sqlx returns a released connection to the pool in a background task, so a
    // connection used a moment ago may still count as in use here.
    let stats = mgr.stats();
    println!(
        "manager: {} connection(s), {} healthy, {} unhealthy",
        stats.total_connections, stats.healthy, stats.unhealthy
    );
    for c in &stats.connections {
        let p = &c.pool;
        println!(
            "  {}: open={} idle={} in_use={} max_open={} acquires={} wait={:?} opened_total={}",
            c.name,
            p.open,
            p.idle,
            p.in_use,
            p.max_open,
            p.acquire_count,
            p.wait_duration,
            p.opened_total
        );
    }

    mgr.close().await;
    println!("closed");
    Ok(())
}
