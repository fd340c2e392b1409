//! The manager's fast path (docs/pool.md), on the machine's PostgreSQL and MariaDB:
//! - one round trip per use: N acquire + `SELECT 1` + release send N requests to the
//!   server, counted at a proxy, through the fast path, the `&Db` executor and the diesel
//!   view; the raw sqlx pool sends 2N (sqlx's own release adds a ping to each, which no
//!   option turns off);
//! - a transaction dropped without commit while holding a row lock: another session can
//!   lock that row within 100 ms of the drop;
//! - a query dropped mid-flight (a 1 s sleep cancelled after 10 ms): the next checkout
//!   runs `SELECT 1` correctly, and the cancelled query's session keeps its place in the
//!   budget until the server ends it (`pg_stat_activity` never shows more);
//! - a hot swap stays within the budget: the old sessions end before new ones open;
//! - a busy pool is not a dead one: health checks that find every connection in use
//!   neither clear the pool nor mark it unhealthy;
//! - raw-pool users share the budget: with every connection borrowed by the fast path
//!   and then released, a raw-pool acquire gets one back.

use crate::support;
#[path = "pool/torture.rs"]
mod torture;

use dbmanager::Manager;
use std::time::{Duration, Instant};
use support::proxy::FaultProxy;
use support::{MYSQL_URL, PG_URL, require_mariadb, require_postgres, unique};

#[derive(Clone, Copy, Debug)]
enum Engine {
    Postgres,
    MariaDb,
}

impl Engine {
    fn yaml(self, dsn: &str, extra: &str) -> String {
        let kind = match self {
            Engine::Postgres => "postgres",
            Engine::MariaDb => "mariadb",
        };
        format!(
            "health_check_interval: 1h\nconnections:\n  db:\n    type: {kind}\n    dsn: '{dsn}'\n{extra}"
        )
    }

    fn dsn(self) -> &'static str {
        match self {
            Engine::Postgres => PG_URL,
            Engine::MariaDb => MYSQL_URL,
        }
    }

    async fn require(self) {
        match self {
            Engine::Postgres => drop(require_postgres().await),
            Engine::MariaDb => drop(require_mariadb().await),
        }
    }
}

/// `SELECT 1` on a fast-path connection of `mgr`'s `db`.
async fn select_one(mgr: &Manager, engine: Engine) -> i64 {
    let conn = mgr.get("db").unwrap();
    match engine {
        Engine::Postgres => {
            let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut *c)
                .await
                .map(i64::from)
                .unwrap()
        }
        Engine::MariaDb => {
            let mut c = conn.acquire::<sqlx::MySql>().await.unwrap();
            sqlx::query_scalar::<_, i64>("SELECT 1")
                .fetch_one(&mut *c)
                .await
                .unwrap()
        }
    }
}

/// A way to run `SELECT 1` once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// `acquire()`: the fast path.
    Acquire,
    /// `&Db` as the sqlx executor.
    Db,
    /// The diesel view, with a query diesel caches (a bound parameter).
    Diesel,
    /// sqlx's own pool (`postgres()`/`mysql()`).
    RawPool,
}

