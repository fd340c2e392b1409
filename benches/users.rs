//! `users`: 10,000 users at once against the machine's MariaDB, in one run: the load under
//! which a connection per request fails with "too many connections" and a pool does not.
//!
//! A `bench_users` table of `USERS` rows with an index on `email` is seeded once. Then
//! `TASKS` tasks start at the same moment, each looking one user up by email, through:
//!
//! - dbmanager (`acquire`, the fast path), `max_open_conns: 50`, with `max_idle_conns: 50`
//!   (a pool that keeps 50 idle connections; sqlx's pool has no idle limit) and with its default
//!   of 5 (after the warm-up pass, 45 connections are opened again during the burst);
//! - a raw sqlx `Pool` with `max_connections(50)`, other options default;
//! - a connection per request (`MySqlConnection::connect`, query, close): the
//!   failure mode, at the server's `max_connections`.
//!
//! Printed per client: successes, failures by kind, p50/p95/p99/max latency (from the
//! moment all tasks were started to each task's end), the wall time, and the server's
//! peak session count above what it had before any client was built (`Threads_connected`,
//! sampled every 2 ms from one extra session, which is not counted; a sampler this slow
//! can miss a short peak of the connection-per-request client). Each task gets `TASK_LIMIT`; a task still waiting then
//! counts as a hang. Written to `target/bench/users.json`.
//!
//! Then `USERS_RUNS` (default 5) more pairs of runs, dbmanager (50 idle) and sqlx's
//! `Pool` alternating, give the p95 ratio's min, median and max.
//!
//! Prints figures; asserts nothing. Run: `cargo bench -p dbmanager --bench users`
//! (`USERS_TASKS` to change the number of tasks).

#[path = "common/mod.rs"]
mod common;

use sqlx::{Connection, MySqlConnection, Row};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";
const USERS: usize = 10_000;
const BUDGET: u32 = 50;
const TASK_LIMIT: Duration = Duration::from_secs(10);

fn tasks() -> usize {
    common::env_or("USERS_TASKS", 10_000)
}

#[derive(Clone)]
enum Client {
    Managed(dbmanager::Connection),
    Raw(sqlx::MySqlPool),
    PerRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    TooMany,
    Timeout,
    Hang,
    Other,
}

fn email(i: usize) -> String {
    format!("user{}@example.com", i % USERS)
}

