//! The HTTP endpoints (feature `http`), served on a free port and read over real TCP:
//! `/healthz`, `/readyz` (503 naming the failing required connection, 200 while only an
//! optional one is down), `/metrics` (OpenMetrics text) and `/stats`, with a canary
//! password in the configuration that no body may show.

use crate::support;

use dbmanager::Manager;
use dbmanager::prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use support::eventually;
use support::proxy::FaultProxy;

const CANARY: &str = "Kq$%@:/?#'\" ñ€Zt";

/// `GET path`: (status, content type, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    support::http_get(addr, path).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_report_readiness_metrics_and_stats_without_secrets() {
    support::require_postgres().await;
    let required = FaultProxy::start(5432).await;
    let optional = FaultProxy::start(5432).await;
    let dsn = |port: u16| {
        format!(
            "postgres://postgres:{}@127.0.0.1:{port}/test",
            support::percent(CANARY)
        )
    };
    let yaml = format!(
        "health_check_interval: 200ms\nhealth_check_timeout: 500ms\nretry_delay: 100ms\nretry_max_delay: 500ms\nconnections:\n  db:\n    type: postgres\n    dsn: '{}'\n  side:\n    type: postgres\n    dsn: '{}'\n    required: false\n  cache:\n    type: sqlite\n    filepath: ':memory:'\n",
        dsn(required.port()),
        dsn(optional.port())
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();
    let app = dbmanager::http::router(mgr.clone(), Arc::new(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { dbmanager::axum::serve(listener, app).await });
    let mut seen = String::new();

    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    seen.push_str(&body);

    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        body.contains(r#"dbmanager_connection_up{connection="db",type="postgres"} 1"#),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"));
    seen.push_str(&body);

    let (status, content_type, body) = get(addr, "/stats").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["total_connections"], 3);
    let db = stats["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connection"] == "db")
        .unwrap();
    assert_eq!(db["health"], "healthy");
    assert_eq!(db["pools"][0]["pool"], "main");
    seen.push_str(&body);

    // The optional connection goes down: still ready.
    optional.down();
    let side_down = || {
        mgr.get("side")
            .is_ok_and(|c| c.health().state == dbmanager::HealthState::Unhealthy)
    };
    assert!(eventually(Duration::from_secs(10), side_down).await);
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "an optional connection is down: {body}");

    // The required one goes down: 503, naming it and only it.
    required.down();
    let db_down = || {
        mgr.get("db")
            .is_ok_and(|c| c.health().state == dbmanager::HealthState::Unhealthy)
    };
    assert!(eventually(Duration::from_secs(10), db_down).await);
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let failing: Vec<&str> = ready["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["connection"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["db"]);
    seen.push_str(&body);
    let (_, _, body) = get(addr, "/metrics").await;
    assert!(
        body.contains(r#"dbmanager_connection_up{connection="db",type="postgres"} 0"#),
        "{body}"
    );
    seen.push_str(&body);
    let (_, _, body) = get(addr, "/stats").await;
    seen.push_str(&body);

    // Back up: ready again.
    required.accept_again();
    let db_up = || {
        mgr.get("db")
            .is_ok_and(|c| c.health().state == dbmanager::HealthState::Healthy)
    };
    assert!(eventually(Duration::from_secs(10), db_up).await);
    let (status, _, _) = get(addr, "/readyz").await;
    assert_eq!(status, 200);

    for fragment in [CANARY, "Kq$%", "ñ€Zt", "%C3%B1", "127.0.0.1", "postgres://"] {
        assert!(!seen.contains(fragment), "`{fragment}` in an HTTP body");
    }
    mgr.close().await;
    let (status, _, _) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "a closed manager is not ready");
    server.abort();
}
