//! Read replicas against a real streaming replica: a throwaway PostgreSQL primary and two
//! hot standbys made with `pg_basebackup -R`.

use crate::support::{self, TempPostgres};
use dbmanager::{Connection, Error, Manager};
use std::collections::HashMap;
use std::time::Duration;

struct Cluster {
    primary: TempPostgres,
    standbys: Vec<TempPostgres>,
}

fn cluster(standbys: usize) -> Cluster {
    let primary = TempPostgres::start("rep pw");
    let standbys = (0..standbys).map(|_| primary.start_standby()).collect();
    Cluster { primary, standbys }
}

impl Cluster {
    fn url(pg: &TempPostgres) -> String {
        format!("{}?sslmode=disable", pg.url_via(pg.port))
    }

    /// A manager whose `main` connection is the primary with the standbys as replicas
    /// `r1`, `r2`... (`weights` for each; 1 when missing).
    async fn manager(&self, extra: &str, weights: &[u32]) -> Manager {
        let replicas: String = self
            .standbys
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "      - name: r{}\n        dsn: '{}'\n        weight: {}\n",
                    i + 1,
                    Cluster::url(s),
                    weights.get(i).copied().unwrap_or(1)
                )
            })
            .collect();
        let yaml = format!(
            "connections:\n  main:\n    type: postgres\n    dsn: '{}'\n    health_check_interval: 200ms\n    \
             health_check_timeout: 1s\n    retry_delay: 50ms\n    retry_max_delay: 200ms\n    acquire_timeout: 5s\n    \
             replicas:\n{replicas}{extra}",
            Cluster::url(&self.primary)
        );
        let mgr = Manager::from_yaml_str(&yaml).unwrap();
        mgr.connect().await.unwrap();
        let main = mgr.get("main").unwrap();
        let up = support::eventually(Duration::from_secs(15), || {
            main.replicas()
                .iter()
                .all(|r| r.health().state == dbmanager::HealthState::Healthy)
        })
        .await;
        assert!(
            up,
            "the replicas did not come up: {:?}",
            main.replica_stats()
        );
        mgr
    }

    /// Which server's port answered, for each standby's port: its replica name.
    fn names_by_port(&self) -> HashMap<i32, String> {
        let mut m: HashMap<i32, String> = self
            .standbys
            .iter()
            .enumerate()
            .map(|(i, s)| (i32::from(s.port), format!("r{}", i + 1)))
            .collect();
        m.insert(i32::from(self.primary.port), "primary".into());
        m
    }
}

/// The port of the server `conn` runs queries on.
async fn server_port(conn: &Connection) -> Result<i32, Error> {
    let mut c = conn.acquire::<sqlx::Postgres>().await?;
    Ok(sqlx::query_scalar("select inet_server_port()")
        .fetch_one(&mut *c)
        .await
        .expect("inet_server_port"))
}

/// Where `n` reads through `reader()` went, by server.
async fn spread(c: &Cluster, main: &Connection, n: usize) -> HashMap<String, usize> {
    let names = c.names_by_port();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let port = server_port(&main.reader().unwrap()).await.unwrap();
        *counts.entry(names[&port].clone()).or_insert(0) += 1;
    }
    counts
}

