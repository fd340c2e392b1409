//! Keyed pools against the machine's PostgreSQL: single-flight creation (and failure),
//! per-key overrides, the idle sweeper, the cap on live keys and redacted settings.

use crate::support::{self, Recorder};
use dbmanager::{Error, EventKind, Manager};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    assert_eq!(
        support::sessions_settled(&support::pg_sessions(&observer, &app), 0).await,
        0
    );
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
    // The evicted key's session, closed by the client, as the server sees it.
    let left = support::sessions_settled(&support::pg_sessions(&observer, &idle_app), 0).await;
    assert_eq!(left, 0, "the evicted key's session is still open 2 s later");
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
    let conn_b = tenants.get(&b).await.unwrap();
    let mut held_b = conn_b.acquire::<sqlx::Postgres>().await.unwrap();
    // Both keys in use: the least recently used one goes, once its work is done.
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
    assert_eq!(
        support::sessions_settled(&support::pg_sessions(&observer, &a), 0).await,
        0
    );
    assert!(matches!(
        conn_a.acquire::<sqlx::Postgres>().await,
        Err(Error::Closed { .. })
    ));
    // A key with nothing in use goes before one in use, even a more recent one: `c`, not
    // `b`, whose checkout is still held.
    let d = format!("{app}_d");
    tenants.get(&d).await.unwrap();
    let keys: Vec<String> = tenants.stats().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, [b.clone(), d.clone()]);
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&mut *held_b)
        .await
        .unwrap();
    assert_eq!(one, 1);
    drop(held_b);
    mgr.close().await;
}

