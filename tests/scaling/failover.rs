//! A connection with two servers (`hosts`) and `target_session_attrs: read-write`: it
//! starts on the primary whatever the order, follows a failover (the primary killed with
//! kill -9, the standby promoted) under a write load through `retry`, with every
//! acknowledged write present exactly once, and never goes back to the old primary once
//! it returns read-only.

use crate::support::{TempPostgres, blocking};
use dbmanager::Manager;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn yaml(pg: &TempPostgres, ports: &[u16], extra: &str) -> String {
    let hosts: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    format!(
        "connections:\n  ha:\n    type: postgres\n    hosts: [{}]\n    user: {}\n    password: '{}'\n    \
         database: postgres\n    sslmode: disable\n    target_session_attrs: read-write\n    \
         health_check_interval: 200ms\n    health_check_timeout: 1s\n    retry_delay: 100ms\n    \
         retry_max_delay: 300ms\n    connect_timeout: 1s\n    acquire_timeout: 20s\n    \
         max_open_conns: 6\n{extra}",
        hosts.join(", "),
        pg.superuser,
        pg.password
    )
}

/// The port of the server a query through `mgr`'s `ha` ran on, and whether it is in
/// recovery.
async fn server_of(mgr: &Manager) -> (i32, bool) {
    let db = mgr.postgres("ha").unwrap();
    sqlx::query_as("select inet_server_port(), pg_is_in_recovery()")
        .fetch_one(&db)
        .await
        .unwrap()
}

/// The port of the server a diesel query through `mgr`'s `ha` ran on (a fresh diesel
/// connection: the view's pool is cleared first).
async fn diesel_port(mgr: &Manager) -> i32 {
    use dbmanager::diesel::r#async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Port {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        port: i32,
    }
    let conn = mgr.get("ha").unwrap();
    conn.clear();
    let mut d = conn.diesel_postgres().await.unwrap();
    let row: Port = diesel::sql_query("select inet_server_port() as port")
        .get_result(&mut d)
        .await
        .unwrap();
    row.port
}

