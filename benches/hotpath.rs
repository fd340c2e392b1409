//! `hotpath`: acquire + `SELECT 1` + release, dbmanager beside its peers, in one run.
//!
//! Pool size 16, at 1, 16, 64 and 256 concurrent tasks. For each concurrency, every
//! contender runs for `CELL` in turn, and the whole round is repeated `ROUNDS` times,
//! interleaved, so drift on a noisy machine hits every contender alike. The median round
//! is reported. Each cell builds its contender, warms it to its size (untimed), runs and
//! closes it: the machine's PostgreSQL allows 100 sessions, fewer than all pools at once.
//!
//! - PostgreSQL (the machine's): sqlx `Pool` with default options, dbmanager `acquire`
//!   (the fast path), the `&Db` handle as a sqlx executor, dbmanager's raw sqlx pool
//!   (`postgres()`), its SeaORM and diesel views (diesel with a query it caches, and with
//!   a `sql()` literal, which it prepares on every use), deadpool-postgres, bb8 (bb8-postgres), one sqlx connection per task with no
//!   pool (at 1 and 16 tasks: what the driver costs alone), and `pgbench` (`select 1`,
//!   `-M prepared`, same client counts) as the physical reference;
//! - MariaDB (the machine's): the same dbmanager and sqlx contenders, and mysql_async's
//!   own pool, like for like (no session reset on return) and with its default (a reset
//!   per checkout).
//!
//! Printed per contender: ops/s, p50/p99/max latency, the fewest operations any task
//! completed (fairness), p99 against deadpool-postgres's (mysql_async's), and throughput
//! ratios to deadpool-postgres, pgbench, sqlx and the fast path (PostgreSQL), or to
//! mysql_async, sqlx and the fast path (MariaDB). Written to `target/bench/hotpath.json`.
//! Prints figures; asserts nothing. Run: `cargo bench -p dbmanager --all-features --bench
//! hotpath` under `scripts/test.sh --` (or the whole suite: `scripts/bench.sh`);
//! `HOTPATH_CELL_MS`, `HOTPATH_ROUNDS` change the run's length; `HOTPATH_ONLY` (parts of
//! contenders' names, separated by `|`) and `HOTPATH_TASKS` (e.g. `16,64`) narrow it.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

const POOL: u32 = 16;
const TASKS: [usize; 4] = [1, 16, 64, 256];
/// The concurrencies of the run at one offered load.
const PACED_TASKS: [usize; 3] = [16, 64, 256];

/// The offered load of that run, in operations per second (`HOTPATH_PACED_RATE`): below
/// every PostgreSQL contender's closed-loop throughput at 16 tasks and more.
fn paced_rate() -> f64 {
    common::env_or("HOTPATH_PACED_RATE", 10_000.0)
}
/// TLS off for every contender: the machine's server has `ssl = on`, and sqlx and libpq
/// (pgbench) would negotiate TLS where tokio-postgres with `NoTls` (deadpool, bb8) does not.
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn cell() -> Duration {
    Duration::from_millis(common::env_or("HOTPATH_CELL_MS", 1000))
}

fn rounds() -> usize {
    common::env_or("HOTPATH_ROUNDS", 3)
}

/// One contender: something that runs acquire + `SELECT 1` + release once.
#[derive(Clone)]
enum Contender {
    SqlxPg(sqlx::PgPool),
    ManagedPg(dbmanager::Connection),
    /// The fast path, yielding to the runtime before each checkout (experiment).
    ManagedPgYield(dbmanager::Connection),
    RawPg(sqlx::PgPool),
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>),
    SqlxMy(sqlx::MySqlPool),
    ManagedMy(dbmanager::Connection),
    RawMy(sqlx::MySqlPool),
    MysqlAsync(mysql_async::Pool),
    /// dbmanager's SeaORM view (over its sqlx pool).
    SeaOrm(dbmanager::sea_orm::DatabaseConnection),
    /// dbmanager's diesel-async view (PostgreSQL), with a query diesel can cache.
    DieselPg(dbmanager::Connection),
    /// The same with a SQL literal (`sql("1")`), which diesel prepares on every use.
    DieselPgLiteral(dbmanager::Connection),
    /// dbmanager's `&Db` handle as the sqlx executor (in place of `&PgPool`).
    DbPg(dbmanager::PgDb),
    /// As `DbPg`, on MariaDB.
    DbMy(dbmanager::MySqlDb),
    /// dbmanager's diesel-async view (MariaDB), with a query diesel can cache.
    DieselMy(dbmanager::Connection),
    /// The same with a SQL literal, prepared on every use.
    DieselMyLiteral(dbmanager::Connection),
    /// One sqlx connection per task, no pool: what the driver costs alone (up to `POOL`
    /// tasks).
    BarePg(Arc<Vec<tokio::sync::Mutex<sqlx::PgConnection>>>),
    /// As `BarePg`, on MariaDB.
    BareMy(Arc<Vec<tokio::sync::Mutex<sqlx::MySqlConnection>>>),
    /// One diesel-async `AsyncPgConnection` per task, no pool: diesel's driver alone.
    BareDieselPg(Arc<Vec<tokio::sync::Mutex<dbmanager::diesel::r#async::AsyncPgConnection>>>),
    /// One mysql_async connection per task, no pool: its driver alone.
    BareMysqlAsync(Arc<Vec<tokio::sync::Mutex<mysql_async::Conn>>>),
}

