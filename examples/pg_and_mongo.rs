//! A service using a PostgreSQL connection and a MongoDB connection described in one YAML
//! file (examples/service.yaml): orders go to PostgreSQL, their audit trail to MongoDB.
//!
//! ```sh
//! # PostgreSQL on 127.0.0.1:5432 and a MongoDB server (scripts/test.sh starts one and
//! # runs this example against it):
//! MONGO_URL='mongodb://127.0.0.1:27017/?directConnection=true' \
//!   cargo run --example pg_and_mongo --features mongodb
//! ```

use dbmanager::Manager;
use dbmanager::mongodb::bson::{Document, doc};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/service.yaml");
    let mgr = Manager::from_yaml_file(path)?;
    mgr.connect().await?;

    // PostgreSQL through the managed pool.
    let primary = mgr.get("primary")?;
    let mut tx = primary.begin::<sqlx::Postgres>().await?;
    sqlx::query("CREATE TEMP TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let (order_id,): (i32,) =
        sqlx::query_as("INSERT INTO orders (item) VALUES ('book') RETURNING id")
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;

    // MongoDB: the same outage policy first, then the driver.
    let documents = mgr.get("documents")?;
    documents.available().await?;
    let audit = documents.mongo_database()?.collection::<Document>("audit");
    audit
        .insert_one(doc! { "order_id": order_id, "event": "created" })
        .await?;
    let events = audit.count_documents(doc! { "order_id": order_id }).await?;
    println!("order {order_id} stored in PostgreSQL, {events} audit event(s) in MongoDB");

    for stats in mgr.stats().connections {
        println!(
            "{:<10} {:<9} {:<8} open={} in_use={} opened_total={}",
            stats.name,
            stats.kind.to_string(),
            stats.health.to_string(),
            stats.pool.open,
            stats.pool.in_use,
            stats.pool.opened_total
        );
    }
    documents.mongo_database()?.drop().await?;
    mgr.close().await;
    Ok(())
}