fn within(counts: &HashMap<String, usize>, name: &str, expected: usize, tolerance: usize) {
    let got = counts.get(name).copied().unwrap_or(0);
    assert!(
        got.abs_diff(expected) <= tolerance,
        "{name}: {got} reads, expected {expected} ± {tolerance}: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_by_strategy_and_writes_through_reader_fail_as_read_only() {
    let c = cluster(2);
    let mgr = c.manager("", &[]).await;
    let main = mgr.get("main").unwrap();
    let counts = spread(&c, &main, 1000).await;
    within(&counts, "r1", 500, 50);
    within(&counts, "r2", 500, 50);
    assert_eq!(counts.get("primary"), None);

    // A write through reader() fails as read-only; through the connection it works and
    // reaches the replicas.
    let reader = main.reader().unwrap();
    let mut conn = reader.acquire::<sqlx::Postgres>().await.unwrap();
    let err = sqlx::query("create table t_rep (id int)")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|d| d.code())
        .unwrap_or_default();
    assert_eq!(code, "25006", "{err}");
    drop(conn);
    // Through `retry` on the replica: refused at once, not retried, and the replica's
    // pool is not cleared (a replica refuses writes by design: no failover).
    let clears = reader.stats().pool.pool_clears;
    let retried = reader
        .retry(
            |mut c: dbmanager::PooledConnection<sqlx::Postgres>| async move {
                sqlx::query("create table t_rep_retry (id int)")
                    .execute(&mut *c)
                    .await
                    .map(drop)
            },
        )
        .await;
    assert!(retried.is_err(), "a write on a replica succeeded");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        reader.stats().pool.pool_clears,
        clears,
        "a read-only refusal on a replica cleared its pool"
    );
    let mut w = main.acquire::<sqlx::Postgres>().await.unwrap();
    sqlx::query("create table t_rep (id int)")
        .execute(&mut *w)
        .await
        .unwrap();
    sqlx::query("insert into t_rep values (1)")
        .execute(&mut *w)
        .await
        .unwrap();
    drop(w);
    let replicated = async {
        loop {
            let mut r = main
                .reader()
                .unwrap()
                .acquire::<sqlx::Postgres>()
                .await
                .unwrap();
            let seen: Option<i64> = sqlx::query_scalar("select count(*) from t_rep")
                .fetch_one(&mut *r)
                .await
                .ok();
            if seen == Some(1) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), replicated)
        .await
        .expect("replication");
    assert_eq!(
        reader.health().state,
        dbmanager::HealthState::Healthy,
        "a read-only error is no failover on a replica"
    );
    let stats = main.replica_stats();
    assert!(stats.iter().all(|s| s.selected_total >= 500), "{stats:?}");
    mgr.close().await;

    // Weighted round robin, 3:1.
    let mgr = c.manager("", &[3, 1]).await;
    let counts = spread(&c, &mgr.get("main").unwrap(), 1000).await;
    within(&counts, "r1", 750, 75);
    within(&counts, "r2", 250, 25);
    mgr.close().await;

    // Random, 1:1.
    let mgr = c.manager("    load_balancing: random\n", &[]).await;
    let counts = spread(&c, &mgr.get("main").unwrap(), 1000).await;
    within(&counts, "r1", 500, 50);
    within(&counts, "r2", 500, 50);
    mgr.close().await;

    // Least connections: with four connections held on r1, reads go to r2. r2 has at
    // most three in use at once: the one a read just returned, its health check (every
    // 200 ms here) and its lag sample. With two held on r1, a loaded CI machine once
    // caught r2 at two (a read and its health check) and the tie went to r1.
    let mgr = c
        .manager("    load_balancing: least_connections\n", &[])
        .await;
    let main = mgr.get("main").unwrap();
    let r1 = main.replica("r1").unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(r1.acquire::<sqlx::Postgres>().await.unwrap());
    }
    let counts = spread(&c, &main, 100).await;
    assert_eq!(counts.get("r2"), Some(&100), "{counts:?}");
    drop(held);
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_skipped_then_rejoins_and_fallback_applies() {
    let c = cluster(2);
    let mgr = c.manager("", &[]).await;
    let mut registry = dbmanager::prometheus_client::registry::Registry::default();
    mgr.register_metrics(&mut registry);
    let rec = support::Recorder::start(&mgr);
    let main = mgr.get("main").unwrap();
    let up = |r: &str| {
        support::metrics::value(
            &registry,
            "dbmanager_replica_up",
            &[("connection", "main"), ("replica", r)],
        )
    };
    assert_eq!((up("r1"), up("r2")), (Some(1.0), Some(1.0)));
    c.standbys[0].kill9();
    // Within one health interval (200 ms) plus a probe's timeout, r1 is out.
    let r1 = main.replica("r1").unwrap();
    assert!(
        support::eventually(Duration::from_secs(2), || r1.health().state
            != dbmanager::HealthState::Healthy)
        .await,
        "r1 still healthy"
    );
    let acquired = |r: &str| {
        support::metrics::value(
            &registry,
            "dbmanager_replica_acquire_duration_seconds_count",
            &[("connection", "main"), ("replica", r)],
        )
        .unwrap_or(0.0)
    };
    let before = acquired("r2");
    let counts = spread(&c, &main, 200).await;
    assert_eq!(counts.get("r2"), Some(&200), "{counts:?}");
    // The reads are counted in the acquire histogram of the replica they went to.
    assert!(
        acquired("r2") - before >= 200.0,
        "{} acquires on r2",
        acquired("r2") - before
    );
    // Seen in metrics, stats and events, under the connection.
    assert_eq!((up("r1"), up("r2")), (Some(0.0), Some(1.0)));
    let stats = mgr.stats();
    let replicas = &stats.connections[0].replicas;
    assert_eq!(replicas[0].name, "r1");
    assert_ne!(
        replicas[0].connection.health,
        dbmanager::HealthState::Healthy
    );
    assert_eq!(stats.healthy, 1, "the connection itself is still healthy");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r1_down = rec.0.lock().unwrap().iter().any(|e| {
        &*e.connection == "main"
            && e.replica.as_deref() == Some("r1")
            && matches!(e.kind, dbmanager::EventKind::HealthChanged { .. })
    });
    assert!(r1_down, "no health event for main/r1: {:?}", rec.names());

    // Both down: the primary serves reads (fallback: primary).
    c.standbys[1].kill9();
    let r2 = main.replica("r2").unwrap();
    assert!(
        support::eventually(Duration::from_secs(2), || r2.health().state
            != dbmanager::HealthState::Healthy)
        .await
    );
    let counts = spread(&c, &main, 10).await;
    assert_eq!(counts.get("primary"), Some(&10), "{counts:?}");

    // Back: both rejoin.
    c.standbys[0].restart();
    c.standbys[1].restart();
    let back = support::eventually(Duration::from_secs(15), || {
        main.replicas()
            .iter()
            .all(|r| r.health().state == dbmanager::HealthState::Healthy)
    })
    .await;
    assert!(back, "{:?}", main.replica_stats());
    let counts = spread(&c, &main, 100).await;
    within(&counts, "r1", 50, 5);
    mgr.close().await;

    // fallback: error
    let mgr = c.manager("    fallback: error\n", &[]).await;
    let main = mgr.get("main").unwrap();
    c.standbys[0].kill9();
    c.standbys[1].kill9();
    let down = support::eventually(Duration::from_secs(3), || main.reader().is_err()).await;
    assert!(down);
    assert!(matches!(main.reader(), Err(Error::NoReplica { .. })));
    mgr.close().await;
}