impl Contender {
    /// One acquire + `SELECT 1` + release, by task number `task`.
    async fn once(&self, task: usize) {
        use dbmanager::diesel::r#async::RunQueryDsl;
        use dbmanager::sea_orm::{ConnectionTrait, Statement};
        use diesel::IntoSql;
        match self {
            Contender::SeaOrm(db) => {
                let row = db
                    .query_one_raw(Statement::from_string(
                        db.get_database_backend(),
                        "SELECT 1",
                    ))
                    .await
                    .expect("select");
                assert!(row.is_some());
            }
            // `1.into_sql()` is a bound parameter: the statement's SQL is known from its
            // type, so diesel prepares it once per connection and caches it, as sqlx and
            // deadpool's `prepare_cached` do for the other contenders.
            Contender::DieselPg(conn) => {
                let mut c = conn.diesel_postgres().await.expect("acquire");
                let _: i32 = diesel::select(1_i32.into_sql::<diesel::sql_types::Integer>())
                    .get_result(&mut c)
                    .await
                    .expect("select");
            }
            Contender::DieselMy(conn) => {
                let mut c = conn.diesel_mysql().await.expect("acquire");
                let _: i32 = diesel::select(1_i32.into_sql::<diesel::sql_types::Integer>())
                    .get_result(&mut c)
                    .await
                    .expect("select");
            }
            Contender::DbPg(db) => {
                let _: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(db)
                    .await
                    .expect("select");
            }
            Contender::DbMy(db) => {
                let _: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(db)
                    .await
                    .expect("select");
            }
            Contender::DieselPgLiteral(conn) => {
                let mut c = conn.diesel_postgres().await.expect("acquire");
                let _: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
                    .get_result(&mut c)
                    .await
                    .expect("select");
            }
            Contender::DieselMyLiteral(conn) => {
                let mut c = conn.diesel_mysql().await.expect("acquire");
                let _: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
                    .get_result(&mut c)
                    .await
                    .expect("select");
            }
            Contender::BarePg(conns) => {
                let mut c = conns[task % conns.len()].lock().await;
                let _: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *c)
                    .await
                    .expect("select");
            }
            Contender::BareMy(conns) => {
                let mut c = conns[task % conns.len()].lock().await;
                let _: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *c)
                    .await
                    .expect("select");
            }
            Contender::SqlxPg(p) | Contender::RawPg(p) => {
                let mut c = p.acquire().await.expect("acquire");
                let _: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *c)
                    .await
                    .expect("select");
            }
            Contender::ManagedPgYield(conn) => {
                tokio::task::yield_now().await;
                let mut c = conn.acquire::<sqlx::Postgres>().await.expect("acquire");
                let _: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *c)
                    .await
                    .expect("select");
            }
            Contender::ManagedPg(conn) => {
                let mut c = conn.acquire::<sqlx::Postgres>().await.expect("acquire");
                let _: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *c)
                    .await
                    .expect("select");
            }
            Contender::Deadpool(p) => {
                let c = p.get().await.expect("acquire");
                let st = c.prepare_cached("SELECT 1").await.expect("prepare");
                let _: i32 = c.query_one(&st, &[]).await.expect("select").get(0);
            }
            Contender::Bb8(p) => {
                let c = p.get().await.expect("acquire");
                let st = c.prepare("SELECT 1").await.expect("prepare");
                let _: i32 = c.query_one(&st, &[]).await.expect("select").get(0);
            }
            Contender::SqlxMy(p) | Contender::RawMy(p) => {
                let mut c = p.acquire().await.expect("acquire");
                let _: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *c)
                    .await
                    .expect("select");
            }
            Contender::ManagedMy(conn) => {
                let mut c = conn.acquire::<sqlx::MySql>().await.expect("acquire");
                let _: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *c)
                    .await
                    .expect("select");
            }
            Contender::MysqlAsync(p) => {
                use mysql_async::prelude::Queryable;
                let mut c = p.get_conn().await.expect("acquire");
                let _: Option<i64> = c.exec_first("SELECT 1", ()).await.expect("select");
            }
            Contender::BareDieselPg(conns) => {
                let mut c = conns[task % conns.len()].lock().await;
                let _: i32 = diesel::select(1_i32.into_sql::<diesel::sql_types::Integer>())
                    .get_result(&mut *c)
                    .await
                    .expect("select");
            }
            Contender::BareMysqlAsync(conns) => {
                use mysql_async::prelude::Queryable;
                let mut c = conns[task % conns.len()].lock().await;
                let _: Option<i64> = c.exec_first("SELECT 1", ()).await.expect("select");
            }
        }
    }
}