/// Checks out a connection of `conn`, runs `select 1` and gives it back.
async fn select_one(conn: &dbmanager::Connection) -> dbmanager::Result<()> {
    let mut c = conn.acquire::<sqlx::Postgres>().await?;
    sqlx::query("select 1").execute(&mut *c).await.unwrap();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_keeps_a_handle_in_steady_use_and_a_later_use_after_eviction_fails_clearly() {
    support::require_postgres().await;
    let app = support::unique("dbm_keyed_steady");
    let mgr = manager("devices", &app, "    idle_evict_after: 300ms\n");
    mgr.connect().await.unwrap();
    let devices = mgr.keyed("devices").unwrap();
    // One `get`, then only checkouts on the handle: every 20 ms for over three times
    // idle_evict_after.
    let c = devices.get("d1").await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if let Err(e) = select_one(&c).await {
            panic!("after {:?} of steady use: {e}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(devices.len(), 1);
    assert_eq!(devices.evicted_total(), 0);
    // Left alone, it is evicted; the handle then fails clearly, naming the key's
    // connection, and asking the group again opens the key afresh.
    assert!(support::eventually(Duration::from_secs(5), || devices.is_empty()).await);
    let err = select_one(&c).await.unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err}");
    assert_eq!(err.to_string(), "connection `devices.d1` is closed");
    let again = devices.get("d1").await.unwrap();
    select_one(&again).await.unwrap();
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_evicted_only_once_idle_evict_after_has_passed_since_its_last_checkout_was_returned()
 {
    support::require_postgres().await;
    let app = support::unique("dbm_keyed_held");
    let mgr = manager("devices", &app, "    idle_evict_after: 300ms\n");
    mgr.connect().await.unwrap();
    let devices = mgr.keyed("devices").unwrap();
    let c = devices.get("d1").await.unwrap();
    // Held for longer than idle_evict_after, then returned.
    let held = c.acquire::<sqlx::Postgres>().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(held);
    let returned = Instant::now();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        devices.len(),
        1,
        "evicted {:?} after its checkout was returned",
        returned.elapsed()
    );
    assert!(support::eventually(Duration::from_secs(5), || devices.is_empty()).await);
    assert!(returned.elapsed() >= Duration::from_millis(300));
    mgr.close().await;
}

#[test]
fn keyed_passwords_never_reach_debug_output() {
    let secrets = [
        "tmpl-pw-51fa",
        "key-pw-9c2e",
        "dsn-pw-07bd",
        "resolver-pw-4411",
    ];
    let yaml = "connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\nkeyed:\n  tenants:\n    \
                template:\n      type: postgres\n      host: 127.0.0.1\n      user: app\n      \
                password: tmpl-pw-51fa\n      database: test\n    keys:\n      acme:\n        \
                password: key-pw-9c2e\n      beta:\n        \
                dsn: postgres://beta:dsn-pw-07bd@127.0.0.1/test\n";
    let config = dbmanager::config::Config::from_yaml_str(yaml).unwrap();
    let keyed = &config.keyed[0];
    let for_key = keyed
        .for_key(
            "acme",
            &[("password".to_owned(), "resolver-pw-4411".to_owned())],
        )
        .unwrap();
    let mgr = Manager::new(config.clone());
    let shown = [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", mgr.keyed("tenants").unwrap().config()),
        format!("{for_key:?}"),
    ];
    for text in &shown {
        for secret in secrets {
            assert!(!text.contains(secret), "`{secret}` shown in {text}");
        }
        assert!(text.contains("<redacted>"), "{text}");
    }
    // Still shown: what is not secret.
    assert!(
        shown[0].contains("tenants") && shown[0].contains("acme"),
        "{}",
        shown[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_of_a_key_that_cannot_connect_share_one_failed_attempt() {
    support::require_postgres().await;
    // A server that accepts and never answers: each connect waits out connect_timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let silent = tokio::spawn({
        let accepted = Arc::clone(&accepted);
        async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        }
    });
    let sockets = || accepted.load(Ordering::SeqCst);
    let app = support::unique("dbm_keyed_silent");
    let mgr = manager(
        "devices",
        &app,
        &format!("    keys:\n      mute:\n        port: {port}\n        connect_timeout: 300ms\n"),
    );
    mgr.connect().await.unwrap();
    let devices = mgr.keyed("devices").unwrap();

    // One caller alone: how many sockets one attempt opens, and how long it takes.
    let alone = Instant::now();
    devices.get("mute").await.unwrap_err();
    let one_attempt = alone.elapsed();
    let per_attempt = sockets();
    assert!(per_attempt >= 1, "the attempt never reached the server");

    // Ten at once: one attempt, its failure given to all ten.
    let started = Instant::now();
    let got = futures_util::future::join_all((0..10).map(|_| devices.get("mute"))).await;
    let took = started.elapsed();
    let errors: Vec<String> = got
        .into_iter()
        .map(|r| r.expect_err("a key that cannot connect opened").to_string())
        .collect();
    assert_eq!(
        sockets() - per_attempt,
        per_attempt,
        "ten concurrent gets made {} connects in {took:?} (one attempt: {per_attempt} in {one_attempt:?})",
        (sockets() - per_attempt) / per_attempt
    );
    assert!(
        took < one_attempt * 2 + Duration::from_millis(200),
        "ten concurrent gets took {took:?}, one took {one_attempt:?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.contains("devices.mute") && e.contains("timed out")),
        "{errors:?}"
    );
    assert!(devices.is_empty(), "a failed key is not kept");

    // A later get tries again.
    devices.get("mute").await.unwrap_err();
    assert_eq!(sockets(), 3 * per_attempt);
    mgr.close().await;
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_keys_counts_keys_being_opened_under_concurrent_first_gets() {
    support::require_postgres().await;
    let app = support::unique("dbm_keyed_cap");
    let mgr = manager(
        "tenants",
        &app,
        "    max_keys: 2\n    idle_evict_after: none\n",
    );
    mgr.connect().await.unwrap();
    let rec = Recorder::start(&mgr);
    let tenants = mgr.keyed("tenants").unwrap();
    // `get` can run on a spawned task (its future is Send); not polled here.
    fn spawnable<T: Send>(_: &T) {}
    spawnable(&tenants.get("k0"));
    let stop = Arc::new(AtomicBool::new(false));
    let most_keys = Arc::new(AtomicUsize::new(0));
    let keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    let sampling = async {
        while !stop.load(Ordering::SeqCst) {
            most_keys.fetch_max(tenants.len(), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let getting = async {
        let got = futures_util::future::join_all(keys.iter().map(|k| tenants.get(k))).await;
        stop.store(true, Ordering::SeqCst);
        got
    };
    let ((), got) = tokio::join!(sampling, getting);
    for (key, r) in keys.iter().zip(got) {
        assert_eq!(r.unwrap().name(), format!("tenants.{key}"));
    }
    let most = most_keys.load(Ordering::SeqCst);
    assert!(
        most <= 2,
        "{most} keys open or opening at once, max_keys is 2"
    );
    // As the server saw it: a pool opened only once another was closed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut live, mut most_live) = (0i32, 0i32);
    for e in rec.0.lock().unwrap().iter() {
        match e.kind {
            EventKind::Opened { .. } => live += 1,
            EventKind::Closed => live -= 1,
            _ => continue,
        }
        most_live = most_live.max(live);
    }
    assert!(
        most_live <= 2,
        "{most_live} pools open at once, max_keys is 2: {:?}",
        rec.names()
    );
    assert_eq!(tenants.len(), 2);
    assert_eq!(tenants.evicted_total(), 4);
    mgr.close().await;
}
