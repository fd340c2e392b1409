//! Behaviour: empty passwords, read-only errors, what `retry` re-runs, counters.

use crate::support::{self, PG_URL};
use dbmanager::Manager;

/// `password: ""` (config.example.yaml's `orders`, or `${VAR:-}` with VAR unset)
/// was sent as a password and refused by a MariaDB user that has none ("using password:
/// YES"). An empty password now means none, on every engine that takes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_password_means_none() {
    support::require_mariadb().await;
    support::require_postgres().await;
    let yaml = "connections:\n  \
        my:\n    type: mariadb\n    host: 127.0.0.1\n    user: root\n    password: \"\"\n    database: test\n    sslmode: disable\n  \
        my_env:\n    type: mysql\n    host: 127.0.0.1\n    user: root\n    password: ${DBM_UNSET_PASSWORD_VAR:-}\n    database: test\n    sslmode: disable\n  \
        my_dsn:\n    type: mysql\n    dsn: 'mysql://root:@127.0.0.1:3306/test?ssl-mode=disabled'\n  \
        pg:\n    type: postgres\n    host: 127.0.0.1\n    user: postgres\n    password: ''\n    database: test\n";
    let mgr = Manager::from_yaml_str(yaml).unwrap();
    mgr.connect().await.expect("every connection connects");
    for (name, result) in mgr.health_check().await {
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    mgr.close().await;
    let _ = PG_URL;
}

/// `n` connections checked out at once (so the pool opens `n`).
async fn checked_out(
    conn: &dbmanager::Connection,
    n: usize,
) -> Vec<dbmanager::PooledConnection<sqlx::Postgres>> {
    futures_util::future::join_all((0..n).map(|_| conn.acquire::<sqlx::Postgres>()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// A failed probe counted two pool clears (the pool's ping cleared, then the
/// connection's reaction cleared again), and idle-timeout closes were under-reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_is_one_clear_and_idle_closes_are_all_counted() {
    use crate::support::{Recorder, proxy::FaultProxy};
    use dbmanager::EventKind;
    use std::time::Duration;
    support::require_postgres().await;
    let proxy = FaultProxy::start(5432).await;
    let yaml = format!(
        "connections:\n  db:\n    type: postgres\n    dsn: 'postgres://postgres@127.0.0.1:{}/test'\n    max_open_conns: 4\n    max_idle_conns: 4\n    conn_max_idle_time: 1s\n    health_check_interval: 1h\n",
        proxy.port()
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    let events = Recorder::start(&mgr);
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    // Three connections, released together, then left idle past `conn_max_idle_time`.
    let held = checked_out(&conn, 3).await;
    let opened = conn.stats().pool.opened_total;
    drop(held);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let s = conn.stats().pool;
    assert_eq!(s.open, 0, "{s:?}");
    assert_eq!(
        s.closed_idle_timeout, opened,
        "every idle close is counted: {s:?}"
    );
    assert_eq!(s.closed_total, opened, "{s:?}");

    // One probe that finds the server gone: one clear, one event, and the event counts
    // the idle connections the clear closed (the probe holds the third).
    let held = checked_out(&conn, 3).await;
    drop(held);
    // sqlx pings each released connection in a task of its own: let those finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(conn.stats().pool.idle, 3);
    let before = conn.stats().pool.pool_clears;
    let cleared_before = conn.stats().pool.closed_cleared;
    proxy.cut_all();
    assert!(conn.health_check().await.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        conn.stats().pool.pool_clears - before,
        1,
        "{:?}",
        conn.stats().pool
    );
    let cleared: Vec<u32> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::PoolCleared { closed_idle, .. } => Some(closed_idle),
            _ => None,
        })
        .collect();
    // The event counts the idle connections the clear closed (before the fix: 0, the
    // second clear's). The stats may count one more: a connection sqlx was still
    // returning at the clear is closed as stale when it arrives.
    let counted = conn.stats().pool.closed_cleared - cleared_before;
    assert_eq!(cleared.len(), 1, "one PoolCleared event: {cleared:?}");
    assert!(
        cleared[0] >= 1 && u64::from(cleared[0]) <= counted,
        "PoolCleared closed_idle {} (the stats counted {counted})",
        cleared[0]
    );
    mgr.close().await;
}

/// A read-only error that is the application's own (`BEGIN READ ONLY` then a
/// write) cleared the pool, and `retry` cleared it again on every attempt. Now the
/// connection asks the server whether it is read-only before clearing; a writable
/// server means the error is the caller's: no clear, no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_error_does_not_churn_the_pool() {
    use crate::support::Recorder;
    use dbmanager::EventKind;
    use std::time::Duration;
    support::require_postgres().await;
    let mgr = Manager::from_yaml_str(&format!(
        "connections:\n  db:\n    type: postgres\n    dsn: '{PG_URL}'\n    retry_attempts: 3\n    retry_delay: 10ms\n"
    ))
    .unwrap();
    let events = Recorder::start(&mgr);
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let result = conn
        .retry(|mut c: dbmanager::PooledConnection<sqlx::Postgres>| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let mut tx = sqlx::Connection::begin(&mut *c).await?;
                sqlx::query("set transaction read only")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("create temp table t_ro (x int)")
                    .execute(&mut *tx)
                    .await
            }
        })
        .await;
    assert!(result.is_err());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events.count(|k| matches!(k, EventKind::PoolCleared { .. })),
        0,
        "{:?}",
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| format!("{:?}", e.kind))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "retried an application error"
    );
    let s = conn.stats().pool;
    assert_eq!(s.closed_total, 0, "connections churned: {s:?}");
    mgr.close().await;
}