/// Readers that picked a replica before it vanished: their checkouts go to the primary at
/// once (`fallback: primary`) instead of waiting out `acquire_timeout` for the replica;
/// with `fallback: error` the error names the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_picked_a_vanished_replica_go_to_the_primary_at_once() {
    let c = cluster(1);
    let mgr = c.manager("", &[]).await;
    let main = mgr.get("main").unwrap();
    let names = c.names_by_port();
    // Handles picked while r1 was healthy, as request handlers hold them.
    let picked: Vec<Connection> = (0..4).map(|_| main.reader().unwrap()).collect();
    assert!(picked.iter().all(|r| r.replica_name() == Some("r1")));
    c.standbys[0].kill9();
    let r1 = main.replica("r1").unwrap();
    assert!(
        support::eventually(Duration::from_secs(3), || r1.health().state
            != dbmanager::HealthState::Healthy)
        .await,
        "r1 still healthy"
    );
    let reads = picked.iter().map(|r| async {
        let started = std::time::Instant::now();
        let port = server_port(r).await;
        (port, started.elapsed())
    });
    for (port, waited) in futures_util::future::join_all(reads).await {
        let port = port.expect("a read falls back to the primary");
        assert_eq!(names[&port], "primary");
        // `acquire_timeout` is 5 s: a read that waited for the replica would take that.
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");
    }
    mgr.close().await;

    // fallback: error: the replica's own outage policy, and the error names it.
    c.standbys[0].restart();
    let mgr = c
        .manager("    fallback: error\n    on_unavailable: fail_fast\n", &[])
        .await;
    let main = mgr.get("main").unwrap();
    let picked = main.reader().unwrap();
    c.standbys[0].kill9();
    let r1 = main.replica("r1").unwrap();
    assert!(
        support::eventually(Duration::from_secs(3), || r1.health().state
            != dbmanager::HealthState::Healthy)
        .await
    );
    let err = server_port(&picked).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.to_string().contains("`main/r1`"),
        "{err}"
    );
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_is_skipped_past_max_replica_lag_and_rejoins_when_caught_up() {
    let c = cluster(2);
    let mgr = c.manager("    max_replica_lag: 1s\n", &[]).await;
    let main = mgr.get("main").unwrap();
    let r1 = main.replica("r1").unwrap();
    let mut a = r1.acquire::<sqlx::Postgres>().await.unwrap();
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&mut *a)
        .await
        .unwrap();
    drop(a);
    // Writes keep coming on the primary; r1 does not replay them.
    let writer = {
        let main = main.clone();
        tokio::spawn(async move {
            let mut w = main.acquire::<sqlx::Postgres>().await.unwrap();
            sqlx::query("create table if not exists t_lag (at timestamptz)")
                .execute(&mut *w)
                .await
                .unwrap();
            for _ in 0..60 {
                sqlx::query("insert into t_lag values (now())")
                    .execute(&mut *w)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let skipped = support::eventually(Duration::from_secs(5), || {
        main.replica_stats()
            .iter()
            .any(|s| s.name == "r1" && s.lagging)
    })
    .await;
    assert!(skipped, "r1 not marked lagging: {:?}", main.replica_stats());
    let counts = spread(&c, &main, 100).await;
    assert_eq!(counts.get("r2"), Some(&100), "{counts:?}");
    let lag = main.replica_stats()[0].lag.unwrap();
    assert!(lag > Duration::from_secs(1), "{lag:?}");

    let mut a = r1.acquire::<sqlx::Postgres>().await.unwrap();
    sqlx::query("select pg_wal_replay_resume()")
        .execute(&mut *a)
        .await
        .unwrap();
    drop(a);
    let caught_up = support::eventually(Duration::from_secs(5), || {
        main.replica_stats().iter().all(|s| !s.lagging)
    })
    .await;
    assert!(caught_up, "{:?}", main.replica_stats());
    let counts = spread(&c, &main, 100).await;
    within(&counts, "r1", 50, 5);
    writer.abort();
    mgr.close().await;
}

/// `dbmanager check` lists each replica under its connection, and fails while one is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_replicas_under_their_connection() {
    let c = cluster(1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.yaml");
    let write = |dsn: &str| {
        std::fs::write(
            &file,
            format!(
                "connections:\n  main:\n    type: postgres\n    dsn: '{}'\n    replicas:\n      - name: r1\n        dsn: '{dsn}'\n",
                Cluster::url(&c.primary)
            ),
        )
        .unwrap();
    };
    write(&Cluster::url(&c.standbys[0]));
    let run = |file: std::path::PathBuf| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dbmanager"))
            .args(["check", "--config", file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = support::blocking({
        let file = file.clone();
        move || run(file)
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("main ") && l.contains("healthy")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("main/r1 ") && l.contains("healthy")),
        "{text}"
    );
    write(&format!(
        "postgres://dbm@127.0.0.1:{}/postgres?sslmode=disable",
        support::free_port()
    ));
    let out = support::blocking(move || run(file)).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("main/r1 ") && l.contains("unhealthy")),
        "{text}"
    );
}

/// A reload that changes the replicas (here, their weights) swaps the replica set; the
/// connection itself is untouched by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_replicas_takes_effect() {
    let c = cluster(2);
    let mgr = c.manager("", &[1, 1]).await;
    let main = mgr.get("main").unwrap();
    let yaml = |w1: u32| {
        format!(
            "connections:\n  main:\n    type: postgres\n    dsn: '{}'\n    health_check_interval: 200ms\n    \
             health_check_timeout: 1s\n    retry_delay: 50ms\n    retry_max_delay: 200ms\n    acquire_timeout: 5s\n    \
             replicas:\n      - name: r1\n        dsn: '{}'\n        weight: {w1}\n      - name: r2\n        dsn: '{}'\n        weight: 1\n",
            Cluster::url(&c.primary),
            Cluster::url(&c.standbys[0]),
            Cluster::url(&c.standbys[1]),
        )
    };
    let opened = main.stats().pool.opened_total;
    let report = mgr
        .reload(dbmanager::Config::from_yaml_str(&yaml(4)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        main.stats().pool.opened_total,
        opened,
        "the primary's pool was rebuilt"
    );
    assert_eq!(report.changed.len(), 1, "{report}");
    assert_eq!(report.changed[0].1, ["replicas"], "{report}");
    let up = support::eventually(Duration::from_secs(15), || {
        main.replicas()
            .iter()
            .all(|r| r.health().state == dbmanager::HealthState::Healthy)
    })
    .await;
    assert!(up, "{:?}", main.replica_stats());
    assert_eq!(main.replica_stats()[0].weight, 4);
    let counts = spread(&c, &main, 1000).await;
    within(&counts, "r1", 800, 80);
    within(&counts, "r2", 200, 20);
    mgr.close().await;
}
