//! `recovery`: how a pool lives through a 2 s server outage, dbmanager beside a raw sqlx
//! pool with default options, against the same throwaway server in one run.
//!
//! For PostgreSQL and MariaDB: start a throwaway server, put four clients on it (dbmanager
//! `on_unavailable: wait` with plain acquire + query, the same with `Connection::retry_idempotent`,
//! dbmanager `fail_fast`, and `sqlx::Pool` with default options), each with 4 workers
//! issuing `SELECT 1` every 10 ms. After 1 s of load the server is killed (`kill -9`),
//! restarted 2 s later, and the load goes on for 5 s more. Printed per client: requests
//! ok and failed, failed among those issued during the outage, and the time from the
//! server accepting connections again to the client's first successful query after it.
//!
//! Prints figures; asserts nothing about time. Run:
//! `cargo bench -p dbmanager --bench recovery` (figures in docs/BENCHMARKS.md).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use dbmanager::Manager;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::TempServer;

const WORKERS: usize = 4;
const PERIOD: Duration = Duration::from_millis(10);
const WARM: Duration = Duration::from_secs(1);
const OUTAGE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(5);
/// No request may hang the benchmark: each gets this long, then counts as failed.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
struct Sample {
    issued: Instant,
    done: Instant,
    ok: bool,
}

type Log = Arc<Mutex<Vec<Sample>>>;

#[derive(Clone)]
enum Client {
    Managed { mgr: Manager, retry: bool },
    Raw(RawPool),
}

