//! The PostgreSQL views behind a real PgBouncer in transaction pooling mode.

use crate::support::pgbouncer::TempPgBouncer;
use dbmanager::Manager;
use dbmanager::sea_orm::{ConnectionTrait, Statement};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(diesel::QueryableByName)]
struct Answer {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    n: i32,
}

/// Errors seen, by kind, over `tasks` concurrent tasks each running `rounds` queries with
/// a bound parameter through the fast path, the raw sqlx pool, SeaORM and diesel in turn.
#[derive(Default, Debug)]
struct Tally {
    ok: AtomicUsize,
    prepared: AtomicUsize,
    other: AtomicUsize,
}

impl Tally {
    fn record<E: std::fmt::Display>(
        &self,
        r: Result<i32, E>,
        want: i32,
        last: &std::sync::Mutex<String>,
    ) {
        match r {
            Ok(n) if n == want => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(n) => panic!("wrong answer {n}, wanted {want}"),
            Err(e) => {
                let text = e.to_string();
                if text.contains("prepared statement") {
                    self.prepared.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.other.fetch_add(1, Ordering::Relaxed);
                }
                *last.lock().unwrap() = text;
            }
        }
    }
}

async fn hammer(
    mgr: &Manager,
    tasks: usize,
    rounds: i32,
    views: &'static [usize],
) -> (Arc<Tally>, String) {
    let tally = Arc::new(Tally::default());
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let mgr = mgr.clone();
        let tally = Arc::clone(&tally);
        let last = Arc::clone(&last);
        set.spawn(async move {
            let conn = mgr.get("bounced").unwrap();
            for i in 0..rounds {
                let want = i + t as i32 + 1;
                let arg = want - 1;
                match views[(i as usize + t) % views.len()] {
                    0 => {
                        let r = async {
                            let mut c = conn
                                .acquire::<sqlx::Postgres>()
                                .await
                                .map_err(|e| e.to_string())?;
                            sqlx::query_scalar::<_, i32>("select $1::int4 + 1")
                                .bind(arg)
                                .fetch_one(&mut *c)
                                .await
                                .map_err(|e| e.to_string())
                        }
                        .await;
                        tally.record(r, want, &last);
                    }
                    1 => {
                        let pool = conn.postgres().unwrap();
                        let r = sqlx::query_scalar::<_, i32>("select $1::int4 + 1")
                            .bind(arg)
                            .fetch_one(&pool)
                            .await;
                        tally.record(r, want, &last);
                    }
                    2 => {
                        let db = conn.sea_orm().unwrap();
                        let r = db
                            .query_one_raw(Statement::from_sql_and_values(
                                db.get_database_backend(),
                                "select $1::int4 + 1 as n",
                                [arg.into()],
                            ))
                            .await
                            .and_then(|row| row.expect("a row").try_get::<i32>("", "n"));
                        tally.record(r, want, &last);
                    }
                    _ => {
                        use dbmanager::diesel::r#async::RunQueryDsl;
                        let r = async {
                            let mut d = conn.diesel_postgres().await.map_err(|e| e.to_string())?;
                            diesel::sql_query("select $1::int4 + 1 as n")
                                .bind::<diesel::sql_types::Integer, _>(arg)
                                .get_result::<Answer>(&mut d)
                                .await
                                .map(|a| a.n)
                                .map_err(|e| e.to_string())
                        }
                        .await;
                        tally.record(r, want, &last);
                    }
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    let last = last.lock().unwrap().clone();
    (tally, last)
}

/// 50 tasks, each running `op(conn, round, arg)` `rounds` times (it must answer
/// `arg + 1`); then closes the manager. The errors seen, by kind, and the last one.
async fn fifty_tasks<F, Fut>(mgr: &Manager, rounds: i32, op: F) -> (Arc<Tally>, String)
where
    F: Fn(dbmanager::Connection, i32, i32) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<i32, String>> + Send,
{
    let tally = Arc::new(Tally::default());
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let mut set = tokio::task::JoinSet::new();
    for t in 0..50 {
        let conn = mgr.get("bounced").unwrap();
        let (tally, last, op) = (Arc::clone(&tally), Arc::clone(&last), op.clone());
        set.spawn(async move {
            for i in 0..rounds {
                let arg = i + t;
                let r = op(conn.clone(), i, arg).await;
                tally.record(r, arg + 1, &last);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    mgr.close().await;
    let last = last.lock().unwrap().clone();
    (tally, last)
}

fn config(url: &str, pgbouncer: bool) -> String {
    format!(
        "connections:\n  bounced:\n    type: postgres\n    dsn: '{url}'\n    pgbouncer: {pgbouncer}\n    \
         max_open_conns: 24\n    diesel_conns: 6\n    acquire_timeout: 20s\n"
    )
}

/// Every view through a PgBouncer in session mode (one server connection per client
/// connection, so its pool must be at least the budget): 50 tasks, no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_works_behind_pgbouncer_in_session_mode() {
    crate::support::require_postgres().await.close().await;
    let bouncer = TempPgBouncer::start("session", 30);
    let mgr = Manager::from_yaml_str(&config(&bouncer.url(), true)).unwrap();
    mgr.connect().await.unwrap();
    let (tally, last) = hammer(&mgr, 50, 40, &[0, 1, 2, 3]).await;
    mgr.close().await;
    assert_eq!(tally.prepared.load(Ordering::Relaxed), 0, "{last}");
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "{last}");
    assert_eq!(tally.ok.load(Ordering::Relaxed), 50 * 40);
}

/// 50 tasks each running diesel transactions (a parameterised query inside) behind a
/// PgBouncer in transaction mode with 4 server connections. A transaction keeps its server
/// connection, but the next one may get another: diesel's statement cache then names a
/// statement that server never saw. With `pgbouncer: true` (cache off) none fails.
async fn diesel_transactions(pgbouncer: bool) -> (Arc<Tally>, String) {
    use dbmanager::diesel::r#async::{AsyncConnection, RunQueryDsl};
    crate::support::require_postgres().await.close().await;
    let bouncer = TempPgBouncer::start("transaction", 4);
    let mgr = Manager::from_yaml_str(&config(&bouncer.url(), pgbouncer)).unwrap();
    mgr.connect().await.unwrap();
    fifty_tasks(&mgr, 20, |conn, _, arg| async move {
        let mut d = conn.diesel_postgres().await.map_err(|e| e.to_string())?;
        d.transaction::<_, diesel::result::Error, _>(async move |c| {
            // A query diesel caches (`sql_query` text is never cached).
            use diesel::IntoSql;
            diesel::select(arg.into_sql::<diesel::sql_types::Integer>() + 1)
                .get_result::<i32>(c)
                .await
        })
        .await
        .map_err(|e| e.to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diesel_transactions_work_behind_pgbouncer_in_transaction_mode() {
    let (tally, last) = diesel_transactions(true).await;
    assert_eq!(tally.prepared.load(Ordering::Relaxed), 0, "{last}");
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "{last}");
    assert_eq!(tally.ok.load(Ordering::Relaxed), 50 * 20);
    // Without the setting, the same load fails: what the setting is for.
    let (tally, last) = diesel_transactions(false).await;
    assert!(
        tally.prepared.load(Ordering::Relaxed) > 0,
        "diesel's statement cache was expected to fail behind a transaction-mode bouncer: {tally:?} {last}"
    );
}

/// What no client setting fixes on PgBouncer 1.18 (Debian 12's): sqlx sends `Parse` and
/// `Bind` in two exchanges and names its statements per connection (`sqlx_s_1`...), so
/// outside a transaction the bouncer hands the `Bind` to another server connection.
/// docs/scaling.md says so and points at PgBouncer 1.21's `max_prepared_statements` or
/// session mode; this test keeps that text true (it fails if the combination starts to
/// work, and the docs must then change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_statements_outside_transactions_fail_behind_pgbouncer_1_18_in_transaction_mode() {
    crate::support::require_postgres().await.close().await;
    let bouncer = TempPgBouncer::start("transaction", 4);
    let mgr = Manager::from_yaml_str(&config(&bouncer.url(), true)).unwrap();
    mgr.connect().await.unwrap();
    let (tally, last) = hammer(&mgr, 50, 20, &[0, 1, 2]).await;
    mgr.close().await;
    eprintln!("sqlx and SeaORM behind a transaction-mode PgBouncer: {tally:?} (last: {last})");
    assert!(tally.prepared.load(Ordering::Relaxed) > 0, "{tally:?}");
}

/// sqlx and SeaORM inside transactions behind a transaction-mode PgBouncer 1.18: a
/// transaction keeps its server connection, so `Parse` and `Bind` meet; what is left is
/// sqlx's statement names (`sqlx_s_N`, per client connection, never closed with the cache
/// off), which collide with another client's on the same server connection. A bouncer
/// that runs `DEALLOCATE ALL` after every transaction (`server_reset_query_always = 1`)
/// clears them: then every transaction answers.
async fn sqlx_transactions(reset: bool) -> (Arc<Tally>, String) {
    crate::support::require_postgres().await.close().await;
    let extra = if reset {
        "server_reset_query = DEALLOCATE ALL\nserver_reset_query_always = 1\n"
    } else {
        ""
    };
    let bouncer = TempPgBouncer::start_with("transaction", 4, extra);
    let mgr = Manager::from_yaml_str(&config(&bouncer.url(), true)).unwrap();
    mgr.connect().await.unwrap();
    fifty_tasks(&mgr, 20, |conn, i, arg| async move {
        if i % 2 == 0 {
            let mut tx = conn
                .begin::<sqlx::Postgres>()
                .await
                .map_err(|e| e.to_string())?;
            let n = sqlx::query_scalar::<_, i32>("select $1::int4 + 1")
                .bind(arg)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(n)
        } else {
            use dbmanager::sea_orm::TransactionTrait;
            let db = conn.sea_orm().map_err(|e| e.to_string())?;
            let tx = db.begin().await.map_err(|e| e.to_string())?;
            let row = tx
                .query_one_raw(Statement::from_sql_and_values(
                    tx.get_database_backend(),
                    "select $1::int4 + 1 as n",
                    [arg.into()],
                ))
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no row")?;
            let n: i32 = row.try_get("", "n").map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(n)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_transactions_work_behind_pgbouncer_that_deallocates_after_each_transaction() {
    let (tally, last) = sqlx_transactions(true).await;
    assert_eq!(tally.prepared.load(Ordering::Relaxed), 0, "{last}");
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "{last}");
    assert_eq!(tally.ok.load(Ordering::Relaxed), 50 * 20);
    let (tally, last) = sqlx_transactions(false).await;
    eprintln!("without the bouncer's reset: {tally:?} (last: {last})");
    assert!(tally.prepared.load(Ordering::Relaxed) > 0, "{tally:?}");
}

/// diesel-async sets a new connection up with two statements sent at once, outside a
/// transaction; a transaction-mode bouncer may hand the second to another server
/// connection, where its prepared statement does not exist (or send its answer to another
/// client). With `pgbouncer: true` the set-up runs inside one transaction: 20 connections
/// opened at once, through a bouncer with 2 server connections, all work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diesel_connections_open_concurrently_behind_pgbouncer_in_transaction_mode() {
    use dbmanager::diesel::r#async::{AsyncConnection, RunQueryDsl};
    crate::support::require_postgres().await.close().await;
    let bouncer = TempPgBouncer::start("transaction", 2);
    let yaml = format!(
        "connections:\n  bounced:\n    type: postgres\n    dsn: '{}'\n    pgbouncer: true\n    \
         max_open_conns: 22\n    diesel_conns: 20\n    acquire_timeout: 20s\n",
        bouncer.url()
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    mgr.connect().await.unwrap();
    for round in 0..3 {
        let all_open = Arc::new(tokio::sync::Barrier::new(20));
        let mut set = tokio::task::JoinSet::new();
        for t in 0..20 {
            let (conn, all_open) = (mgr.get("bounced").unwrap(), Arc::clone(&all_open));
            set.spawn(async move {
                let mut d = conn.diesel_postgres().await.map_err(|e| e.to_string())?;
                all_open.wait().await;
                d.transaction::<_, diesel::result::Error, _>(async move |c| {
                    use diesel::IntoSql;
                    diesel::select(t.into_sql::<diesel::sql_types::Integer>() + 1)
                        .get_result::<i32>(c)
                        .await
                })
                .await
                .map_err(|e| e.to_string())
            });
        }
        let mut seen = Vec::new();
        while let Some(r) = set.join_next().await {
            seen.push(r.expect("task"));
        }
        let failed: Vec<_> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.is_empty(), "round {round}: {failed:?}");
        let stats = mgr.get("bounced").unwrap().stats();
        let diesel = stats
            .views
            .iter()
            .find(|v| v.view == dbmanager::View::Diesel)
            .unwrap();
        assert_eq!(diesel.pool.acquire_errors, 0, "{:?}", stats.last_error);
        // Open the next round's connections afresh.
        mgr.get("bounced").unwrap().reconnect().await.unwrap();
    }
    mgr.close().await;
}