impl Use {
    /// YAML lines the connection needs for this use.
    fn extra(self) -> &'static str {
        match self {
            Use::Diesel => "    max_open_conns: 2\n    diesel_conns: 1\n",
            _ => "    max_open_conns: 1\n",
        }
    }

    async fn select_one(self, mgr: &Manager, engine: Engine) -> i64 {
        use dbmanager::diesel::r#async::RunQueryDsl;
        use diesel::IntoSql;
        let conn = mgr.get("db").unwrap();
        let one = || diesel::select(1_i32.into_sql::<diesel::sql_types::Integer>());
        match (self, engine) {
            (Use::Acquire, _) => select_one(mgr, engine).await,
            (Use::Db, Engine::Postgres) => {
                let db = mgr.postgres("db").unwrap();
                i64::from(
                    sqlx::query_scalar::<_, i32>("SELECT 1")
                        .fetch_one(&db)
                        .await
                        .unwrap(),
                )
            }
            (Use::Db, Engine::MariaDb) => {
                let db = mgr.mysql("db").unwrap();
                sqlx::query_scalar::<_, i64>("SELECT 1")
                    .fetch_one(&db)
                    .await
                    .unwrap()
            }
            (Use::Diesel, Engine::Postgres) => {
                let mut c = conn.diesel_postgres().await.unwrap();
                i64::from(one().get_result::<i32>(&mut c).await.unwrap())
            }
            (Use::Diesel, Engine::MariaDb) => {
                let mut c = conn.diesel_mysql().await.unwrap();
                i64::from(one().get_result::<i32>(&mut c).await.unwrap())
            }
            (Use::RawPool, Engine::Postgres) => i64::from(
                sqlx::query_scalar::<_, i32>("SELECT 1")
                    .fetch_one(&conn.postgres().unwrap())
                    .await
                    .unwrap(),
            ),
            (Use::RawPool, Engine::MariaDb) => sqlx::query_scalar::<_, i64>("SELECT 1")
                .fetch_one(&conn.mysql().unwrap())
                .await
                .unwrap(),
        }
    }
}

