//! The pool's invariants under a random mixed load, counted from the server's side.
//!
//! On a throwaway PostgreSQL (killed with `kill -9` and restarted once, mid-run), tasks
//! run a seeded random mix of fast-path checkouts, transactions that commit or roll back,
//! writes through `retry` (each with an id), queries cancelled by client timeouts, raw
//! sqlx pool, SeaORM, diesel (one of the budget's places) and storable-handle (`&Db`)
//! queries, and keyed gets (whose idle keys the sweeper evicts);
//! another task calls `reconnect()` and `reload()` (with changed and unchanged fields).
//! An observer samples `pg_stat_activity` every 10 ms. Checked:
//! - the server never sees more sessions of the connection than `max_open_conns`, nor
//!   more keyed sessions than `max_keys` × the template's budget;
//! - every acknowledged write is present exactly once, and no write twice;
//! - no connection turns unhealthy while the server is up, and no operation fails then
//!   (besides the cancelled ones, and keyed handles used after their eviction);
//! - after `close()`: no session on the server, no task left.
//!
//! The seed is printed in every failure; `DBMANAGER_TORTURE_SEED=<n>` replays one.

use crate::support::{self, TempPostgres};
use dbmanager::sea_orm::ConnectionTrait;
use dbmanager::{Config, EventKind, HealthState, Manager, PooledConnection};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUDGET: i64 = 4;
const MAX_KEYS: i64 = 2;
const RUN: Duration = Duration::from_secs(12);
const KILL_AT: Duration = Duration::from_secs(4);
const DOWN_FOR: Duration = Duration::from_millis(1500);
/// After the restart, how long callers may still see the outage (reconnect, backoff).
const SETTLE: Duration = Duration::from_secs(3);

/// xorshift64*: small, seeded, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn yaml(url: &str, app: &str, tags: &str, interval: &str) -> String {
    // One of the budget's places for the diesel view, when it is built.
    let diesel = if cfg!(feature = "diesel") {
        "diesel_conns: 1\n    "
    } else {
        ""
    };
    format!(
        "connections:\n  db:\n    type: postgres\n    dsn: '{url}?application_name={app}'\n    \
         max_open_conns: {BUDGET}\n    max_idle_conns: {BUDGET}\n    acquire_timeout: 20s\n    \
         connect_timeout: 2s\n    health_check_interval: {interval}\n    health_check_timeout: 1s\n    \
         on_unavailable: wait\n    retry_delay: 20ms\n    retry_max_delay: 200ms\n    drain_timeout: 3s\n    \
         {diesel}tags:\n      run: '{tags}'\nkeyed:\n  devices:\n    template:\n      type: postgres\n      \
         dsn: '{url}'\n      max_open_conns: 1\n      acquire_timeout: 20s\n      connect_timeout: 2s\n      \
         health_check_interval: 200ms\n      on_unavailable: wait\n      retry_delay: 20ms\n      \
         retry_max_delay: 200ms\n    idle_evict_after: 300ms\n    max_keys: {MAX_KEYS}\n"
    )
}

/// What the load saw: acknowledged and attempted write ids, failures outside the outage.
#[derive(Default)]
struct Seen {
    acked: Vec<i64>,
    attempted: Vec<i64>,
    failures: Vec<String>,
}

/// The outage window: from the kill until `SETTLE` after the restart returned.
struct Outage {
    started: Instant,
    killed_at: Mutex<Option<Instant>>,
    back_at: Mutex<Option<Instant>>,
}

impl Outage {
    fn covers(&self, at: Instant) -> bool {
        let Some(killed) = *self.killed_at.lock().unwrap() else {
            return false;
        };
        let back = *self.back_at.lock().unwrap();
        at >= killed && back.is_none_or(|b| at <= b + SETTLE)
    }
    fn at(&self, at: Instant) -> f64 {
        at.duration_since(self.started).as_secs_f64()
    }
}

