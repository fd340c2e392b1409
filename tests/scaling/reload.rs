//! Configuration reload: `Manager::reload`, `Manager::watch` and `dbmanager serve`'s
//! SIGHUP, against the machine's PostgreSQL.

use crate::support::{self, Recorder};
use dbmanager::{Config, EventKind, Manager, WatchOutcome};
use std::time::Duration;

fn pg(name: &str, app: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    type: postgres\n    host: 127.0.0.1\n    user: postgres\n    database: test\n    \
         sslmode: disable\n    application_name: {app}\n    drain_timeout: 10s\n{extra}"
    )
}

fn file(sections: &[String]) -> String {
    format!("connections:\n{}", sections.concat())
}

/// Events of one connection, by name.
fn events_of(rec: &Recorder, name: &str) -> Vec<&'static str> {
    rec.0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| &*e.connection == name)
        .map(|e| e.kind.name())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_removes_swaps_changed_and_leaves_the_rest_untouched() {
    let observer = support::require_postgres().await;
    let [keep_app, change_app, changed_app, drop_app, fresh_app] =
        ["keep", "chg", "chg2", "drop", "fresh"].map(support::unique);
    let before = file(&[
        pg("keep", &keep_app, ""),
        pg("change", &change_app, "    max_open_conns: 2\n"),
        pg("gone", &drop_app, ""),
    ]);
    let mgr = Manager::new(Config::from_yaml_str(&before).unwrap());
    mgr.connect().await.unwrap();
    let keep_stats = mgr.get("keep").unwrap().stats().pool;

    // A handle taken before the reload, and a query in flight on the changed connection.
    let handle = mgr.get("change").unwrap();
    let mut held = handle.acquire::<sqlx::Postgres>().await.unwrap();
    let in_flight = tokio::spawn(async move {
        sqlx::query_scalar::<_, i32>("select 5 from pg_sleep(0.8)")
            .fetch_one(&mut *held)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let rec = Recorder::start(&mgr);
    let after = file(&[
        pg("fresh", &fresh_app, ""),
        pg("keep", &keep_app, ""),
        pg("change", &changed_app, "    max_open_conns: 5\n"),
    ]);
    let report = mgr
        .reload(Config::from_yaml_str(&after).unwrap())
        .await
        .unwrap();
    assert_eq!(report.added, ["fresh"]);
    assert_eq!(report.removed, ["gone"]);
    assert_eq!(report.unchanged, ["keep"]);
    assert_eq!(report.changed.len(), 1, "{report}");
    assert_eq!(report.changed[0].0, "change");
    assert_eq!(
        report.changed[0].1,
        ["max_open_conns", "max_idle_conns", "application_name"],
        "{report}"
    );
    assert!(report.failed.is_empty(), "{report}");
    assert_eq!(
        mgr.names(),
        ["fresh", "keep", "change"],
        "the new file's order"
    );

    // The query in flight on the old pool finished; the handle from before works and
    // sees the new settings.
    assert_eq!(in_flight.await.unwrap().unwrap(), 5);
    assert_eq!(handle.config().pool.max_open, 5);
    let mut c = handle.acquire::<sqlx::Postgres>().await.unwrap();
    let app: String = sqlx::query_scalar("select current_setting('application_name')")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(app, changed_app);
    drop(c);
    assert_eq!(
        support::pg_sessions(&observer, &change_app)().await,
        0,
        "the old pool drained and closed"
    );
    assert_eq!(
        support::pg_sessions(&observer, &drop_app)().await,
        0,
        "the removed connection closed"
    );
    assert!(mgr.get("gone").is_err());
    assert!(
        support::pg_sessions(&observer, &fresh_app)().await >= 1,
        "the added connection opened"
    );

    // Untouched: no event, no new connection, same counters.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(events_of(&rec, "keep"), Vec::<&str>::new());
    let keep_now = mgr.get("keep").unwrap().stats().pool;
    assert_eq!(keep_now.opened_total, keep_stats.opened_total);
    assert!(events_of(&rec, "change").contains(&"reconfigured"));
    assert!(events_of(&rec, "gone").contains(&"removed"));
    assert!(rec.count(|k| matches!(k, EventKind::Reconfigured { changed } if changed.contains(&"max_open_conns"))) == 1);

    // The same file again changes nothing.
    let again = mgr
        .reload(Config::from_yaml_str(&after).unwrap())
        .await
        .unwrap();
    assert!(again.is_noop(), "{again}");
    mgr.close().await;
}

/// A change of password is a change: the connection reconnects with the new one, and the
/// report names the field, not the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_is_detected_and_never_shown() {
    let yaml = |pw: &str| {
        format!(
            "connections:\n  lite:\n    type: sqlite\n    filepath: ':memory:'\n  pg:\n    type: postgres\n    host: 127.0.0.1\n    user: postgres\n    database: test\n    password: '{pw}'\n"
        )
    };
    let mgr = Manager::new(Config::from_yaml_str(&yaml("first-S3cret")).unwrap());
    mgr.connect().await.unwrap();
    let report = mgr
        .reload(Config::from_yaml_str(&yaml("second-S3cret")).unwrap())
        .await
        .unwrap();
    let text = format!("{report} {report:?}");
    assert_eq!(report.changed.len(), 1, "{text}");
    assert_eq!(report.changed[0].1, ["password"]);
    assert!(!text.contains("S3cret"), "{text}");
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_on_change_and_keeps_the_running_config_when_the_file_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.yaml");
    let one = "connections:\n  a:\n    type: sqlite\n    filepath: ':memory:'\n";
    std::fs::write(&path, one).unwrap();
    let mgr = Manager::from_yaml_file(&path).unwrap();
    mgr.connect().await.unwrap();
    let mut watcher = mgr.watch(&path).unwrap();

    // Invalid: rejected with the startup errors; nothing changes.
    std::fs::write(
        &path,
        "connections:\n  a:\n    type: sqlite\n    filepath: ':memory:'\n  b:\n    type: sqlite\n    filepath: ':memory:'\n    max_open_conns: 0\n",
    )
    .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("no reload after the file changed")
        .unwrap();
    match outcome {
        WatchOutcome::Rejected(e) => assert!(e.contains("connections.b.max_open_conns"), "{e}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(mgr.names(), ["a"]);

    // Valid, written the way deploy tools do (a new file renamed over the old one).
    let tmp = dir.path().join("db.yaml.tmp");
    std::fs::write(
        &tmp,
        "connections:\n  a:\n    type: sqlite\n    filepath: ':memory:'\n  b:\n    type: sqlite\n    filepath: ':memory:'\n",
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("no reload after the rename")
        .unwrap();
    assert!(
        matches!(&outcome, WatchOutcome::Reloaded(r) if r.contains("added: [b]")),
        "{outcome:?}"
    );
    assert_eq!(mgr.names(), ["a", "b"]);
    drop(watcher);
    mgr.close().await;
}

/// `dbmanager serve` reloads its file on SIGHUP and logs what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serve.yaml");
    std::fs::write(
        &file,
        "connections:\n  a:\n    type: sqlite\n    filepath: ':memory:'\n",
    )
    .unwrap();
    let port = support::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dbmanager"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        support::blocking(move || support::wait_for_port(port, Duration::from_secs(20))).await,
        "serve did not listen"
    );
    std::fs::write(
        &file,
        "connections:\n  a:\n    type: sqlite\n    filepath: ':memory:'\n  b:\n    type: sqlite\n    filepath: ':memory:'\n",
    )
    .unwrap();
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stats = String::new();
    for _ in 0..100 {
        // A request met while the process handles the signal may be reset (seen once in
        // CI, on a loaded machine): ask again, as for a reply without `b` yet.
        if let Ok((_, _, body)) = support::http_get(addr, "/stats").await {
            stats = body;
            if stats.contains("\"b\"") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stats.contains("\"b\""), "{stats}");
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = support::blocking(move || child.wait_with_output().unwrap()).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("SIGHUP: configuration reloaded"),
        "{stderr}"
    );
}

/// Tags, health, retry and timeout settings apply in place: no session is opened or
/// closed for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_settings_sessions_do_not_depend_on_keeps_every_session() {
    support::require_postgres().await;
    let app = support::unique("inplace");
    let before = file(&[pg("db", &app, "    health_check_interval: 30s\n")]);
    let mgr = Manager::new(Config::from_yaml_str(&before).unwrap());
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let opened = conn.stats().pool.opened_total;
    let rec = Recorder::start(&mgr);
    let after = file(&[pg(
        "db",
        &app,
        "    health_check_interval: 20s\n    failure_threshold: 5\n    tags:\n      team: payments\n",
    )]);
    let report = mgr
        .reload(Config::from_yaml_str(&after).unwrap())
        .await
        .unwrap();
    assert_eq!(report.changed.len(), 1, "{report}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let events = events_of(&rec, "db");
    assert!(!events.contains(&"swapped"), "{events:?}");
    assert_eq!(conn.stats().pool.opened_total, opened, "{events:?}");
    assert_eq!(conn.config().failure_threshold, 5);
    mgr.close().await;
}

/// A reload that changes the pool's limits needs a new pool (sqlx's are fixed), and it
/// opens only once the old one has drained: with both places of a budget of 2 held and
/// two more acquires waiting, going to a budget of 3 never shows the server more than 3
/// sessions (before: the new pool connected beside the held ones, and the waiting
/// acquires took two more places in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_changes_pool_limits_stays_within_the_budget() {
    let observer = support::require_postgres().await;
    let app = support::unique("limits");
    let two = "    max_open_conns: 2\n    acquire_timeout: 10s\n";
    let three = "    max_open_conns: 3\n    acquire_timeout: 10s\n";
    let mgr = Manager::new(Config::from_yaml_str(&file(&[pg("db", &app, two)])).unwrap());
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(support::max_while(
        stop.clone(),
        support::pg_sessions(&observer, &app),
    ));
    let reload = async {
        let report = mgr
            .reload(Config::from_yaml_str(&file(&[pg("db", &app, three)])).unwrap())
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{report}");
    };
    let names = support::across_a_full_budget_of_two(&conn, reload).await;
    assert_eq!(names, [app.clone(), app.clone()]);
    stop.store(true, std::sync::atomic::Ordering::Release);
    let max = sampler.await.unwrap();
    assert!(
        max <= 3,
        "the server saw {max} sessions for budgets of 2, then 3"
    );
    assert_eq!(conn.stats().pool.max_open, 3);
    mgr.close().await;
}

/// A reload that changes what sessions are opened with (here the application name)
/// renews them within the one budget: the server never sees more than
/// `max_open_conns`, old and new together, while connections are held across it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_renews_sessions_stays_within_the_budget() {
    let observer = support::require_postgres().await;
    let (old_app, new_app) = (support::unique("renew_a"), support::unique("renew_b"));
    let limits = "    max_open_conns: 2\n    acquire_timeout: 10s\n";
    let mgr = Manager::new(Config::from_yaml_str(&file(&[pg("db", &old_app, limits)])).unwrap());
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    // Old and new sessions in one query (two queries at two instants count a session
    // that closed between them and its successor both), and a count over the budget read
    // again 25 ms later: a backend leaves `pg_stat_activity` only when it exits, a moment
    // after the client's Terminate. An overlap that lasts is still caught.
    let count = {
        let (observer, apps) = (observer.clone(), vec![old_app.clone(), new_app.clone()]);
        move || {
            let (observer, apps) = (observer.clone(), apps.clone());
            async move {
                sqlx::query_scalar::<_, i64>(
                    "select count(*) from pg_stat_activity where application_name = any($1)",
                )
                .bind(&apps)
                .fetch_one(&observer)
                .await
                .unwrap_or(0)
            }
        }
    };
    let both = move || {
        let count = count.clone();
        Box::pin(async move {
            let n = count().await;
            if n <= 2 {
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            n.min(count().await)
        }) as support::SessionCount
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(support::max_while(stop.clone(), both));
    let reload = async {
        let report = mgr
            .reload(Config::from_yaml_str(&file(&[pg("db", &new_app, limits)])).unwrap())
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{report}");
    };
    let names = support::across_a_full_budget_of_two(&conn, reload).await;
    assert_eq!(names, [new_app.clone(), new_app.clone()]);
    stop.store(true, std::sync::atomic::Ordering::Release);
    let max = sampler.await.unwrap();
    assert!(max <= 2, "the server saw {max} sessions for a budget of 2");
    mgr.close().await;
}

/// What a query through one of the load's views saw: when its checkout began, and the
/// session's `application_name`.
type Seen = (std::time::Instant, String);

/// One query through the view `turn % 4` picks: the `Db` handle (the fast path), the raw
/// sqlx pool, a transaction, or the handle with a deadline of up to 2 ms (so checkouts
/// and connects are dropped half-way).
async fn app_name_through(db: &dbmanager::PgDb, raw: &sqlx::PgPool, turn: u64) -> Option<Seen> {
    let sql = "select current_setting('application_name')";
    let started = std::time::Instant::now();
    let name = match turn % 4 {
        0 => sqlx::query_scalar::<_, String>(sql)
            .fetch_one(db)
            .await
            .ok()?,
        1 => sqlx::query_scalar::<_, String>(sql)
            .fetch_one(raw)
            .await
            .ok()?,
        2 => {
            let mut tx = db.begin().await.ok()?;
            let name = sqlx::query_scalar::<_, String>(sql)
                .fetch_one(&mut *tx)
                .await
                .ok()?;
            tx.commit().await.ok()?;
            name
        }
        _ => {
            let limit = Duration::from_micros(turn * 7919 % 2000);
            let query = sqlx::query_scalar::<_, String>(sql).fetch_one(db);
            tokio::time::timeout(limit, query).await.ok()?.ok()?
        }
    };
    Some((started, name))
}

/// Reloads that renew sessions, one after another, under a load through every view with
/// checkouts dropped half-way and connections closing and opening all the time
/// (`max_idle_conns: 1`, `conn_max_lifetime: 1s`): a checkout that begins after a reload
/// returned never gets a session opened with an older configuration, and once the load
/// stops the server holds no older session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_that_renew_sessions_leave_no_older_session_under_load() {
    use std::sync::{Arc, Mutex};
    let observer = support::require_postgres().await;
    let limits = "    max_open_conns: 4\n    max_idle_conns: 1\n    conn_max_lifetime: 1s\n    conn_max_idle_time: 1s\n    \
                  acquire_timeout: 10s\n";
    let apps: Vec<String> = (0..10).map(|_| support::unique("renew_load")).collect();
    let mgr = Manager::new(Config::from_yaml_str(&file(&[pg("db", &apps[0], limits)])).unwrap());
    mgr.connect().await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut load = tokio::task::JoinSet::new();
    for task in 0..6u64 {
        let (db, stop, seen) = (mgr.postgres("db").unwrap(), stop.clone(), seen.clone());
        let raw = mgr.get("db").unwrap().postgres().unwrap();
        load.spawn(async move {
            let mut turn = task;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                turn += 1;
                if let Some(s) = app_name_through(&db, &raw, turn).await {
                    seen.lock().unwrap().push(s);
                }
            }
        });
    }
    // When each configuration became the current one: the reload that applied it returned.
    let mut applied = vec![(std::time::Instant::now(), apps[0].clone())];
    for app in &apps[1..] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let report = mgr
            .reload(Config::from_yaml_str(&file(&[pg("db", app, limits)])).unwrap())
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{report}");
        applied.push((std::time::Instant::now(), app.clone()));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let older: Vec<_> = seen
        .iter()
        .filter_map(|(started, name)| {
            let current = applied.iter().rev().find(|(at, _)| at <= started)?;
            let age = apps.iter().position(|a| a == name)?;
            let want = apps.iter().position(|a| *a == current.1)?;
            (age < want).then(|| format!("{name} where {} was current", current.1))
        })
        .collect();
    assert!(seen.len() > 200, "the load ran only {} queries", seen.len());
    assert!(
        older.is_empty(),
        "{} of {} checkouts that began after a reload got an older session: {:?}",
        older.len(),
        seen.len(),
        &older[..older.len().min(5)]
    );
    let left = sqlx::query_scalar::<_, i64>(
        "select count(*) from pg_stat_activity where application_name = any($1)",
    )
    .bind(&apps[..apps.len() - 1]);
    let mut count = left.fetch_one(&observer).await.unwrap();
    for _ in 0..40 {
        if count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        count = sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity where application_name = any($1)",
        )
        .bind(&apps[..apps.len() - 1])
        .fetch_one(&observer)
        .await
        .unwrap();
    }
    assert_eq!(count, 0, "older sessions still open on the server");
    mgr.close().await;
}