/// What one cell measured.
#[derive(Debug, Clone, serde::Serialize)]
struct Cell {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    /// The fewest operations any one task completed.
    min_task_ops: usize,
}

async fn run_cell(c: &Contender, tasks: usize, length: Duration) -> Cell {
    cell_of(run(c, tasks, length, None).await)
}

/// The same contender at one offered load for all: `rate` operations per second in all,
/// spread over `tasks` tasks, each starting an operation every `tasks / rate` seconds
/// (skipping a start it is already late for). A closed loop, as in `run_cell`, lets a
/// faster contender load the machine harder, and on 2 cores shared with the server its
/// tail then measures its own throughput; at one rate below every contender's capacity,
/// the tails compare the pools. The latency is the operation's own, start to end.
async fn run_paced(c: &Contender, tasks: usize, rate: f64, length: Duration) -> Cell {
    let every = Duration::from_secs_f64(tasks as f64 / rate);
    cell_of(run(c, tasks, length, Some(every)).await)
}

impl common::Op for Contender {
    fn once(&self, task: usize) -> impl std::future::Future<Output = ()> + Send + '_ {
        Contender::once(self, task)
    }
}

async fn run(c: &Contender, tasks: usize, length: Duration, pace: Option<Duration>) -> common::Run {
    common::run_tasks(c, tasks, length, pace).await
}

fn cell_of(r: common::Run) -> Cell {
    Cell {
        ops_per_sec: r.ops_per_sec,
        p50_us: r.us(0.5),
        p99_us: r.us(0.99),
        max_us: r.us(1.0),
        min_task_ops: r.min_task_ops,
    }
}

/// `pgbench` with `select 1`, prepared, `clients` clients (at most `POOL` connections
/// behave like a pool of 16: more clients than that each get a connection of their own,
/// which is the physical limit the pools are compared to).
fn pgbench(clients: usize, length: Duration) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!("dbm-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let script = dir.join("select1.sql");
    std::fs::write(&script, "select 1;\n").ok()?;
    let secs = length.as_secs().max(1).to_string();
    let clients = clients.min(POOL as usize).to_string();
    let out = std::process::Command::new("pgbench")
        .env("PGSSLMODE", "disable")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-n",
            "-M",
            "prepared",
            "-T",
            &secs,
            "-c",
            &clients,
            "-j",
            "2",
            "-f",
        ])
        .arg(&script)
        .arg("test")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| {
            l.trim_start_matches("tps = ")
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
}

fn median(mut v: Vec<Cell>) -> Cell {
    v.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    v[v.len() / 2].clone()
}

/// A connected manager with one connection `db` of `kind` at `url`, pool `POOL` (`extra`:
/// more YAML lines for the connection, with one more connection in all).
async fn managed(
    kind: &str,
    url: &str,
    extra: &str,
) -> (dbmanager::Manager, dbmanager::Connection) {
    let max = if extra.is_empty() { POOL } else { POOL + 1 };
    let mgr = dbmanager::Manager::from_yaml_str(&format!(
        "health_check_interval: 1h\nconnections:\n  db:\n    type: {kind}\n    dsn: '{url}'\n    max_open_conns: {max}\n    max_idle_conns: {max}\n{extra}"
    ))
    .expect("config");
    mgr.connect().await.expect("connect");
    let conn = mgr.get("db").expect("db");
    (mgr, conn)
}

