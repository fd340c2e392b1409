//! Hangs, storms, data loss and races around `close()`.

use crate::support::{self, PG_URL, unique};
use dbmanager::Manager;
use std::time::Duration;

/// Runs `f` on a current-thread runtime in its own thread and fails the test if it does
/// not finish within `limit` (a future that never yields would hang the test instead).
fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = tx.send(rt.block_on(f()));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}: a hang or a spin"))
}

fn pg_yaml(app: &str, extra: &str) -> String {
    format!(
        "connections:\n  db:\n    type: postgres\n    dsn: '{PG_URL}?application_name={app}'\n    acquire_timeout: 3s\n{extra}"
    )
}

/// A pool closed by user code (not `Manager::close`) made `acquire` spin without
/// ever yielding. Now the connection replaces the closed pool and the acquire succeeds.
#[test]
fn acquire_recovers_when_user_code_closed_the_pool() {
    let app = unique("closed_by_user");
    within(Duration::from_secs(20), move || {
        Box::pin(async move {
            support::require_postgres().await;
            let mgr = Manager::from_yaml_str(&pg_yaml(&app, "")).unwrap();
            mgr.connect().await.unwrap();
            let conn = mgr.get("db").unwrap();
            conn.postgres().unwrap().close().await;
            let mut c = conn.acquire::<sqlx::Postgres>().await.expect("a new pool");
            let one: i32 = sqlx::query_scalar("select 1")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            assert_eq!(one, 1);
            drop(c);
            // The supervisor's probe recovers it too, and the raw pool is usable again.
            conn.postgres().unwrap().close().await;
            assert!(conn.health_check().await.is_ok(), "{:?}", conn.health());
            assert!(!conn.postgres().unwrap().is_closed());
            assert!(mgr.close().await);
        })
    });
}

/// Settings that make a storm visible: two idle connections wanted, a quick supervisor,
/// and a slow retry (2 s) for a fatal error such as a wrong password.
const STORM: &str = "    min_idle_conns: 2\n    max_open_conns: 4\n    health_check_interval: 300ms\n    retry_delay: 100ms\n    retry_max_delay: 2s\n";

/// The managed pool's maintenance refilled `min_idle_conns` every 250 ms whatever
/// the supervisor's backoff said: a wrong password meant ~8 failed logins a second, enough
/// to lock a SQL Server account. Counted at the server: the TDS gate's refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_not_retried_by_the_pool_behind_the_backoff_mssql() {
    let server = support::tds::MockTds::start(support::tds::Tls::Plain);
    let yaml = format!(
        "connections:\n  db:\n    type: mssql\n    host: 127.0.0.1\n    port: {}\n    user: sa\n    password: wrong\n    database: master\n    sslmode: disable\n    startup: lazy\n{STORM}",
        server.port
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    mgr.connect().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failed = server.failed_logins();
    assert!(mgr.get("db").unwrap().health().is_fatal());
    mgr.close().await;
    // The supervisor's first probe, then one every `retry_max_delay` (2 s).
    assert!((1..=3).contains(&failed), "{failed} failed logins in 3 s");
}

/// On PostgreSQL: the password is rotated on the server while the pool runs.
/// Counted at the server: "password authentication failed" in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_is_not_retried_by_the_pool_behind_the_backoff_postgres() {
    let pg = support::blocking(|| support::TempPostgres::start("before")).await;
    let url = format!("postgres://dbm:before@127.0.0.1:{}/postgres", pg.port);
    // Four warm connections: each one the clear closes used to cost a login attempt.
    let storm = STORM.replace("min_idle_conns: 2", "min_idle_conns: 4");
    let yaml = format!("connections:\n  db:\n    type: postgres\n    dsn: '{url}'\n{storm}");
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    // Pool warming: `min_idle_conns` are open as soon as connect() returns.
    assert_eq!(conn.stats().pool.open, 4, "{:?}", conn.stats().pool);
    let pool = conn.postgres().unwrap();
    sqlx::query("alter user dbm password 'after'")
        .execute(&pool)
        .await
        .unwrap();
    // What a restart does: every open session is gone and the pool is cleared.
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where pid <> pg_backend_pid() and usename = 'dbm'")
        .execute(&pool)
        .await
        .ok();
    drop(pool);
    conn.clear();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failed = pg.failed_logins();
    let fatal = conn.health().is_fatal();
    mgr.close().await;
    assert!(fatal, "{:?}", conn.health());
    eprintln!("postgres: {failed} failed logins in 3 s");
    // Two supervisor probes (at once, then after `retry_max_delay`) and one refill.
    assert!((1..=4).contains(&failed), "{failed} failed logins in 3 s");
}

