//! Behaviour: empty passwords, read-only errors, what `retry` re-runs, counters.

use crate::support::{self, PG_URL};
use dbmanager::Manager;

/// Item 14: `password: ""` (config.example.yaml's `orders`, or `${VAR:-}` with VAR unset)
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

/// Item 13: a failed probe counted two pool clears (the pool's ping cleared, then the
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
    let held: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| conn.acquire::<sqlx::Postgres>()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
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
    let held: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| conn.acquire::<sqlx::Postgres>()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
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
    let counted = conn.stats().pool.closed_cleared - cleared_before;
    assert!(counted >= 1);
    assert_eq!(
        cleared,
        [u32::try_from(counted).unwrap()],
        "PoolCleared events and their closed_idle (the stats counted {counted})"
    );
    mgr.close().await;
}
