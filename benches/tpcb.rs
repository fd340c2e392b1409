//! pgbench's TPC-B-like transaction, a real workload beside `select 1`: `begin`, three
//! updates, a select, an insert, `commit`, with pgbench's random account, teller, branch
//! and delta. On the machine's PostgreSQL, in a database of its own (`bench_tpcb`,
//! initialised with `pgbench -i` at scale 4 before every run, so every run starts alike).
//!
//! Contenders, each with a pool of 16 and prepared statements: dbmanager (`begin()` on the
//! fast path), sqlx's pool (`begin()`), deadpool-postgres (`prepare_cached`, a
//! `transaction()`), and pgbench itself (`-b tpcb-like -M prepared`, at most 16 clients).
//! Rounds are interleaved; the median round is printed, with ratios to deadpool. Written
//! to `target/bench/tpcb.json`. Prints figures; asserts nothing. `TPCB_CELL_MS` (default
//! 2000) and `TPCB_ROUNDS` (default 2) set the length.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

const POOL: u32 = 16;
const SCALE: i32 = 4;
const TASKS: [usize; 3] = [1, 16, 64];
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";
const URL: &str = "postgres://postgres@127.0.0.1:5432/bench_tpcb?sslmode=disable";

const UPDATE_ACCOUNT: &str = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2";
const SELECT_ACCOUNT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
const UPDATE_TELLER: &str = "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2";
const UPDATE_BRANCH: &str = "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2";
const INSERT_HISTORY: &str = "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
     VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)";

/// One transaction's random values, as pgbench draws them.
struct Draw {
    aid: i32,
    bid: i32,
    tid: i32,
    delta: i32,
}

fn draw() -> Draw {
    Draw {
        aid: fastrand::i32(1..=100_000 * SCALE),
        bid: fastrand::i32(1..=SCALE),
        tid: fastrand::i32(1..=10 * SCALE),
        delta: fastrand::i32(-5000..=5000),
    }
}

#[derive(Clone)]
enum Contender {
    Dbmanager(dbmanager::Connection),
    Sqlx(sqlx::PgPool),
    Deadpool(deadpool_postgres::Pool),
}

impl Contender {
    async fn once(&self) {
        let d = draw();
        match self {
            Contender::Dbmanager(conn) => {
                let mut tx = conn.begin::<sqlx::Postgres>().await.expect("begin");
                sqlx_tx(&mut tx, &d).await;
                tx.commit().await.expect("commit");
            }
            Contender::Sqlx(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                sqlx_tx(&mut tx, &d).await;
                tx.commit().await.expect("commit");
            }
            Contender::Deadpool(pool) => {
                let mut client = pool.get().await.expect("acquire");
                let tx = client.transaction().await.expect("begin");
                let s = [
                    tx.prepare_cached(UPDATE_ACCOUNT).await.expect("prepare"),
                    tx.prepare_cached(SELECT_ACCOUNT).await.expect("prepare"),
                    tx.prepare_cached(UPDATE_TELLER).await.expect("prepare"),
                    tx.prepare_cached(UPDATE_BRANCH).await.expect("prepare"),
                    tx.prepare_cached(INSERT_HISTORY).await.expect("prepare"),
                ];
                tx.execute(&s[0], &[&d.delta, &d.aid])
                    .await
                    .expect("update");
                tx.query_one(&s[1], &[&d.aid]).await.expect("select");
                tx.execute(&s[2], &[&d.delta, &d.tid])
                    .await
                    .expect("update");
                tx.execute(&s[3], &[&d.delta, &d.bid])
                    .await
                    .expect("update");
                tx.execute(&s[4], &[&d.tid, &d.bid, &d.aid, &d.delta])
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        }
    }
}

/// The transaction's statements on a sqlx connection (prepared and cached by sqlx).
async fn sqlx_tx(c: &mut sqlx::PgConnection, d: &Draw) {
    sqlx::query(UPDATE_ACCOUNT)
        .bind(d.delta)
        .bind(d.aid)
        .execute(&mut *c)
        .await
        .expect("update");
    sqlx::query_scalar::<_, i32>(SELECT_ACCOUNT)
        .bind(d.aid)
        .fetch_one(&mut *c)
        .await
        .expect("select");
    sqlx::query(UPDATE_TELLER)
        .bind(d.delta)
        .bind(d.tid)
        .execute(&mut *c)
        .await
        .expect("update");
    sqlx::query(UPDATE_BRANCH)
        .bind(d.delta)
        .bind(d.bid)
        .execute(&mut *c)
        .await
        .expect("update");
    sqlx::query(INSERT_HISTORY)
        .bind(d.tid)
        .bind(d.bid)
        .bind(d.aid)
        .bind(d.delta)
        .execute(&mut *c)
        .await
        .expect("insert");
}

impl common::Op for Contender {
    fn once(&self, _task: usize) -> impl std::future::Future<Output = ()> + Send + '_ {
        Contender::once(self)
    }
}

