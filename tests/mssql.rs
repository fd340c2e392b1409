//! SQL Server at the TDS protocol level. No SQL Server can run on this machine, so these
//! tests run against Microsoft's `mssql-mock-tds` (tests/support/tds.rs): login, `SELECT 1`,
//! pool limits, a broken connection replaced, health failing when the server stops and
//! recovering when it returns, authentication failure, plain and TDS 8.0 strict TLS.
//!
//! Set `DBMANAGER_TEST_MSSQL_URL=sqlserver://user:password@host:port/database` and the
//! tests marked "server" run against that real SQL Server instead (stop and return are
//! then simulated by the fault proxy; TLS is `require`). The DSN-parsing and strict-TLS
//! tests always use the mock. docs/providers.md says what was verified where.

use crate::support;

use dbmanager::{Error, ErrorClass, EventKind, HealthState, Manager};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use support::proxy::FaultProxy;
use support::tds::{MSSQL_PASSWORD, MSSQL_USER, MockTds, Tls};
use support::{Recorder, eventually, percent};

/// A real SQL Server from `DBMANAGER_TEST_MSSQL_URL`, parsed into typed fields.
struct Real {
    host: String,
    port: u16,
    user: String,
    password: String,
    database: String,
}

fn real() -> Option<Real> {
    let url = std::env::var("DBMANAGER_TEST_MSSQL_URL").ok()?;
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .expect("DBMANAGER_TEST_MSSQL_URL: sqlserver://user:password@host:port/database");
    let (userinfo, hostpath) = rest.rsplit_once('@').expect("user:password@ in the URL");
    let (user, password) = userinfo.split_once(':').expect("user:password");
    let (hostport, database) = hostpath.split_once('/').unwrap_or((hostpath, "master"));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "1433"));
    let decode = |s: &str| {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("percent-encoding"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    };
    Some(Real {
        host: host.to_owned(),
        port: port.parse().expect("port"),
        user: decode(user),
        password: decode(password),
        database: database.split('?').next().unwrap_or("master").to_owned(),
    })
}

/// The server a "server" test talks to: the mock (plain, password-checking gate), or the
/// real SQL Server behind a fault proxy.
enum Server {
    Mock(MockTds),
    Real(Real, FaultProxy),
}

impl Server {
    async fn start() -> Server {
        match real() {
            None => Server::Mock(MockTds::start(Tls::Plain)),
            Some(r) => {
                let addr = tokio::net::lookup_host((r.host.as_str(), r.port))
                    .await
                    .expect("resolve the SQL Server host")
                    .next()
                    .expect("an address");
                let proxy = FaultProxy::start_to(addr).await;
                Server::Real(r, proxy)
            }
        }
    }

    fn port(&self) -> u16 {
        match self {
            Server::Mock(m) => m.port,
            Server::Real(_, p) => p.port(),
        }
    }

    /// YAML for connection `db` with `password` and `extra` settings.
    fn yaml(&self, password: &str, extra: &[&str]) -> String {
        let (user, database, sslmode) = match self {
            Server::Mock(_) => (MSSQL_USER.to_owned(), "master".to_owned(), "disable"),
            Server::Real(r, _) => (r.user.clone(), r.database.clone(), "require"),
        };
        let mut y = format!(
            "connections:\n  db:\n    type: mssql\n    host: 127.0.0.1\n    port: {}\n    \
             user: {user}\n    password: '{}'\n    database: {database}\n    sslmode: {sslmode}\n",
            self.port(),
            password.replace('\'', "''"),
        );
        for e in extra {
            y.push_str(&format!("    {e}\n"));
        }
        y
    }

    /// Sessions the server has open now (the mock's count; `None` for a real server,
    /// where it would need VIEW SERVER STATE).
    fn sessions(&self) -> Option<i64> {
        match self {
            Server::Mock(m) => Some(i64::try_from(m.sessions()).unwrap_or(i64::MAX)),
            Server::Real(..) => None,
        }
    }

    fn password(&self) -> String {
        match self {
            Server::Mock(_) => MSSQL_PASSWORD.to_owned(),
            Server::Real(r, _) => r.password.clone(),
        }
    }

    /// Stops the server (the mock) or cuts it off (the real one).
    async fn stop(&self) {
        match self {
            Server::Mock(m) => m.stop(),
            Server::Real(_, p) => p.down(),
        }
    }

    async fn resume(&self) {
        match self {
            Server::Mock(m) => m.resume(),
            Server::Real(_, p) => p.accept_again(),
        }
    }
}

async fn select_one(mgr: &Manager) -> dbmanager::Result<i32> {
    let conn = mgr.get("db")?;
    let mut client = conn.mssql().await?;
    let row = async { client.simple_query("SELECT 1").await?.into_row().await }
        .await
        .map_err(|e| {
            conn.report_error(&e);
            Error::Database {
                name: "db".into(),
                source: dbmanager::ProviderError::driver(e, ErrorClass::Permanent),
            }
        })?;
    Ok(row
        .and_then(|r| r.get::<i32, _>(0))
        .expect("one row with an int"))
}

