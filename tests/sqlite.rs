//! SQLite integration tests (embedded: no server).

use crate::support;

use dbmanager::{Error, Manager};
use sqlx::Row;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_database_is_shared_by_every_pooled_connection() {
    let mgr = Manager::from_yaml_str(
        "connections:\n  cache:\n    type: sqlite\n    filepath: \":memory:\"\n    max_open_conns: 4\n    max_idle_conns: 4\n",
    )
    .unwrap();
    mgr.connect().await.unwrap();
    let cache = mgr.default().unwrap();
    let pool = cache.sqlite().unwrap();
    // Hold several connections at once so they are distinct.
    let mut a = cache.acquire::<sqlx::Sqlite>().await.unwrap();
    let mut b = cache.acquire::<sqlx::Sqlite>().await.unwrap();
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut *a)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (7)")
        .execute(&mut *a)
        .await
        .unwrap();
    let x: i64 = sqlx::query_scalar("SELECT x FROM t")
        .fetch_one(&mut *b)
        .await
        .unwrap();
    assert_eq!(x, 7);
    drop((a, b));
    assert!(pool.size() >= 2);

    // A second manager with the same config gets its own database.
    let other = Manager::from_yaml_str(
        "connections:\n  cache:\n    type: sqlite\n    filepath: \":memory:\"\n",
    )
    .unwrap();
    other.connect().await.unwrap();
    let r = sqlx::query("SELECT x FROM t")
        .fetch_one(&other.default().unwrap().sqlite().unwrap())
        .await;
    assert!(
        r.is_err(),
        "the second manager must not see the first one's table"
    );
    mgr.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pragmas_apply_to_every_pooled_connection() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    let yaml = format!(
        "connections:\n  db:\n    type: sqlite\n    filepath: {}\n    busy_timeout: 2500ms\n    max_open_conns: 3\n",
        file.display()
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = conn.acquire::<sqlx::Sqlite>().await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(busy, 2500);
        assert_eq!(fk, 1);
        assert_eq!(sync, 1, "NORMAL");
        held.push(c);
    }
    assert_eq!(conn.stats().pool.open, 3);
    drop(held);
    mgr.close().await;
    assert!(file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_do_not_fail_with_busy() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "connections:\n  db:\n    type: sqlite\n    filepath: {}\n    max_open_conns: 8\n",
        dir.path().join("w.db").display()
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    mgr.connect().await.unwrap();
    let pool = mgr.get("db").unwrap().sqlite().unwrap();
    sqlx::query("CREATE TABLE w (task INTEGER, n INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for task in 0..16i64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20i64 {
                // IMMEDIATE takes the write lock up front (the documented pattern).
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query("INSERT INTO w VALUES (?, ?)")
                    .bind(task)
                    .bind(n)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("no SQLITE_BUSY under concurrent writers");
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM w")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 16 * 20);
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_idle_conns_closes_surplus_connections_and_counts_them() {
    let mgr = Manager::from_yaml_str(
        "connections:\n  c:\n    type: sqlite\n    filepath: \":memory:\"\n    max_open_conns: 4\n    max_idle_conns: 1\n",
    )
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("c").unwrap();
    let held: Vec<_> = futures_join(&conn, 4).await;
    assert_eq!(conn.stats().pool.open, 4);
    drop(held);
    // Release runs in the background; wait until it settles.
    for _ in 0..100 {
        if conn.stats().pool.open == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = conn.stats().pool;
    assert_eq!(stats.open, 1, "{stats:?}");
    assert_eq!(stats.idle, 1);
    assert_eq!(stats.closed_max_idle, 3, "{stats:?}");
    mgr.close().await;
}

async fn futures_join(
    conn: &dbmanager::Connection,
    n: usize,
) -> Vec<dbmanager::PooledConnection<sqlx::Sqlite>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(conn.acquire::<sqlx::Sqlite>().await.unwrap());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_timeout_is_counted_and_typed() {
    let mgr = Manager::from_yaml_str(
        "connections:\n  c:\n    type: sqlite\n    filepath: \":memory:\"\n    max_open_conns: 1\n    max_idle_conns: 1\n    acquire_timeout: 200ms\n",
    )
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("c").unwrap();
    let held = conn.acquire::<sqlx::Sqlite>().await.unwrap();
    match conn.acquire::<sqlx::Sqlite>().await {
        Err(Error::AcquireTimeout { name, .. }) => assert_eq!(name, "c"),
        other => panic!("expected AcquireTimeout, got {other:?}"),
    }
    let stats = conn.stats().pool;
    assert_eq!(stats.acquire_timeouts, 1);
    assert_eq!(stats.in_use, 1);
    assert!(stats.wait_duration >= Duration::from_millis(150));
    drop(held);
    let row = sqlx::query("SELECT 1 AS one")
        .fetch_one(&conn.sqlite().unwrap())
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>("one"), 1);
    mgr.close().await;
}

#[cfg(all(feature = "mongodb", feature = "mssql"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_fail_clearly_and_accessors_before_connect() {
    // Nothing listens on these ports: each engine's startup error names its connection.
    let (p1, p2) = (support::free_port(), support::free_port());
    let mgr = Manager::from_yaml_str(&format!(
        "connect_timeout: 1s\nacquire_timeout: 1s\nconnections:\n  docs:\n    type: mongodb\n    host: 127.0.0.1\n    port: {p1}\n    database: d\n  legacy:\n    type: mssql\n    host: 127.0.0.1\n    port: {p2}\n    database: d\n  c:\n    type: sqlite\n    filepath: \":memory:\"\n",
    ))
    .unwrap();
    // Before connect(): a typed accessor says so.
    assert!(matches!(
        mgr.get("c").unwrap().sqlite(),
        Err(Error::NotConnected { .. })
    ));
    let err = mgr.connect().await.unwrap_err();
    let Error::Startup { failures } = err else {
        panic!()
    };
    let names: Vec<_> = failures.iter().filter_map(|f| f.connection()).collect();
    assert_eq!(names, vec!["docs", "legacy"]);
    for f in &failures {
        assert!(matches!(f, Error::Connect { .. }), "{f:?}");
        // Never reached: its own class, transient.
        assert_eq!(f.class(), Some(dbmanager::ErrorClass::Unreachable), "{f}");
        assert!(f.is_transient());
    }
    assert!(mgr.get("c").unwrap().sqlite().is_ok());
    assert!(matches!(
        mgr.get("docs").unwrap().sqlite(),
        Err(Error::WrongKind { .. })
    ));
    mgr.close().await;
}
