//! PostgreSQL integration tests against the machine's server (and, for password
//! authentication, a throwaway SCRAM instance).

use crate::support;

use dbmanager::{DbType, Error, Manager};
use std::sync::Arc;

use std::time::Duration;
use support::*;

fn config(app: &str, max_open: u32) -> String {
    format!(
        r#"
default_connection: primary
connections:
  primary:
    type: postgres
    host: 127.0.0.1
    port: 5432
    user: postgres
    database: test
    application_name: {app}
    max_open_conns: {max_open}
    max_idle_conns: {max_open}
    acquire_timeout: 20s
  other:
    type: postgres
    dsn: "postgres://postgres@127.0.0.1:5432/test"
    startup: lazy
  lite:
    type: sqlite
    filepath: ":memory:"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_query_default_switch_unknown_and_wrong_kind() {
    require_postgres().await;
    let mgr = Manager::from_yaml_str(&config(&unique("dbm_basic"), 4)).unwrap();
    mgr.connect().await.unwrap();

    let primary = mgr.get("primary").unwrap();
    assert_eq!(primary.kind(), DbType::Postgres);
    let pool = primary.postgres().unwrap();
    let (one,): (i32,) = sqlx::query_as("select 1").fetch_one(&pool).await.unwrap();
    assert_eq!(one, 1);

    // Through the instrumented acquire: the wait is counted.
    let mut conn = primary.acquire::<sqlx::Postgres>().await.unwrap();
    let (two,): (i32,) = sqlx::query_as("select 2")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(two, 2);
    drop(conn);
    assert!(primary.stats().pool.acquire_count >= 1);

    // Default and switching it.
    assert_eq!(mgr.default().unwrap().name(), "primary");
    mgr.set_default("other").unwrap();
    assert_eq!(mgr.default().unwrap().name(), "other");
    let other_pool = mgr.default().unwrap().postgres().unwrap();
    let (three,): (i32,) = sqlx::query_as("select 3")
        .fetch_one(&other_pool)
        .await
        .unwrap();
    assert_eq!(three, 3);
    assert!(mgr.set_default("nope").is_err());
    assert_eq!(mgr.default().unwrap().name(), "other");

    // Unknown name lists the configured ones.
    match mgr.get("nope") {
        Err(Error::UnknownConnection { name, known }) => {
            assert_eq!(name, "nope");
            assert_eq!(known, vec!["primary", "other", "lite"]);
        }
        other => panic!("expected UnknownConnection, got {other:?}"),
    }

    // Wrong kind, both ways.
    match primary.mysql() {
        Err(Error::WrongKind {
            name,
            expected,
            actual,
        }) => {
            assert_eq!(name, "primary");
            assert_eq!(expected, DbType::MySql);
            assert_eq!(actual, DbType::Postgres);
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    assert!(matches!(
        mgr.get("lite").unwrap().postgres(),
        Err(Error::WrongKind {
            expected: DbType::Postgres,
            actual: DbType::Sqlite,
            ..
        })
    ));
    assert!(matches!(primary.sqlite(), Err(Error::WrongKind { .. })));

    let health = mgr.health_check().await;
    assert!(health.iter().all(|(_, r)| r.is_ok()), "{health:?}");
    let stats = mgr.stats();
    assert_eq!(stats.total_connections, 3);
    assert_eq!(stats.healthy, 3);
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_connection_count_never_exceeds_max_open_conns() {
    let observer = require_postgres().await;
    let app = unique("dbm_cap");
    let max_open = 5;
    let mgr = Manager::from_yaml_str(&config(&app, max_open)).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("primary").unwrap();
    let pool = conn.postgres().unwrap();

    // 4x max_open tasks, half through the raw pool, half through the managed acquire.
    let count = pg_sessions(&observer, &app);
    let max_seen = max_count_during(count, 4 * max_open, |i| {
        let pool = pool.clone();
        let conn = conn.clone();
        async move {
            for _ in 0..5 {
                if i % 2 == 0 {
                    sqlx::query("select pg_sleep(0.02)")
                        .execute(&pool)
                        .await
                        .unwrap();
                } else {
                    let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
                    sqlx::query("select pg_sleep(0.02)")
                        .execute(&mut *c)
                        .await
                        .unwrap();
                }
                assert!(pool.size() <= max_open);
            }
        }
    })
    .await;
    assert!(
        max_seen <= i64::from(max_open),
        "server saw {max_seen} sessions for {app}, max_open_conns is {max_open}"
    );
    assert!(
        max_seen >= 2,
        "the load should have used several connections, saw {max_seen}"
    );
    let stats = conn.stats().pool;
    assert!(
        stats.open <= max_open && stats.opened_total >= 2,
        "{stats:?}"
    );
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_lets_in_flight_queries_finish_then_rejects_new_acquires() {
    require_postgres().await;
    let mgr = Manager::from_yaml_str(&config(&unique("dbm_close"), 3)).unwrap();
    mgr.connect().await.unwrap();
    let conn = mgr.get("primary").unwrap();
    let pool = conn.postgres().unwrap();

    let started = Arc::new(tokio::sync::Notify::new());
    let in_flight = {
        let conn = conn.clone();
        let started = started.clone();
        tokio::spawn(async move {
            let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
            started.notify_one();
            sqlx::query_scalar::<_, i32>("select 42 from pg_sleep(0.5)")
                .fetch_one(&mut *c)
                .await
        })
    };
    started.notified().await;
    let closing = {
        let mgr = mgr.clone();
        tokio::spawn(async move { mgr.close().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // While closing: new acquires fail at once with Closed.
    assert!(matches!(
        conn.acquire::<sqlx::Postgres>().await,
        Err(Error::Closed { .. })
    ));
    assert!(matches!(mgr.get("primary"), Err(Error::Closed { .. })));
    assert!(pool.acquire().await.is_err(), "the raw pool is closed too");

    // The in-flight query finished normally.
    assert_eq!(in_flight.await.unwrap().unwrap(), 42);
    assert!(closing.await.unwrap(), "close drained within close_timeout");
    assert_eq!(pool.size(), 0);
    // Twice is harmless.
    assert!(mgr.close().await);
    assert!(mgr.connect().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_startup_failure_names_the_connection() {
    let port = free_port();
    let yaml = format!(
        "connections:\n  broken:\n    type: postgres\n    host: 127.0.0.1\n    port: {port}\n    user: postgres\n    database: test\n    connect_timeout: 1s\n  fine:\n    type: sqlite\n    filepath: \":memory:\"\n"
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    let err = mgr.connect().await.unwrap_err();
    let Error::Startup { failures } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].connection(), Some("broken"));
    assert!(err.to_string().contains("broken"), "{err}");
    // The healthy connection is open anyway.
    assert!(mgr.get("fine").unwrap().sqlite().is_ok());
    assert_eq!(
        mgr.get("broken").unwrap().health().state,
        dbmanager::HealthState::Unhealthy
    );

    // Lazy: connect() succeeds, the first use fails (nothing listens).
    let lazy = Manager::from_yaml_str(&yaml.replace(
        "connect_timeout: 1s",
        "connect_timeout: 1s\n    startup: lazy\n    acquire_timeout: 1s",
    ))
    .unwrap();
    lazy.connect().await.unwrap();
    assert!(lazy.get("broken").unwrap().health_check().await.is_err());
    mgr.close().await;
    lazy.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_with_url_special_characters_authenticates() {
    let pg = TempPostgres::start(NASTY_PASSWORD);
    let yaml = format!(
        "connections:\n  pg:\n    type: postgres\n    host: 127.0.0.1\n    port: {}\n    user: {}\n    password: ${{PG_NASTY}}\n    database: postgres\n    sslmode: disable\n",
        pg.port, pg.superuser
    );
    let config = dbmanager::Config::loader()
        .env([("PG_NASTY", NASTY_PASSWORD)])
        .load_str(&yaml)
        .unwrap();
    let mgr = Manager::new(config);
    mgr.connect().await.unwrap();
    let pool = mgr.get("pg").unwrap().postgres().unwrap();
    let user: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, "dbm");
    mgr.close().await;

    // The server really checks passwords: a wrong one is refused.
    let wrong = dbmanager::Config::loader()
        .env([("PG_NASTY", "not-the-password")])
        .load_str(&yaml)
        .unwrap();
    let mgr = Manager::new(wrong);
    let err = mgr.connect().await.unwrap_err();
    assert!(err.to_string().contains("pg"), "{err}");
    assert!(!err.to_string().contains("not-the-password"));
    mgr.close().await;
}

/// Dynamic database users, as Vault's database secrets engine issues them: each
/// credential is a new role whose password expires (`VALID UNTIL`) 4 s after it was
/// issued. A credential provider registered with `set_credential_provider` is asked ahead
/// of each expiry; under a load whose sessions are replaced every second (the pool
/// cleared), every new session
/// logs in with a credential still valid: no failed login, every query answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_provider_is_asked_ahead_of_each_credentials_expiry() {
    use sqlx::Connection as _;
    use std::sync::atomic::{AtomicU32, Ordering};
    struct Leases {
        admin: String,
        issued: AtomicU32,
    }
    impl dbmanager::CredentialProvider for Leases {
        fn credential(
            &self,
        ) -> futures_util::future::BoxFuture<
            '_,
            Result<dbmanager::Credential, dbmanager::CredentialError>,
        > {
            Box::pin(async move {
                let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
                let (user, password) = (
                    format!("lease_{n}"),
                    format!("pw-{n}-{}", fastrand::u64(..)),
                );
                let mut admin = sqlx::PgConnection::connect(&self.admin).await?;
                let until: String =
                    sqlx::query_scalar("select (now() + interval '4 seconds')::text")
                        .fetch_one(&mut admin)
                        .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "create role {user} login password '{password}' valid until '{until}'"
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await?;
                Ok(dbmanager::Credential::new(password)
                    .user(user)
                    .expires_at(std::time::SystemTime::now() + Duration::from_secs(4)))
            })
        }
    }
    let pg = blocking(|| TempPostgres::start("leases-admin")).await;
    let yaml = format!(
        "connections:\n  db:\n    type: postgres\n    host: 127.0.0.1\n    port: {}\n    user: nobody\n    \
         database: postgres\n    sslmode: disable\n    max_open_conns: 4\n    health_check_interval: 200ms\n",
        pg.port
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    let leases = std::sync::Arc::new(Leases {
        admin: pg.url_via(pg.port),
        issued: AtomicU32::new(0),
    });
    mgr.set_credential_provider("db", leases.clone()).unwrap();
    mgr.connect().await.unwrap();
    let db = mgr.postgres("db").unwrap();
    let failed_before = pg.failed_logins();
    let mut users = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    let mut cleared = started;
    while started.elapsed() < Duration::from_secs(10) {
        // New sessions every second, whatever the pool's own lifetimes.
        if cleared.elapsed() >= Duration::from_secs(1) {
            mgr.get("db").unwrap().clear();
            cleared = std::time::Instant::now();
        }
        let user: String = sqlx::query_scalar("select current_user::text")
            .fetch_one(&db)
            .await
            .expect("every query is answered");
        users.insert(user);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let issued = leases.issued.load(Ordering::Relaxed);
    println!("{issued} credentials issued in 10 s; sessions logged in as {users:?}");
    assert_eq!(
        pg.failed_logins(),
        failed_before,
        "a session used an expired credential"
    );
    // Asked ahead of each expiry (every 3 s), not per connection (about 10 sessions).
    assert!((3..=6).contains(&issued), "{issued} credentials issued");
    assert!(users.len() >= 3, "{users:?}");
    // An engine that takes no password from a provider says so.
    let lite = Manager::from_yaml_str(
        "connections:\n  lite:\n    type: sqlite\n    filepath: ':memory:'\n",
    )
    .unwrap();
    let err = lite
        .set_credential_provider("lite", leases.clone())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a credential provider serves postgres and mysql"),
        "{err}"
    );
    mgr.close().await;
}

/// A rotated password: the file rewritten (as a secret store updates its mount), the
/// role's password changed, the old sessions ended. The next sessions log in with the new
/// password, with no reload, and the server logs no failed login; a connection given the
/// password itself (the other half, what the setting is for) fails to log in from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_file_is_used_by_new_sessions_without_a_reload() {
    use sqlx::Connection as _;
    let pg = blocking(|| TempPostgres::start("rotation-admin")).await;
    let mut admin = sqlx::PgConnection::connect(&pg.url_via(pg.port))
        .await
        .unwrap();
    sqlx::query("create role app login password 'first-secret'")
        .execute(&mut admin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "first-secret\n").unwrap();
    let yaml = |secret: &str| {
        format!(
            "connections:\n  db:\n    type: postgres\n    host: 127.0.0.1\n    port: {}\n    user: app\n    \
             {secret}\n    database: postgres\n    sslmode: disable\n    max_open_conns: 4\n    \
             health_check_interval: 200ms\n    retry_delay: 100ms\n    retry_max_delay: 300ms\n    \
             acquire_timeout: 3s\n    on_unavailable: fail_fast\n",
            pg.port
        )
    };
    let from_file =
        Manager::from_yaml_str(&yaml(&format!("password_file: '{}'", file.display()))).unwrap();
    let fixed = Manager::from_yaml_str(&yaml("password: first-secret")).unwrap();
    from_file.connect().await.unwrap();
    fixed.connect().await.unwrap();
    let whoami = |mgr: &Manager| {
        let conn = mgr.get("db").unwrap();
        async move {
            conn.retry_idempotent(
                |mut c: dbmanager::PooledConnection<sqlx::Postgres>| async move {
                    sqlx::query_scalar::<_, String>("select current_user")
                        .fetch_one(&mut *c)
                        .await
                },
            )
            .await
        }
    };
    assert_eq!(whoami(&from_file).await.unwrap(), "app");
    assert_eq!(whoami(&fixed).await.unwrap(), "app");
    let failed_before = pg.failed_logins();

    std::fs::write(&file, "second-secret\n").unwrap();
    sqlx::query("alter role app password 'second-secret'")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'app'")
        .execute(&mut admin)
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(whoami(&from_file).await.unwrap(), "app");
    }
    let sessions: i64 =
        sqlx::query_scalar("select count(*) from pg_stat_activity where usename = 'app'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(sessions >= 1, "the queries ran on new sessions");
    assert_eq!(
        pg.failed_logins(),
        failed_before,
        "a new session tried the old password"
    );
    // The password given in the configuration itself is now refused.
    let refused = whoami(&fixed).await.unwrap_err();
    assert!(pg.failed_logins() > failed_before, "{refused}");
    from_file.close().await;
    fixed.close().await;
}
