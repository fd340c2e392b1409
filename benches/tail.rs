//! Where the p99 at 16 tasks comes from: a minimal program with no pool at all.
//!
//! Sixteen tasks, each with a connection of its own, run `SELECT 1` (prepared) in a loop
//! for a second, against PostgreSQL on 127.0.0.1 with TLS off. Two drivers, side by side
//! in interleaved rounds:
//!
//! - **sqlx**: a `PgConnection` per task. The task that awaits the query does the socket
//!   I/O itself;
//! - **tokio-postgres** (deadpool's and bb8's driver): a `Client` per task, whose socket is
//!   driven by a task of its own (`Connection`), the query passing through a channel.
//!
//! Each on a multi-thread runtime with 2 workers (as the hot-path benchmark) and on a
//! current-thread runtime. Besides the quantiles it prints the stalls: windows of at least
//! 1 ms in which no operation of any task completed. When the slow operations are the
//! ones that span such a window, the whole process (or the server) was not running, not
//! one task held up behind others: the cause is the operating system's scheduling of a
//! saturated machine, not a queue in the client.
//!
//! `scripts/test.sh -- cargo bench -p dbmanager --all-features --bench tail`
//! (`TAIL_TASKS`, default 16; `TAIL_CELL_MS`, default 1000; `TAIL_ROUNDS`, default 3;
//! `TAIL_ONLY`, e.g. `MultiThread/Sqlx`, one combination).

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";
const TP_DSN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    Sqlx,
    TokioPostgres,
    /// sqlx, yielding to the runtime (`tokio::task::yield_now`) before each query.
    SqlxYield,
    /// sqlx over the server's Unix socket (no TCP).
    SqlxUnix,
    /// tokio-postgres over the server's Unix socket.
    TokioPostgresUnix,
}

/// The server's Unix socket directory (`TAIL_SOCKET_DIR`, default Debian's).
fn socket_dir() -> String {
    std::env::var("TAIL_SOCKET_DIR").unwrap_or_else(|_| "/var/run/postgresql".into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    MultiThread,
    CurrentThread,
    /// 2 workers, the I/O driver polled every 7 task polls instead of 61.
    MultiThreadEvent7,
    /// 4 workers on the 2 cores.
    MultiThread4,
    /// 1 worker.
    MultiThread1,
    /// 2 workers without the LIFO slot (a tokio option that exists only in a build with
    /// `RUSTFLAGS="--cfg tokio_unstable"`; without it this is the default runtime).
    MultiThreadNoLifo,
}

/// One operation: when it began and ended, from the cell's start.
type Op = (Duration, Duration);

/// Where a slow operation's time went, summed over its polls: waiting for the wake-up
/// (the server's answer, delivered by the runtime's I/O driver) and waiting, once woken,
/// to be polled (the runtime's run queue).
#[derive(Default, Clone, Copy)]
struct Split {
    to_wake: Duration,
    to_poll: Duration,
}

/// A waker that notes when it was woken, then wakes the task.
struct Noting {
    inner: std::sync::Mutex<Option<(std::task::Waker, Option<Instant>)>>,
}

impl std::task::Wake for Noting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let mut g = self.inner.lock().expect("waker");
        if let Some((w, at)) = g.as_mut() {
            at.get_or_insert_with(Instant::now);
            w.wake_by_ref();
        }
    }
}

/// Polls `fut` through a [`Noting`] waker, adding to `split` the time from each `Pending`
/// to the wake-up and from the wake-up to the next poll.
async fn timed<F: std::future::Future>(fut: F, split: &mut Split) -> F::Output {
    let noting = Arc::new(Noting {
        inner: std::sync::Mutex::new(None),
    });
    let waker = std::task::Waker::from(Arc::clone(&noting));
    let mut fut = std::pin::pin!(fut);
    let mut pending_at: Option<Instant> = None;
    std::future::poll_fn(|cx| {
        let now = Instant::now();
        if let Some(p) = pending_at.take() {
            let woken = noting
                .inner
                .lock()
                .expect("waker")
                .as_ref()
                .and_then(|(_, at)| *at);
            if let Some(w) = woken {
                split.to_wake += w.saturating_duration_since(p);
                split.to_poll += now.saturating_duration_since(w);
            }
        }
        *noting.inner.lock().expect("waker") = Some((cx.waker().clone(), None));
        let mut inner_cx = std::task::Context::from_waker(&waker);
        let r = fut.as_mut().poll(&mut inner_cx);
        if r.is_pending() {
            pending_at = Some(Instant::now());
        }
        r
    })
    .await
}

