//! Prometheus metrics checked against known activity: N acquires move the histogram's
//! count by N, a forced timeout moves its counter by 1, a killed server takes `up` to 0
//! and back with reconnect attempts counted, a closed connection's series disappear,
//! `enable_metrics: false` leaves a connection out, two managers share a registry
//! through labelled sub-registries, and no password reaches the exposition.

use crate::support;

use dbmanager::Manager;
use dbmanager::prometheus_client::registry::Registry;
use std::time::Duration;
use support::metrics::{scrape, text, value};
use support::{blocking, eventually};

const SQLITE: &str = "connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\n    max_open_conns: 1\n    acquire_timeout: 200ms\n  quiet:\n    type: sqlite\n    filepath: ':memory:'\n    enable_metrics: false\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_metrics_follow_known_activity() {
    let mgr = Manager::from_yaml_str(SQLITE).unwrap();
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();
    let cache = [
        ("connection", "cache"),
        ("type", "sqlite"),
        ("pool", "main"),
    ];
    assert_eq!(
        value(&registry, "dbmanager_connection_up", &cache[..2]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &registry,
            "dbmanager_connection_state",
            &[cache[0], ("state", "healthy")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &registry,
            "dbmanager_connection_state",
            &[cache[0], ("state", "unhealthy")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&registry, "dbmanager_pool_max_connections", &cache),
        Some(1.0)
    );
    // `enable_metrics: false`: no series at all.
    assert!(!text(&registry).contains("connection=\"quiet\""));

    // N acquires move the histogram's count by N.
    let conn = mgr.get("cache").unwrap();
    let before = value(
        &registry,
        "dbmanager_acquire_duration_seconds_count",
        &cache,
    )
    .unwrap();
    for _ in 0..7 {
        drop(conn.acquire::<sqlx::Sqlite>().await.unwrap());
    }
    let after = value(
        &registry,
        "dbmanager_acquire_duration_seconds_count",
        &cache,
    )
    .unwrap();
    assert_eq!(after - before, 7.0);
    assert_eq!(
        value(
            &registry,
            "dbmanager_acquire_duration_seconds_bucket",
            &[cache[0], ("le", "+Inf")]
        ),
        Some(after)
    );

    // A held connection shows as in use; a second acquire is pending, then times out.
    let held = conn.acquire::<sqlx::Sqlite>().await.unwrap();
    assert_eq!(
        value(
            &registry,
            "dbmanager_pool_connections",
            &[cache[0], ("state", "in_use")]
        ),
        Some(1.0)
    );
    let waiting = tokio::spawn({
        let conn = conn.clone();
        async move { conn.acquire::<sqlx::Sqlite>().await.map(drop) }
    });
    assert!(
        eventually(Duration::from_secs(2), || {
            value(&registry, "dbmanager_pool_pending_requests", &cache) == Some(1.0)
        })
        .await
    );
    assert!(
        waiting.await.unwrap().is_err(),
        "the second acquire times out"
    );
    assert_eq!(
        value(&registry, "dbmanager_acquire_timeouts_total", &cache),
        Some(1.0)
    );
    assert_eq!(
        value(&registry, "dbmanager_pool_pending_requests", &cache),
        Some(0.0)
    );
    drop(held);

    // Health checks: the histogram's count moves by the number of checks.
    let ok = [cache[0], ("result", "ok")];
    let checks = value(
        &registry,
        "dbmanager_health_check_duration_seconds_count",
        &ok,
    )
    .unwrap();
    for _ in 0..3 {
        conn.health_check().await.unwrap();
    }
    let now = value(
        &registry,
        "dbmanager_health_check_duration_seconds_count",
        &ok,
    )
    .unwrap();
    assert_eq!(now - checks, 3.0);
    // A swap and a requested clear.
    conn.reconnect().await.unwrap();
    conn.clear();
    assert_eq!(
        value(&registry, "dbmanager_swaps_total", &cache[..2]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &registry,
            "dbmanager_pool_clears_total",
            &[cache[0], ("reason", "requested")]
        ),
        Some(1.0)
    );
    assert!(value(&registry, "dbmanager_connections_opened_total", &cache).unwrap() >= 2.0);

    // Closed: the connection's series are gone.
    mgr.close().await;
    assert!(
        !text(&registry).contains("connection=\"cache\""),
        "{}",
        text(&registry)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_takes_up_to_zero_and_back_with_reconnects_counted() {
    let pg = blocking(|| support::TempPostgres::start("metrics-pw")).await;
    let yaml = format!(
        "connections:\n  db:\n    type: postgres\n    dsn: '{}'\n    health_check_interval: 200ms\n    health_check_timeout: 1s\n    retry_delay: 100ms\n    retry_max_delay: 500ms\n    connect_timeout: 1s\n",
        pg.url_via(pg.port)
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();
    let db = [("connection", "db"), ("type", "postgres")];
    assert_eq!(value(&registry, "dbmanager_connection_up", &db), Some(1.0));
    let pg = std::sync::Arc::new(pg);
    let p = std::sync::Arc::clone(&pg);
    blocking(move || p.kill9()).await;
    assert!(
        eventually(Duration::from_secs(10), || {
            value(&registry, "dbmanager_connection_up", &db) == Some(0.0)
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            value(
                &registry,
                "dbmanager_reconnect_attempts_total",
                &[db[0], ("result", "error")],
            )
            .is_some_and(|v| v >= 1.0)
        })
        .await
    );
    assert!(
        value(
            &registry,
            "dbmanager_health_check_duration_seconds_count",
            &[db[0], ("result", "error")]
        )
        .is_some_and(|v| v >= 1.0)
    );
    let p = std::sync::Arc::clone(&pg);
    blocking(move || p.restart()).await;
    assert!(
        eventually(Duration::from_secs(15), || {
            value(&registry, "dbmanager_connection_up", &db) == Some(1.0)
        })
        .await
    );
    assert_eq!(
        value(
            &registry,
            "dbmanager_reconnect_attempts_total",
            &[db[0], ("result", "ok")]
        ),
        Some(1.0)
    );
    let clears: f64 = scrape(&registry)
        .into_iter()
        .filter(|(s, _)| {
            s.starts_with("dbmanager_pool_clears_total{") && s.contains("connection=\"db\"")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(clears >= 1.0, "the restart cleared the pool");
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_share_a_registry_and_no_password_is_exposed() {
    const CANARY: &str = "Kq$%@:/?#'\" ñ€Zt";
    let pg = blocking(|| support::TempPostgres::start(CANARY)).await;
    let yaml = format!(
        "connections:\n  db:\n    type: postgres\n    host: 127.0.0.1\n    port: {}\n    user: dbm\n    password: '{}'\n    database: postgres\n    sslmode: disable\n",
        pg.port,
        CANARY.replace('\'', "''")
    );
    let a = Manager::from_yaml_str(&yaml).unwrap();
    let b = Manager::from_yaml_str(SQLITE).unwrap();
    let mut registry = Registry::default();
    a.register_metrics(registry.sub_registry_with_label(("manager".into(), "a".into())));
    b.register_metrics(registry.sub_registry_with_label(("manager".into(), "b".into())));
    a.connect().await.unwrap();
    b.connect().await.unwrap();
    assert_eq!(
        value(
            &registry,
            "dbmanager_connection_up",
            &[("manager", "a"), ("connection", "db")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &registry,
            "dbmanager_connection_up",
            &[("manager", "b"), ("connection", "cache")]
        ),
        Some(1.0)
    );
    let exposed = text(&registry);
    for fragment in [CANARY, "Kq$%", "ñ€Zt", "dbm:"] {
        assert!(!exposed.contains(fragment), "`{fragment}` in /metrics");
    }
    a.close().await;
    b.close().await;
}

/// The connection monitor: with `monitor_interval`, one `tracing` line per
/// connection per interval with its pool statistics; off by default.
#[test]
fn the_monitor_logs_pool_stats_at_its_interval_and_is_off_by_default() {
    for (setting, expected) in [("monitor_interval: 150ms\n", true), ("", false)] {
        let logs = support::Captured::default();
        logs.during(async {
            let yaml = format!(
                "{setting}connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\n"
            );
            let mgr = Manager::from_yaml_str(&yaml).unwrap();
            mgr.connect().await.unwrap();
            tokio::time::sleep(Duration::from_millis(520)).await;
            assert!(mgr.close().await);
            assert_eq!(mgr.task_count(), 0);
        });
        let logs = logs.text();
        let lines = logs
            .lines()
            .filter(|l| l.contains("pool stats") && l.contains("connection=cache"))
            .count();
        if expected {
            assert!(
                (2..=4).contains(&lines),
                "{lines} monitor lines in 520 ms:\n{logs}"
            );
            assert!(
                logs.contains("in_use=0") && logs.contains("health=healthy"),
                "{logs}"
            );
        } else {
            assert_eq!(lines, 0, "the monitor is off by default:\n{logs}");
        }
    }
}

/// While a connection is down, every failed probe clears its pool, which is empty after
/// the first: the outage counts (and logs) one clear, not one per probe, so the frequent-
/// clears alert does not fire beside the connection-down one. The stats say why it is
/// down, and the histograms are in base units reaching past `acquire_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_counts_one_clear_and_the_stats_name_its_error() {
    use crate::support::{Recorder, proxy::FaultProxy};
    use dbmanager::EventKind;
    support::require_postgres().await;
    let proxy = FaultProxy::start(5432).await;
    let mgr = Manager::from_yaml_str(&format!(
        "connections:\n  db:\n    type: postgres\n    dsn: 'postgres://postgres@127.0.0.1:{}/test'\n    health_check_interval: 100ms\n    health_check_timeout: 200ms\n    retry_delay: 20ms\n    retry_max_delay: 100ms\n",
        proxy.port()
    ))
    .unwrap();
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();
    let events = Recorder::start(&mgr);
    let conn = mgr.get("db").unwrap();
    // The idle connections go, and nothing listens any more.
    proxy.down();
    assert!(
        eventually(Duration::from_secs(10), || {
            events.count(|k| matches!(k, EventKind::ReconnectAttempt { .. })) >= 5
        })
        .await,
        "the supervisor kept probing: {:?}",
        events.names()
    );
    let cleared = events.count(|k| matches!(k, EventKind::PoolCleared { .. }));
    assert!(
        cleared <= 1,
        "{cleared} clear events for one outage: {:?}",
        events.names()
    );
    let counted: f64 = scrape(&registry)
        .into_iter()
        .filter(|(s, _)| {
            s.starts_with("dbmanager_pool_clears_total{") && s.contains("connection=\"db\"")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(counted <= 1.0, "{counted} clears counted for one outage");
    let stats = conn.stats();
    let why = stats
        .last_error
        .clone()
        .expect("the stats say why it is down");
    assert!(why.contains("refused"), "{why}");
    // Base units, and a bucket past the default acquire_timeout (30 s).
    let exposition = text(&registry);
    assert!(
        exposition.contains("dbmanager_acquire_duration_seconds_bucket{")
            && exposition.contains("le=\"300.0\""),
        "{exposition}"
    );
    assert!(!exposition.contains("_milliseconds"), "{exposition}");
    proxy.accept_again();
    mgr.close().await;
}

/// A checkout held past `leak_detection_threshold` is reported once, naming the line that
/// made it, and counted in `dbmanager_leaks_suspected_total`; one given back in time is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_held_past_the_leak_threshold_is_reported_once_with_its_caller() {
    support::require_postgres().await.close().await;
    let yaml = format!(
        "connections:\n  db:\n    type: postgres\n    dsn: '{}'\n    leak_detection_threshold: 300ms\n",
        support::PG_URL
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();
    let rec = support::Recorder::start(&mgr);
    let db = mgr.postgres("db").unwrap();
    let leaks = || {
        rec.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.kind {
                dbmanager::EventKind::LeakSuspected { held, caller } => {
                    Some((*held, caller.file().to_owned(), caller.line()))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let quick = db.acquire().await.unwrap();
    drop(quick);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(leaks(), [], "a checkout given back in time is no leak");
    let line = line!() + 1;
    let held = db.begin().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let seen = leaks();
    assert_eq!(seen.len(), 1, "reported once: {seen:?}");
    assert_eq!(seen[0].0, Duration::from_millis(300));
    assert!(
        seen[0].1.ends_with("metrics.rs") && seen[0].2 == line,
        "{seen:?}"
    );
    drop(held);
    let labels = [("connection", "db"), ("type", "postgres")];
    assert_eq!(
        value(&registry, "dbmanager_leaks_suspected_total", &labels),
        Some(1.0)
    );
    mgr.close().await;
}
