//! The ORM views (sqlx, SeaORM, diesel-async) of one connection, against the machine's
//! PostgreSQL and MariaDB, SQLite, and throwaway servers for restarts.
//!
//! The budget test prints its figures (run with `--nocapture`); docs/views.md quotes them.

use crate::support;

use dbmanager::diesel::r#async::{AsyncConnection, RunQueryDsl};
use dbmanager::sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use dbmanager::{Error, Manager, View};
use diesel::QueryableByName;
use std::time::{Duration, Instant};
use support::*;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `select count(*) as n from {table} where v = '{tag}'` through SeaORM.
async fn sea_count(db: &dbmanager::sea_orm::DatabaseConnection, table: &str, tag: &str) -> i64 {
    let sql = format!("select count(*) as n from {table} where v = '{tag}'");
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Runs, on each of the three views, a real query, a committed transaction and a rolled
/// back one, and checks every view sees the others' committed rows.
macro_rules! query_commit_rollback {
    ($conn:expr, $table:expr, $db:ty, $diesel:ident, $create:expr) => {{
        let conn = $conn;
        let table: &str = $table;
        let pool = conn.pool::<$db>().unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!($create, table)))
            .execute(pool.sqlx())
            .await
            .unwrap();
        let insert = |tag: &str| format!("insert into {table} (v) values ('{tag}')");

        // sqlx
        let mut tx = conn.begin::<$db>().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(insert("sqlx")))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = conn.begin::<$db>().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(insert("sqlx-rb")))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();

        // SeaORM
        let db = conn.sea_orm().unwrap();
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared(&insert("sea")).await.unwrap();
        txn.commit().await.unwrap();
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared(&insert("sea-rb")).await.unwrap();
        txn.rollback().await.unwrap();

        // diesel-async
        let mut d = conn.$diesel().await.unwrap();
        let ins = insert("diesel");
        d.transaction::<_, diesel::result::Error, _>(async move |c| {
            diesel::sql_query(ins).execute(c).await?;
            Ok(())
        })
        .await
        .unwrap();
        let ins = insert("diesel-rb");
        let rolled = d
            .transaction::<(), diesel::result::Error, _>(async move |c| {
                diesel::sql_query(ins).execute(c).await?;
                Err(diesel::result::Error::RollbackTransaction)
            })
            .await;
        assert!(matches!(
            rolled,
            Err(diesel::result::Error::RollbackTransaction)
        ));

        // Every view sees the committed rows and none of the rolled back ones.
        for tag in ["sqlx", "sea", "diesel"] {
            let q = format!("select count(*) as n from {table} where v = '{tag}'");
            let by_diesel = diesel::sql_query(q)
                .get_result::<Count>(&mut d)
                .await
                .unwrap()
                .n;
            assert_eq!(by_diesel, 1, "diesel sees {tag}");
            assert_eq!(sea_count(&db, table, tag).await, 1, "SeaORM sees {tag}");
        }
        for tag in ["sqlx-rb", "sea-rb", "diesel-rb"] {
            let q = format!("select count(*) as n from {table} where v = '{tag}'");
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
                .fetch_one(pool.sqlx())
                .await
                .unwrap();
            assert_eq!(n, 0, "{tag} was rolled back");
        }
        drop(d);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("drop table {table}")))
            .execute(pool.sqlx())
            .await
            .unwrap();
        // Per view and summed: the diesel pool exists now and counts apart.
        let stats = conn.stats();
        assert_eq!(stats.views.len(), 2);
        assert_eq!(stats.views[1].view, View::Diesel);
        assert!(stats.views[1].pool.opened_total >= 1);
        assert_eq!(
            stats.pool.opened_total,
            stats.views[0].pool.opened_total + stats.views[1].pool.opened_total
        );
    }};
}