/// The diesel view with `POOL` connections of its own (one more for the sqlx pool).
const DIESEL: &str = "    default_orm: diesel\n";

async fn bare<C: sqlx::Connection>(url: &str) -> Arc<Vec<tokio::sync::Mutex<C>>> {
    let mut v = Vec::new();
    for _ in 0..POOL {
        v.push(tokio::sync::Mutex::new(
            C::connect(url).await.expect("connect"),
        ));
    }
    Arc::new(v)
}

/// How to build one contender. Each is built for its cell and closed after it: the
/// machine's PostgreSQL allows 100 sessions, fewer than all the pools at once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Make {
    SqlxPg,
    ManagedPg,
    ManagedPgYield,
    RawPg,
    SeaPg,
    DieselPg,
    DieselPgLiteral,
    DbPg,
    Deadpool,
    Bb8,
    BarePg,
    SqlxMy,
    ManagedMy,
    RawMy,
    SeaMy,
    DieselMy,
    DieselMyLiteral,
    DbMy,
    MysqlAsync,
    MysqlAsyncReset,
    MysqlAsyncNoIdle,
    BareMy,
    BareMysqlAsync,
    BareDieselPg,
}

/// A built contender, and the manager behind it (closed with it).
struct Live {
    contender: Contender,
    manager: Option<dbmanager::Manager>,
}

impl Make {
    /// Whether it runs at `tasks` (a contender without a pool has one connection per
    /// task).
    fn runs_at(self, tasks: usize) -> bool {
        !matches!(
            self,
            Make::BarePg | Make::BareMy | Make::BareMysqlAsync | Make::BareDieselPg
        ) || tasks <= POOL as usize
    }

