//! Keyed pools against the machine's PostgreSQL: single-flight creation, per-key
//! overrides, the idle sweeper and the cap on live keys.

use crate::support::{self, Recorder};
use dbmanager::{Error, EventKind, Manager};
use std::time::{Duration, Instant};

fn manager(group: &str, app: &str, extra: &str) -> Manager {
    Manager::from_yaml_str(&format!(
        "connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\nkeyed:\n  {group}:\n    \
         template:\n      type: postgres\n      host: 127.0.0.1\n      user: postgres\n      database: test\n      \
         sslmode: disable\n      application_name: {app}\n      max_open_conns: 2\n{extra}"
    ))
    .unwrap()
}

async fn app_name(conn: &dbmanager::Connection) -> String {
    let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
    sqlx::query_scalar("select current_setting('application_name')")
        .fetch_one(&mut *c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_first_requests_for_one_key_open_one_pool() {
    let observer = support::require_postgres().await;
    let app = support::unique("dbm_keyed_sf");
    let mgr = manager("tenants", &app, "");
    mgr.connect().await.unwrap();
    let rec = Recorder::start(&mgr);
    let tenants = mgr.keyed("tenants").unwrap();
    let got = futures_util::future::join_all((0..100).map(|_| tenants.get("acme"))).await;
    let names: Vec<String> = got
        .into_iter()
        .map(|c| c.unwrap().name().to_owned())
        .collect();
    assert!(names.iter().all(|n| n == "tenants.acme"), "{names:?}");
    assert_eq!(tenants.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let opened = rec.count(|k| matches!(k, EventKind::Opened { .. }));
    assert_eq!(opened, 1, "one pool was opened: {:?}", rec.names());
    assert_eq!(support::pg_sessions(&observer, &app)().await, 1);
    assert!(matches!(mgr.keyed("nope"), Err(Error::UnknownGroup { .. })));
    mgr.close().await;
    assert_eq!(support::pg_sessions(&observer, &app)().await, 0);
    assert_eq!(mgr.task_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_gets_its_overrides_and_bad_ones_name_their_path() {
    support::require_postgres().await;
    let app = support::unique("dbm_keyed_ov");
    let mgr = manager(
        "devices",
        &app,
        &format!("    keys:\n      a:\n        application_name: {app}_file_a\n"),
    );
    mgr.connect().await.unwrap();
    let devices = mgr.keyed("devices").unwrap();
    let dynamic = format!("{app}_resolved");
    devices.set_resolver(move |key| match key {
        "b" => vec![("application_name".into(), format!("{dynamic}_{key}"))],
        "bad" => vec![("port".into(), "not-a-port".into())],
        _ => Vec::new(),
    });
    assert_eq!(
        app_name(&devices.get("a").await.unwrap()).await,
        format!("{app}_file_a")
    );
    assert_eq!(
        app_name(&devices.get("b").await.unwrap()).await,
        format!("{app}_resolved_b")
    );
    assert_eq!(app_name(&devices.get("c").await.unwrap()).await, app);

    let err = devices.get("bad").await.unwrap_err().to_string();
    assert!(err.contains("keyed.devices.keys.bad.port"), "{err}");
    let err = devices.get("no spaces").await.unwrap_err().to_string();
    assert!(
        err.contains("keyed.devices.keys.no spaces") && err.contains("invalid key"),
        "{err}"
    );
    assert_eq!(devices.len(), 3, "failed keys are not kept");
    let stats = devices.stats();
    assert_eq!(
        stats.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert!(
        stats
            .iter()
            .all(|s| s.connection.as_ref().is_some_and(|c| c.pool.open >= 1))
    );
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_closes_idle_keys_but_not_busy_ones() {
    let observer = support::require_postgres().await;
    let app = support::unique("dbm_keyed_idle");
    let mgr = manager("devices", &app, "    idle_evict_after: 400ms\n");
    mgr.connect().await.unwrap();
    let devices = mgr.keyed("devices").unwrap();
    devices.set_resolver(|key| vec![("application_name".into(), key.into())]);
    let idle_app = format!("{app}_i");
    let busy_app = format!("{app}_b");
    app_name(&devices.get(&idle_app).await.unwrap()).await;
    let busy = devices.get(&busy_app).await.unwrap();
    let held = busy.acquire::<sqlx::Postgres>().await.unwrap();
    // Nothing asks for a key from here on: only the sweeper can act.
    let evicted = support::eventually(Duration::from_secs(5), || devices.len() == 1).await;
    assert!(
        evicted,
        "the idle key was not evicted: {:?}",
        devices.stats()
    );
    assert_eq!(devices.stats()[0].key, busy_app, "the busy key stays");
    assert_eq!(support::pg_sessions(&observer, &idle_app)().await, 0);
    assert_eq!(devices.evicted_total(), 1);
    drop(held);
    assert!(support::eventually(Duration::from_secs(5), || devices.is_empty()).await);
    // Asked for again, it opens again.
    assert_eq!(
        app_name(&devices.get(&idle_app).await.unwrap()).await,
        idle_app
    );
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_evicts_the_least_recently_used_key_after_its_work_drains() {
    let observer = support::require_postgres().await;
    let app = support::unique("dbm_keyed_lru");
    let mgr = manager(
        "tenants",
        &app,
        "    max_keys: 2\n    idle_evict_after: none\n",
    );
    mgr.connect().await.unwrap();
    let tenants = mgr.keyed("tenants").unwrap();
    tenants.set_resolver(|key| vec![("application_name".into(), key.into())]);
    let [a, b, c] = ["a", "b", "c"].map(|k| format!("{app}_{k}"));
    let conn_a = tenants.get(&a).await.unwrap();
    let mut held = conn_a.acquire::<sqlx::Postgres>().await.unwrap();
    let in_flight = tokio::spawn(async move {
        sqlx::query_scalar::<_, i32>("select 3 from pg_sleep(0.6)")
            .fetch_one(&mut *held)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    tenants.get(&b).await.unwrap();
    let started = Instant::now();
    tenants.get(&c).await.unwrap();
    assert!(
        in_flight.is_finished(),
        "the third key opened before the evicted key's work finished"
    );
    assert_eq!(in_flight.await.unwrap().unwrap(), 3);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let keys: Vec<String> = tenants.stats().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, [b.clone(), c.clone()]);
    assert_eq!(support::pg_sessions(&observer, &a)().await, 0);
    assert!(matches!(
        conn_a.acquire::<sqlx::Postgres>().await,
        Err(Error::Closed { .. })
    ));
    mgr.close().await;
}
