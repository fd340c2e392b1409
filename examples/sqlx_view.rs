//! The native sqlx view of a PostgreSQL connection: a managed acquire that follows the
//! outage policy, and the raw `PgPool` for everything sqlx offers. Needs the machine's
//! PostgreSQL:
//!
//!     cargo run -p dbmanager --example sqlx_view
use dbmanager::Manager;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mgr = Manager::from_yaml_str(
        r#"
connections:
  primary:
    type: postgres
    dsn: "postgres://postgres@127.0.0.1:5432/test"
    max_open_conns: 4
"#,
    )?;
    mgr.connect().await?;
    let primary = mgr.get("primary")?;
    let mut tx = primary.begin::<sqlx::Postgres>().await?;
    sqlx::query("create temporary table notes (id serial, body text)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("insert into notes (body) values ($1)")
        .bind("hello from sqlx")
        .execute(&mut *tx)
        .await?;
    let n: i64 = sqlx::query_scalar("select count(*) from notes")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    println!("notes: {n}");
    println!("stats: {:?}", primary.stats().pool);
    mgr.close().await;
    Ok(())
}
