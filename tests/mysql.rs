//! MariaDB / MySQL integration tests against the machine's MariaDB.

use crate::support;

use dbmanager::{DbType, Error, Manager};
use std::sync::Arc;

use std::time::Duration;
use support::*;

fn config(user: &str, max_open: u32) -> String {
    format!(
        r#"
connections:
  orders:
    type: mariadb
    host: 127.0.0.1
    port: 3306
    user: {user}
    password: ${{MYSQL_PW}}
    database: test
    max_open_conns: {max_open}
    max_idle_conns: {max_open}
    acquire_timeout: 20s
  lite:
    type: sqlite
    filepath: ":memory:"
"#
    )
}

fn manager(user: &str, password: &str, max_open: u32) -> Manager {
    Manager::new(
        dbmanager::Config::loader()
            .env([("MYSQL_PW", password)])
            .load_str(&config(user, max_open))
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_query_wrong_kind_and_special_password() {
    let admin = require_mariadb().await;
    let user = unique("dbm_pw");
    create_user(&admin, &user, NASTY_PASSWORD).await;

    let mgr = manager(&user, NASTY_PASSWORD, 3);
    mgr.connect().await.unwrap();
    let orders = mgr.get("orders").unwrap();
    assert_eq!(orders.kind(), DbType::MySql);
    assert_eq!(
        mgr.default_name(),
        None,
        "two connections and no default_connection"
    );
    assert!(matches!(mgr.default(), Err(Error::NoDefault { .. })));
    mgr.set_default("orders").unwrap();
    assert_eq!(mgr.default().unwrap().name(), "orders");

    let pool = orders.mysql().unwrap();
    let who: String = sqlx::query_scalar("SELECT CURRENT_USER()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(who.starts_with(&format!("{user}@")), "{who}");
    let table = unique("dbm_t");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, v TEXT)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let mut tx = orders.begin::<sqlx::MySql>().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} VALUES (1, 'a'), (2, 'b')"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&pool)
        .await
        .unwrap();

    assert!(matches!(
        orders.postgres(),
        Err(Error::WrongKind {
            expected: DbType::Postgres,
            actual: DbType::MySql,
            ..
        })
    ));
    assert!(matches!(
        mgr.get("lite").unwrap().mysql(),
        Err(Error::WrongKind { .. })
    ));
    mgr.close().await;

    // The password is really checked.
    let wrong = manager(&user, "wrong-password", 3);
    let err = wrong.connect().await.unwrap_err();
    assert!(err.to_string().contains("orders"), "{err}");
    wrong.close().await;
    drop_user(&admin, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_connection_count_never_exceeds_max_open_conns() {
    let admin = require_mariadb().await;
    let user = unique("dbm_cap");
    create_user(&admin, &user, "capacity").await;
    let max_open = 4;
    let mgr = manager(&user, "capacity", max_open);
    mgr.connect().await.unwrap();
    let conn = mgr.get("orders").unwrap();
    let pool = conn.mysql().unwrap();

    // 4x max_open tasks, half through the raw pool, half through the managed acquire.
    let count = mariadb_sessions(&admin, &user);
    let max_seen = max_count_during(count, 4 * max_open, |i| {
        let pool = pool.clone();
        let conn = conn.clone();
        async move {
            for _ in 0..5 {
                if i % 2 == 0 {
                    sqlx::query("SELECT SLEEP(0.02)")
                        .execute(&pool)
                        .await
                        .unwrap();
                } else {
                    let mut c = conn.acquire::<sqlx::MySql>().await.unwrap();
                    sqlx::query("SELECT SLEEP(0.02)")
                        .execute(&mut *c)
                        .await
                        .unwrap();
                }
                assert!(pool.size() <= max_open);
            }
        }
    })
    .await;
    assert!(
        max_seen <= i64::from(max_open),
        "server saw {max_seen} sessions for {user}, max_open_conns is {max_open}"
    );
    assert!(
        max_seen >= 2,
        "the load should have used several connections, saw {max_seen}"
    );
    mgr.close().await;
    drop_user(&admin, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_lets_in_flight_queries_finish_then_rejects_new_acquires() {
    let admin = require_mariadb().await;
    let user = unique("dbm_close");
    create_user(&admin, &user, "closing").await;
    let mgr = manager(&user, "closing", 2);
    mgr.connect().await.unwrap();
    let conn = mgr.get("orders").unwrap();

    let started = Arc::new(tokio::sync::Notify::new());
    let in_flight = {
        let conn = conn.clone();
        let started = started.clone();
        tokio::spawn(async move {
            let mut c = conn.acquire::<sqlx::MySql>().await.unwrap();
            started.notify_one();
            sqlx::query_scalar::<_, i64>("SELECT 42 FROM (SELECT SLEEP(0.5)) AS s")
                .fetch_one(&mut *c)
                .await
        })
    };
    started.notified().await;
    let closing = {
        let mgr = mgr.clone();
        tokio::spawn(async move { mgr.close().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        conn.acquire::<sqlx::MySql>().await,
        Err(Error::Closed { .. })
    ));
    assert_eq!(in_flight.await.unwrap().unwrap(), 42);
    assert!(closing.await.unwrap());
    drop_user(&admin, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_is_enforced_by_the_server() {
    let admin = require_mariadb().await;
    let user = unique("dbm_qt");
    create_user(&admin, &user, "timeout").await;
    let yaml = config(&user, 2).replace(
        "acquire_timeout: 20s",
        "acquire_timeout: 20s\n    query_timeout: 300ms",
    );
    let mgr = Manager::new(
        dbmanager::Config::loader()
            .env([("MYSQL_PW", "timeout")])
            .load_str(&yaml)
            .unwrap(),
    );
    mgr.connect().await.unwrap();
    let pool = mgr.get("orders").unwrap().mysql().unwrap();
    let started = std::time::Instant::now();
    let r = sqlx::query("SELECT SLEEP(3)").fetch_one(&pool).await;
    // MariaDB interrupts the statement: SLEEP returns 1 (interrupted) or an error.
    let interrupted = match r {
        Err(_) => true,
        Ok(row) => {
            use sqlx::Row;
            row.try_get::<i64, _>(0).map(|v| v == 1).unwrap_or(true)
        }
    };
    assert!(interrupted && started.elapsed() < Duration::from_secs(3));
    mgr.close().await;
    drop_user(&admin, &user).await;
}
