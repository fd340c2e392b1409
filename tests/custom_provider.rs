//! A provider of the service's own (`examples/line_device`): the manager pools it within
//! `max_open_conns`, supervises it (kill and restart of the device recovers by itself, a
//! waiting caller is served), reports its health and stats, and redacts its password.

use crate::line_device;

use dbmanager::config::Config;
use dbmanager::{Error, ErrorClass, HealthState, Manager};
use line_device::{Device, LineConnector, LineProvider};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const PASSWORD: &str = "pw with space $ @:/?#";

fn yaml(port: u16, password: &str) -> String {
    format!(
        "connections:\n  router:\n    type: line\n    host: 127.0.0.1\n    port: {port}\n    user: admin\n    password: '{password}'\n    max_open_conns: 3\n    health_check_interval: 200ms\n    health_check_timeout: 1s\n    retry_delay: 50ms\n    retry_max_delay: 200ms\n    acquire_timeout: 10s\n    options:\n      site: lab\n"
    )
}

fn manager(port: u16, password: &str) -> Manager {
    let config = Config::loader()
        .provider(LineProvider)
        .load_str(&yaml(port, password))
        .expect("valid config");
    Manager::new(config)
}

async fn echo(mgr: &Manager, text: String) -> Result<String, String> {
    let conn = mgr.get("router").map_err(|e| e.to_string())?;
    let mut session = conn
        .managed::<LineConnector>()
        .await
        .map_err(|e| e.to_string())?;
    match session.call(&format!("ECHO {text}")).await {
        Ok(a) => Ok(a),
        Err(e) => {
            conn.report_error(&e);
            Err(e.to_string())
        }
    }
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn an_unregistered_type_is_an_error_naming_the_path() {
    let errs = Config::from_yaml_str(&yaml(7000, "x")).unwrap_err();
    assert!(errs.has_path("connections.router.type"), "{errs}");
    assert!(errs.to_string().contains("unknown type `line`"), "{errs}");
    // Once registered, its own rules apply: it reads no `schema`.
    let errs = Config::loader()
        .provider(LineProvider)
        .load_str(&format!("{}    schema: s\n", yaml(7000, "x")))
        .unwrap_err();
    assert!(errs.has_path("connections.router.schema"), "{errs}");
    let config = Config::loader()
        .provider(LineProvider)
        .load_str(&yaml(7000, "x"))
        .unwrap();
    assert_eq!(config.connections[0].options["site"], "lab");
    assert_eq!(config.connections[0].kind.as_str(), "line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_within_the_cap_and_recovers_after_the_device_is_killed_and_restarted() {
    let mut device = Device::start("admin", PASSWORD).await.unwrap();
    let mgr = manager(device.port, PASSWORD);
    let mut events = mgr.subscribe();
    mgr.connect().await.expect("connect");
    let conn = mgr.get("router").unwrap();
    assert_eq!(conn.health().state, HealthState::Healthy);

    // 12 concurrent callers, 3 sessions.
    let answers =
        futures_util::future::join_all((0..12).map(|i| echo(&mgr, format!("n{i}")))).await;
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.as_deref(), Ok(format!("n{i}").as_str()));
    }
    let peak = device.peak.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&peak),
        "device saw {peak} sessions at once"
    );
    assert!(conn.stats().pool.open <= 3);

    // Kill: the supervisor's probe notices within an interval plus a timeout.
    device.kill().await;
    wait_for("unhealthy after kill", Duration::from_secs(3), || {
        conn.health().state == HealthState::Unhealthy
    })
    .await;
    let check = mgr.health_check().await;
    assert!(check[0].1.is_err(), "{check:?}");

    // A caller arriving during the outage waits (on_unavailable: wait) and is served.
    let waiter = {
        let mgr = mgr.clone();
        tokio::spawn(async move { echo(&mgr, "waited".into()).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiter.is_finished(),
        "the caller should wait out the outage"
    );
    device.restart().await.unwrap();
    let served = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("waiter served within 5 s of the restart")
        .unwrap();
    assert_eq!(served.as_deref(), Ok("waited"));
    wait_for("healthy after restart", Duration::from_secs(3), || {
        conn.health().state == HealthState::Healthy
    })
    .await;
    for i in 0..5 {
        assert_eq!(
            echo(&mgr, format!("after{i}")).await.as_deref(),
            Ok(format!("after{i}").as_str())
        );
    }
    let stats = conn.stats().pool;
    assert!(stats.opened_total >= 2, "{stats:?}");
    assert!(stats.closed_broken + stats.closed_cleared >= 1, "{stats:?}");

    let mut names = Vec::new();
    while let Ok(e) = events.try_recv() {
        names.push(e.kind.name());
    }
    assert!(names.contains(&"reconnect_attempt"), "{names:?}");
    assert!(names.contains(&"connected"), "{names:?}");

    // Close ends every task and every session.
    mgr.close().await;
    assert_eq!(mgr.task_count(), 0);
    wait_for("device sessions closed", Duration::from_secs(3), || {
        device.sessions() == 0
    })
    .await;
    assert!(matches!(echo(&mgr, "x".into()).await, Err(e) if e.contains("closed")));
    device.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_auth_error_that_never_quotes_it() {
    let mut device = Device::start("admin", PASSWORD).await.unwrap();
    let wrong = "wr0ng pw $@:/?#";
    let mgr = manager(device.port, wrong);
    let err = mgr.connect().await.unwrap_err();
    assert!(matches!(err, Error::Startup { .. }), "{err}");
    assert_eq!(err.class(), Some(ErrorClass::Auth), "{err}");
    let text = format!("{err} {err:?} {mgr:?}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    let logins = device.logins.load(Ordering::SeqCst);
    assert!(logins >= 1);
    mgr.close().await;
    device.kill().await;
}