struct Cell {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Windows ≥ 1 ms with no completion: how many, and their total.
    stalls: usize,
    stalled_ms: f64,
    /// Of the operations slower than the p99, the share that spans a stall.
    slow_in_stall: f64,
    /// Of those operations' time, the share spent woken but not yet polled.
    slow_run_queue: f64,
}

async fn run(driver: Driver, tasks: usize, length: Duration) -> Vec<Vec<(Op, Split)>> {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let stop = Arc::clone(&stop);
        handles.push(match driver {
            Driver::Sqlx | Driver::SqlxYield | Driver::SqlxUnix => {
                use sqlx::Connection;
                let yields = driver == Driver::SqlxYield;
                let url = if driver == Driver::SqlxUnix {
                    format!("postgres://postgres@localhost/test?host={}", socket_dir())
                } else {
                    PG_URL.to_owned()
                };
                let mut c = sqlx::PgConnection::connect(&url)
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432 (see scripts/test.sh)");
                tokio::spawn(async move {
                    let mut ops = Vec::with_capacity(1 << 16);
                    while !stop.load(Ordering::Relaxed) {
                        let s = t0.elapsed();
                        if yields {
                            tokio::task::yield_now().await;
                        }
                        let mut split = Split::default();
                        let _: i32 =
                            timed(sqlx::query_scalar("SELECT 1").fetch_one(&mut c), &mut split)
                                .await
                                .expect("select");
                        ops.push(((s, t0.elapsed()), split));
                    }
                    ops
                })
            }
            Driver::TokioPostgres | Driver::TokioPostgresUnix => {
                let dsn = if driver == Driver::TokioPostgresUnix {
                    format!("host={} user=postgres dbname=test", socket_dir())
                } else {
                    TP_DSN.to_owned()
                };
                let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432 (see scripts/test.sh)");
                tokio::spawn(conn);
                tokio::spawn(async move {
                    let st = client.prepare("SELECT 1").await.expect("prepare");
                    let mut ops = Vec::with_capacity(1 << 16);
                    while !stop.load(Ordering::Relaxed) {
                        let s = t0.elapsed();
                        let mut split = Split::default();
                        let _: i32 = timed(client.query_one(&st, &[]), &mut split)
                            .await
                            .expect("select")
                            .get(0);
                        ops.push(((s, t0.elapsed()), split));
                    }
                    ops
                })
            }
        });
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

fn measure(flavor: Flavor, driver: Driver, tasks: usize, length: Duration) -> Cell {
    let rt = match flavor {
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Flavor::MultiThreadEvent7 => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .event_interval(7)
            .enable_all()
            .build(),
        Flavor::MultiThread4 => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build(),
        Flavor::MultiThread1 => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build(),
        Flavor::MultiThreadNoLifo => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2).enable_all();
            #[cfg(tokio_unstable)]
            b.disable_lifo_slot();
            b.build()
        }
    }
    .expect("runtime");
    let per_task = rt.block_on(run(driver, tasks, length));
    drop(rt);
    let timed_ops: Vec<(Op, Split)> = per_task.into_iter().flatten().collect();
    let ops: Vec<Op> = timed_ops.iter().map(|(o, _)| *o).collect();
    let took = ops.iter().map(|o| o.1).max().unwrap_or_default();
    let mut lat: Vec<Duration> = ops.iter().map(|(s, e)| *e - *s).collect();
    lat.sort_unstable();
    let q = |p: f64| common::quantile(&lat, p, 1e6);
    // Stalls: gaps of ≥ 1 ms between consecutive completions (of any task).
    let mut ends: Vec<Duration> = ops.iter().map(|o| o.1).collect();
    ends.sort_unstable();
    let gap = Duration::from_millis(1);
    let stalls: Vec<(Duration, Duration)> = ends
        .windows(2)
        .filter(|w| w[1] - w[0] >= gap)
        .map(|w| (w[0], w[1]))
        .collect();
    let p99 = lat
        .get(((lat.len() as f64 - 1.0) * 0.99) as usize)
        .copied()
        .unwrap_or_default();
    let slow: Vec<&Op> = ops.iter().filter(|(s, e)| *e - *s > p99).collect();
    // Of the slow operations' time, the share spent woken but not yet polled.
    let (mut woken_wait, mut total) = (Duration::ZERO, Duration::ZERO);
    for ((s, e), split) in &timed_ops {
        if *e - *s > p99 {
            woken_wait += split.to_poll;
            total += *e - *s;
        }
    }
    let spanning = slow
        .iter()
        .filter(|(s, e)| stalls.iter().any(|(a, b)| s <= a && e >= b))
        .count();
    Cell {
        ops_per_sec: ops.len() as f64 / took.as_secs_f64(),
        p50_us: q(0.5),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: q(1.0),
        stalls: stalls.len(),
        // `Sum` of floats starts at -0.0: add 0.0 so that no stall prints as 0.0.
        stalled_ms: stalls
            .iter()
            .map(|(a, b)| (*b - *a).as_secs_f64() * 1e3)
            .sum::<f64>()
            + 0.0,
        slow_run_queue: woken_wait.as_secs_f64() / total.as_secs_f64().max(1e-9),
        slow_in_stall: if slow.is_empty() {
            f64::NAN
        } else {
            spanning as f64 / slow.len() as f64
        },
    }
}