    async fn open(self) -> Live {
        let (contender, manager) = match self {
            Make::SqlxPg => (
                Contender::SqlxPg(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(POOL)
                        .connect(PG_URL)
                        .await
                        .expect("PostgreSQL on 127.0.0.1:5432 (see scripts/test.sh)"),
                ),
                None,
            ),
            Make::ManagedPg => {
                let (m, c) = managed("postgres", PG_URL, "").await;
                (Contender::ManagedPg(c), Some(m))
            }
            Make::ManagedPgYield => {
                let (m, c) = managed("postgres", PG_URL, "").await;
                (Contender::ManagedPgYield(c), Some(m))
            }
            Make::RawPg => {
                let (m, c) = managed("postgres", PG_URL, "").await;
                (Contender::RawPg(c.postgres().expect("raw")), Some(m))
            }
            Make::SeaPg => {
                let (m, c) = managed("postgres", PG_URL, "").await;
                (Contender::SeaOrm(c.sea_orm().expect("SeaORM")), Some(m))
            }
            Make::DieselPg => {
                let (m, c) = managed("postgres", PG_URL, DIESEL).await;
                (Contender::DieselPg(c), Some(m))
            }
            Make::DieselPgLiteral => {
                let (m, c) = managed("postgres", PG_URL, DIESEL).await;
                (Contender::DieselPgLiteral(c), Some(m))
            }
            Make::DbPg => {
                let (m, c) = managed("postgres", PG_URL, "").await;
                (Contender::DbPg(c.db().expect("PgDb")), Some(m))
            }
            Make::Deadpool => (
                Contender::Deadpool(common::deadpool_postgres(PG_URL, POOL as usize)),
                None,
            ),
            Make::Bb8 => {
                let manager = bb8_postgres::PostgresConnectionManager::new_from_stringlike(
                    PG_URL,
                    tokio_postgres::NoTls,
                )
                .expect("bb8 manager");
                let pool = bb8::Pool::builder()
                    .max_size(POOL)
                    .build(manager)
                    .await
                    .expect("bb8");
                (Contender::Bb8(pool), None)
            }
            Make::BarePg => (Contender::BarePg(bare(PG_URL).await), None),
            Make::SqlxMy => (
                Contender::SqlxMy(
                    sqlx::mysql::MySqlPoolOptions::new()
                        .max_connections(POOL)
                        .connect(MY_URL)
                        .await
                        .expect("MariaDB on 127.0.0.1:3306 (see scripts/test.sh)"),
                ),
                None,
            ),
            Make::ManagedMy => {
                let (m, c) = managed("mariadb", MY_URL, "").await;
                (Contender::ManagedMy(c), Some(m))
            }
            Make::RawMy => {
                let (m, c) = managed("mariadb", MY_URL, "").await;
                (Contender::RawMy(c.mysql().expect("raw")), Some(m))
            }
            Make::SeaMy => {
                let (m, c) = managed("mariadb", MY_URL, "").await;
                (Contender::SeaOrm(c.sea_orm().expect("SeaORM")), Some(m))
            }
            Make::DieselMy => {
                let (m, c) = managed("mariadb", MY_URL, DIESEL).await;
                (Contender::DieselMy(c), Some(m))
            }
            Make::DieselMyLiteral => {
                let (m, c) = managed("mariadb", MY_URL, DIESEL).await;
                (Contender::DieselMyLiteral(c), Some(m))
            }
            Make::DbMy => {
                let (m, c) = managed("mariadb", MY_URL, "").await;
                (Contender::DbMy(c.db().expect("MySqlDb")), Some(m))
            }
            // Like for like: no session reset when a connection goes back (sqlx and
            // dbmanager do none). mysql_async's default resets it (COM_RESET_CONNECTION: a
            // round trip, and the statement cache dropped, so the next `SELECT 1` is
            // prepared again): measured apart, as its own contender.
            //
            // Up to 16 idle connections kept, as the other pools keep theirs: mysql_async
            // keeps at most `min` idle connections while `inactive_connection_ttl` is 0
            // (its default) and closes every other returned one, so with `min` 0 every
            // checkout opened a new connection (how an earlier version of this benchmark
            // measured it at ~1,800 ops/s). A TTL makes `max` the bound, as documented in
            // `PoolOpts::active_bound`.
            Make::MysqlAsync | Make::MysqlAsyncReset | Make::MysqlAsyncNoIdle => {
                let opts = mysql_async::OptsBuilder::from_opts(
                    mysql_async::Opts::from_url(MY_URL).expect("url"),
                )
                .pool_opts(
                    mysql_async::PoolOpts::default()
                        .with_constraints(
                            mysql_async::PoolConstraints::new(0, POOL as usize)
                                .expect("constraints"),
                        )
                        .with_inactive_connection_ttl(if self == Make::MysqlAsyncNoIdle {
                            Duration::ZERO
                        } else {
                            Duration::from_secs(60)
                        })
                        .with_reset_connection(self == Make::MysqlAsyncReset),
                );
                (Contender::MysqlAsync(mysql_async::Pool::new(opts)), None)
            }
            Make::BareMy => (Contender::BareMy(bare(MY_URL).await), None),
            Make::BareDieselPg => {
                use dbmanager::diesel::r#async::AsyncConnection;
                let mut v = Vec::new();
                for _ in 0..POOL {
                    v.push(tokio::sync::Mutex::new(
                        dbmanager::diesel::r#async::AsyncPgConnection::establish(PG_URL)
                            .await
                            .expect("connect"),
                    ));
                }
                (Contender::BareDieselPg(Arc::new(v)), None)
            }
            Make::BareMysqlAsync => {
                let mut v = Vec::new();
                for _ in 0..POOL {
                    v.push(tokio::sync::Mutex::new(
                        mysql_async::Conn::from_url(MY_URL).await.expect("connect"),
                    ));
                }
                (Contender::BareMysqlAsync(Arc::new(v)), None)
            }
        };
        Live { contender, manager }
    }
}

impl Live {
    async fn close(self) {
        match self.contender {
            Contender::SqlxPg(p) | Contender::RawPg(p) => p.close().await,
            Contender::SqlxMy(p) | Contender::RawMy(p) => p.close().await,
            Contender::Deadpool(p) => p.close(),
            Contender::MysqlAsync(p) => {
                let _ = p.disconnect().await;
            }
            other => drop(other),
        }
        if let Some(m) = self.manager {
            m.close().await;
        }
    }
}

