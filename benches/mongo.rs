//! `mongo`: a baseline for the MongoDB engine. Each operation is one `insert_one` of a
//! small document, one `find_one` of it by `_id` and one `delete_one` of it (three round
//! trips; the delete keeps the collection from growing, which slows the test server
//! down as it fills), at 1, 16 and 64 concurrent tasks, pool size 16 for both
//! contenders:
//!
//! - the **mongodb driver**'s own `Client` (its pool, `max_pool_size: 16`);
//! - **dbmanager**: `Connection::mongo_database()` per operation (the handle a service
//!   takes per request; the same driver and pool underneath, `max_open_conns: 16`).
//!
//! The server is the test script's MongoDB wire-protocol server (secantusdb, a Python
//! implementation), so the absolute figures say more about it than about a real `mongod`:
//! the ratio is the point, as in the other benchmarks. Contenders take turns, 0.7 s each
//! (`HOTPATH_CELL_MS`), three rounds (`HOTPATH_ROUNDS`), the median round reported.
//!
//! `scripts/test.sh -- cargo bench -p dbmanager --all-features --bench mongo` (the script
//! starts the server and exports `DBMANAGER_TEST_MONGO_URL`).

#[path = "common/mod.rs"]
mod common;

use mongodb::bson::{Document, doc, oid::ObjectId};
use std::time::Duration;

const POOL: u32 = 16;

#[derive(Clone)]
enum Contender {
    Driver(mongodb::Collection<Document>),
    Managed(dbmanager::Connection),
}

impl Contender {
    async fn once(&self, task: usize) {
        let id = ObjectId::new();
        let doc = doc! { "_id": id, "task": task as i64, "name": "bench" };
        let coll = match self {
            Contender::Driver(c) => c.clone(),
            Contender::Managed(conn) => conn
                .mongo_database()
                .expect("database")
                .collection::<Document>("bench"),
        };
        coll.insert_one(doc).await.expect("insert_one");
        let got = coll.find_one(doc! { "_id": id }).await.expect("find_one");
        assert!(got.is_some(), "the inserted document is found");
        let gone = coll
            .delete_one(doc! { "_id": id })
            .await
            .expect("delete_one");
        assert_eq!(gone.deleted_count, 1, "the inserted document is deleted");
    }
}

impl common::Op for Contender {
    fn once(&self, task: usize) -> impl std::future::Future<Output = ()> + Send + '_ {
        Contender::once(self, task)
    }
}

#[derive(Clone, serde::Serialize)]
struct Cell {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

async fn run_cell(c: &Contender, tasks: usize, length: Duration) -> Cell {
    let r = common::run_tasks(c, tasks, length, None).await;
    Cell {
        ops_per_sec: r.ops_per_sec,
        p50_us: r.us(0.5),
        p99_us: r.us(0.99),
        max_us: r.us(1.0),
    }
}

fn main() {
    let url = std::env::var("DBMANAGER_TEST_MONGO_URL").unwrap_or_else(|_| {
        eprintln!("DBMANAGER_TEST_MONGO_URL is not set: run this through scripts/test.sh");
        std::process::exit(2)
    });
    let length = Duration::from_millis(common::env_or("HOTPATH_CELL_MS", 700));
    let rounds: usize = common::env_or("HOTPATH_ROUNDS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt.block_on(async {
        let mut opts = mongodb::options::ClientOptions::parse(&url)
            .await
            .expect("MongoDB URL");
        opts.max_pool_size = Some(POOL);
        let client = mongodb::Client::with_options(opts).expect("driver client");
        let driver = Contender::Driver(client.database("bench").collection("bench"));
        let mgr = dbmanager::Manager::from_yaml_str(&format!(
            "health_check_interval: 1h\nconnections:\n  docs:\n    type: mongodb\n    dsn: '{url}'\n    database: bench\n    max_open_conns: {POOL}\n"
        ))
        .expect("config");
        mgr.connect().await.expect("connect");
        let managed = Contender::Managed(mgr.get("docs").expect("docs"));
        let contenders = [("mongodb driver (its pool)", driver), ("dbmanager", managed)];
        // Warm both pools to their size, untimed.
        for (_, c) in &contenders {
            run_cell(c, POOL as usize, Duration::from_millis(300)).await;
        }
        let mut rows = Vec::new();
        for tasks in [1usize, 16, 64] {
            let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); contenders.len()];
            for _ in 0..rounds {
                for (i, (_, c)) in contenders.iter().enumerate() {
                    cells[i].push(run_cell(c, tasks, length).await);
                }
            }
            let mut medians = Vec::new();
            for v in &mut cells {
                v.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
                medians.push(v[v.len() / 2].clone());
            }
            let base = medians[0].ops_per_sec;
            for ((name, _), c) in contenders.iter().zip(medians) {
                rows.push((tasks, *name, c.ops_per_sec / base, c));
            }
        }
        let _ = client.database("bench").drop().await;
        client.shutdown().await;
        mgr.close().await;
        rows
    });
    println!(
        "\n## mongo: insert_one + find_one + delete_one by _id, pool {POOL}, MongoDB wire-protocol test server ({} ms cells, {rounds} rounds, the median round)\n",
        length.as_millis()
    );
    println!("| tasks | contender | ops/s | p50 µs | p99 µs | max µs | × driver |");
    println!("|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for (tasks, name, ratio, c) in &rows {
        println!(
            "| {tasks} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {ratio:.2} |",
            c.ops_per_sec, c.p50_us, c.p99_us, c.max_us
        );
        json.push(serde_json::json!({
            "tasks": tasks, "contender": name, "x_driver": ratio, "cell": c,
        }));
    }
    common::write_json("mongo", &serde_json::Value::Array(json));
}
