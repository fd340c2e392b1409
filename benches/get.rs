//! `get`: the cost of looking a connection up by name, in ns per call, with 1 and 100
//! connections and 1 and 2 threads calling at once. `Manager::get` returns an owned
//! handle (an `Arc` clone: one shared counter incremented and decremented per call);
//! `Manager::connection` lends a `&Connection` (a hash lookup, no shared counter).
//! `Manager::sqlite` returns the storable handle (`SqliteDb`, also an `Arc` clone), and the
//! last column clones a sqlx `SqlitePool` (an `Arc` too), what a sqlx user pays to hand
//! their pool to a task.
//!
//! Needs no server (the connections are never opened). Prints figures; asserts nothing.
//! Run: `cargo bench -p dbmanager --bench get`.

#[path = "common/mod.rs"]
mod common;

use dbmanager::Manager;
use std::hint::black_box;
use std::time::Instant;

const CALLS: u64 = 5_000_000;

fn manager(n: usize) -> Manager {
    let mut yaml = String::from("connections:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  conn{i:03}:\n    type: sqlite\n    filepath: ':memory:'\n"
        ));
    }
    Manager::from_yaml_str(&yaml).expect("config")
}

/// ns per call of `f`, on `threads` threads at once (the slowest thread's figure).
fn per_call(threads: usize, f: impl Fn() + Sync) -> f64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let started = Instant::now();
                    for _ in 0..CALLS {
                        f();
                    }
                    started.elapsed().as_nanos() as f64 / CALLS as f64
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .fold(0.0, f64::max)
    })
}

fn main() {
    println!("# get: ns per lookup ({CALLS} calls per thread; the slowest thread)\n");
    println!(
        "| connections | threads | `get()` (owned) | `connection()` (borrowed) | `sqlite()` (storable `Db`) | sqlx `SqlitePool::clone` |"
    );
    println!("|---|---|---|---|---|---|");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // sqlx's pool is built, and dropped, inside a runtime; it never connects here.
    let _entered = rt.enter();
    let pool = sqlx::SqlitePool::connect_lazy("sqlite::memory:").expect("lazy pool");
    let mut rows = Vec::new();
    for n in [1usize, 100] {
        let mgr = manager(n);
        let name = format!("conn{:03}", n / 2);
        for threads in [1usize, 2] {
            let owned = per_call(threads, || {
                black_box(mgr.get(black_box(&name)).expect("known"));
            });
            let borrowed = per_call(threads, || {
                black_box(mgr.connection(black_box(&name)).expect("known"));
            });
            let handle = per_call(threads, || {
                black_box(mgr.sqlite(black_box(&name)).expect("known"));
            });
            let sqlx_clone = per_call(threads, || {
                black_box(black_box(&pool).clone());
            });
            println!(
                "| {n} | {threads} | {owned:.1} | {borrowed:.1} | {handle:.1} | {sqlx_clone:.1} |"
            );
            rows.push(serde_json::json!({
                "connections": n, "threads": threads,
                "get_ns": owned, "connection_ns": borrowed,
                "db_handle_ns": handle, "sqlx_pool_clone_ns": sqlx_clone,
            }));
        }
    }
    common::write_json("get", &serde_json::Value::Array(rows));
}