/// One acknowledged write: its id, the server's port, and when it was acknowledged.
type Ack = (i32, i32, Instant);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_connection_follows_the_primary_through_a_failover() {
    let primary = blocking(|| TempPostgres::start("ha-pw")).await;
    let standby = {
        let p = &primary;
        std::thread::scope(|_| p.start_standby())
    };
    let (p, s) = (primary.port, standby.port);

    // Listed standby first: read-write still starts on the primary.
    let mgr = Manager::from_yaml_str(&yaml(&primary, &[s, p], "    diesel_conns: 1\n")).unwrap();
    mgr.connect().await.unwrap();
    assert_eq!(server_of(&mgr).await, (i32::from(p), false));
    // The diesel view connects through tokio-postgres's own multi-host support.
    assert_eq!(diesel_port(&mgr).await, i32::from(p));
    let db = mgr.postgres("ha").unwrap();
    sqlx::query("create table writes (id int not null)")
        .execute(&db)
        .await
        .unwrap();
    // The standby has the table before the primary goes.
    let caught_up = async {
        let url = standby.url_via(s);
        loop {
            if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await
                && sqlx::query("select 1 from writes limit 1")
                    .execute(&mut c)
                    .await
                    .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), caught_up)
        .await
        .unwrap();
    // Synchronous replication, as a Patroni cluster with `synchronous_mode` runs: a commit
    // is acknowledged once the standby has it, so a failover loses no acknowledged write.
    sqlx::query("alter system set synchronous_standby_names = '*'")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("select pg_reload_conf()")
        .execute(&db)
        .await
        .unwrap();

    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let next_id = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let last_error = Arc::new(Mutex::new(None::<String>));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (conn, acks, next_id, stop, last_error) = (
            mgr.get("ha").unwrap(),
            acks.clone(),
            next_id.clone(),
            stop.clone(),
            last_error.clone(),
        );
        writers.spawn(async move {
            let mut failed = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let written = conn
                    .retry(
                        move |mut c: dbmanager::PooledConnection<sqlx::Postgres>| async move {
                            sqlx::query_scalar::<_, i32>(
                                "insert into writes values ($1) returning inet_server_port()",
                            )
                            .bind(id)
                            .fetch_one(&mut *c)
                            .await
                        },
                    )
                    .await;
                match written {
                    Ok(port) => acks.lock().unwrap().push((id, port, Instant::now())),
                    // A lost connection: the write's outcome is unknown, so it is returned.
                    Err(e) => {
                        failed += 1;
                        last_error.lock().unwrap().replace(e.to_string());
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            failed
        });
    }
    let events = crate::support::Recorder::start(&mgr);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed = Instant::now();
    let killed_at = std::time::SystemTime::now();
    primary.kill9();
    // What a fresh connection sees: when the standby first takes writes, polled every
    // 20 ms while `pg_ctl promote` runs.
    let fresh = {
        let url = standby.url_via(s);
        tokio::spawn(async move {
            loop {
                if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await
                    && let Ok(false) = sqlx::query_scalar::<_, bool>("select pg_is_in_recovery()")
                        .fetch_one(&mut c)
                        .await
                {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    blocking_ref(|| standby.promote()).await;
    let writable = fresh.await.unwrap();
    let resumed = loop {
        let first_on_standby = acks
            .lock()
            .unwrap()
            .iter()
            .find(|(_, port, at)| *port == i32::from(s) && *at > killed)
            .map(|(_, _, at)| *at);
        if let Some(at) = first_on_standby {
            break at;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            stop.store(true, std::sync::atomic::Ordering::Release);
            panic!(
                "writes never resumed on the new primary: {:?}",
                last_error.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let mut failed = 0;
    while let Some(r) = writers.join_next().await {
        failed += r.unwrap();
    }
    println!(
        "failover: killed at 0, standby writable at {:?}, first write acknowledged on it at {:?} \
         ({:?} after it was writable); {failed} writes failed, the last with {:?}",
        writable - killed,
        resumed - killed,
        resumed.saturating_duration_since(writable),
        last_error.lock().unwrap()
    );
    for e in events.0.lock().unwrap().iter() {
        let at = e.at.duration_since(killed_at).unwrap_or_default();
        println!("  {at:?} {:?}", e.kind);
    }
    assert!(
        resumed.saturating_duration_since(writable) < Duration::from_secs(3),
        "writes resumed {:?} after the new primary took them",
        resumed.saturating_duration_since(writable)
    );

    // Exactly once: every acknowledged write is on the new primary, none twice.
    let acks = acks.lock().unwrap().clone();
    let url = standby.url_via(s);
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let twice: i64 = sqlx::query_scalar(
        "select count(*) from (select id from writes group by id having count(*) > 1) t",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(twice, 0, "writes present twice");
    let present: Vec<i32> = sqlx::query_scalar("select id from writes")
        .fetch_all(&mut c)
        .await
        .unwrap();
    let present: std::collections::HashSet<i32> = present.into_iter().collect();
    let lost: Vec<i32> = acks
        .iter()
        .filter(|(id, _, _)| !present.contains(id))
        .map(|(id, _, _)| *id)
        .collect();
    assert_eq!(
        lost,
        [] as [i32; 0],
        "acknowledged writes missing after the failover"
    );
    println!(
        "exactly once: {} acknowledged ({} on the new primary), 0 lost, 0 twice",
        acks.len(),
        acks.iter()
            .filter(|(_, port, _)| *port == i32::from(s))
            .count(),
    );

    // The old primary returns read-only: read-write sessions stay on the new primary.
    blocking_ref(|| primary.restart_as_standby()).await;
    mgr.get("ha").unwrap().reconnect().await.unwrap();
    for _ in 0..5 {
        assert_eq!(server_of(&mgr).await, (i32::from(s), false));
    }
    assert_eq!(diesel_port(&mgr).await, i32::from(s));
    // A connection listing only the old primary cannot start: it says why.
    let only_old = Manager::from_yaml_str(&yaml(&primary, &[p], "")).unwrap();
    let err = only_old.connect().await.unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    mgr.close().await;
}

/// Runs blocking `f` (a server command) without stalling the runtime's other tasks.
async fn blocking_ref<F: FnOnce() + Send>(f: F) {
    tokio::task::block_in_place(f);
}

/// A write refused as read-only because its transaction began while the server was still
/// a standby, the server promoted by the time `retry` looks: retried, and it lands. An
/// application's own `READ ONLY` transaction on a server never promoted is still returned
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_while_the_server_was_being_promoted_is_retried() {
    use sqlx::Connection as _;
    let primary = blocking(|| TempPostgres::start("promo-pw")).await;
    let standby = primary.start_standby();
    let mut on_primary = sqlx::PgConnection::connect(&primary.url_via(primary.port))
        .await
        .unwrap();
    sqlx::query("create table promoted (id int)")
        .execute(&mut on_primary)
        .await
        .unwrap();
    let single = |pg: &TempPostgres, port: u16| {
        format!(
            "connections:\n  db:\n    type: postgres\n    dsn: '{}'\n    retry_delay: 50ms\n",
            pg.url_via(port)
        )
    };
    let mgr = Manager::from_yaml_str(&single(&standby, standby.port)).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let replicated = async {
        while sqlx::query("select 1 from promoted")
            .execute(&mgr.postgres("db").unwrap())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), replicated)
        .await
        .unwrap();

    let attempts = std::sync::atomic::AtomicU32::new(0);
    let written = conn
        .retry(|mut c: dbmanager::PooledConnection<sqlx::Postgres>| {
            let (attempts, standby) = (&attempts, &standby);
            async move {
                let n = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let result = sqlx::query("insert into promoted values (1)")
                    .execute(&mut *c)
                    .await;
                if n == 0 {
                    let e = result.as_ref().expect_err("a standby refuses writes");
                    assert_eq!(
                        e.as_database_error().and_then(|d| d.code()).as_deref(),
                        Some("25006")
                    );
                    // The promotion finishes before `retry` decides.
                    blocking_ref(|| standby.promote()).await;
                }
                result
            }
        })
        .await;
    assert!(written.is_ok(), "{written:?}");
    assert_eq!(attempts.load(std::sync::atomic::Ordering::Relaxed), 2);

    // The application's own read-only transaction, on a primary never promoted.
    let own = Manager::from_yaml_str(&single(&primary, primary.port)).unwrap();
    own.connect().await.unwrap();
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let refused = own
        .get("db")
        .unwrap()
        .retry(|mut c: dbmanager::PooledConnection<sqlx::Postgres>| {
            let attempts = &attempts;
            async move {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut tx = c.begin().await?;
                sqlx::query("set transaction read only")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("insert into promoted values (2)")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
        })
        .await;
    assert!(refused.is_err());
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "returned at once"
    );
    mgr.close().await;
    own.close().await;
}