/// Requests sent to the server by `N` uses of `how`, counted at a proxy.
async fn requests_per_uses(engine: Engine, how: Use) -> (usize, usize) {
    engine.require().await;
    let port = match engine {
        Engine::Postgres => 5432,
        Engine::MariaDb => 3306,
    };
    let proxy = FaultProxy::start(port).await;
    let dsn = engine
        .dsn()
        .replace(&format!(":{port}/"), &format!(":{}/", proxy.port()));
    let mgr = Manager::from_yaml_str(&engine.yaml(&dsn, how.extra())).unwrap();
    mgr.connect().await.unwrap();
    // Warm up: the statement is prepared and cached on the connection.
    for _ in 0..3 {
        assert_eq!(how.select_one(&mgr, engine).await, 1);
    }
    // A delay per chunk, so that requests a client sends apart arrive apart.
    proxy.set_latency(Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = proxy.upstream_chunks();
    const N: usize = 20;
    for _ in 0..N {
        assert_eq!(how.select_one(&mgr, engine).await, 1);
    }
    // Anything sent in the background after a release (sqlx's ping) arrives by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = proxy.upstream_chunks() - before;
    mgr.close().await;
    (N, sent)
}

/// The fast path, the `&Db` executor and the diesel view cost one round trip per use; the
/// raw sqlx pool two (its release ping, which docs/BENCHMARKS.md and docs/views.md cite).
async fn one_round_trip_per_use(engine: Engine) {
    for how in [Use::Acquire, Use::Db, Use::Diesel, Use::RawPool] {
        let (n, sent) = requests_per_uses(engine, how).await;
        println!("{engine:?} {how:?}: {n} uses sent {sent} requests");
        if how == Use::RawPool {
            assert!(
                sent >= 2 * n,
                "{engine:?}: {n} uses of sqlx's pool sent {sent} requests; its release ping \
                 makes 2 per use (if sqlx dropped it, the docs that say so must change)"
            );
        } else {
            assert!(
                sent <= n + 1,
                "{engine:?} {how:?}: {n} uses sent {sent} requests to the server (one round trip each is {n})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_round_trip_per_use() {
    one_round_trip_per_use(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_one_round_trip_per_use() {
    one_round_trip_per_use(Engine::MariaDb).await;
}

/// Whether `sql` (a `FOR UPDATE NOWAIT`) gets the row lock on `conn` now; never keeps it.
macro_rules! try_lock {
    ($conn:expr, $sql:expr) => {{
        let mut t = sqlx::Connection::begin(&mut *$conn).await.unwrap();
        let ok = sqlx::query(sqlx::AssertSqlSafe($sql.clone()))
            .execute(&mut *t)
            .await
            .is_ok();
        t.rollback().await.unwrap();
        ok
    }};
}

/// A transaction of the manager locks a row and is dropped without commit: another
/// session (`$admin`, a raw sqlx pool outside the manager) must get the lock within 100 ms.
macro_rules! dropped_transaction_releases_its_lock {
    ($engine:expr, $db:ty, $admin:expr, $create:literal) => {{
        let admin = $admin;
        let table = unique("dbm_lock");
        sqlx::query(sqlx::AssertSqlSafe(format!($create, table)))
            .execute(&admin)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} VALUES (1)"
        )))
        .execute(&admin)
        .await
        .unwrap();
        let engine: Engine = $engine;
        let mgr =
            Manager::from_yaml_str(&engine.yaml(engine.dsn(), "    max_open_conns: 2\n")).unwrap();
        mgr.connect().await.unwrap();
        let conn = mgr.get("db").unwrap();
        let mut tx = conn.begin::<$db>().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {table} WHERE id = 1 FOR UPDATE"
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        let mut other = admin.acquire().await.unwrap();
        let lock = format!("SELECT id FROM {table} WHERE id = 1 FOR UPDATE NOWAIT");
        assert!(!try_lock!(other, lock), "the transaction holds the lock");
        let dropped = Instant::now();
        drop(tx);
        while !try_lock!(other, lock) {
            assert!(
                dropped.elapsed() < Duration::from_secs(5),
                "the row stayed locked"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = dropped.elapsed();
        assert!(
            took <= Duration::from_millis(100),
            "{engine:?}: the row was locked {took:?} after the drop"
        );
        // The connection is usable again, outside any transaction.
        assert_eq!(select_one(&mgr, engine).await, 1);
        drop(other);
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&admin)
            .await
            .unwrap();
        mgr.close().await;
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dropped_transaction_releases_its_lock_at_once() {
    dropped_transaction_releases_its_lock!(
        Engine::Postgres,
        sqlx::Postgres,
        require_postgres().await,
        "CREATE TABLE {} (id int PRIMARY KEY)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_dropped_transaction_releases_its_lock_at_once() {
    dropped_transaction_releases_its_lock!(
        Engine::MariaDb,
        sqlx::MySql,
        require_mariadb().await,
        "CREATE TABLE {} (id int PRIMARY KEY) ENGINE=InnoDB"
    );
}

async fn cancelled_query_leaves_no_trace(engine: Engine) {
    engine.require().await;
    let mgr =
        Manager::from_yaml_str(&engine.yaml(engine.dsn(), "    max_open_conns: 1\n")).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    for _ in 0..3 {
        let cancelled = match engine {
            Engine::Postgres => {
                let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
                let sleep = sqlx::query("SELECT pg_sleep(1)").execute(&mut *c);
                tokio::time::timeout(Duration::from_millis(10), sleep)
                    .await
                    .is_err()
            }
            Engine::MariaDb => {
                let mut c = conn.acquire::<sqlx::MySql>().await.unwrap();
                let sleep = sqlx::query("SELECT SLEEP(1)").execute(&mut *c);
                tokio::time::timeout(Duration::from_millis(10), sleep)
                    .await
                    .is_err()
            }
        };
        assert!(cancelled, "the sleep was cut short");
        // The only connection's next checkout (after the server finished the sleep the
        // connection keeps its place for): a correct answer, not the sleep's.
        assert_eq!(select_one(&mgr, engine).await, 1);
    }
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancelled_query_does_not_reach_the_next_caller() {
    cancelled_query_leaves_no_trace(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cancelled_query_does_not_reach_the_next_caller() {
    cancelled_query_leaves_no_trace(Engine::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_pool_users_get_connections_the_fast_path_released() {
    require_postgres().await;
    let mgr = Manager::from_yaml_str(
        &Engine::Postgres.yaml(PG_URL, "    max_open_conns: 2\n    acquire_timeout: 2s\n"),
    )
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    // Both connections go through the fast path, then sit in its cache.
    let a = conn.acquire::<sqlx::Postgres>().await.unwrap();
    let b = conn.acquire::<sqlx::Postgres>().await.unwrap();
    drop((a, b));
    assert!(
        support::eventually(Duration::from_secs(2), || conn.stats().pool.in_use == 0).await,
        "{:?}",
        conn.stats()
    );
    // The raw pool shares the same two: it gets one once the cache lets go.
    let raw = conn.postgres().unwrap();
    let started = Instant::now();
    let n: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    mgr.close().await;
}

/// The server's view of one connection's sessions while `work` runs: the most it saw.
async fn max_sessions_during<F: std::future::Future<Output = ()>>(app: &str, work: F) -> i64 {
    let observer = require_postgres().await;
    let count = support::pg_sessions(&observer, app);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(support::max_while(stop.clone(), count));
    work.await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    sampler.await.unwrap()
}

fn pg_with_app(app: &str, extra: &str) -> String {
    Engine::Postgres.yaml(&format!("{PG_URL}?application_name={app}"), extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_queries_stay_within_the_budget() {
    let app = unique("cancel_budget");
    let mgr = Manager::from_yaml_str(&pg_with_app(
        &app,
        "    max_open_conns: 2\n    acquire_timeout: 10s\n",
    ))
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let max = max_sessions_during(&app, async {
        for _ in 0..5 {
            let cancel_one = || async {
                let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
                let sleep = sqlx::query("SELECT pg_sleep(1)").execute(&mut *c);
                assert!(
                    tokio::time::timeout(Duration::from_millis(50), sleep)
                        .await
                        .is_err()
                );
            };
            tokio::join!(cancel_one(), cancel_one());
        }
        // The last round's sessions end with their sleep.
        assert_eq!(select_one(&mgr, Engine::Postgres).await, 1);
    })
    .await;
    assert!(max <= 2, "the server saw {max} sessions for a budget of 2");
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_stays_within_the_budget() {
    let app = unique("swap_budget");
    let mgr = Manager::from_yaml_str(&pg_with_app(
        &app,
        "    max_open_conns: 2\n    acquire_timeout: 10s\n    drain_timeout: 5s\n",
    ))
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let max = max_sessions_during(&app, async {
        let swap = async { conn.reconnect().await.unwrap() };
        let names = support::across_a_full_budget_of_two(&conn, swap).await;
        assert_eq!(names, [app.clone(), app.clone()]);
    })
    .await;
    assert!(max <= 2, "the server saw {max} sessions for a budget of 2");
    mgr.close().await;
}

/// A health check that finds no idle connection opens its session through the pool, in
/// one of the budget's places. One caller holds one of two places; another opens a
/// session, runs a query and closes it, again and again, so the probe finds no idle
/// connection and, between two of those, room. Connects are slowed to about 100 ms (a
/// proxy adds 20 ms each way): a probe that connected on its own beside the pool would be
/// a third session while the second caller's next one opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_stay_within_the_budget() {
    require_postgres().await;
    let proxy = FaultProxy::start(5432).await;
    proxy.set_latency(Duration::from_millis(20));
    let app = unique("probe_budget");
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/test?application_name={app}",
        proxy.port()
    );
    let mgr = Manager::from_yaml_str(&Engine::Postgres.yaml(
        &url,
        "    max_open_conns: 2\n    health_check_interval: 100ms\n    health_check_timeout: 2s\n    acquire_timeout: 10s\n",
    ))
    .unwrap();
    let events = support::Recorder::start(&mgr);
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let max = max_sessions_during(&app, async {
        let held = conn.acquire::<sqlx::Postgres>().await.unwrap();
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
            sqlx::query("select 1").execute(&mut *c).await.unwrap();
            // A close the proxy cuts short is still a close.
            let _ = c.into_sqlx().close().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        drop(held);
    })
    .await;
    // Enough probes ran for the budget to have been tested (each waits for a place and a
    // slowed connect, so how many fit in 4 s depends on the machine's load: 9 to 20 seen).
    let checks = events.count(|k| matches!(k, dbmanager::EventKind::HealthChecked { .. }));
    assert!(checks >= 5, "only {checks} health checks ran in 4 s");
    assert!(max <= 2, "the server saw {max} sessions for a budget of 2");
    assert_eq!(conn.health().state, dbmanager::HealthState::Healthy);
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_pool_is_not_declared_dead() {
    require_postgres().await;
    let mgr = Manager::from_yaml_str(
        "connections:\n  db:\n    type: postgres\n    dsn: 'postgres://postgres@127.0.0.1:5432/test'\n    max_open_conns: 2\n    health_check_interval: 500ms\n    health_check_timeout: 300ms\n    on_unavailable: fail_fast\n",
    )
    .unwrap();
    let events = support::Recorder::start(&mgr);
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while Instant::now() < until {
                    let r = async {
                        let mut c = conn
                            .acquire::<sqlx::Postgres>()
                            .await
                            .map_err(|e| e.to_string())?;
                        sqlx::query("select pg_sleep(0.02)")
                            .execute(&mut *c)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok::<_, String>(())
                    }
                    .await;
                    match r {
                        Ok(()) => ok += 1,
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, Vec::new());
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    let clears = events.count(|k| matches!(k, dbmanager::EventKind::PoolCleared { .. }));
    let down = events.count(|k| {
        matches!(k, dbmanager::EventKind::HealthChanged { to, .. } if *to != dbmanager::HealthState::Healthy)
    });
    assert!(
        failed.is_empty() && clears == 0 && down == 0,
        "{ok} succeeded, {} failed (first: {:?}), {clears} pool clears, {down} health drops",
        failed.len(),
        failed.first()
    );
    assert!(ok > 100, "only {ok} operations in 3 s");
    mgr.close().await;
}

/// Raw-pool callers (and so SeaORM's, and the replica lag query) wait in the same line as
/// the fast path's: under fast-path load that keeps every connection busy, a raw caller
/// still gets a connection within a short wait, again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_pool_callers_are_not_starved_by_fast_path_load() {
    require_postgres().await;
    let mgr = Manager::from_yaml_str(
        &Engine::Postgres.yaml(PG_URL, "    max_open_conns: 2\n    acquire_timeout: 10s\n"),
    )
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let fast: Vec<_> = (0..6)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let mut ops = 0u32;
                while Instant::now() < until {
                    let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
                    sqlx::query("select pg_sleep(0.01)")
                        .execute(&mut *c)
                        .await
                        .unwrap();
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    let raw = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let (mut ops, mut worst) = (0u32, Duration::ZERO);
            // Give the fast path time to hold every connection first.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while Instant::now() < until {
                let started = Instant::now();
                let pool = conn.postgres().unwrap();
                sqlx::query("select 1").execute(&pool).await.unwrap();
                worst = worst.max(started.elapsed());
                ops += 1;
            }
            (ops, worst)
        })
    };
    let mut fast_ops = 0;
    for t in fast {
        fast_ops += t.await.unwrap();
    }
    let (raw_ops, worst) = raw.await.unwrap();
    println!(
        "{fast_ops} fast-path operations, {raw_ops} raw; the raw caller's worst wait {worst:?}"
    );
    assert!(
        raw_ops >= 20 && worst < Duration::from_millis(500),
        "{fast_ops} fast-path operations against {raw_ops} raw ones; the raw caller's worst wait {worst:?}"
    );
    mgr.close().await;
}

/// A connection idle past `ping_idle_after` is pinged before it is handed out. A caller
/// whose wait runs out during that ping gets `AcquireTimeout`, but the connection is not
/// closed as broken for it: it finishes its ping in the background and is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_out_of_time_during_the_idle_ping_does_not_close_a_healthy_connection() {
    require_postgres().await;
    let proxy = FaultProxy::start(5432).await;
    let dsn = format!(
        "postgres://postgres@127.0.0.1:{}/test?sslmode=disable",
        proxy.port()
    );
    let mgr = Manager::from_yaml_str(&Engine::Postgres.yaml(
        &dsn,
        "    max_open_conns: 1\n    ping_idle_after: 10ms\n    acquire_timeout: 30ms\n    connect_timeout: 5s\n",
    ))
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    drop(conn.acquire::<sqlx::Postgres>().await.unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Each round trip now takes longer than the caller's whole wait.
    proxy.set_latency(Duration::from_millis(60));
    let late = conn.acquire::<sqlx::Postgres>().await;
    assert!(late.is_err(), "the acquire outlived acquire_timeout");
    drop(late);
    proxy.set_latency(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = conn.stats().pool;
    assert_eq!(
        stats.closed_broken, 0,
        "a healthy connection was closed as broken: {stats:?}"
    );
    drop(conn.acquire::<sqlx::Postgres>().await.unwrap());
    assert_eq!(conn.stats().pool.opened_total, 1, "{:?}", conn.stats().pool);
    mgr.close().await;
}

/// When each of 20 sessions opened at once went away, as the server saw it (its pid left
/// `pg_stat_activity`), measured from their opening, under a load through the raw pool
/// (which checks the lifetime at every acquire and release), with `conn_max_lifetime: 3s`
/// and the given jitter.
async fn replacement_times(jitter: &str) -> Vec<Duration> {
    use std::collections::HashSet;
    let observer = require_postgres().await;
    let app = unique("jitter");
    let limits = format!(
        "    max_open_conns: 20\n    max_idle_conns: 20\n    conn_max_lifetime: 3s\n    \
         conn_max_idle_time: 3s\n    conn_max_lifetime_jitter: {jitter}\n"
    );
    let mgr = Manager::from_yaml_str(&pg_with_app(&app, &limits)).unwrap();
    mgr.connect().await.unwrap();
    let pool = mgr.get("db").unwrap().postgres().unwrap();
    let pids = || {
        let (observer, app) = (observer.clone(), app.clone());
        async move {
            sqlx::query_scalar::<_, i32>(
                "select pid from pg_stat_activity where application_name = $1",
            )
            .bind(app)
            .fetch_all(&observer)
            .await
            .unwrap()
            .into_iter()
            .collect::<HashSet<i32>>()
        }
    };
    let opened = Instant::now();
    let held = futures_util::future::join_all((0..20).map(|_| pool.acquire())).await;
    assert!(held.iter().all(Result::is_ok));
    drop(held);
    let first = pids().await;
    assert_eq!(first.len(), 20, "20 sessions open at once");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (pool, stop) = (pool.clone(), stop.clone());
        load.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                sqlx::query("select 1").execute(&pool).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let mut gone = Vec::new();
    let mut left = first;
    while !left.is_empty() && opened.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = pids().await;
        let at = opened.elapsed();
        left.retain(|pid| {
            let still = now.contains(pid);
            if !still {
                gone.push(at);
            }
            still
        });
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    mgr.close().await;
    assert!(
        left.is_empty(),
        "{} sessions outlived conn_max_lifetime",
        left.len()
    );
    gone
}

/// The most of `times` within any `window`.
fn most_within(times: &[Duration], window: Duration) -> usize {
    times
        .iter()
        .map(|&t| times.iter().filter(|&&u| u >= t && u < t + window).count())
        .max()
        .unwrap_or(0)
}

/// 20 sessions opened at once, `conn_max_lifetime: 3s` with a jitter of 2 s: the server
/// sees them replaced across the window (from 1 s to 3 s of age, plus the sampling), never
/// more than 8 within 250 ms. With `0s` of jitter (the other half, what the setting is
/// for) at least 15 of them go within the same 250 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_together_are_replaced_across_the_jitter_window() {
    let spread = replacement_times("2s").await;
    let (first, last) = (spread[0], spread[spread.len() - 1]);
    assert!(
        first >= Duration::from_millis(950),
        "replaced at {first:?}: before lifetime - jitter"
    );
    assert!(
        last <= Duration::from_millis(3500),
        "replaced at {last:?}: after the lifetime"
    );
    assert!(
        last - first >= Duration::from_secs(1),
        "spread over {:?} only",
        last - first
    );
    let most = most_within(&spread, Duration::from_millis(250));
    assert!(most <= 8, "{most} of 20 replaced within 250 ms: {spread:?}");
    let together = replacement_times("0s").await;
    let most = most_within(&together, Duration::from_millis(250));
    assert!(most >= 15, "without jitter they go together: {together:?}");
}