fn manager(yaml: &str) -> Manager {
    Manager::from_yaml_str(yaml).expect("valid config")
}

// server
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_select_one_health_and_stats() {
    let server = Server::start().await;
    let mgr = manager(&server.yaml(&server.password(), &[]));
    mgr.connect().await.expect("connect");
    assert_eq!(select_one(&mgr).await.unwrap(), 1);
    let conn = mgr.get("db").unwrap();
    conn.health_check().await.expect("health check");
    assert_eq!(conn.health().state, HealthState::Healthy);
    let stats = conn.stats().pool;
    assert!(stats.opened_total >= 1 && stats.open >= 1, "{stats:?}");
    assert!(stats.acquire_count >= 2, "{stats:?}");
    assert!(!format!("{mgr:?}").contains(&server.password()));
    mgr.close().await;
    assert_eq!(mgr.task_count(), 0);
    assert!(matches!(select_one(&mgr).await, Err(Error::Closed { .. })));
    assert_eq!(conn.stats().pool.open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_tds8_tls_verifies_the_certificate() {
    let mock = MockTds::start(Tls::Strict);
    let cert = mock.cert.clone().unwrap();
    let yaml = |sslmode: &str, extra: &str| {
        format!(
            "connections:\n  db:\n    type: mssql\n    host: localhost\n    port: {}\n    \
             user: sa\n    password: x\n    database: master\n    sslmode: {sslmode}\n{extra}",
            mock.port
        )
    };
    let mgr = manager(&yaml(
        "strict",
        &format!("    ssl_root_cert: {}\n", cert.display()),
    ));
    mgr.connect()
        .await
        .expect("TDS 8.0 strict login with the CA given");
    assert_eq!(select_one(&mgr).await.unwrap(), 1);
    mgr.close().await;

    // Without the CA the self-signed certificate is refused, and plain text never
    // reaches a strict server.
    for (mode, extra) in [("strict", ""), ("disable", "")] {
        let mgr = manager(&yaml(mode, extra));
        let err = mgr.connect().await.expect_err(mode);
        assert!(matches!(err, Error::Startup { .. }), "{mode}: {err:?}");
        mgr.close().await;
    }
}

// server
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_never_exceeds_max_open_conns_and_times_out() {
    let server = Server::start().await;
    let n: u32 = 3;
    let mgr = manager(&server.yaml(
        &server.password(),
        &[
            &format!("max_open_conns: {n}"),
            "max_idle_conns: 3",
            "acquire_timeout: 20s",
        ],
    ));
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let server = Arc::new(server);
    let peak = Arc::new(AtomicI64::new(0));
    let server_peak = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let conn = conn.clone();
        let (peak, server_peak, stop, server) = (
            peak.clone(),
            server_peak.clone(),
            stop.clone(),
            server.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                peak.fetch_max(i64::from(conn.stats().pool.open), Ordering::Relaxed);
                if let Some(n) = server.sessions() {
                    server_peak.fetch_max(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..4 * n)
        .map(|_| {
            let mgr = mgr.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    assert_eq!(select_one(&mgr).await.unwrap(), 1);
                    let _held = mgr.get("db").unwrap().mssql().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Release);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= i64::from(n) && peak >= 2, "peak {peak}");
    if server.sessions().is_some() {
        // The server's own count agrees: never more than the cap, and the stats match it.
        let server_peak = server_peak.load(Ordering::Relaxed);
        assert!(
            server_peak <= i64::from(n) && server_peak >= 2,
            "server saw {server_peak}"
        );
        assert_eq!(server.sessions(), Some(i64::from(conn.stats().pool.open)));
    }
    let stats = conn.stats().pool;
    assert!(stats.opened_total <= u64::from(n), "{stats:?}");
    mgr.close().await;

    // One connection held: the next acquire gives up after acquire_timeout.
    let mgr = manager(&server.yaml(
        &server.password(),
        &[
            "max_open_conns: 1",
            "max_idle_conns: 1",
            "acquire_timeout: 300ms",
        ],
    ));
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    let held = conn.mssql().await.unwrap();
    let started = Instant::now();
    let err = conn.mssql().await.expect_err("pool exhausted");
    assert!(matches!(err, Error::AcquireTimeout { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(conn.stats().pool.acquire_timeouts, 1);
    drop(held);
    assert_eq!(select_one(&mgr).await.unwrap(), 1);
    mgr.close().await;
}

// server
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_is_replaced_without_a_round_trip() {
    let server = Server::start().await;
    // Between the pool and the server: cutting connections leaves the server running.
    let proxy = FaultProxy::start(server.port()).await;
    let yaml = server
        .yaml(
            &server.password(),
            &["max_open_conns: 2", "health_check_interval: 10m"],
        )
        .replace(
            &format!("port: {}", server.port()),
            &format!("port: {}", proxy.port()),
        );
    let mgr = manager(&yaml);
    mgr.connect().await.unwrap();
    assert_eq!(select_one(&mgr).await.unwrap(), 1);
    let conn = mgr.get("db").unwrap();
    proxy.cut_all();
    // The idle connection is handed out (no ping on acquire) and its query fails...
    let mut client = conn.mssql().await.unwrap();
    let err = async { client.simple_query("SELECT 1").await?.into_row().await }
        .await
        .expect_err("the socket was reset");
    assert_eq!(dbmanager::mssql::classify(&err), ErrorClass::ConnectionLost);
    assert!(client.is_broken(), "the stream did not notice the reset");
    drop(client);
    // ...and the pool does not hand it out again: the next caller gets a new one.
    assert_eq!(select_one(&mgr).await.unwrap(), 1);
    let stats = conn.stats().pool;
    assert_eq!(stats.closed_broken, 1, "{stats:?}");
    assert_eq!(stats.opened_total, 2, "{stats:?}");
    mgr.close().await;
}

// server
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_when_the_server_stops_and_recovers_when_it_returns() {
    let server = Server::start().await;
    let mgr = manager(&server.yaml(
        &server.password(),
        &[
            "health_check_interval: 200ms",
            "health_check_timeout: 1s",
            "retry_delay: 50ms",
            "retry_max_delay: 500ms",
            "acquire_timeout: 15s",
            "connect_timeout: 1s",
        ],
    ));
    let events = Recorder::start(&mgr);
    mgr.connect().await.unwrap();
    assert_eq!(select_one(&mgr).await.unwrap(), 1);
    let conn = mgr.get("db").unwrap();

    server.stop().await;
    assert!(
        eventually(Duration::from_secs(5), || conn.health().state
            == HealthState::Unhealthy)
        .await,
        "still {:?}",
        conn.health()
    );
    assert_eq!(conn.health().error_class, Some(ErrorClass::ConnectionLost));

    // A caller arriving during the outage waits (on_unavailable: wait) and is served.
    let waiting = tokio::spawn({
        let mgr = mgr.clone();
        async move { select_one(&mgr).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished());
    server.resume().await;
    assert_eq!(waiting.await.unwrap().expect("served after the return"), 1);
    assert!(
        eventually(Duration::from_secs(5), || conn.health().state
            == HealthState::Healthy)
        .await
    );
    for _ in 0..5 {
        assert_eq!(select_one(&mgr).await.unwrap(), 1);
    }
    assert!(events.count(|k| matches!(k, EventKind::PoolCleared { .. })) >= 1);
    assert!(events.count(|k| matches!(k, EventKind::Connected { .. })) >= 1);
    mgr.close().await;
}

// server
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_clearly_and_is_not_retried_in_a_tight_loop() {
    let server = Server::start().await;
    let wrong = "not-the-password";
    let mgr = manager(&server.yaml(wrong, &[]));
    let err = mgr.connect().await.expect_err("wrong password");
    let text = err.to_string();
    assert_eq!(err.class(), Some(ErrorClass::Auth), "{err:?}");
    assert!(
        text.contains("db") && text.contains("18456") || text.contains("Login failed"),
        "{text}"
    );
    assert!(!text.contains(wrong));
    mgr.close().await;

    let mgr = manager(&server.yaml(
        wrong,
        &[
            "startup: lazy",
            "retry_delay: 10ms",
            "retry_max_delay: 1s",
            "health_check_interval: 100ms",
        ],
    ));
    let events = Recorder::start(&mgr);
    mgr.connect().await.unwrap();
    let conn = mgr.get("db").unwrap();
    support::assert_auth_failure_not_retried(&conn, &events, Duration::from_secs(5), || {
        conn.mssql()
    })
    .await;
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ado_and_url_dsns_with_escaped_passwords() {
    let mock = MockTds::start(Tls::Plain);
    let ado = format!(
        "server=tcp:127.0.0.1,{};user id={MSSQL_USER};password=\"{}\";database=master;encrypt=DANGER_PLAINTEXT",
        mock.port,
        MSSQL_PASSWORD.replace('"', "\"\"")
    );
    let url = format!(
        "sqlserver://{MSSQL_USER}:{}@127.0.0.1:{}/master?encrypt=danger_plaintext",
        percent(MSSQL_PASSWORD),
        mock.port
    );
    for dsn in [ado, url] {
        let yaml = format!(
            "connections:\n  db:\n    type: mssql\n    dsn: '{}'\n",
            dsn.replace('\'', "''")
        );
        let mgr = manager(&yaml);
        mgr.connect().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(select_one(&mgr).await.unwrap(), 1);
        mgr.close().await;
    }
    // A bad DSN is refused at validation (the provider's DSN check), at its YAML path,
    // and never quotes the password.
    let yaml = "connections:\n  db:\n    type: mssql\n    dsn: 'sqlserver://sa:hunter2secret@127.0.0.1:notaport/master'\n";
    let err = Manager::from_yaml_str(yaml).expect_err("bad port");
    let text = err.to_string();
    assert!(
        text.contains("connections.db.dsn") && text.contains("port"),
        "{text}"
    );
    assert!(!text.contains("hunter2secret"), "{text}");
}