impl Client {
    async fn lookup(&self, i: usize) -> Outcome {
        let sql = "SELECT id, name FROM bench_users WHERE email = ?";
        let classify = |e: &str| {
            if e.contains("1040") || e.contains("Too many connections") {
                Outcome::TooMany
            } else if e.contains("timed out") || e.contains("imeout") {
                Outcome::Timeout
            } else {
                Outcome::Other
            }
        };
        let got: Result<(), String> = match self {
            Client::Managed(conn) => match conn.acquire::<sqlx::MySql>().await {
                Ok(mut c) => sqlx::query(sql)
                    .bind(email(i))
                    .fetch_one(&mut *c)
                    .await
                    .map(|r| {
                        let _id: i64 = r.get(0);
                    })
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Client::Raw(pool) => sqlx::query(sql)
                .bind(email(i))
                .fetch_one(pool)
                .await
                .map(|r| {
                    let _id: i64 = r.get(0);
                })
                .map_err(|e| e.to_string()),
            Client::PerRequest => match MySqlConnection::connect(MY_URL).await {
                Ok(mut c) => {
                    let r = sqlx::query(sql)
                        .bind(email(i))
                        .fetch_one(&mut c)
                        .await
                        .map(|r| {
                            let _id: i64 = r.get(0);
                        })
                        .map_err(|e| e.to_string());
                    let _ = c.close().await;
                    r
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match got {
            Ok(()) => Outcome::Ok,
            Err(e) => classify(&e),
        }
    }
}

async fn seed() {
    let mut c = MySqlConnection::connect(MY_URL)
        .await
        .expect("MariaDB on 127.0.0.1:3306 (see scripts/test.sh)");
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = 'test' AND table_name = 'bench_users'",
    )
    .fetch_one(&mut c)
    .await
    .expect("schema");
    if n == 1 {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bench_users")
            .fetch_one(&mut c)
            .await
            .expect("count");
        if rows as usize == USERS {
            return;
        }
        sqlx::query("DROP TABLE bench_users")
            .execute(&mut c)
            .await
            .expect("drop");
    }
    sqlx::query(
        "CREATE TABLE bench_users (id BIGINT PRIMARY KEY AUTO_INCREMENT, \
         email VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, UNIQUE KEY by_email (email))",
    )
    .execute(&mut c)
    .await
    .expect("create");
    for chunk in (0..USERS).collect::<Vec<_>>().chunks(1000) {
        let mut q =
            sqlx::QueryBuilder::<sqlx::MySql>::new("INSERT INTO bench_users (email, name) ");
        q.push_values(chunk, |mut b, i| {
            b.push_bind(email(*i)).push_bind(format!("User {i}"));
        });
        q.build().execute(&mut c).await.expect("seed");
    }
    let _ = c.close().await;
}

/// Samples `Threads_connected` every 2 ms until `stop`; returns the peak.
async fn sample_peak(stop: Arc<AtomicBool>) -> u64 {
    let mut c = MySqlConnection::connect(MY_URL).await.expect("sampler");
    let peak = AtomicU64::new(0);
    while !stop.load(Ordering::Relaxed) {
        if let Ok(row) = sqlx::query("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            .fetch_one(&mut c)
            .await
        {
            let v: String = row.get(1);
            if let Ok(v) = v.parse::<u64>() {
                peak.fetch_max(v, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = c.close().await;
    peak.into_inner()
}

async fn threads_connected() -> u64 {
    let mut c = MySqlConnection::connect(MY_URL).await.expect("baseline");
    let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        .fetch_one(&mut c)
        .await
        .expect("status");
    let v: String = row.get(1);
    let _ = c.close().await;
    // Not counting this session.
    v.parse::<u64>().unwrap_or(1).saturating_sub(1)
}

#[derive(Debug, serde::Serialize)]
struct Figures {
    client: &'static str,
    tasks: usize,
    ok: usize,
    too_many_connections: usize,
    timeouts: usize,
    hangs: usize,
    other_errors: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    wall_s: f64,
    /// Peak `Threads_connected` above the baseline (the sampler's own session excluded).
    peak_server_connections: u64,
}

/// Runs `n` tasks of `client` at once; `baseline`: the server's sessions before any client.
async fn run(name: &'static str, client: Client, n: usize, baseline: u64) -> Figures {
    // Let closed sessions leave the server's count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_peak(Arc::clone(&stop)));
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let outcome = tokio::time::timeout(TASK_LIMIT, client.lookup(i))
                    .await
                    .unwrap_or(Outcome::Hang);
                (outcome, started.elapsed())
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for h in handles {
        results.push(h.await.expect("task"));
    }
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.expect("sampler");
    let count = |o: Outcome| results.iter().filter(|(r, _)| *r == o).count();
    let mut ok: Vec<Duration> = results
        .iter()
        .filter(|(r, _)| *r == Outcome::Ok)
        .map(|(_, d)| *d)
        .collect();
    ok.sort_unstable();
    let q = |p: f64| common::quantile(&ok, p, 1e3);
    Figures {
        client: name,
        tasks: n,
        ok: ok.len(),
        too_many_connections: count(Outcome::TooMany),
        timeouts: count(Outcome::Timeout),
        hangs: count(Outcome::Hang),
        other_errors: count(Outcome::Other),
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: q(1.0),
        wall_s: wall.as_secs_f64(),
        // The sampler's own session is one of those it counted.
        peak_server_connections: peak.saturating_sub(baseline + 1),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = tasks();
    let results = rt.block_on(async {
        seed().await;
        // Sessions open before any client exists: the peaks are counted above it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let baseline = threads_connected().await;
        let mut out = Vec::new();
        // Each client is built, warmed with one untimed pass, measured and closed before
        // the next, so the server's session count shows its connections alone.
        for (name, idle) in [
            ("dbmanager (max_open_conns 50, max_idle_conns 50)", BUDGET),
            ("dbmanager (max_open_conns 50, max_idle_conns default 5)", 0),
        ] {
            let idle = if idle > 0 {
                format!("    max_idle_conns: {idle}\n")
            } else {
                String::new()
            };
            let mgr = dbmanager::Manager::from_yaml_str(&format!(
                "connections:\n  users:\n    type: mariadb\n    dsn: '{MY_URL}'\n    max_open_conns: {BUDGET}\n{idle}"
            ))
            .expect("config");
            mgr.connect().await.expect("connect");
            let managed = Client::Managed(mgr.get("users").expect("users"));
            run("warm-up", managed.clone(), 1000, baseline).await;
            out.push(run(name, managed, n, baseline).await);
            mgr.close().await;
        }
        let raw = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(BUDGET)
            .connect(MY_URL)
            .await
            .expect("sqlx pool");
        run("warm-up", Client::Raw(raw.clone()), 1000, baseline).await;
        out.push(run("sqlx Pool (max 50)", Client::Raw(raw.clone()), n, baseline).await);
        raw.close().await;
        out.push(run("connection per request", Client::PerRequest, n, baseline).await);
        (out, stability(n, baseline).await)
    });
    let (results, pairs) = results;
    println!(
        "# users load test: {n} concurrent tasks, one indexed lookup by email each, MariaDB (max_connections 151), budget {BUDGET}\n"
    );
    println!(
        "| client | ok | too many connections | timeouts | hangs | other errors | p50 ms | p95 ms | p99 ms | max ms | wall s | peak server connections | p95 × sqlx Pool |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let raw_p95 = results
        .iter()
        .find(|r| r.client.starts_with("sqlx"))
        .map(|r| r.p95_ms);
    for r in &results {
        let ratio = raw_p95
            .filter(|b| *b > 0.0 && r.p95_ms.is_finite())
            .map(|b| format!("{:.2}", r.p95_ms / b))
            .unwrap_or_else(|| "—".into());
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} |",
            r.client,
            r.ok,
            r.too_many_connections,
            r.timeouts,
            r.hangs,
            r.other_errors,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            r.wall_s,
            r.peak_server_connections,
            ratio
        );
    }
    let mut ratios: Vec<f64> = pairs.iter().map(|(m, r)| m / r).collect();
    if !ratios.is_empty() {
        println!(
            "\n## the p95 ratio, run again: dbmanager (50/50) against sqlx's Pool, {} pairs, alternating which goes first\n",
            pairs.len()
        );
        println!("| pair | dbmanager p95 ms | sqlx Pool p95 ms | ratio |");
        println!("|---:|---:|---:|---:|");
        for (i, (m, r)) in pairs.iter().enumerate() {
            println!("| {} | {m:.1} | {r:.1} | {:.2} |", i + 1, m / r);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "\np95 × sqlx Pool over {} pairs: min {:.2}, median {:.2}, max {:.2}",
            ratios.len(),
            ratios[0],
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1]
        );
    }
    common::write_json(
        "users",
        &serde_json::json!({
            "tasks": n, "budget": BUDGET, "results": results,
            "p95_pairs_ms": pairs, "p95_ratios_sorted": ratios,
        }),
    );
}

/// `USERS_RUNS` (default 5) more pairs of runs, dbmanager with 50 idle connections and
/// sqlx's `Pool`, both built and warmed once, the order alternating: the p95 ratio of one
/// pair swings with the machine, so it is reported as min/median/max. Returns the pairs'
/// p95s (dbmanager, sqlx), in ms.
async fn stability(n: usize, baseline: u64) -> Vec<(f64, f64)> {
    let runs: usize = common::env_or("USERS_RUNS", 5);
    if runs == 0 {
        return Vec::new();
    }
    let mgr = dbmanager::Manager::from_yaml_str(&format!(
        "connections:\n  users:\n    type: mariadb\n    dsn: '{MY_URL}'\n    max_open_conns: {BUDGET}\n    max_idle_conns: {BUDGET}\n"
    ))
    .expect("config");
    mgr.connect().await.expect("connect");
    let managed = Client::Managed(mgr.get("users").expect("users"));
    let raw = Client::Raw(
        sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(BUDGET)
            .connect(MY_URL)
            .await
            .expect("sqlx pool"),
    );
    run("warm-up", managed.clone(), 1000, baseline).await;
    run("warm-up", raw.clone(), 1000, baseline).await;
    let mut pairs = Vec::with_capacity(runs);
    for i in 0..runs {
        let (m, r) = if i % 2 == 0 {
            let m = run("dbmanager", managed.clone(), n, baseline).await;
            (m, run("sqlx Pool", raw.clone(), n, baseline).await)
        } else {
            let r = run("sqlx Pool", raw.clone(), n, baseline).await;
            (run("dbmanager", managed.clone(), n, baseline).await, r)
        };
        pairs.push((m.p95_ms, r.p95_ms));
    }
    if let Client::Raw(p) = raw {
        p.close().await;
    }
    mgr.close().await;
    pairs
}
