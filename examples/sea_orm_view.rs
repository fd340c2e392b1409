//! The SeaORM view: a `sea_orm::DatabaseConnection` over the connection's own sqlx pool
//! (same connections, limits and stats). Needs the machine's PostgreSQL:
//!
//!     cargo run -p dbmanager --features sea-orm --example sea_orm_view
use dbmanager::Manager;
use dbmanager::sea_orm::{ConnectionTrait, Statement, TransactionTrait};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mgr = Manager::from_yaml_str(
        r#"
connections:
  primary:
    type: postgres
    dsn: "postgres://postgres@127.0.0.1:5432/test"
    max_open_conns: 4
    default_orm: sea_orm
"#,
    )?;
    mgr.connect().await?;
    let db = mgr.get("primary")?.sea_orm()?;
    // A real table: each statement may run on a different pooled connection, so a
    // temporary table would not be seen by the next one.
    db.execute_unprepared("create table if not exists dbm_example_notes (id serial, body text)")
        .await?;
    let txn = db.begin().await?;
    txn.execute_unprepared("insert into dbm_example_notes (body) values ('hello from SeaORM')")
        .await?;
    txn.commit().await?;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "select count(*) from dbm_example_notes",
        ))
        .await?
        .ok_or("no row")?;
    println!("notes: {}", row.try_get_by_index::<i64>(0)?);
    db.execute_unprepared("drop table dbm_example_notes")
        .await?;
    println!("stats: {:?}", mgr.get("primary")?.stats().pool);
    mgr.close().await;
    Ok(())
}
