//! Tracing spans, exported through tracing-opentelemetry to the OpenTelemetry SDK's
//! in-memory exporter: one client span per operation the manager runs itself, with the
//! database semantic-convention attributes, none for a connection with
//! `enable_tracing: false`, and never a credential.

use crate::support;

use dbmanager::Manager;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

const CANARY: &str = "Kq$%@:/?#'\" ñ€Zt";

/// Runs `f` with every span exported to memory; returns them.
fn spans_of(f: impl std::future::Future<Output = ()>) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    support::block_on_with(subscriber, f);
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[test]
fn each_operation_is_a_client_span_with_database_attributes() {
    let yaml = format!(
        "connections:\n  db:\n    type: postgres\n    host: 127.0.0.1\n    port: 5432\n    user: postgres\n    password: '{}'\n    database: test\n    enable_tracing: true\n    retry_delay: 10ms\n  quiet:\n    type: sqlite\n    filepath: ':memory:'\n",
        CANARY.replace('\'', "''")
    );
    let spans = spans_of(async {
        support::require_postgres().await;
        let mgr = Manager::from_yaml_str(&yaml).unwrap();
        mgr.connect().await.unwrap();
        let db = mgr.get("db").unwrap();
        drop(db.acquire::<sqlx::Postgres>().await.unwrap());
        db.health_check().await.unwrap();
        let tx = db.begin::<sqlx::Postgres>().await.unwrap();
        tx.rollback().await.unwrap();
        db.retry(
            |mut c: dbmanager::PooledConnection<sqlx::Postgres>| async move {
                sqlx::query("select 1").execute(&mut *c).await.map(drop)
            },
        )
        .await
        .unwrap();
        db.clear();
        db.reconnect().await.unwrap();
        let quiet = mgr.get("quiet").unwrap();
        drop(quiet.acquire::<sqlx::Sqlite>().await.unwrap());
        quiet.health_check().await.unwrap();
        mgr.close().await;
    });
    let named =
        |name: &str| -> Vec<&SpanData> { spans.iter().filter(|s| s.name == name).collect() };
    for name in [
        "dbmanager.connect",
        "dbmanager.acquire",
        "dbmanager.health_check",
        "dbmanager.begin",
        "dbmanager.retry",
        "dbmanager.pool_clear",
        "dbmanager.swap",
        "dbmanager.drain",
    ] {
        let found = named(name);
        assert!(
            !found.is_empty(),
            "no `{name}` span among {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        for s in found {
            assert_eq!(s.span_kind, SpanKind::Client, "{name}");
            assert_eq!(
                attr(s, "db.system.name").as_deref(),
                Some("postgresql"),
                "{name}"
            );
            assert_eq!(attr(s, "db.namespace").as_deref(), Some("test"), "{name}");
            assert_eq!(
                attr(s, "server.address").as_deref(),
                Some("127.0.0.1"),
                "{name}"
            );
            assert_eq!(attr(s, "server.port").as_deref(), Some("5432"), "{name}");
            assert_eq!(
                attr(s, "dbmanager.connection").as_deref(),
                Some("db"),
                "{name}"
            );
        }
    }
    let acquire = named("dbmanager.acquire")[0];
    let waited: f64 = attr(acquire, "dbmanager.wait_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..5.0).contains(&waited), "{waited}");
    assert_eq!(
        attr(named("dbmanager.health_check")[0], "dbmanager.ok").as_deref(),
        Some("true")
    );
    assert_eq!(
        attr(named("dbmanager.retry")[0], "dbmanager.attempts").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(named("dbmanager.pool_clear")[0], "dbmanager.reason").as_deref(),
        Some("requested")
    );
    // `enable_tracing` is off for `quiet` (the default): no span of it.
    assert!(
        spans
            .iter()
            .all(|s| attr(s, "dbmanager.connection").as_deref() != Some("quiet")),
        "a span of a connection without enable_tracing"
    );
    // No credential in any span.
    for s in &spans {
        for kv in &s.attributes {
            let v = kv.value.to_string();
            for fragment in [CANARY, "Kq$%", "ñ€Zt", "postgres://"] {
                assert!(!v.contains(fragment), "`{fragment}` in {}={v}", kv.key);
            }
        }
    }
}

#[test]
fn a_reconnect_attempt_and_a_failed_acquire_carry_the_error_class() {
    let spans = spans_of(async {
        // Nothing listens on this port: every attempt is refused.
        let port = support::free_port();
        let yaml = format!(
            "connections:\n  down:\n    type: postgres\n    dsn: 'postgres://u:{}@127.0.0.1:{port}/app'\n    startup: lazy\n    enable_tracing: true\n    on_unavailable: fail_fast\n    health_check_timeout: 150ms\n    retry_delay: 50ms\n    retry_max_delay: 100ms\n",
            support::percent(CANARY)
        );
        let mgr = Manager::from_yaml_str(&yaml).unwrap();
        mgr.connect().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let conn = mgr.get("down").unwrap();
        assert!(conn.acquire::<sqlx::Postgres>().await.is_err());
        mgr.close().await;
    });
    // (The last attempt may have been cut short by close(): it has no outcome.)
    let attempt = spans
        .iter()
        .find(|s| s.name == "dbmanager.reconnect_attempt" && attr(s, "dbmanager.ok").is_some())
        .expect("a finished reconnect attempt span");
    assert_eq!(attr(attempt, "dbmanager.ok").as_deref(), Some("false"));
    let class = attr(attempt, "error.type").expect("the error's class");
    assert!(
        ["unreachable", "connection_lost", "timeout"].contains(&class.as_str()),
        "{class}"
    );
    assert_eq!(
        attr(attempt, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attr(attempt, "db.namespace"),
        None,
        "the DSN's database is not read"
    );
    let acquire = spans
        .iter()
        .find(|s| s.name == "dbmanager.acquire")
        .unwrap();
    assert!(attr(acquire, "error.type").is_some());
    for s in &spans {
        for kv in &s.attributes {
            let v = kv.value.to_string();
            assert!(!v.contains("Kq$%") && !v.contains("u:"), "{}={v}", kv.key);
        }
    }
}