fn server_yaml(kind: &str, dsn: &str, extra: &str) -> String {
    format!(
        r#"
connections:
  db:
    type: {kind}
    dsn: "{dsn}"
    max_open_conns: 4
    max_idle_conns: 4
    diesel_conns: 2
    acquire_timeout: 20s
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_each_view_queries_commits_and_rolls_back() {
    require_postgres().await;
    let mgr = Manager::from_yaml_str(&server_yaml("postgres", PG_URL, "")).unwrap();
    mgr.connect().await.unwrap();
    query_commit_rollback!(
        mgr.get("db").unwrap(),
        &unique("dbm_views"),
        sqlx::Postgres,
        diesel_postgres,
        "create table {} (id serial primary key, v text not null)"
    );
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_each_view_queries_commits_and_rolls_back() {
    require_mariadb().await;
    let mgr = Manager::from_yaml_str(&server_yaml("mysql", MYSQL_URL, "")).unwrap();
    mgr.connect().await.unwrap();
    query_commit_rollback!(
        mgr.get("db").unwrap(),
        &unique("dbm_views"),
        sqlx::MySql,
        diesel_mysql,
        "create table {} (id int auto_increment primary key, v varchar(32) not null) engine=InnoDB"
    );
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_views_share_one_memory_database() {
    let mgr = Manager::from_yaml_str(
        r#"
connections:
  db:
    type: sqlite
    filepath: ":memory:"
    max_open_conns: 3
    diesel_conns: 1
"#,
    )
    .unwrap();
    mgr.connect().await.unwrap();
    query_commit_rollback!(
        mgr.get("db").unwrap(),
        "views_t",
        sqlx::Sqlite,
        diesel_sqlite,
        "create table {} (id integer primary key, v text not null)"
    );
    mgr.close().await;
}

/// 4×N tasks over the raw sqlx pool, the managed acquire, SeaORM and diesel; `count`
/// returns the server's own session count for this connection.
async fn budget_holds<C, CF>(mgr: &Manager, count: C, sleep: &'static str, engine: &str)
where
    C: FnMut() -> CF + Send + 'static,
    CF: std::future::Future<Output = i64> + Send + 'static,
{
    let conn = mgr.get("db").unwrap();
    let max_open = conn.config().pool.max_open;
    let started = Instant::now();
    let max_seen = max_count_during(count, 4 * max_open, |i| {
        let conn = conn.clone();
        async move {
            for _ in 0..5 {
                match (i % 4, conn.kind()) {
                    (0, dbmanager::DbType::Postgres) => {
                        let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
                        sqlx::query(sleep).execute(&mut *c).await.unwrap();
                    }
                    (0, _) => {
                        let mut c = conn.acquire::<sqlx::MySql>().await.unwrap();
                        sqlx::query(sleep).execute(&mut *c).await.unwrap();
                    }
                    (1, dbmanager::DbType::Postgres) => {
                        sqlx::query(sleep)
                            .execute(&conn.postgres().unwrap())
                            .await
                            .unwrap();
                    }
                    (1, _) => {
                        sqlx::query(sleep)
                            .execute(&conn.mysql().unwrap())
                            .await
                            .unwrap();
                    }
                    (2, _) => {
                        conn.sea_orm()
                            .unwrap()
                            .execute_unprepared(sleep)
                            .await
                            .unwrap();
                    }
                    (_, dbmanager::DbType::Postgres) => {
                        let mut d = conn.diesel_postgres().await.unwrap();
                        diesel::sql_query(sleep).execute(&mut d).await.unwrap();
                    }
                    (_, _) => {
                        let mut d = conn.diesel_mysql().await.unwrap();
                        diesel::sql_query(sleep).execute(&mut d).await.unwrap();
                    }
                }
            }
        }
    })
    .await;
    let took = started.elapsed();
    let stats = conn.stats();
    let main = stats.views[0].pool;
    let diesel = stats.views[1].pool;
    println!(
        "{engine}: max_open_conns {max_open}, diesel_conns {}: {} tasks x 5 queries in {took:?}; \
         server peak {max_seen}; sqlx pool peak-capped at {} (open {}), diesel at {} (open {}); \
         waits {} ({:?} total)",
        conn.config().diesel_conns,
        4 * max_open,
        main.max_open,
        main.open,
        diesel.max_open,
        diesel.open,
        stats.pool.acquire_count,
        stats.pool.wait_duration,
    );
    assert!(
        max_seen <= i64::from(max_open),
        "{engine}: the server saw {max_seen} sessions, max_open_conns is {max_open}"
    );
    assert!(
        max_seen >= 3,
        "{engine}: the load should have used both pools, the server saw {max_seen}"
    );
    assert!(main.open <= main.max_open && diesel.open <= diesel.max_open);
    assert_eq!(main.max_open + diesel.max_open, max_open);
    assert_eq!(stats.pool.open, main.open + diesel.open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_views_stay_within_one_budget_by_the_servers_count() {
    let admin = require_postgres().await;
    let app = unique("dbm_budget");
    let mgr = Manager::from_yaml_str(&server_yaml(
        "postgres",
        PG_URL,
        &format!("    application_name: {app}"),
    ))
    .unwrap();
    mgr.connect().await.unwrap();
    let count = pg_sessions(&admin, &app);
    budget_holds(&mgr, count.clone(), "select pg_sleep(0.02)", "postgres").await;
    // With the load over, the stats agree with the server.
    let stats = mgr.get("db").unwrap().stats();
    assert_eq!(i64::from(stats.pool.open), count().await, "{stats:?}");
    assert!(mgr.close().await, "every view drained");
    // The server drops a backend shortly after the client's goodbye: poll briefly.
    let mut left = count().await;
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = count().await;
    }
    assert_eq!(left, 0, "close() closed every view's sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_views_stay_within_one_budget_by_the_servers_count() {
    let admin = require_mariadb().await;
    let user = unique("dbm_budget");
    create_user(&admin, &user, "budget").await;
    let dsn = format!("mysql://{user}:budget@127.0.0.1:3306/test");
    let mgr = Manager::from_yaml_str(&server_yaml("mysql", &dsn, "")).unwrap();
    mgr.connect().await.unwrap();
    let count = mariadb_sessions(&admin, &user);
    budget_holds(&mgr, count.clone(), "SELECT SLEEP(0.02)", "mariadb").await;
    let stats = mgr.get("db").unwrap().stats();
    assert_eq!(i64::from(stats.pool.open), count().await, "{stats:?}");
    mgr.close().await;
    drop_user(&admin, &user).await;
}

/// kill -9 and restart of a throwaway server: the SeaORM and diesel views recover like the
/// native one, with no error for a caller who waits.
async fn views_recover_after_restart(server: &dyn TempServer, kind: &str) {
    let yaml = format!(
        r#"
connections:
  db:
    type: {kind}
    dsn: "{}"
    max_open_conns: 4
    diesel_conns: 2
    health_check_interval: 200ms
    health_check_timeout: 1s
    retry_delay: 50ms
    retry_max_delay: 200ms
    acquire_timeout: 30s
"#,
        server.url_via(server.port())
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let diesel_query = |conn: dbmanager::Connection| async move {
        let q = diesel::sql_query("select count(*) as n");
        if kind == "postgres" {
            let mut d = conn.diesel_postgres().await?;
            q.get_result::<Count>(&mut d)
                .await
                .map(|c| c.n)
                .map_err(|e| {
                    conn.report_error(&e);
                    Error::NotConnected {
                        name: e.to_string(),
                    }
                })
        } else {
            let mut d = conn.diesel_mysql().await?;
            q.get_result::<Count>(&mut d)
                .await
                .map(|c| c.n)
                .map_err(|e| {
                    conn.report_error(&e);
                    Error::NotConnected {
                        name: e.to_string(),
                    }
                })
        }
    };
    // Two diesel connections and the SeaORM view in use before the crash.
    let (a, b) = tokio::join!(diesel_query(conn.clone()), diesel_query(conn.clone()));
    assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
    conn.sea_orm()
        .unwrap()
        .execute_unprepared("select 1")
        .await
        .unwrap();

    server.kill9();
    assert!(
        eventually(Duration::from_secs(10), || conn.health().state
            == dbmanager::HealthState::Unhealthy)
        .await,
        "the supervisor should notice the crash"
    );
    server.restart();
    // A caller who waits (on_unavailable: wait) is served once the server is back, on a
    // fresh diesel connection: the old ones were cleared with the pool.
    assert_eq!(diesel_query(conn.clone()).await.unwrap(), 1);
    conn.available().await.unwrap();
    conn.sea_orm()
        .unwrap()
        .execute_unprepared("select 1")
        .await
        .unwrap();
    let diesel = conn.stats().views[1].pool;
    assert!(diesel.pool_clears >= 1, "{diesel:?}");
    assert!(
        diesel.closed_cleared + diesel.closed_broken >= 1,
        "{diesel:?}"
    );
    for _ in 0..5 {
        assert_eq!(diesel_query(conn.clone()).await.unwrap(), 1);
    }
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_views_recover_after_a_restart() {
    let pg = blocking(|| TempPostgres::start("views-pw")).await;
    views_recover_after_restart(&pg, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_views_recover_after_a_restart() {
    let db = blocking(TempMariaDb::start).await;
    views_recover_after_restart(&db, "mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_from_before_a_swap_keep_working_or_fail_clearly() {
    require_postgres().await;
    let mgr =
        Manager::from_yaml_str(&server_yaml("postgres", PG_URL, "    drain_timeout: 2s")).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let old_sea = conn.sea_orm().unwrap();
    let mut held = conn.diesel_postgres().await.unwrap();

    // The swap waits for the held diesel connection (drain_timeout 2 s), then closes the
    // old generation.
    conn.reconnect().await.unwrap();

    // The diesel connection checked out before the swap still works.
    let n = diesel::sql_query("select count(*) as n")
        .get_result::<Count>(&mut held)
        .await
        .unwrap()
        .n;
    assert_eq!(n, 1);
    drop(held);
    // The SeaORM handle from before the swap fails at once with a clear error.
    let old = tokio::time::timeout(
        Duration::from_secs(5),
        old_sea.execute_unprepared("select 1"),
    )
    .await
    .expect("a SeaORM handle from before a swap must not hang");
    let e = old
        .expect_err("its pool was closed by the swap")
        .to_string();
    assert!(e.to_lowercase().contains("closed"), "{e}");
    // New handles use the new generation; the diesel pool is created again on first use.
    conn.sea_orm()
        .unwrap()
        .execute_unprepared("select 1")
        .await
        .unwrap();
    assert_eq!(
        conn.stats().views.len(),
        1,
        "the new generation has no diesel pool yet"
    );
    let mut d = conn.diesel_postgres().await.unwrap();
    diesel::sql_query("select 1").execute(&mut d).await.unwrap();
    drop(d);
    assert_eq!(conn.stats().views.len(), 2);
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_orm_decides_which_view_connects_first() {
    let mgr = Manager::from_yaml_str(
        r#"
connections:
  eager_diesel:
    type: sqlite
    filepath: ":memory:"
    max_open_conns: 3
    default_orm: diesel
  eager_sqlx:
    type: sqlite
    filepath: ":memory:"
    max_open_conns: 3
    diesel_conns: 1
"#,
    )
    .unwrap();
    mgr.connect().await.unwrap();

    // default_orm: diesel gets all but one connection and connects at startup; the sqlx
    // pool opens nothing until it is used.
    let d = mgr.get("eager_diesel").unwrap();
    assert_eq!(d.config().diesel_conns, 2);
    let s = d.stats();
    assert_eq!(s.views.len(), 2);
    assert_eq!((s.views[0].pool.max_open, s.views[1].pool.max_open), (1, 2));
    assert_eq!(s.views[0].pool.opened_total, 0);
    assert!(s.views[1].pool.opened_total >= 1);
    // Health checks go through the diesel pool.
    d.health_check().await.unwrap();
    assert_eq!(d.stats().views[0].pool.opened_total, 0);

    // default_orm: sqlx: the diesel view costs nothing until first used.
    let x = mgr.get("eager_sqlx").unwrap();
    assert_eq!(x.stats().views.len(), 1);
    let mut c = x.diesel_sqlite().await.unwrap();
    diesel::sql_query("select 1").execute(&mut c).await.unwrap();
    assert_eq!(x.stats().views.len(), 2);
    drop(c);
    assert!(mgr.close().await, "every view drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_accessors_fail_typed_on_the_wrong_engine_or_without_budget() {
    let mgr = Manager::from_yaml_str(
        r#"
connections:
  pg:
    type: postgres
    dsn: "postgres://postgres@127.0.0.1:5432/test"
    startup: lazy
  docs:
    type: mongodb
    dsn: "mongodb://127.0.0.1:1/docs"
  legacy:
    type: mssql
    host: 127.0.0.1
    port: 1
    database: master
"#,
    )
    .unwrap();
    for name in ["docs", "legacy"] {
        let c = mgr.get(name).unwrap();
        assert!(matches!(
            c.sea_orm(),
            Err(Error::NoView { view: "SeaORM", .. })
        ));
        assert!(matches!(
            c.diesel_postgres().await,
            Err(Error::NoView { view: "diesel", .. })
        ));
        assert!(matches!(c.diesel_mysql().await, Err(Error::NoView { .. })));
        assert!(matches!(c.diesel_sqlite().await, Err(Error::NoView { .. })));
    }
    let pg = mgr.get("pg").unwrap();
    assert!(matches!(
        pg.diesel_mysql().await,
        Err(Error::WrongKind {
            expected: dbmanager::DbType::MySql,
            ..
        })
    ));
    let lite = Manager::from_yaml_str(
        "connections:\n  lite:\n    type: sqlite\n    filepath: \":memory:\"\n",
    )
    .unwrap();
    lite.connect().await.unwrap();
    let Err(e) = lite.get("lite").unwrap().diesel_sqlite().await else {
        panic!("the diesel view has no budget here")
    };
    assert!(matches!(e, Error::NoBudget { .. }), "{e}");
    assert!(
        e.to_string().contains("connections.lite.diesel_conns"),
        "{e}"
    );
    lite.close().await;
}

#[test]
fn diesel_conns_is_validated_with_its_yaml_path() {
    let err = |yaml: &str| match dbmanager::Config::from_yaml_str(yaml) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted: {yaml}"),
    };
    let e = err(
        "connections:\n  a:\n    type: postgres\n    host: h\n    database: d\n    max_open_conns: 4\n    diesel_conns: 4\n",
    );
    assert!(
        e.contains("connections.a.diesel_conns") && e.contains("less than max_open_conns"),
        "{e}"
    );
    let e = err(
        "connections:\n  m:\n    type: mongodb\n    host: h\n    database: d\n    diesel_conns: 1\n",
    );
    assert!(e.contains("connections.m.diesel_conns"), "{e}");
    let e = err(
        "connections:\n  s:\n    type: mssql\n    host: h\n    database: d\n    default_orm: diesel\n",
    );
    assert!(e.contains("connections.s.default_orm"), "{e}");
    let e = err(
        "connections:\n  p:\n    type: postgres\n    host: h\n    database: d\n    max_open_conns: 1\n    default_orm: diesel\n",
    );
    assert!(e.contains("at least 2 with default_orm: diesel"), "{e}");
}
