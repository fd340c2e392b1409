//! Connections added and removed while the manager runs, against the machine's
//! PostgreSQL.

use crate::support::{self, metrics::scrape};
use dbmanager::config::ConnectionConfig;
use dbmanager::prometheus_client::registry::Registry;
use dbmanager::{Error, Manager};
use std::time::{Duration, Instant};

fn pg_section(app: &str) -> String {
    format!(
        "type: postgres\nhost: 127.0.0.1\nuser: postgres\ndatabase: test\nsslmode: disable\n\
         application_name: {app}\nmax_open_conns: 4\nclose_timeout: 10s\n"
    )
}

/// A manager with one SQLite connection, metrics registered.
async fn manager() -> (Manager, Registry) {
    let mgr = Manager::from_yaml_str(
        "connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\n",
    )
    .unwrap();
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();
    (mgr, registry)
}

fn series_of(registry: &Registry, name: &str) -> usize {
    let label = format!("connection=\"{name}\"");
    scrape(registry)
        .iter()
        .filter(|(s, _)| s.contains(&label))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_validates_opens_supervises_and_exports_the_new_connection() {
    let observer = support::require_postgres().await;
    let (mgr, registry) = manager().await;
    let app = support::unique("dbm_add");
    let tasks_before = mgr.task_count();

    // Validated as the file is: the error names the YAML path.
    let bad =
        ConnectionConfig::from_yaml("primary", "type: postgres\nhost: h\nmax_open_conns: 0\n")
            .unwrap_err()
            .to_string();
    assert!(bad.contains("connections.primary.max_open_conns"), "{bad}");
    assert!(bad.contains("connections.primary.database"), "{bad}");

    let config = ConnectionConfig::from_yaml("primary", &pg_section(&app)).unwrap();
    let conn = mgr.add(config.clone()).await.unwrap();
    assert_eq!(mgr.names(), ["cache", "primary"]);
    let got = mgr.get("primary").unwrap();
    let n: i32 = sqlx::query_scalar("select 41 + 1")
        .fetch_one(&mut *got.acquire::<sqlx::Postgres>().await.unwrap())
        .await
        .unwrap();
    assert_eq!(n, 42);
    assert_eq!(conn.health().state, dbmanager::HealthState::Healthy);
    assert!(mgr.task_count() > tasks_before, "a supervisor was started");
    assert!(
        series_of(&registry, "primary") > 0,
        "the new connection is exported"
    );
    let sessions = support::pg_sessions(&observer, &app);
    assert!(sessions().await >= 1);

    // The name is taken.
    match mgr.add(config).await {
        Err(Error::AlreadyExists { name }) => assert_eq!(name, "primary"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // A strict connection that cannot connect is not added.
    let refused = ConnectionConfig::from_yaml(
        "nowhere",
        &format!(
            "type: postgres\nhost: 127.0.0.1\nport: {}\ndatabase: test\nconnect_timeout: 2s\n",
            support::free_port()
        ),
    )
    .unwrap();
    let err = mgr.add(refused).await.unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert!(mgr.get("nowhere").is_err());
    mgr.close().await;
    assert_eq!(mgr.task_count(), 0);
    let left = support::sessions_settled(&sessions, 0).await;
    assert_eq!(left, 0, "sessions still open 2 s after close()");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_drains_in_flight_work_then_closes_and_drops_the_series() {
    let observer = support::require_postgres().await;
    let (mgr, registry) = manager().await;
    let app = support::unique("dbm_remove");
    let config = ConnectionConfig::from_yaml("primary", &pg_section(&app)).unwrap();
    let kept = mgr.add(config).await.unwrap();
    let tasks_with = mgr.task_count();
    let sessions = support::pg_sessions(&observer, &app);

    // A query in flight when the removal starts.
    let mut held = kept.acquire::<sqlx::Postgres>().await.unwrap();
    let query = tokio::spawn(async move {
        sqlx::query_scalar::<_, i32>("select 7 from pg_sleep(0.6)")
            .fetch_one(&mut *held)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let removing = {
        let mgr = mgr.clone();
        tokio::spawn(async move { mgr.remove("primary").await })
    };
    // Gone from the manager at once, while the query still runs.
    assert!(
        support::eventually(Duration::from_millis(300), || mgr.get("primary").is_err()).await,
        "get still finds a connection being removed"
    );
    assert!(!query.is_finished());
    assert_eq!(
        query.await.unwrap().unwrap(),
        7,
        "the in-flight query finished"
    );
    let drained = removing.await.unwrap().unwrap();
    assert!(drained, "removal drained in time");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(matches!(
        mgr.get("primary"),
        Err(Error::UnknownConnection { .. })
    ));
    // A handle taken before fails cleanly.
    assert!(matches!(
        kept.acquire::<sqlx::Postgres>().await,
        Err(Error::Closed { .. })
    ));
    assert_eq!(
        support::sessions_settled(&sessions, 0).await,
        0,
        "its server sessions are closed"
    );
    assert!(mgr.task_count() < tasks_with, "its supervisor ended");
    assert_eq!(series_of(&registry, "primary"), 0, "its series are gone");
    assert!(series_of(&registry, "cache") > 0);
    // The name can be used again, with fresh counters.
    let again = ConnectionConfig::from_yaml("primary", &pg_section(&app)).unwrap();
    mgr.add(again).await.unwrap();
    assert!(mgr.get("primary").is_ok());
    assert!(matches!(
        mgr.remove("missing").await,
        Err(Error::UnknownConnection { .. })
    ));
    mgr.close().await;
}

/// `get` never waits for a change of the set: an add stuck connecting to a server that
/// never answers does not hold up lookups of the other connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_does_not_wait_for_an_add_in_progress() {
    let (mgr, _registry) = manager().await;
    let proxy = support::proxy::FaultProxy::start(5432).await;
    proxy.black_hole(true);
    let config = ConnectionConfig::from_yaml(
        "stuck",
        &format!(
            "type: postgres\nhost: 127.0.0.1\nport: {}\nuser: postgres\ndatabase: test\n\
             sslmode: disable\nconnect_timeout: 3s\n",
            proxy.port()
        ),
    )
    .unwrap();
    let adding = {
        let mgr = mgr.clone();
        tokio::spawn(async move { mgr.add(config).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..1000 {
        assert!(mgr.get("cache").is_ok());
        assert!(mgr.connection("cache").is_ok());
    }
    assert!(
        !adding.is_finished(),
        "the add was still connecting during the lookups"
    );
    let err = adding.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("stuck"), "{err}");
    mgr.close().await;
}

/// Resident memory of this process, in KiB (`/proc/self/statm`).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// Memory follows the live connections: a removed connection's pools, settings and
/// secrets are freed (its handle keeps only a closed shell of about 3 KiB, so that
/// lock-free lookups can lend `&Connection`). 2,000 add/remove cycles after a warm-up
/// (`DBMANAGER_CYCLES=10000` for the full measurement); before, each kept about 10 KiB.
///
/// Resident memory is the process's, and the other tests of this binary allocate
/// meanwhile: the measurement runs in a child process of its own (this test binary,
/// filtered to this test, with `DBMANAGER_MEMORY_CHILD` set).
#[test]
fn add_and_remove_cycles_free_what_each_connection_held() {
    const NAME: &str = "scaling::runtime::add_and_remove_cycles_free_what_each_connection_held";
    if std::env::var_os("DBMANAGER_MEMORY_CHILD").is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(add_and_remove_cycles());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env("DBMANAGER_MEMORY_CHILD", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the measuring process failed:\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "the measuring process ran no test:\n{text}"
    );
    print!("{text}");
}

async fn add_and_remove_cycles() {
    let (mgr, _registry) = manager().await;
    let section = "type: sqlite\nfilepath: ':memory:'\ntags:\n  team: payments\n";
    let cycle = |i: usize| {
        let mgr = mgr.clone();
        async move {
            let name = format!("c{i}");
            let config = ConnectionConfig::from_yaml(&name, section).unwrap();
            mgr.add(config).await.unwrap();
            assert!(mgr.remove(&name).await.unwrap());
        }
    };
    let cycles: usize = std::env::var("DBMANAGER_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    for i in 0..500 {
        cycle(i).await;
    }
    let before = rss_kib();
    let started = Instant::now();
    for i in 500..500 + cycles {
        cycle(i).await;
    }
    let grown = rss_kib().saturating_sub(before);
    let per_cycle = grown * 1024 / cycles as u64;
    println!(
        "{cycles} add/remove cycles in {:?}: resident memory grew {grown} KiB ({per_cycle} bytes a cycle)",
        started.elapsed()
    );
    assert!(
        per_cycle < 5 * 1024,
        "resident memory grew {grown} KiB over {cycles} add/remove cycles ({per_cycle} bytes a cycle)"
    );
    assert_eq!(mgr.names(), ["cache"]);
    // The last removed connection's tasks end on their own, soon after.
    assert!(
        support::eventually(Duration::from_secs(10), || mgr.task_count() == 2).await,
        "tasks left besides the remaining connection's two: {}",
        mgr.task_count()
    );
    mgr.close().await;
}