#[derive(Clone)]
enum RawPool {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

impl Client {
    async fn request(&self, engine: Engine) -> bool {
        match self {
            Client::Managed { mgr, retry } => {
                let conn = match mgr.get("db") {
                    Ok(c) => c,
                    Err(_) => return false,
                };
                match (engine, retry) {
                    (Engine::Postgres, false) => match conn.acquire::<sqlx::Postgres>().await {
                        Ok(mut c) => sqlx::query("SELECT 1").execute(&mut *c).await.is_ok(),
                        Err(_) => false,
                    },
                    (Engine::Postgres, true) => conn
                        .retry_idempotent(
                            |mut c: dbmanager::PooledConnection<sqlx::Postgres>| async move {
                                sqlx::query("SELECT 1").execute(&mut *c).await.map(|_| ())
                            },
                        )
                        .await
                        .is_ok(),
                    (Engine::MariaDb, false) => match conn.acquire::<sqlx::MySql>().await {
                        Ok(mut c) => sqlx::query("SELECT 1").execute(&mut *c).await.is_ok(),
                        Err(_) => false,
                    },
                    (Engine::MariaDb, true) => conn
                        .retry_idempotent(
                            |mut c: dbmanager::PooledConnection<sqlx::MySql>| async move {
                                sqlx::query("SELECT 1").execute(&mut *c).await.map(|_| ())
                            },
                        )
                        .await
                        .is_ok(),
                }
            }
            Client::Raw(RawPool::Pg(p)) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
            Client::Raw(RawPool::My(p)) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    MariaDb,
}

fn manager(kind: &str, url: &str, policy: &str) -> Manager {
    let yaml = format!(
        "connections:\n  db:\n    type: {kind}\n    dsn: '{url}'\n    on_unavailable: {policy}\n    \
         max_open_conns: 8\n    acquire_timeout: 5s\n    health_check_interval: 1s\n    \
         health_check_timeout: 1s\n    retry_delay: 100ms\n    retry_max_delay: 1s\n    retry_attempts: 5\n"
    );
    Manager::from_yaml_str(&yaml).expect("benchmark config")
}

async fn load(client: Client, engine: Engine, log: Log, until: Instant) {
    while Instant::now() < until {
        let issued = Instant::now();
        let ok = tokio::time::timeout(REQUEST_LIMIT, client.request(engine))
            .await
            .unwrap_or(false);
        log.lock().unwrap().push(Sample {
            issued,
            done: Instant::now(),
            ok,
        });
        tokio::time::sleep(PERIOD).await;
    }
}

struct Row {
    name: &'static str,
    ok: usize,
    failed: usize,
    failed_in_outage: usize,
    first_ok_after_up: Option<Duration>,
}

fn summarize(name: &'static str, log: &Log, down: Instant, up: Instant) -> Row {
    let samples = log.lock().unwrap().clone();
    Row {
        name,
        ok: samples.iter().filter(|s| s.ok).count(),
        failed: samples.iter().filter(|s| !s.ok).count(),
        failed_in_outage: samples
            .iter()
            .filter(|s| !s.ok && s.issued >= down && s.issued < up)
            .count(),
        first_ok_after_up: samples
            .iter()
            .filter(|s| s.ok && s.done >= up)
            .map(|s| s.done - up)
            .min(),
    }
}

async fn run(engine: Engine) -> serde_json::Value {
    let (label, kind) = match engine {
        Engine::Postgres => ("PostgreSQL 15", "postgres"),
        Engine::MariaDb => ("MariaDB", "mysql"),
    };
    let server: Arc<dyn TempServer> = match engine {
        Engine::Postgres => Arc::new(
            tokio::task::spawn_blocking(|| support::TempPostgres::start("bench"))
                .await
                .unwrap(),
        ),
        Engine::MariaDb => Arc::new(
            tokio::task::spawn_blocking(support::TempMariaDb::start)
                .await
                .unwrap(),
        ),
    };
    let url = server.url_via(server.port());
    let wait = manager(kind, &url, "wait");
    let fail_fast = manager(kind, &url, "fail_fast");
    // As a new user would write it: the defaults, and a short first retry delay.
    let newcomer = Manager::from_yaml_str(&format!(
        "connections:\n  db:\n    type: {kind}\n    dsn: '{url}'\n    retry_delay: 50ms\n"
    ))
    .expect("benchmark config");
    for m in [&wait, &fail_fast, &newcomer] {
        m.connect().await.expect("connect");
    }
    // RECOVERY_EVENTS=newcomer|wait|fail_fast: print that client's events as a timeline,
    // to see where the time after the server's return goes.
    let timeline: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    if let Ok(which) = std::env::var("RECOVERY_EVENTS") {
        struct Tap(Arc<Mutex<Vec<(Instant, String)>>>);
        impl dbmanager::Subscriber for Tap {
            fn on_event(&self, e: &dbmanager::Event) {
                self.0
                    .lock()
                    .unwrap()
                    .push((Instant::now(), format!("{:?}", e.kind)));
            }
        }
        let tapped = match which.as_str() {
            "wait" => &wait,
            "fail_fast" => &fail_fast,
            _ => &newcomer,
        };
        tapped.add_subscriber(Arc::new(Tap(Arc::clone(&timeline))));
    }
    let raw = match engine {
        Engine::Postgres => RawPool::Pg(sqlx::PgPool::connect(&url).await.expect("sqlx pool")),
        Engine::MariaDb => RawPool::My(sqlx::MySqlPool::connect(&url).await.expect("sqlx pool")),
    };
    let clients: Vec<(&'static str, Client)> = vec![
        (
            "dbmanager wait (acquire + query)",
            Client::Managed {
                mgr: wait.clone(),
                retry: false,
            },
        ),
        (
            "dbmanager wait (Connection::retry)",
            Client::Managed {
                mgr: wait.clone(),
                retry: true,
            },
        ),
        (
            "dbmanager fail_fast (acquire + query)",
            Client::Managed {
                mgr: fail_fast.clone(),
                retry: false,
            },
        ),
        (
            "dbmanager defaults + retry_delay 50ms",
            Client::Managed {
                mgr: newcomer.clone(),
                retry: false,
            },
        ),
        ("sqlx::Pool, default options", Client::Raw(raw.clone())),
    ];
    let start = Instant::now();
    let until = start + WARM + OUTAGE + AFTER;
    let mut logs = Vec::new();
    let mut handles = Vec::new();
    for (name, client) in &clients {
        let log: Log = Arc::default();
        for _ in 0..WORKERS {
            handles.push(tokio::spawn(load(
                client.clone(),
                engine,
                Arc::clone(&log),
                until,
            )));
        }
        logs.push((*name, log));
    }
    tokio::time::sleep(WARM).await;
    let s = Arc::clone(&server);
    tokio::task::spawn_blocking(move || s.kill9())
        .await
        .unwrap();
    let down = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let s = Arc::clone(&server);
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .unwrap();
    // `restart` returns once the port accepts connections.
    let up = Instant::now();
    for h in handles {
        h.await.unwrap();
    }
    println!(
        "\n{label}: outage {:.2} s (kill -9 .. accepting again), {WORKERS} workers per client, one request per worker every {} ms",
        (up - down).as_secs_f64(),
        PERIOD.as_millis()
    );
    println!(
        "| client | ok | failed | failed, issued during the outage | first ok query after the server is back |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for (name, log) in &logs {
        let r = summarize(name, log, down, up);
        rows.push(serde_json::json!({
            "client": r.name, "ok": r.ok, "failed": r.failed,
            "failed_in_outage": r.failed_in_outage,
            "first_ok_after_up_ms": r.first_ok_after_up.map(|d| d.as_secs_f64() * 1e3),
        }));
        println!(
            "| {} | {} | {} | {} | {} |",
            r.name,
            r.ok,
            r.failed,
            r.failed_in_outage,
            r.first_ok_after_up
                .map(|d| format!("{} ms", d.as_millis()))
                .unwrap_or_else(|| "never".into())
        );
    }
    for (at, what) in timeline.lock().unwrap().iter() {
        let ms = |a: Instant, b: Instant| a.saturating_duration_since(b).as_secs_f64() * 1e3;
        println!("  {:+9.1} ms  {what}", ms(*at, up) - ms(up, *at));
    }
    wait.close().await;
    fail_fast.close().await;
    newcomer.close().await;
    match raw {
        RawPool::Pg(p) => p.close().await,
        RawPool::My(p) => p.close().await,
    }
    serde_json::json!({ "engine": label, "outage_s": (up - down).as_secs_f64(), "clients": rows })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("recovery benchmark (prints figures; nothing is asserted)");
    // RECOVERY_ENGINE=postgres|mysql runs one engine only.
    let only = std::env::var("RECOVERY_ENGINE").unwrap_or_default();
    let mut out = Vec::new();
    if only.is_empty() || only == "postgres" {
        out.push(run(Engine::Postgres).await);
    }
    if only.is_empty() || only == "mysql" {
        out.push(run(Engine::MariaDb).await);
    }
    common::write_json("recovery", &serde_json::Value::Array(out));
}
