//! OTLP export (feature `otlp`): the manager's spans reach an OTLP/HTTP receiver (this
//! test's, on a free port) as protobuf, with the service name and the span names, and a
//! canary password in the connection's file never travels with them.

use crate::support;

use dbmanager::Manager;
use dbmanager::axum;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

const CANARY: &str = "Kq$%@:/?#'\" ñ€Zt";

#[test]
fn spans_reach_an_otlp_receiver_without_the_password() {
    // The receiver: POST /v1/traces bodies, kept raw (protobuf strings are plain bytes).
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body.to_vec());
                ""
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await });

    let provider =
        dbmanager::otlp::tracer_provider(&format!("http://{addr}/v1/traces"), "otlp-test").unwrap();
    let subscriber = tracing_subscriber::registry().with(dbmanager::otlp::layer(&provider));
    // The machine's PostgreSQL trusts every password, so the canary logs in.
    let yaml = format!(
        "connections:\n  db:\n    type: postgres\n    host: 127.0.0.1\n    user: postgres\n    password: '{}'\n    database: test\n    enable_tracing: true\n",
        CANARY.replace('\'', "''")
    );
    support::block_on_with(subscriber, async {
        support::require_postgres().await;
        let mgr = Manager::from_yaml_str(&yaml).unwrap();
        mgr.connect().await.unwrap();
        let db = mgr.get("db").unwrap();
        drop(db.acquire::<sqlx::Postgres>().await.unwrap());
        db.health_check().await.unwrap();
        mgr.close().await;
    });
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();

    let bodies = received.lock().unwrap();
    assert!(!bodies.is_empty(), "the receiver got no export");
    let all: Vec<u8> = bodies.concat();
    let has = |s: &str| all.windows(s.len()).any(|w| w == s.as_bytes());
    for expected in [
        "otlp-test",
        "dbmanager.connect",
        "dbmanager.acquire",
        "dbmanager.health_check",
        "db.system.name",
        "postgresql",
        "dbmanager.connection",
    ] {
        assert!(has(expected), "`{expected}` not in the exported spans");
    }
    for fragment in [CANARY, "Kq$%", "ñ€Zt"] {
        assert!(!has(fragment), "`{fragment}` was exported");
    }
}