async fn one_op(
    mgr: &Manager,
    rng: &mut Rng,
    task: i64,
    n: i64,
    seen: &Mutex<Seen>,
    app: &str,
) -> Result<(), String> {
    let conn = mgr.get("db").map_err(|e| e.to_string())?;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match rng.below(11) {
        0 | 1 => {
            let mut c = conn.acquire::<sqlx::Postgres>().await.map_err(|x| e(&x))?;
            let one: i32 = sqlx::query_scalar("select 1")
                .fetch_one(&mut *c)
                .await
                .map_err(|x| e(&x))?;
            assert_eq!(one, 1);
        }
        2 => {
            let mut tx = conn.begin::<sqlx::Postgres>().await.map_err(|x| e(&x))?;
            sqlx::query("insert into scratch(v) values (1)")
                .execute(&mut *tx)
                .await
                .map_err(|x| e(&x))?;
            if rng.below(2) == 0 {
                tx.commit().await.map_err(|x| e(&x))?;
            } else {
                tx.rollback().await.map_err(|x| e(&x))?;
            }
        }
        3 => {
            let id = task * 1_000_000 + n;
            seen.lock().unwrap().attempted.push(id);
            conn.retry(move |mut c: PooledConnection<sqlx::Postgres>| async move {
                sqlx::query("insert into ledger(op) values ($1)")
                    .bind(id)
                    .execute(&mut *c)
                    .await
                    .map(drop)
            })
            .await
            .map_err(|x| e(&x))?;
            seen.lock().unwrap().acked.push(id);
        }
        4 => {
            // Cancelled by the client while the server runs it.
            let mut c = conn.acquire::<sqlx::Postgres>().await.map_err(|x| e(&x))?;
            let limit = Duration::from_millis(5 + rng.below(30));
            let sleep = sqlx::query("select pg_sleep(0.2)").execute(&mut *c);
            let _ = tokio::time::timeout(limit, sleep).await;
        }
        5 => {
            let pool = conn.postgres().map_err(|x| e(&x))?;
            sqlx::query("select 1")
                .execute(&pool)
                .await
                .map_err(|x| e(&x))?;
        }
        6 => {
            let db = conn.sea_orm().map_err(|x| e(&x))?;
            db.execute_unprepared("select 1").await.map_err(|x| e(&x))?;
        }
        7 => {
            // The storable handle: each query checks out through the fast path.
            let db = mgr.postgres("db").map_err(|x| e(&x))?;
            sqlx::query("select 1")
                .execute(&db)
                .await
                .map_err(|x| e(&x))?;
        }
        #[cfg(feature = "diesel")]
        8 => {
            // The diesel view: its own sessions, within `diesel_conns` of the budget.
            use dbmanager::diesel::r#async::RunQueryDsl;
            let mut d = conn.diesel_postgres().await.map_err(|x| e(&x))?;
            diesel::sql_query("select 1")
                .execute(&mut d)
                .await
                .map_err(|x| e(&x))?;
        }
        _ => {
            let key = format!("k{}", rng.below(4));
            let devices = mgr.keyed("devices").map_err(|x| e(&x))?;
            let dev = devices.get(&key).await.map_err(|x| e(&x))?;
            match dev.acquire::<sqlx::Postgres>().await {
                Ok(mut c) => {
                    sqlx::query("select 1")
                        .execute(&mut *c)
                        .await
                        .map_err(|x| e(&x))?;
                }
                // A key evicted (idle, or for another key's place) between the `get`
                // and its use: documented, and not an invariant broken.
                Err(dbmanager::Error::Closed { .. }) => {}
                Err(x) => return Err(e(&x)),
            }
            let _ = app;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_with_swaps_reloads_and_a_restart_keeps_every_invariant() {
    let seed: u64 = std::env::var("DBMANAGER_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let pg = TempPostgres::start("torture pw");
    let url = pg.url_via(pg.port);
    let app = support::unique("torture");
    let observer = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect(&format!("{url}?application_name=observer"))
        .await
        .unwrap();
    for ddl in [
        "create table ledger(op bigint not null)",
        "create table scratch(v int)",
    ] {
        sqlx::query(ddl).execute(&observer).await.unwrap();
    }

    let mgr = Manager::new(Config::from_yaml_str(&yaml(&url, &app, "a", "200ms")).unwrap());
    mgr.connect().await.unwrap();
    {
        let app = app.clone();
        mgr.keyed("devices")
            .unwrap()
            .set_resolver(move |key| vec![("application_name".into(), format!("{app}_k_{key}"))]);
    }
    let outage = Arc::new(Outage {
        started: Instant::now(),
        killed_at: Mutex::new(None),
        back_at: Mutex::new(None),
    });
    // Health drops, with when they happened.
    let drops = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    {
        let drops = Arc::clone(&drops);
        let mut rx = mgr.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if let EventKind::HealthChanged { to, .. } = &ev.kind
                            && *to == HealthState::Unhealthy
                        {
                            drops
                                .lock()
                                .unwrap()
                                .push((ev.connection.to_string(), Instant::now()));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
    }

    // The observer: the most sessions seen, for the connection and for the keyed group.
    let stop = Arc::new(AtomicBool::new(false));
    let (max_main, max_keyed) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let over = Arc::new(Mutex::new(Vec::<String>::new()));
    let sampler = {
        let (stop, observer, app) = (Arc::clone(&stop), observer.clone(), app.clone());
        let (max_main, max_keyed) = (Arc::clone(&max_main), Arc::clone(&max_keyed));
        let over = Arc::clone(&over);
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                // One statement, so the details are those of the sample counted.
                let counts: Result<(i64, i64, Option<String>), _> = sqlx::query_as(
                    "select count(*) filter (where application_name = $1), \
                     count(*) filter (where application_name like $2), \
                     string_agg(pid || ' ' || to_char(backend_start, 'SS.MS') || ' ' || \
                     coalesce(state, '-') || ' ' || left(coalesce(query, ''), 30), '; ') \
                     filter (where application_name = $1) from pg_stat_activity",
                )
                .bind(&app)
                .bind(format!("{app}_k_%"))
                .fetch_one(&observer)
                .await;
                // A session the client closed leaves `pg_stat_activity` when its backend
                // exits, a moment later on a loaded machine: a sample over a budget is
                // taken again 25 ms later, and counts only if it is still over.
                let counts = match counts {
                    Ok((main, keyed, _)) if main > BUDGET || keyed > MAX_KEYS => {
                        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                        let again: Result<(i64, i64, Option<String>), _> = sqlx::query_as(
                            "select count(*) filter (where application_name = $1), \
                             count(*) filter (where application_name like $2), \
                             string_agg(pid || ' ' || to_char(backend_start, 'SS.MS') || ' ' || \
                             coalesce(state, '-') || ' ' || left(coalesce(query, ''), 30), '; ') \
                             filter (where application_name = $1 or application_name like $2) \
                             from pg_stat_activity",
                        )
                        .bind(&app)
                        .bind(format!("{app}_k_%"))
                        .fetch_one(&observer)
                        .await;
                        again.map(|(m, k, d)| (m.min(main), k.min(keyed), d))
                    }
                    other => other,
                };
                // While the server is down there is nothing to count.
                if let Ok((main, keyed, detail)) = counts {
                    max_main.fetch_max(main, Ordering::Relaxed);
                    max_keyed.fetch_max(keyed, Ordering::Relaxed);
                    if main > BUDGET || keyed > MAX_KEYS {
                        let at = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs_f64()
                            % 60.0;
                        over.lock()
                            .unwrap()
                            .push(format!("at {at:.3}: {}", detail.unwrap_or_default()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let seen = Arc::new(Mutex::new(Seen::default()));
    let until = Instant::now() + RUN;
    let workers: Vec<_> = (0..8i64)
        .map(|task| {
            let (mgr, seen, outage, app) = (
                mgr.clone(),
                Arc::clone(&seen),
                Arc::clone(&outage),
                app.clone(),
            );
            tokio::spawn(async move {
                let mut rng = Rng(seed ^ (task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut n = 0;
                while Instant::now() < until {
                    n += 1;
                    let started = Instant::now();
                    if let Err(msg) = one_op(&mgr, &mut rng, task, n, &seen, &app).await
                        && !outage.covers(started)
                        && !outage.covers(Instant::now())
                    {
                        seen.lock()
                            .unwrap()
                            .failures
                            .push(format!("task {task} at {:.2}s: {msg}", outage.at(started)));
                    }
                }
            })
        })
        .collect();

    // Swaps and reloads, at random moments; the server killed and restarted once.
    let mut rng = Rng(seed.rotate_left(17) | 1);
    let conn = mgr.get("db").unwrap();
    let started = Instant::now();
    let mut killed = false;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200 + rng.below(400))).await;
        if !killed && started.elapsed() >= KILL_AT {
            killed = true;
            *outage.killed_at.lock().unwrap() = Some(Instant::now());
            pg.kill9();
            tokio::time::sleep(DOWN_FOR).await;
            let pg_ref = &pg;
            tokio::task::block_in_place(|| pg_ref.restart());
            *outage.back_at.lock().unwrap() = Some(Instant::now());
            continue;
        }
        let when = Instant::now();
        let result = match rng.below(4) {
            0 => conn.reconnect().await.map_err(|e| e.to_string()),
            1 => mgr
                .reload(Config::from_yaml_str(&yaml(&url, &app, "b", "200ms")).unwrap())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            2 => mgr
                .reload(Config::from_yaml_str(&yaml(&url, &app, "a", "250ms")).unwrap())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            // Unchanged (whatever the last one was, this is a no-op or a change back).
            _ => mgr
                .reload(Config::from_yaml_str(&yaml(&url, &app, "a", "200ms")).unwrap())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        if let Err(msg) = result
            && !outage.covers(when)
        {
            seen.lock()
                .unwrap()
                .failures
                .push(format!("swap/reload at {:.2}s: {msg}", outage.at(when)));
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::Release);
    sampler.await.unwrap();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let ctx = format!("seed {seed} (replay: DBMANAGER_TORTURE_SEED={seed})");
    let (main, keyed) = (
        max_main.load(Ordering::Relaxed),
        max_keyed.load(Ordering::Relaxed),
    );
    assert!(
        main <= BUDGET,
        "{ctx}: the server saw {main} sessions for a budget of {BUDGET}: {:?}",
        over.lock().unwrap().iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        keyed <= MAX_KEYS,
        "{ctx}: the server saw {keyed} keyed sessions for {MAX_KEYS} keys of one: {:?}",
        over.lock().unwrap().iter().take(3).collect::<Vec<_>>()
    );
    assert!(main >= 1, "{ctx}: the observer saw no session at all");
    assert!(
        seen.failures.is_empty(),
        "{ctx}: {} operations failed while the server was up; first: {:?}",
        seen.failures.len(),
        seen.failures.iter().take(5).collect::<Vec<_>>()
    );
    let false_drops: Vec<_> = drops
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| !outage.covers(*at))
        .map(|(name, at)| format!("{name} at {:.2}s", outage.at(*at)))
        .collect();
    assert!(
        false_drops.is_empty(),
        "{ctx}: unhealthy while the server was up: {false_drops:?}"
    );

    // Exactly once: every acknowledged write is there once, and none is there twice.
    let rows: Vec<(i64, i64)> = sqlx::query_as("select op, count(*) from ledger group by op")
        .fetch_all(&observer)
        .await
        .unwrap();
    let counts: std::collections::HashMap<i64, i64> = rows.into_iter().collect();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{ctx}: written twice: {twice:?}");
    let lost: Vec<_> = seen
        .acked
        .iter()
        .filter(|id| counts.get(id) != Some(&1))
        .collect();
    assert!(
        lost.is_empty(),
        "{ctx}: {} acknowledged writes missing: {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        seen.acked.len() > 20,
        "{ctx}: only {} writes acknowledged of {} attempted",
        seen.acked.len(),
        seen.attempted.len()
    );

    mgr.close().await;
    // A backend ends a moment after its client closed the socket: give the server
    // that moment (up to 1 s), not more.
    let mut left = String::new();
    for _ in 0..50 {
        left = sqlx::query_scalar::<_, Option<String>>(
            "select string_agg(application_name || ' ' || coalesce(state, '-') || ' ' || \
             left(coalesce(query, ''), 30), '; ') from pg_stat_activity \
             where application_name like $1",
        )
        .bind(format!("{app}%"))
        .fetch_one(&observer)
        .await
        .unwrap()
        .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        left.is_empty(),
        "{ctx}: sessions left after close(): {left}"
    );
    assert_eq!(mgr.task_count(), 0, "{ctx}: tasks left after close()");
    println!(
        "{ctx}: max sessions {main}/{BUDGET}, keyed {keyed}/{MAX_KEYS}, {} writes acknowledged of {} attempted",
        seen.acked.len(),
        seen.attempted.len()
    );
}
