//! `memory`: what idle connections cost a process, per engine, and the peak RSS of a
//! service with five connections of ten idle connections each.
//!
//! Every figure comes from a child process of its own (this binary run again with
//! `--child`), so one measurement's allocations never show in another's:
//!
//! - per engine (PostgreSQL, MariaDB, SQLite, MongoDB, SQL Server): a manager with one
//!   connection kept at `min_idle_conns: 0`, then at `IDLE`, each in its own child. The
//!   RSS difference divided by `IDLE` is the cost of one idle connection (the driver's
//!   buffers, statement cache and the pool's bookkeeping);
//! - the five together, ten idle connections each: peak RSS (`VmHWM`) and RSS (`VmRSS`).
//!
//! The SQL Server side is the TDS test server of the tests (in this, the parent process,
//! so it does not count); MongoDB is the secantusdb instance `scripts/test.sh` starts.
//! Written to `target/bench/memory.json`. Prints figures; asserts nothing. Run:
//! `scripts/test.sh -- cargo bench -p dbmanager --all-features --bench memory`.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";
const ENGINES: [&str; 5] = ["postgres", "mariadb", "sqlite", "mongodb", "mssql"];
const IDLE: u32 = 20;
const SERVICE_IDLE: u32 = 10;

/// The YAML of one connection `name` of `engine` with `idle` idle connections.
fn connection(name: &str, engine: &str, idle: u32, mongo: &str, tds_port: u16) -> String {
    let max = idle.max(1);
    let body = match engine {
        "postgres" => format!("type: postgres\n    dsn: '{PG_URL}'"),
        "mariadb" => format!("type: mariadb\n    dsn: '{MY_URL}'"),
        "sqlite" => {
            let path = std::env::temp_dir().join(format!("dbm-memory-{}.db", std::process::id()));
            format!("type: sqlite\n    filepath: '{}'", path.display())
        }
        "mongodb" => format!("type: mongodb\n    dsn: '{mongo}'\n    database: dbm_memory"),
        _ => format!(
            "type: mssql\n    host: 127.0.0.1\n    port: {tds_port}\n    user: sa\n    password: '{}'\n    database: master\n    sslmode: disable",
            support::tds::MSSQL_PASSWORD.replace('\'', "''")
        ),
    };
    // The MongoDB driver has no idle cap to set.
    let max_idle = if engine == "mongodb" {
        String::new()
    } else {
        format!("    max_idle_conns: {max}\n")
    };
    format!(
        "  {name}:\n    {body}\n    max_open_conns: {max}\n{max_idle}    min_idle_conns: {idle}\n"
    )
}

fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// In the child: opens the connections, waits for their idle connections, prints
/// `rss hwm idle`.
fn child(engines: &[&str], idle: u32, mongo: &str, tds_port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut yaml = String::from("health_check_interval: 1h\nconnections:\n");
        for (i, e) in engines.iter().enumerate() {
            yaml.push_str(&connection(&format!("c{i}"), e, idle, mongo, tds_port));
        }
        let mgr = dbmanager::Manager::from_yaml_str(&yaml).expect("config");
        mgr.connect().await.expect("connect");
        // Idle connections are opened in the background: wait for them (up to 10 s).
        let want = idle * engines.len() as u32;
        let mut reached = 0;
        for _ in 0..200 {
            reached = mgr
                .stats()
                .connections
                .iter()
                .map(|c| c.pool.idle)
                .sum::<u32>();
            if reached >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("{} {} {}", status("VmRSS:"), status("VmHWM:"), reached);
        mgr.close().await;
    });
}

/// Runs a child; returns (rss, hwm, idle reached).
fn measure(engines: &[&str], idle: u32, mongo: &str, tds_port: u16) -> (u64, u64, u32) {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .arg("--child")
        .arg(engines.join(","))
        .arg(idle.to_string())
        .arg(mongo)
        .arg(tds_port.to_string())
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match v.as_slice() {
        [rss, hwm, idle] => (*rss, *hwm, *idle as u32),
        _ => panic!(
            "child for {engines:?} failed: {}\n{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let engines: Vec<&str> = args[i + 1].split(',').collect();
        let idle = args[i + 2].parse().expect("idle");
        let tds_port = args[i + 4].parse().expect("port");
        child(&engines, idle, &args[i + 3], tds_port);
        return;
    }
    let mongo = std::env::var("DBMANAGER_TEST_MONGO_URL").unwrap_or_else(|_| {
        panic!("DBMANAGER_TEST_MONGO_URL is not set: run this under scripts/test.sh, which starts MongoDB (secantusdb)")
    });
    let tds = support::tds::MockTds::start(support::tds::Tls::Plain);
    println!("# memory: RSS of a child process per measurement\n");
    println!(
        "| engine | RSS, 0 idle (MiB) | RSS, {IDLE} idle (MiB) | idle reached | KiB per idle connection |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut per_engine = Vec::new();
    for e in ENGINES {
        let (base, _, _) = measure(&[e], 0, &mongo, tds.port);
        let (with, _, reached) = measure(&[e], IDLE, &mongo, tds.port);
        let per = with.saturating_sub(base) as f64 / f64::from(reached.max(1));
        println!(
            "| {e} | {:.1} | {:.1} | {reached} | {:.0} |",
            mib(base),
            mib(with),
            per / 1024.0
        );
        per_engine.push(serde_json::json!({
            "engine": e, "rss_idle0": base, "rss_idle": with, "idle": reached,
            "bytes_per_idle_connection": per,
        }));
    }
    let (rss, hwm, reached) = measure(&ENGINES, SERVICE_IDLE, &mongo, tds.port);
    println!(
        "\nfive connections ({}) × {SERVICE_IDLE} idle ({reached} reached): peak RSS {:.1} MiB, RSS {:.1} MiB",
        ENGINES.join(", "),
        mib(hwm),
        mib(rss)
    );
    common::write_json(
        "memory",
        &serde_json::json!({
            "per_engine": per_engine,
            "service": {"connections": ENGINES.len(), "idle_each": SERVICE_IDLE, "idle_reached": reached, "peak_rss": hwm, "rss": rss},
        }),
    );
}