fn main() {
    let tasks: usize = common::env_or("TAIL_TASKS", 16);
    let length = Duration::from_millis(common::env_or("TAIL_CELL_MS", 1000));
    let rounds: usize = common::env_or("TAIL_ROUNDS", 3);
    println!(
        "\n## tail: {tasks} tasks, a connection each, no pool, SELECT 1 prepared, TLS off \
         ({} ms cells, {rounds} rounds, the median round by p99)\n",
        length.as_millis()
    );
    let combos = [
        (Flavor::MultiThread, Driver::Sqlx),
        (Flavor::MultiThread, Driver::TokioPostgres),
        (Flavor::CurrentThread, Driver::Sqlx),
        (Flavor::CurrentThread, Driver::TokioPostgres),
        (Flavor::MultiThread, Driver::SqlxYield),
        (Flavor::MultiThread, Driver::SqlxUnix),
        (Flavor::MultiThread, Driver::TokioPostgresUnix),
        (Flavor::MultiThreadEvent7, Driver::Sqlx),
        (Flavor::MultiThread4, Driver::Sqlx),
        (Flavor::MultiThread1, Driver::Sqlx),
    ];
    // Only a build with `--cfg tokio_unstable` can turn the LIFO slot off.
    let combos: Vec<_> = combos
        .into_iter()
        .chain(cfg!(tokio_unstable).then_some((Flavor::MultiThreadNoLifo, Driver::Sqlx)))
        .collect();
    // `TAIL_ONLY=MultiThread/Sqlx` (say) runs one combination, for a profiler.
    let only = std::env::var("TAIL_ONLY").unwrap_or_default();
    let combos: Vec<_> = combos
        .into_iter()
        .filter(|(f, d)| only.is_empty() || only.split('|').any(|o| o == format!("{f:?}/{d:?}")))
        .collect();
    let mut cells: Vec<Vec<Cell>> = combos.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (f, d)) in combos.iter().enumerate() {
            cells[i].push(measure(*f, *d, tasks, length));
        }
    }
    println!(
        "| runtime | driver | ops/s | p50 µs | p99 µs | p99.9 µs | max µs | stalls ≥ 1 ms | ms stalled | ops over p99 spanning a stall | their time woken, not yet polled |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for (i, (f, d)) in combos.iter().enumerate() {
        let v = &mut cells[i];
        v.sort_by(|a, b| a.p99_us.total_cmp(&b.p99_us));
        let c = &v[v.len() / 2];
        println!(
            "| {f:?} | {d:?} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.1} | {:.0}% | {:.0}% |",
            c.ops_per_sec,
            c.p50_us,
            c.p99_us,
            c.p999_us,
            c.max_us,
            c.stalls,
            c.stalled_ms,
            c.slow_in_stall * 100.0,
            c.slow_run_queue * 100.0
        );
        json.push(serde_json::json!({
            "runtime": format!("{f:?}"), "driver": format!("{d:?}"),
            "ops_per_sec": c.ops_per_sec, "p50_us": c.p50_us, "p99_us": c.p99_us,
            "p999_us": c.p999_us, "max_us": c.max_us, "stalls": c.stalls,
            "stalled_ms": c.stalled_ms, "slow_in_stall": c.slow_in_stall,
            "slow_run_queue": c.slow_run_queue,
        }));
    }
    common::write_json("tail", &serde_json::Value::Array(json));
}
