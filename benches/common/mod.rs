//! What the benchmarks share: where their machine-readable results go, settings from the
//! environment, quantiles. (Each benchmark uses only some of it.)
#![allow(dead_code)]

/// Writes `value` to `target/bench/NAME.json` (pretty-printed) and says where, or why not.
pub fn write_json(name: &str, value: &serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let path = dir.join(format!("{name}.json"));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(value).unwrap_or_default(),
        )
    });
    match written {
        Ok(()) => println!("\nresults: target/bench/{name}.json"),
        Err(e) => println!("\ncould not write {}: {e}", path.display()),
    }
}

/// The environment variable `name` parsed, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0..=1) of `sorted`, in `unit`s per second (1e6: µs), NaN when empty.
pub fn quantile(sorted: &[std::time::Duration], p: f64, unit: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * unit
}

/// What a closed or paced run of tasks measured (see [`run_tasks`]).
#[derive(Debug, Clone)]
pub struct Run {
    /// Every operation's latency, sorted.
    pub sorted: Vec<std::time::Duration>,
    /// Operations per second over the run.
    pub ops_per_sec: f64,
    /// The fewest operations any one task completed.
    pub min_task_ops: usize,
}

impl Run {
    /// The `p` quantile (0..=1) in µs.
    pub fn us(&self, p: f64) -> f64 {
        quantile(&self.sorted, p, 1e6)
    }
}

/// One operation of a benchmark's contender, run by [`run_tasks`].
pub trait Op: Clone + Send + Sync + 'static {
    /// Runs the operation once, by task number `task`.
    fn once(&self, task: usize) -> impl std::future::Future<Output = ()> + Send + '_;
}

/// Runs `tasks` tasks for `length`, each with a clone of `op`, awaiting `op.once(task)` in a
/// loop, and times every operation. With `pace`, each task starts an operation at most
/// every `pace` (spread over one period, skipping a start it is already late for), and
/// the time it waits for its turn is not counted; without, each starts the next at once
/// (a closed loop).
pub async fn run_tasks<O: Op>(
    op: &O,
    tasks: usize,
    length: std::time::Duration,
    pace: Option<std::time::Duration>,
) -> Run {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (op, stop) = (op.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut ticks = pace.map(|every| {
                    let first =
                        tokio::time::Instant::now() + every.mul_f64(task as f64 / tasks as f64);
                    let mut t = tokio::time::interval_at(first, every);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    t
                });
                let mut lat = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    if let Some(t) = ticks.as_mut() {
                        t.tick().await;
                    }
                    let t = std::time::Instant::now();
                    op.once(task).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut sorted = Vec::new();
    let mut min_task_ops = usize::MAX;
    for h in handles {
        let lat = h.await.expect("task");
        min_task_ops = min_task_ops.min(lat.len());
        sorted.extend(lat);
    }
    let took = started.elapsed().as_secs_f64();
    sorted.sort_unstable();
    Run {
        ops_per_sec: sorted.len() as f64 / took,
        sorted,
        min_task_ops,
    }
}

/// deadpool-postgres with `size` connections to `url`, without TLS, its other options
/// default: the reference pool of the PostgreSQL benchmarks.
pub fn deadpool_postgres(url: &str, size: usize) -> deadpool_postgres::Pool {
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(url.to_owned());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(size));
    cfg.create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .expect("deadpool")
}
