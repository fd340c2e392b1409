//! A MariaDB replica against a real primary: two throwaway `mariadbd` instances, the
//! second replicating from the first (GTID). Reads through `reader()` go to the replica;
//! with its SQL thread stopped (`STOP SLAVE SQL_THREAD`) while the primary keeps writing,
//! it is skipped once a health check measures it past `max_replica_lag`, and it serves
//! reads again once restarted and caught up.

use crate::support::{self, TempMariaDb, blocking};
use dbmanager::{Connection, Manager};
use sqlx::Connection as _;
use std::time::Duration;

async fn exec(url: &str, statements: &[&str]) {
    let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*s))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    c.close().await.ok();
}

/// The port of the server a read through `reader()` ran on.
async fn read_port(main: &Connection) -> i64 {
    let r = main.reader().unwrap();
    let mut c = r.acquire::<sqlx::MySql>().await.unwrap();
    sqlx::query_scalar::<_, i64>("select cast(@@port as signed) from app.t limit 1")
        .fetch_one(&mut *c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_replica_past_max_replica_lag_is_skipped_and_rejoins() {
    let primary =
        blocking(|| TempMariaDb::start_with(&["--log-bin=mysql-bin", "--server-id=1"])).await;
    let replica = blocking(|| TempMariaDb::start_with(&["--server-id=2", "--read-only"])).await;
    let (p, r) = (primary.port, replica.port);
    exec(
        &replica.url_via(r),
        &[
            &format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={p}, \
                 MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos"
            ),
            "START SLAVE",
        ],
    )
    .await;
    exec(
        &primary.url_via(p),
        &[
            "CREATE DATABASE app",
            "CREATE TABLE app.t (id int primary key auto_increment, at timestamp(6) default current_timestamp(6))",
            "INSERT INTO app.t () VALUES ()",
        ],
    )
    .await;

    let yaml = format!(
        "connections:\n  main:\n    type: mysql\n    dsn: 'mysql://root@127.0.0.1:{p}/app'\n    \
         health_check_interval: 200ms\n    health_check_timeout: 1s\n    retry_delay: 50ms\n    \
         max_replica_lag: 2s\n    replicas:\n      - name: r1\n        \
         dsn: 'mysql://root@127.0.0.1:{r}/app'\n"
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    mgr.connect().await.unwrap();
    let main = mgr.get("main").unwrap();
    let lagging = || {
        let s = &main.replica_stats()[0];
        (s.lagging, s.lag)
    };
    // Up, caught up (measured: a lag of 0), and serving reads.
    let caught_up = support::eventually(Duration::from_secs(15), || {
        lagging() == (false, Some(Duration::ZERO))
    })
    .await;
    assert!(
        caught_up,
        "the replica never measured caught up: {:?}",
        main.replica_stats()
    );
    assert_eq!(read_port(&main).await, i64::from(r));

    // The SQL thread stops while the primary keeps writing: past the limit, skipped.
    exec(&replica.url_via(r), &["STOP SLAVE SQL_THREAD"]).await;
    let writer = {
        let url = primary.url_via(p);
        tokio::spawn(async move {
            let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
            for _ in 0..60 {
                sqlx::query("INSERT INTO app.t () VALUES ()")
                    .execute(&mut c)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let skipped = support::eventually(Duration::from_secs(10), || lagging().0).await;
    assert!(skipped, "never marked lagging: {:?}", main.replica_stats());
    let (_, lag) = lagging();
    assert!(
        lag.is_some_and(|l| l > Duration::from_secs(2)),
        "lag {lag:?}"
    );
    for _ in 0..5 {
        assert_eq!(
            read_port(&main).await,
            i64::from(p),
            "a lagging replica was read"
        );
    }
    writer.await.unwrap();

    // Restarted: it catches up and serves reads again.
    exec(&replica.url_via(r), &["START SLAVE SQL_THREAD"]).await;
    let back = support::eventually(Duration::from_secs(15), || !lagging().0).await;
    assert!(back, "never rejoined: {:?}", main.replica_stats());
    assert_eq!(read_port(&main).await, i64::from(r));
    let rows = |url: String| async move {
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        sqlx::query_scalar::<_, i64>("select count(*) from app.t")
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    // Caught up by its own measure (`Seconds_Behind_Master` 0) while the SQL thread may
    // still be applying the last events: it has every row within a few seconds.
    let want = rows(primary.url_via(p)).await;
    let mut have = rows(replica.url_via(r)).await;
    let started = std::time::Instant::now();
    while have != want && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        have = rows(replica.url_via(r)).await;
    }
    assert_eq!(have, want, "the replica's rows");
    mgr.close().await;
}

/// A MySQL/MariaDB connection with both servers in `hosts` and
/// `target_session_attrs: read-write`: it starts on the writable one whatever the order,
/// and when an operator (or an orchestrator) swaps the roles (`read_only` off on the
/// replica, on on the old primary), the health check sees it and new sessions go to the
/// new primary. A connection listing only the old primary then cannot start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_connection_with_several_hosts_follows_the_writable_server() {
    let primary =
        blocking(|| TempMariaDb::start_with(&["--log-bin=mysql-bin", "--server-id=1"])).await;
    let replica = blocking(|| TempMariaDb::start_with(&["--server-id=2", "--read-only"])).await;
    let (p, r) = (primary.port, replica.port);
    exec(&primary.url_via(p), &["CREATE DATABASE app"]).await;
    exec(&replica.url_via(r), &["CREATE DATABASE app"]).await;
    let yaml = |ports: &[u16]| {
        let hosts: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        format!(
            "connections:\n  main:\n    type: mysql\n    hosts: [{}]\n    user: root\n    \
             database: app\n    sslmode: disable\n    target_session_attrs: read-write\n    \
             health_check_interval: 200ms\n    health_check_timeout: 1s\n    retry_delay: 50ms\n    \
             retry_max_delay: 200ms\n    connect_timeout: 2s\n",
            hosts.join(", ")
        )
    };
    let port = |mgr: &Manager| {
        let db = mgr.mysql("main").unwrap();
        async move {
            sqlx::query_scalar::<_, i64>("select cast(@@port as signed)")
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    // The replica listed first: read-write still starts on the primary.
    let mgr = Manager::from_yaml_str(&yaml(&[r, p])).unwrap();
    mgr.connect().await.unwrap();
    assert_eq!(port(&mgr).await, i64::from(p));

    // The roles swap.
    exec(&replica.url_via(r), &["SET GLOBAL read_only = 0"]).await;
    exec(&primary.url_via(p), &["SET GLOBAL read_only = 1"]).await;
    let mut moved = false;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if port(&mgr).await == i64::from(r) {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "still on the old primary after 5 s");
    println!(
        "new sessions on the new primary {:?} after the swap",
        started.elapsed()
    );
    for _ in 0..10 {
        assert_eq!(port(&mgr).await, i64::from(r));
    }
    // The diesel view does not follow several MySQL servers yet: the configuration says
    // so, with the path.
    let err = Manager::from_yaml_str(&format!("{}    diesel_conns: 1\n", yaml(&[r, p])))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("connections.main.hosts") && err.contains("diesel view"),
        "{err}"
    );
    // Only the old primary listed: it cannot start, and says why.
    let only_old = Manager::from_yaml_str(&yaml(&[p])).unwrap();
    let err = only_old.connect().await.unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    mgr.close().await;
}