const PG_CONTENDERS: [(&str, Make); 12] = [
    ("sqlx Pool (defaults)", Make::SqlxPg),
    ("dbmanager acquire", Make::ManagedPg),
    ("dbmanager acquire, yield first", Make::ManagedPgYield),
    ("dbmanager &Db executor", Make::DbPg),
    ("dbmanager raw pool", Make::RawPg),
    ("dbmanager SeaORM view", Make::SeaPg),
    ("dbmanager diesel view", Make::DieselPg),
    (
        "dbmanager diesel view, sql() literal",
        Make::DieselPgLiteral,
    ),
    ("deadpool-postgres", Make::Deadpool),
    ("bb8-postgres", Make::Bb8),
    ("sqlx connection per task", Make::BarePg),
    ("diesel-async connection per task", Make::BareDieselPg),
];

const MY_CONTENDERS: [(&str, Make); 12] = [
    ("sqlx Pool (defaults)", Make::SqlxMy),
    ("dbmanager acquire", Make::ManagedMy),
    ("dbmanager &Db executor", Make::DbMy),
    ("dbmanager raw pool", Make::RawMy),
    ("dbmanager SeaORM view", Make::SeaMy),
    ("dbmanager diesel view", Make::DieselMy),
    (
        "dbmanager diesel view, sql() literal",
        Make::DieselMyLiteral,
    ),
    ("mysql_async Pool", Make::MysqlAsync),
    (
        "mysql_async Pool (its default: reset per checkout)",
        Make::MysqlAsyncReset,
    ),
    (
        "mysql_async Pool (min 0, no idle TTL: a connect per checkout)",
        Make::MysqlAsyncNoIdle,
    ),
    ("sqlx connection per task", Make::BareMy),
    ("mysql_async connection per task", Make::BareMysqlAsync),
];

/// Runs every contender at every concurrency, `rounds` times interleaved. Each cell builds
/// its contender, warms it up to its size (untimed), runs, and closes it.
///
/// `paced`: `None` for the closed loop (`run_cell`); `Some((rate, tasks))` for one
/// offered load (`run_paced`) at those concurrencies.
async fn measure(
    contenders: &[(&'static str, Make)],
    length: Duration,
    rounds: usize,
    paced: Option<(f64, &[usize])>,
) -> Vec<(usize, Vec<(&'static str, Cell)>)> {
    // For profiling some contenders: HOTPATH_ONLY (parts of their names, separated by
    // `|`), HOTPATH_TASKS (a comma-separated list of concurrencies).
    let only = std::env::var("HOTPATH_ONLY").unwrap_or_default();
    let tasks_list: Vec<usize> = std::env::var("HOTPATH_TASKS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| TASKS.to_vec());
    let tasks_list: Vec<usize> = match paced {
        Some((_, list)) => list.to_vec(),
        None => tasks_list,
    };
    let mut out = Vec::new();
    for tasks in tasks_list {
        let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); contenders.len()];
        for _ in 0..rounds {
            for (i, (name, make)) in contenders.iter().enumerate() {
                if make.runs_at(tasks) && only.split('|').any(|part| name.contains(part)) {
                    let live = make.open().await;
                    run_cell(&live.contender, POOL as usize, Duration::from_millis(100)).await;
                    cells[i].push(match paced {
                        Some((rate, _)) => run_paced(&live.contender, tasks, rate, length).await,
                        None => run_cell(&live.contender, tasks, length).await,
                    });
                    live.close().await;
                }
            }
        }
        let row = contenders
            .iter()
            .zip(cells)
            .filter(|(_, v)| !v.is_empty())
            .map(|((name, _), v)| (*name, median(v)))
            .collect();
        out.push((tasks, row));
    }
    out
}

/// One concurrency's results: each contender's median cell.
type Row = Vec<(&'static str, Cell)>;

/// A reference a table divides by: its name, and its ops/s at a concurrency.
type Reference<'a> = (
    &'a str,
    &'a dyn Fn(usize, &[(&'static str, Cell)]) -> Option<f64>,
);

