//! MongoDB end to end with the real driver against SecantusDB, a MongoDB-wire-compatible
//! server that scripts/test.sh installs from PyPI and starts (tests/support/mongo.rs):
//! CRUD, aggregate, transactions, pool limits seen by the server and by the pool events,
//! SCRAM auth success and failure, a read-preference-aware health check, kill -9 and
//! restart, close, and wrong-kind accessors across all five engines.

use crate::support;

use dbmanager::mongodb::bson::{Document, doc};
use dbmanager::{DbType, Error, ErrorClass, EventKind, HealthState, Manager};
use futures_util::TryStreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use support::mongo::{MONGO_PASSWORD, MONGO_USER, TempMongo, mongo_auth_addr, mongo_url};
use support::{Recorder, blocking, eventually, percent, unique};

fn yaml(dsn: &str, database: &str, extra: &[&str]) -> String {
    let mut y = format!(
        "connections:\n  docs:\n    type: mongodb\n    dsn: '{dsn}'\n    database: {database}\n"
    );
    for e in extra {
        y.push_str(&format!("    {e}\n"));
    }
    y
}

async fn connected(yaml: &str) -> Manager {
    let mgr = Manager::from_yaml_str(yaml).expect("valid config");
    mgr.connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    mgr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_find_aggregate_and_transactions() {
    let db_name = unique("dbm");
    let mgr = connected(&yaml(&mongo_url(), &db_name, &[])).await;
    let conn = mgr.get("docs").unwrap();
    assert_eq!(conn.kind(), DbType::MongoDb);
    let db = conn.mongo_database().unwrap();
    assert_eq!(db.name(), db_name);
    let items = db.collection::<Document>("items");
    items
        .insert_many((1..=5).map(|i| doc! { "n": i, "even": i % 2 == 0 }))
        .await
        .unwrap();
    let evens: Vec<Document> = items
        .find(doc! { "even": true })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(evens.len(), 2);
    let sum: Vec<Document> = items
        .aggregate([doc! { "$group": { "_id": null, "total": { "$sum": "$n" } } }])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(sum[0].get_i32("total").unwrap(), 15);

    // A transaction that commits and one that aborts.
    let client = conn.mongo().unwrap();
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    items
        .insert_one(doc! { "n": 100 })
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();
    session.start_transaction().await.unwrap();
    items
        .insert_one(doc! { "n": 200 })
        .session(&mut session)
        .await
        .unwrap();
    session.abort_transaction().await.unwrap();
    assert_eq!(items.count_documents(doc! { "n": 100 }).await.unwrap(), 1);
    assert_eq!(items.count_documents(doc! { "n": 200 }).await.unwrap(), 0);
    drop(session);

    // Stats come from the driver's pool events.
    let stats = conn.stats().pool;
    assert!(stats.opened_total >= 1 && stats.open >= 1, "{stats:?}");
    assert!(stats.acquire_count >= 8, "{stats:?}");
    // The driver checks connections in from its own task: give it a moment.
    assert!(
        eventually(Duration::from_secs(2), || conn.stats().pool.in_use == 0).await,
        "{stats:?}"
    );
    db.drop().await.unwrap();

    // close() shuts the driver down: its connections close, tasks end, the client is done.
    mgr.close().await;
    assert_eq!(mgr.task_count(), 0);
    let after = conn.stats().pool;
    assert_eq!(after.open, 0, "{after:?}");
    assert!(after.closed_shutdown >= 1, "{after:?}");
    assert!(matches!(conn.mongo(), Err(Error::Closed { .. })));
    assert!(client.list_database_names().await.is_err());
}

/// This driver's connections to the server, counted by the server itself (`currentOp`
/// lists every connection with the client's `appName`).
async fn server_count(probe: &dbmanager::mongodb::Client, app: &str) -> i64 {
    let ops = probe
        .database("admin")
        .run_command(doc! { "currentOp": 1, "$all": true })
        .await
        .expect("currentOp");
    ops.get_array("inprog")
        .map(|a| {
            a.iter()
                .filter(|op| {
                    op.as_document()
                        .and_then(|d| d.get_document("clientMetadata").ok())
                        .and_then(|m| m.get_document("application").ok())
                        .and_then(|a| a.get_str("name").ok())
                        == Some(app)
                })
                .count()
        })
        .unwrap_or(0) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_limit_holds_on_the_server_and_in_the_pool_events() {
    let n = 3;
    let app = unique("dbm_mongo_pool");
    let mgr = connected(&yaml(
        &mongo_url(),
        &unique("dbm"),
        &[
            &format!("max_open_conns: {n}"),
            &format!("application_name: {app}"),
        ],
    ))
    .await;
    let conn = mgr.get("docs").unwrap();
    let probe = dbmanager::mongodb::Client::with_uri_str(mongo_url())
        .await
        .unwrap();
    // The driver's monitoring connections are not pooled; measure them at rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let monitors = server_count(&probe, &app).await - i64::from(conn.stats().pool.open);
    assert!(
        (0..=2).contains(&monitors),
        "{monitors} monitoring connections"
    );

    let coll = conn
        .mongo_database()
        .unwrap()
        .collection::<Document>("load");
    let stop = Arc::new(AtomicBool::new(false));
    let (pool_peak, server_peak) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let sampler = {
        let (conn, stop, pool_peak, server_peak, probe, app) = (
            conn.clone(),
            stop.clone(),
            pool_peak.clone(),
            server_peak.clone(),
            probe.clone(),
            app.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                pool_peak.fetch_max(i64::from(conn.stats().pool.open), Ordering::Relaxed);
                server_peak.fetch_max(server_count(&probe, &app).await, Ordering::Relaxed);
            }
        })
    };
    let tasks: Vec<_> = (0..4 * n)
        .map(|i| {
            let coll = coll.clone();
            tokio::spawn(async move {
                for j in 0..20 {
                    coll.insert_one(doc! { "task": i, "j": j }).await.unwrap();
                    let _ = coll.find_one(doc! { "task": i }).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Release);
    sampler.await.unwrap();
    let (pool_peak, server_peak) = (
        pool_peak.load(Ordering::Relaxed),
        server_peak.load(Ordering::Relaxed),
    );
    assert!(
        pool_peak <= i64::from(n) && pool_peak >= 2,
        "pool events: peak {pool_peak}"
    );
    assert!(
        server_peak <= i64::from(n) + monitors,
        "server saw {server_peak} (+{monitors} monitors)"
    );
    assert_eq!(
        coll.count_documents(doc! {}).await.unwrap(),
        u64::from(4 * n * 20)
    );
    let stats = conn.stats().pool;
    assert_eq!(stats.max_open, n);
    assert!(stats.wait_duration > Duration::ZERO, "{stats:?}");
    coll.drop().await.unwrap();
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_auth_with_escaped_password_and_a_clear_failure() {
    let (host, port) = mongo_auth_addr();
    // Typed fields: the password goes to the driver as is.
    let typed = format!(
        "connections:\n  docs:\n    type: mongodb\n    host: {host}\n    port: {port}\n    \
         user: {MONGO_USER}\n    password: '{MONGO_PASSWORD}'\n    auth_source: admin\n    \
         database: app\n"
    );
    // A DSN: the password percent-encoded.
    let dsn = yaml(
        &format!(
            "mongodb://{MONGO_USER}:{}@{host}:{port}/?authSource=admin&directConnection=true",
            percent(MONGO_PASSWORD)
        ),
        "app",
        &[],
    );
    for y in [typed.clone(), dsn] {
        let mgr = connected(&y).await;
        let db = mgr.get("docs").unwrap().mongo_database().unwrap();
        db.collection::<Document>("t")
            .insert_one(doc! { "ok": 1 })
            .await
            .unwrap();
        mgr.close().await;
    }

    // A wrong password: a clear Auth error at startup, never the password in it.
    let wrong = typed.replace(MONGO_PASSWORD, "wrong-secret");
    let mgr = Manager::from_yaml_str(&wrong).unwrap();
    let err = mgr.connect().await.expect_err("wrong password");
    assert_eq!(err.class(), Some(ErrorClass::Auth), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("docs") && text.to_lowercase().contains("auth"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret"));
    mgr.close().await;

    // Lazy: marked fatal and retried slowly, not in a tight loop.
    let lazy = format!(
        "{wrong}    startup: lazy\n    retry_delay: 10ms\n    retry_max_delay: 1s\n    health_check_interval: 100ms\n"
    );
    let mgr = Manager::from_yaml_str(&lazy).unwrap();
    let events = Recorder::start(&mgr);
    mgr.connect().await.unwrap();
    let conn = mgr.get("docs").unwrap();
    support::assert_auth_failure_not_retried(&conn, &events, Duration::from_secs(10), || {
        conn.available()
    })
    .await;
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_follows_the_read_preference() {
    // The test server is a one-member replica set: a primary and no secondary.
    let base = format!(
        "{}&replicaSet=secantus",
        mongo_url().replace("directConnection=true", "directConnection=false")
    );
    let mgr = connected(&yaml(
        &base,
        "app",
        &["read_preference: secondaryPreferred"],
    ))
    .await;
    let conn = mgr.get("docs").unwrap();
    conn.health_check()
        .await
        .expect("secondaryPreferred falls back to the primary");
    mgr.close().await;

    // `secondary` reads need a secondary: the check fails rather than pinging the primary.
    let mgr = Manager::from_yaml_str(&yaml(
        &base,
        "app",
        &[
            "read_preference: secondary",
            "startup: lazy",
            "health_check_timeout: 1s",
            "acquire_timeout: 500ms",
        ],
    ))
    .unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("docs").unwrap();
    let err = conn
        .health_check()
        .await
        .expect_err("no secondary to read from");
    assert_eq!(err.class(), Some(ErrorClass::Unreachable), "{err:?}");
    assert_eq!(conn.health().state, HealthState::Unhealthy);
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_recovers_without_a_manual_step() {
    let server = blocking(TempMongo::start).await;
    let server = Arc::new(server);
    let mgr = connected(&yaml(
        &server.url(),
        "app",
        &[
            "health_check_interval: 200ms",
            "health_check_timeout: 500ms",
            "retry_delay: 50ms",
            "retry_max_delay: 500ms",
            "acquire_timeout: 5s",
            "on_unavailable: fail_fast",
        ],
    ))
    .await;
    let events = Recorder::start(&mgr);
    let conn = mgr.get("docs").unwrap();
    let coll = conn.mongo_database().unwrap().collection::<Document>("t");
    coll.insert_one(doc! { "before": 1 }).await.unwrap();

    let s = server.clone();
    blocking(move || s.kill9()).await;
    assert!(
        eventually(Duration::from_secs(5), || conn.health().state
            == HealthState::Unhealthy)
        .await,
        "{:?}",
        conn.health()
    );
    // fail_fast: callers are told at once instead of waiting out server selection.
    let started = Instant::now();
    assert!(matches!(
        conn.available().await,
        Err(Error::Unavailable { .. })
    ));
    assert!(started.elapsed() < Duration::from_millis(200));

    let s = server.clone();
    blocking(move || s.restart()).await;
    assert!(
        eventually(Duration::from_secs(10), || conn.health().state
            == HealthState::Healthy)
        .await,
        "{:?}",
        conn.health()
    );
    for i in 0..10 {
        conn.available().await.unwrap();
        coll.insert_one(doc! { "after": i }).await.unwrap();
    }
    // (The write before the kill may or may not have reached the disk: kill -9.)
    assert_eq!(
        coll.count_documents(doc! { "after": { "$exists": true } })
            .await
            .unwrap(),
        10
    );
    assert!(events.count(|k| matches!(k, EventKind::Connected { .. })) >= 1);
    let stats = conn.stats().pool;
    assert!(
        stats.pool_clears >= 1 || stats.closed_broken >= 1,
        "{stats:?}"
    );
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accessors_of_another_engine_are_wrong_kind_errors() {
    let mgr = Manager::from_yaml_str(&format!(
        "connections:\n  docs:\n    type: mongodb\n    dsn: '{}'\n    database: app\n  \
         pg:\n    type: postgres\n    dsn: '{}'\n    startup: lazy\n  \
         legacy:\n    type: mssql\n    host: 127.0.0.1\n    database: master\n    startup: lazy\n  \
         lite:\n    type: sqlite\n    filepath: ':memory:'\n",
        mongo_url(),
        support::PG_URL
    ))
    .unwrap();
    mgr.connect().await.unwrap();
    let wrong = |r: Result<(), Error>, expected: DbType, actual: DbType| match r {
        Err(Error::WrongKind {
            expected: e,
            actual: a,
            ..
        }) => {
            assert_eq!((e, a), (expected, actual));
        }
        other => panic!("expected WrongKind({expected} on {actual}), got {other:?}"),
    };
    let docs = mgr.get("docs").unwrap();
    wrong(docs.postgres().map(drop), DbType::Postgres, DbType::MongoDb);
    wrong(docs.sqlite().map(drop), DbType::Sqlite, DbType::MongoDb);
    wrong(docs.mssql().await.map(drop), DbType::MsSql, DbType::MongoDb);
    wrong(
        docs.acquire::<sqlx::MySql>().await.map(drop),
        DbType::MySql,
        DbType::MongoDb,
    );
    for name in ["pg", "legacy", "lite"] {
        let c = mgr.get(name).unwrap();
        wrong(c.mongo().map(drop), DbType::MongoDb, c.kind());
        wrong(c.mongo_database().map(drop), DbType::MongoDb, c.kind());
    }
    let legacy = mgr.get("legacy").unwrap();
    wrong(legacy.postgres().map(drop), DbType::Postgres, DbType::MsSql);
    wrong(
        legacy.acquire::<sqlx::Sqlite>().await.map(drop),
        DbType::Sqlite,
        DbType::MsSql,
    );
    wrong(
        mgr.get("lite").unwrap().mssql().await.map(drop),
        DbType::MsSql,
        DbType::Sqlite,
    );
    mgr.close().await;
}
