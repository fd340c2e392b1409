//! `hotpath`: acquire + `SELECT 1` + release, dbmanager beside its peers, in one run.
//!
//! Pool size 16, at 1, 16, 64 and 256 concurrent tasks. For each concurrency, every
//! contender runs for `CELL` in turn, and the whole round is repeated `ROUNDS` times,
//! interleaved, so drift on a noisy machine hits every contender alike. The median round
//! is reported.
//!
//! - PostgreSQL (the machine's): sqlx `Pool` with default options, dbmanager `acquire`
//!   (the fast path), dbmanager's raw sqlx pool (`postgres()`), deadpool-postgres, bb8
//!   (bb8-postgres), and `pgbench` (`select 1`, `-M prepared`, same client counts) as the
//!   physical reference;
//! - MariaDB (the machine's): sqlx `Pool` defaults, dbmanager `acquire`, dbmanager's raw
//!   pool, and mysql_async's own pool.
//!
//! Printed per contender: ops/s, p50/p99/max latency, the fewest operations any task
//! completed (fairness), and ratios to deadpool-postgres, pgbench and sqlx (PostgreSQL),
//! or to mysql_async and sqlx (MariaDB). Written to `target/bench/hotpath.json`.
//! Prints figures; asserts nothing. Run: `cargo bench -p dbmanager --bench hotpath`
//! (`HOTPATH_CELL_MS`, `HOTPATH_ROUNDS` to change the run's length).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const POOL: u32 = 16;
const TASKS: [usize; 4] = [1, 16, 64, 256];
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn cell() -> Duration {
    let ms = std::env::var("HOTPATH_CELL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    Duration::from_millis(ms)
}

fn rounds() -> usize {
    std::env::var("HOTPATH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// One contender: something that runs acquire + `SELECT 1` + release once.
#[derive(Clone)]
enum Contender {
    SqlxPg(sqlx::PgPool),
    ManagedPg(dbmanager::Connection),
    RawPg(sqlx::PgPool),
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>),
    SqlxMy(sqlx::MySqlPool),
    ManagedMy(dbmanager::Connection),
    RawMy(sqlx::MySqlPool),
    MysqlAsync(mysql_async::Pool),
}

impl Contender {
    async fn once(&self) {
        match self {
            Contender::SqlxPg(p) | Contender::RawPg(p) => {
                let mut c = p.acquire().await.expect("acquire");
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
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let c = c.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    c.once().await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut min_task = usize::MAX;
    for h in handles {
        let lat = h.await.expect("task");
        min_task = min_task.min(lat.len());
        all.extend(lat);
    }
    let took = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let q = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1e6
    };
    Cell {
        ops_per_sec: all.len() as f64 / took,
        p50_us: q(0.5),
        p99_us: q(0.99),
        max_us: q(1.0),
        min_task_ops: min_task,
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

async fn contenders_pg() -> Vec<(&'static str, Contender)> {
    let sqlx_default = sqlx::postgres::PgPoolOptions::new()
        .max_connections(POOL)
        .connect(PG_URL)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (see scripts/test.sh)");
    let mgr = dbmanager::Manager::from_yaml_str(&format!(
        "health_check_interval: 1h\nconnections:\n  db:\n    type: postgres\n    dsn: '{PG_URL}'\n    max_open_conns: {POOL}\n    max_idle_conns: {POOL}\n"
    ))
    .expect("config");
    mgr.connect().await.expect("connect");
    let conn = mgr.get("db").expect("db");
    let mgr_raw = dbmanager::Manager::from_yaml_str(&format!(
        "health_check_interval: 1h\nconnections:\n  db:\n    type: postgres\n    dsn: '{PG_URL}'\n    max_open_conns: {POOL}\n    max_idle_conns: {POOL}\n"
    ))
    .expect("config");
    mgr_raw.connect().await.expect("connect");
    let raw = mgr_raw.get("db").expect("db").postgres().expect("raw");
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(PG_URL.to_owned());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(POOL as usize));
    let deadpool = cfg
        .create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .expect("deadpool");
    let bb8_manager =
        bb8_postgres::PostgresConnectionManager::new_from_stringlike(PG_URL, tokio_postgres::NoTls)
            .expect("bb8 manager");
    let bb8 = bb8::Pool::builder()
        .max_size(POOL)
        .build(bb8_manager)
        .await
        .expect("bb8");
    // Keep the managers alive for the whole run.
    std::mem::forget(mgr);
    std::mem::forget(mgr_raw);
    vec![
        ("sqlx Pool (defaults)", Contender::SqlxPg(sqlx_default)),
        ("dbmanager acquire", Contender::ManagedPg(conn)),
        ("dbmanager raw pool", Contender::RawPg(raw)),
        ("deadpool-postgres", Contender::Deadpool(deadpool)),
        ("bb8-postgres", Contender::Bb8(bb8)),
    ]
}

async fn contenders_my() -> Vec<(&'static str, Contender)> {
    let sqlx_default = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(POOL)
        .connect(MY_URL)
        .await
        .expect("MariaDB on 127.0.0.1:3306 (see scripts/test.sh)");
    let yaml = format!(
        "health_check_interval: 1h\nconnections:\n  db:\n    type: mariadb\n    dsn: '{MY_URL}'\n    max_open_conns: {POOL}\n    max_idle_conns: {POOL}\n"
    );
    let mgr = dbmanager::Manager::from_yaml_str(&yaml).expect("config");
    mgr.connect().await.expect("connect");
    let conn = mgr.get("db").expect("db");
    let mgr_raw = dbmanager::Manager::from_yaml_str(&yaml).expect("config");
    mgr_raw.connect().await.expect("connect");
    let raw = mgr_raw.get("db").expect("db").mysql().expect("raw");
    let opts =
        mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(MY_URL).expect("url"))
            .pool_opts(mysql_async::PoolOpts::default().with_constraints(
                mysql_async::PoolConstraints::new(0, POOL as usize).expect("constraints"),
            ));
    let my_pool = mysql_async::Pool::new(opts);
    std::mem::forget(mgr);
    std::mem::forget(mgr_raw);
    vec![
        ("sqlx Pool (defaults)", Contender::SqlxMy(sqlx_default)),
        ("dbmanager acquire", Contender::ManagedMy(conn)),
        ("dbmanager raw pool", Contender::RawMy(raw)),
        ("mysql_async Pool", Contender::MysqlAsync(my_pool)),
    ]
}

/// Runs every contender at every concurrency, `rounds` times interleaved.
async fn measure(
    contenders: &[(&'static str, Contender)],
    length: Duration,
    rounds: usize,
) -> Vec<(usize, Vec<(&'static str, Cell)>)> {
    // Warm every pool up to its size.
    for (_, c) in contenders {
        run_cell(c, POOL as usize, Duration::from_millis(200)).await;
    }
    let mut out = Vec::new();
    for tasks in TASKS {
        let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); contenders.len()];
        for _ in 0..rounds {
            for (i, (_, c)) in contenders.iter().enumerate() {
                cells[i].push(run_cell(c, tasks, length).await);
            }
        }
        let row = contenders
            .iter()
            .zip(cells)
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

fn print_table(title: &str, results: &[(usize, Row)], refs: &[Reference<'_>]) {
    println!("\n## {title}\n");
    let ref_names: Vec<String> = refs.iter().map(|(n, _)| format!("× {n}")).collect();
    println!(
        "| tasks | contender | ops/s | p50 µs | p99 µs | max µs | fewest ops of a task | {} |",
        ref_names.join(" | ")
    );
    println!("|---|---|---|---|---|---|---|{}", "---|".repeat(refs.len()));
    for (tasks, row) in results {
        for (name, c) in row {
            let ratios: Vec<String> = refs
                .iter()
                .map(|(_, f)| match f(*tasks, row) {
                    Some(base) if base > 0.0 => format!("{:.2}", c.ops_per_sec / base),
                    _ => "—".into(),
                })
                .collect();
            println!(
                "| {tasks} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
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
    let (pg, my) = rt.block_on(async {
        let pg = measure(&contenders_pg().await, length, rounds).await;
        let my = measure(&contenders_my().await, length, rounds).await;
        (pg, my)
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
        ],
    );
    println!("\npgbench (select 1, -M prepared, clients = min(tasks, {POOL})):");
    for (t, v) in &pgbench_tps {
        match v {
            Some(v) => println!("  {t} tasks: {v:.0} tps"),
            None => println!("  {t} tasks: pgbench did not run"),
        }
    }
    print_table(
        "MariaDB",
        &my,
        &[
            ("mysql_async", &|_, row| of(row, "mysql_async Pool")),
            ("sqlx", &|_, row| of(row, "sqlx Pool (defaults)")),
        ],
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
        "mariadb": my.iter().map(|(t, row)| serde_json::json!({
            "tasks": t,
            "contenders": row.iter().map(|(n, c)| serde_json::json!({"name": n, "cell": c})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    if std::fs::create_dir_all(&dir).is_ok() {
        let path = dir.join("hotpath.json");
        match std::fs::write(
            &path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ) {
            Ok(()) => println!("\nresults: {}", path.display()),
            Err(e) => println!("\ncould not write {}: {e}", path.display()),
        }
    }
}