/// Prints one engine's table: throughput against each of `refs`, and p99 against the
/// contender named `p99_ref`.
fn print_table(title: &str, results: &[(usize, Row)], refs: &[Reference<'_>], p99_ref: &str) {
    println!("\n## {title}\n");
    let ref_names: Vec<String> = refs.iter().map(|(n, _)| format!("× {n}")).collect();
    println!(
        "| tasks | contender | ops/s | p50 µs | p99 µs | p99 × {p99_ref} | max µs | fewest ops of a task | {} |",
        ref_names.join(" | ")
    );
    println!(
        "|---|---|---|---|---|---|---|---|{}",
        "---|".repeat(refs.len())
    );
    for (tasks, row) in results {
        for (name, c) in row {
            let ratios: Vec<String> = refs
                .iter()
                .map(|(_, f)| match f(*tasks, row) {
                    Some(base) if base > 0.0 => format!("{:.2}", c.ops_per_sec / base),
                    _ => "—".into(),
                })
                .collect();
            let p99_ratio = row
                .iter()
                .find(|(n, _)| *n == p99_ref)
                .filter(|(_, b)| b.p99_us > 0.0)
                .map(|(_, b)| format!("{:.2}", c.p99_us / b.p99_us))
                .unwrap_or_else(|| "—".into());
            println!(
                "| {tasks} | {name} | {:.0} | {:.0} | {:.0} | {p99_ratio} | {:.0} | {} | {} |",
                c.ops_per_sec,
                c.p50_us,
                c.p99_us,
                c.max_us,
                c.min_task_ops,
                ratios.join(" | ")
            );
        }
    }
}

fn of(row: &[(&'static str, Cell)], name: &str) -> Option<f64> {
    row.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c.ops_per_sec)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let length = cell();
    let rounds = rounds();
    println!(
        "# hotpath: acquire + SELECT 1 + release, pool {POOL}, {rounds} interleaved rounds of {length:?} per cell, median round"
    );
    let (pg, paced, my) = rt.block_on(async {
        let pg = measure(&PG_CONTENDERS, length, rounds, None).await;
        let paced = measure(
            &PG_CONTENDERS,
            length,
            rounds,
            Some((paced_rate(), &PACED_TASKS)),
        )
        .await;
        let my = measure(&MY_CONTENDERS, length, rounds, None).await;
        (pg, paced, my)
    });
    let pgbench_tps: Vec<(usize, Option<f64>)> = TASKS
        .iter()
        .map(|&t| (t, pgbench(t, length.max(Duration::from_secs(2)))))
        .collect();
    let pgb = |tasks: usize| {
        pgbench_tps
            .iter()
            .find(|(t, _)| *t == tasks)
            .and_then(|(_, v)| *v)
    };
    print_table(
        "PostgreSQL",
        &pg,
        &[
            ("deadpool", &|_, row| of(row, "deadpool-postgres")),
            ("pgbench", &|t, _| pgb(t)),
            ("sqlx", &|_, row| of(row, "sqlx Pool (defaults)")),
            ("fast path", &|_, row| of(row, "dbmanager acquire")),
        ],
        "deadpool-postgres",
    );
    println!("\npgbench (select 1, -M prepared, clients = min(tasks, {POOL})):");
    for (t, v) in &pgbench_tps {
        match v {
            Some(v) => println!("  {t} tasks: {v:.0} tps"),
            None => println!("  {t} tasks: pgbench did not run"),
        }
    }
    print_table(
        &format!(
            "PostgreSQL at one offered load: {:.0} operations per second in all, spread over the tasks",
            paced_rate()
        ),
        &paced,
        &[("deadpool", &|_, row| of(row, "deadpool-postgres"))],
        "deadpool-postgres",
    );
    print_table(
        "MariaDB",
        &my,
        &[
            ("mysql_async", &|_, row| of(row, "mysql_async Pool")),
            ("sqlx", &|_, row| of(row, "sqlx Pool (defaults)")),
            ("fast path", &|_, row| of(row, "dbmanager acquire")),
        ],
        "mysql_async Pool",
    );
    let json = serde_json::json!({
        "pool": POOL,
        "cell_ms": length.as_millis() as u64,
        "rounds": rounds,
        "postgres": pg.iter().map(|(t, row)| serde_json::json!({
            "tasks": t,
            "pgbench_tps": pgb(*t),
            "contenders": row.iter().map(|(n, c)| serde_json::json!({"name": n, "cell": c})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "postgres_paced": {
            "rate": paced_rate(),
            "rows": paced.iter().map(|(t, row)| serde_json::json!({
                "tasks": t,
                "contenders": row.iter().map(|(n, c)| serde_json::json!({"name": n, "cell": c})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        },
        "mariadb": my.iter().map(|(t, row)| serde_json::json!({
            "tasks": t,
            "contenders": row.iter().map(|(n, c)| serde_json::json!({"name": n, "cell": c})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    common::write_json("hotpath", &json);
}