/// `reconnect()` on an in-memory SQLite database swapped in an empty database, and
/// rows written on the old pool during the drain were lost. Now the new pool opens the
/// same in-memory database before the old one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_keeps_an_in_memory_sqlite_database() {
    let yaml =
        "connections:\n  mem:\n    type: sqlite\n    filepath: ':memory:'\n    drain_timeout: 5s\n";
    let mgr = Manager::from_yaml_str(yaml).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("mem").unwrap();
    let pool = conn.sqlite().unwrap();
    sqlx::query("create table t (v integer)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("insert into t values (1)")
        .execute(&pool)
        .await
        .unwrap();
    // Held across the swap: its write lands during the drain.
    let mut held = conn.acquire::<sqlx::Sqlite>().await.unwrap();
    let swapping = tokio::spawn({
        let conn = conn.clone();
        async move { conn.reconnect().await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    sqlx::query("insert into t values (2)")
        .execute(&mut *held)
        .await
        .unwrap();
    drop(held);
    swapping.await.unwrap().expect("the swap");
    let rows: Vec<i64> = sqlx::query_scalar("select v from t order by v")
        .fetch_all(&conn.sqlite().unwrap())
        .await
        .expect("the table survives the swap");
    assert_eq!(rows, [1, 2]);
    assert!(mgr.close().await);
}

/// Races around `close()`. One PostgreSQL connection through the fault proxy,
/// whose latency makes each interleaving deterministic; sessions are counted by the
/// server (`pg_stat_activity`, by application name).
mod close_races {
    use super::*;
    use crate::support::proxy::FaultProxy;
    use crate::support::{Recorder, eventually, pg_sessions};
    use dbmanager::EventKind;

    struct Setup {
        mgr: Manager,
        proxy: FaultProxy,
        sessions: Box<dyn Fn() -> support::SessionCount + Send + Sync>,
    }

    async fn setup(extra: &str) -> Setup {
        let observer = support::require_postgres().await;
        let proxy = FaultProxy::start(5432).await;
        let app = unique("close_race");
        let yaml = format!(
            "connections:\n  db:\n    type: postgres\n    dsn: 'postgres://postgres@127.0.0.1:{}/test?application_name={app}'\n    max_open_conns: 4\n    max_idle_conns: 4\n    connect_timeout: 5s\n    close_timeout: 2s\n{extra}",
            proxy.port()
        );
        let mgr = Manager::from_yaml_str(&yaml).unwrap();
        Setup {
            mgr,
            proxy,
            sessions: Box::new(pg_sessions(&observer, &app)),
        }
    }

    /// After `close()` returned: the server has no session left (it may take a moment to
    /// see the sockets close, not to have them closed).
    async fn no_session_left(s: &Setup) {
        let mut n = (s.sessions)().await;
        for _ in 0..100 {
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            n = (s.sessions)().await;
        }
        assert_eq!(n, 0, "sessions left after close()");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_during_a_slow_connect_leaves_nothing_open() {
        let s = setup("").await;
        s.proxy.set_latency(Duration::from_millis(300));
        let connecting = tokio::spawn({
            let mgr = s.mgr.clone();
            async move { mgr.connect().await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.mgr.close().await;
        let conn = s.mgr.connections().pop().unwrap();
        let connected = connecting.await.unwrap();
        assert!(connected.is_err(), "connect() returned Ok after close()");
        assert!(
            conn.postgres().is_err(),
            "a pool is reachable after close()"
        );
        assert_eq!(s.mgr.task_count(), 0);
        no_session_left(&s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_during_a_drain_closes_the_old_pool_before_returning() {
        let s = setup("    drain_timeout: 20s\n").await;
        s.mgr.connect().await.unwrap();
        let conn = s.mgr.get("db").unwrap();
        let events = Recorder::start(&s.mgr);
        let old = conn.postgres().unwrap();
        let held = conn.acquire::<sqlx::Postgres>().await.unwrap();
        let swapping = tokio::spawn({
            let conn = conn.clone();
            async move { conn.reconnect().await }
        });
        assert!(
            eventually(Duration::from_secs(5), || {
                events.count(|k| matches!(k, EventKind::Swapped { .. })) == 1
            })
            .await
        );
        // The old pool is draining (a connection is still held): close now.
        let closing = tokio::spawn({
            let mgr = s.mgr.clone();
            async move { mgr.close().await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
        closing.await.unwrap();
        assert!(old.is_closed(), "the draining pool outlived close()");
        assert!(
            old.acquire().await.is_err(),
            "a raw handle works after close()"
        );
        let _ = swapping.await.unwrap();
        no_session_left(&s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_during_a_slow_swap_closes_both_pools() {
        let s = setup("").await;
        s.mgr.connect().await.unwrap();
        let conn = s.mgr.get("db").unwrap();
        let old = conn.postgres().unwrap();
        // A connection in use keeps the swap draining.
        let held = conn.acquire::<sqlx::Postgres>().await.unwrap();
        s.proxy.set_latency(Duration::from_millis(300));
        let swapping = tokio::spawn({
            let conn = conn.clone();
            async move { conn.reconnect().await }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let closing = tokio::spawn({
            let mgr = s.mgr.clone();
            async move { mgr.close().await }
        });
        // The held connection goes back only once close() has begun (a loaded machine
        // may start the closing task late; the swap must still be draining then).
        assert!(
            support::eventually(Duration::from_secs(5), || s.mgr.is_closed()).await,
            "close() never began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        closing.await.unwrap();
        assert!(
            swapping.await.unwrap().is_err(),
            "the swap completed after close()"
        );
        assert!(old.is_closed());
        assert!(conn.postgres().is_err());
        no_session_left(&s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_connects_build_one_pool_and_one_supervisor() {
        let s = setup("").await;
        s.proxy.set_latency(Duration::from_millis(100));
        let (a, b) = tokio::join!(s.mgr.connect(), s.mgr.connect());
        a.unwrap();
        b.unwrap();
        // One supervisor and one pool maintenance task (a second connect would have
        // started a second of each).
        assert_eq!(s.mgr.task_count(), 2, "supervisors and pool tasks running");
        s.proxy.set_latency(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!((s.sessions)().await, 1, "pools opened");
        s.mgr.close().await;
        no_session_left(&s).await;
    }
}