/// The other half: a real failover still clears at once. The server comes back
/// as a standby; the first write's `25006` clears the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_standby_still_clears_the_pool() {
    use crate::support::{Recorder, eventually};
    use dbmanager::events::ClearReason;
    use dbmanager::{ErrorClass, EventKind};
    use std::time::Duration;
    let pg = support::blocking(|| support::TempPostgres::start("failover")).await;
    let mgr = Manager::from_yaml_str(&format!(
        "connections:\n  db:\n    type: postgres\n    dsn: '{}'\n    health_check_interval: 1h\n",
        pg.url_via(pg.port)
    ))
    .unwrap();
    let events = Recorder::start(&mgr);
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let pool = conn.postgres().unwrap();
    sqlx::query("create table t (x int)")
        .execute(&pool)
        .await
        .unwrap();
    let pg = std::sync::Arc::new(pg);
    let p = std::sync::Arc::clone(&pg);
    support::blocking(move || p.restart_as_standby()).await;
    // Whatever the restart cost, the pool now reaches a standby: a write is refused.
    let err = loop {
        match sqlx::query("insert into t values (1)").execute(&pool).await {
            Err(e) if conn.report_error(&e) == ErrorClass::ReadOnly => break e,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(_) => panic!("a standby accepted a write"),
        }
    };
    assert!(err.to_string().contains("read-only"), "{err}");
    let read_only_clear = || {
        events.count(|k| {
            matches!(
                k,
                EventKind::PoolCleared {
                    reason: ClearReason::ErrorReported(ErrorClass::ReadOnly),
                    ..
                }
            )
        }) >= 1
    };
    assert!(
        eventually(Duration::from_secs(2), read_only_clear).await,
        "{:?}",
        events.names()
    );
    mgr.close().await;
}

/// `retry` re-ran a write whose outcome was unknown: the connection was cut after
/// the INSERT reached the server, and the retry inserted a second row. Now `retry` re-runs
/// only what is safe by construction (serialization failures and deadlocks, which roll
/// back; a read-only refusal); a lost connection is retried only by `retry_idempotent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_never_runs_a_write_twice_when_its_outcome_is_unknown() {
    use crate::support::{proxy::FaultProxy, unique};
    use std::time::Duration;
    let admin = support::require_postgres().await;
    let table = unique("retry_once");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create table {table} (x int)")))
        .execute(&admin)
        .await
        .unwrap();
    let proxy = FaultProxy::start(5432).await;
    let mgr = Manager::from_yaml_str(&format!(
        "connections:\n  db:\n    type: postgres\n    dsn: 'postgres://postgres@127.0.0.1:{}/test'\n    retry_attempts: 3\n    retry_delay: 10ms\n    health_check_interval: 1h\n",
        proxy.port()
    ))
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    // The INSERT reaches the server at ~400 ms; its answer would be back at ~800 ms; the
    // connection is cut at ~600 ms, in between.
    proxy.set_latency(Duration::from_millis(400));
    let cutter = tokio::spawn({
        let proxy_cut = std::sync::Arc::new(proxy);
        let p = std::sync::Arc::clone(&proxy_cut);
        async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            p.cut_all();
            p.set_latency(Duration::ZERO);
            proxy_cut
        }
    });
    let insert = format!("insert into {table} values (1)");
    let result = conn
        .retry(|mut c: dbmanager::PooledConnection<sqlx::Postgres>| {
            let insert = insert.clone();
            async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(insert))
                    .execute(&mut *c)
                    .await
                    .map(|_| ())
            }
        })
        .await;
    let _proxy = cutter.await.unwrap();
    let rows: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&admin)
            .await
            .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("drop table {table}")))
        .execute(&admin)
        .await
        .unwrap();
    mgr.close().await;
    assert_eq!(rows, 1, "the write ran {rows} times");
    let err = result.expect_err("the outcome is unknown: an error, not a retry");
    assert_eq!(
        err.class(),
        Some(dbmanager::ErrorClass::ConnectionLost),
        "{err:?}"
    );
}