/// What one cell measured.
#[derive(Debug, Clone, serde::Serialize)]
struct Cell {
    tps: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn run_cell(c: &Contender, tasks: usize, length: Duration) -> Cell {
    let r = common::run_tasks(c, tasks, length, None).await;
    Cell {
        tps: r.ops_per_sec,
        p50_us: r.us(0.5),
        p99_us: r.us(0.99),
    }
}

async fn open(name: &str) -> (Contender, Option<dbmanager::Manager>) {
    match name {
        "dbmanager begin()" => {
            let yaml = format!(
                "connections:\n  db:\n    type: postgres\n    dsn: '{URL}'\n    max_open_conns: {POOL}\n    \
                 max_idle_conns: {POOL}\n"
            );
            let mgr = dbmanager::Manager::from_yaml_str(&yaml).expect("config");
            mgr.connect().await.expect("connect");
            let conn = mgr.get("db").expect("db");
            (Contender::Dbmanager(conn), Some(mgr))
        }
        "sqlx Pool" => (
            Contender::Sqlx(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(POOL)
                    .connect(URL)
                    .await
                    .expect("sqlx pool"),
            ),
            None,
        ),
        _ => (
            Contender::Deadpool(common::deadpool_postgres(URL, POOL as usize)),
            None,
        ),
    }
}

/// pgbench's own TPC-B-like run: tps, and its average latency in µs.
fn pgbench(clients: usize, length: Duration) -> Option<(f64, f64)> {
    let out = std::process::Command::new("pgbench")
        .env("PGSSLMODE", "disable")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-b", "tpcb-like"])
        .args(["-M", "prepared", "-j", "2"])
        .args(["-T", &length.as_secs().max(1).to_string()])
        .args(["-c", &clients.min(POOL as usize).to_string()])
        .arg("bench_tpcb")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |prefix: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))?
            .trim_start_matches(prefix)
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((number("tps = ")?, number("latency average = ")? * 1000.0))
}

/// A fresh `bench_tpcb` database at scale `SCALE`.
async fn initialise() {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(ADMIN_URL)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (see scripts/test.sh)");
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = 'bench_tpcb')")
            .fetch_one(&mut admin)
            .await
            .expect("pg_database");
    if !exists {
        sqlx::query("create database bench_tpcb")
            .execute(&mut admin)
            .await
            .expect("create database bench_tpcb");
    }
    let out = std::process::Command::new("pgbench")
        .env("PGSSLMODE", "disable")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-i", "-q"])
        .args(["-s", &SCALE.to_string(), "bench_tpcb"])
        .output()
        .expect("run pgbench -i");
    assert!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let length = Duration::from_millis(common::env_or("TPCB_CELL_MS", 2000));
    let rounds: usize = common::env_or("TPCB_ROUNDS", 2).max(1);
    let names = ["dbmanager begin()", "sqlx Pool", "deadpool-postgres"];
    println!(
        "# tpcb: pgbench's TPC-B-like transaction, scale {SCALE}, pool {POOL}, {rounds} \
         interleaved rounds of {length:?} per cell, median round"
    );
    rt.block_on(initialise());
    let mut rows = Vec::new();
    for tasks in TASKS {
        let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); names.len()];
        let mut pgb = Vec::new();
        for _ in 0..rounds {
            for (i, name) in names.iter().enumerate() {
                let cell = rt.block_on(async {
                    let (c, mgr) = open(name).await;
                    run_cell(&c, tasks.min(POOL as usize), Duration::from_millis(200)).await;
                    let cell = run_cell(&c, tasks, length).await;
                    if let Some(m) = mgr {
                        m.close().await;
                    }
                    cell
                });
                cells[i].push(cell);
            }
            pgb.push(pgbench(tasks, length.max(Duration::from_secs(1))));
        }
        let median = |mut v: Vec<Cell>| {
            v.sort_by(|a, b| a.tps.total_cmp(&b.tps));
            v[v.len() / 2].clone()
        };
        let cells: Vec<Cell> = cells.into_iter().map(median).collect();
        let mut pgb: Vec<(f64, f64)> = pgb.into_iter().flatten().collect();
        pgb.sort_by(|a, b| a.0.total_cmp(&b.0));
        let pgbench = pgb.get(pgb.len() / 2).copied();
        rows.push((tasks, cells, pgbench));
    }
    println!(
        "\n| tasks | contender | tps | p50 µs | p99 µs | × deadpool |\n|---|---|---|---|---|---|"
    );
    let mut json = Vec::new();
    for (tasks, cells, pgbench) in &rows {
        let base = cells[2].tps;
        for (name, c) in names.iter().zip(cells) {
            println!(
                "| {tasks} | {name} | {:.0} | {:.0} | {:.0} | {:.2} |",
                c.tps,
                c.p50_us,
                c.p99_us,
                c.tps / base
            );
            json.push(serde_json::json!({"tasks": tasks, "contender": name, "cell": c}));
        }
        match pgbench {
            Some((tps, avg_us)) => {
                println!(
                    "| {tasks} | pgbench (average latency) | {tps:.0} | {avg_us:.0} | | {:.2} |",
                    tps / base
                );
                json.push(serde_json::json!({"tasks": tasks, "contender": "pgbench", "tps": tps, "avg_us": avg_us}));
            }
            None => println!("| {tasks} | pgbench | did not run | | | |"),
        }
    }
    common::write_json("tpcb", &serde_json::Value::Array(json));
}
