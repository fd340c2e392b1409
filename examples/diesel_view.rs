//! The diesel-async view: pooled `AsyncPgConnection`s within `diesel_conns` of the
//! connection's budget, beside the sqlx pool. Needs the machine's PostgreSQL:
//!
//!     cargo run -p dbmanager --features diesel --example diesel_view
use dbmanager::Manager;
use dbmanager::diesel::r#async::{AsyncConnection, RunQueryDsl};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mgr = Manager::from_yaml_str(
        r#"
connections:
  primary:
    type: postgres
    dsn: "postgres://postgres@127.0.0.1:5432/test"
    max_open_conns: 6
    diesel_conns: 2      # the sqlx pool (sqlx + SeaORM views) keeps the other 4
"#,
    )?;
    mgr.connect().await?;
    let primary = mgr.get("primary")?;
    let mut conn = primary.diesel_postgres().await?;
    diesel::sql_query("create temporary table notes (id serial, body text)")
        .execute(&mut conn)
        .await?;
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        diesel::sql_query("insert into notes (body) values ('hello from diesel')")
            .execute(c)
            .await?;
        Ok(())
    })
    .await?;
    let n = diesel::sql_query("select 1 from notes")
        .execute(&mut conn)
        .await?;
    println!("notes: {n}");
    drop(conn);
    for view in primary.stats().views {
        println!(
            "{}: open {} of {}",
            view.view, view.pool.open, view.pool.max_open
        );
    }
    mgr.close().await;
    Ok(())
}
