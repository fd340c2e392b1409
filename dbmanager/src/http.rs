//! HTTP endpoints (feature `http`): an axum [`Router`] a service merges into its own.
//!
//! - `GET /metrics`: the registry in the OpenMetrics text format;
//! - `GET /healthz`: liveness, 200 while the process answers;
//! - `GET /readyz`: 200 when every `required` connection is healthy, else 503 with the
//!   failing names in JSON;
//! - `GET /stats`: every connection's health and pool statistics in JSON.
//!
//! No body ever holds a password, a DSN or a host: names, engines, states and numbers.

use crate::health::HealthState;
use crate::manager::Manager;
use crate::stats::{CloseReason, ConnectionStats};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
struct Endpoints {
    mgr: Manager,
    registry: Arc<Registry>,
}

/// The OpenMetrics text format's content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The four endpoints, on `mgr` and the `registry` its metrics were registered on
/// ([`Manager::register_metrics`]). Merge it into the service's router, or serve it alone.
///
/// ```no_run
/// # async fn f() -> dbmanager::Result<()> {
/// use dbmanager::prometheus_client::registry::Registry;
/// let mgr = dbmanager::Manager::from_yaml_file("config.yaml")?;
/// let mut registry = Registry::default();
/// mgr.register_metrics(&mut registry);
/// mgr.connect().await?;
/// let app = dbmanager::http::router(mgr.clone(), std::sync::Arc::new(registry));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9187").await.unwrap();
/// dbmanager::axum::serve(listener, app).await.unwrap();
/// # Ok(()) }
/// ```
pub fn router(mgr: Manager, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/stats", get(stats))
        .with_state(Endpoints { mgr, registry })
}

async fn metrics(State(e): State<Endpoints>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &e.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(e): State<Endpoints>) -> Response {
    if e.mgr.is_closed() {
        let body = json!({ "status": "closed", "failing": [] });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let failing: Vec<Value> = e
        .mgr
        .connections()
        .iter()
        .filter(|c| c.config().required)
        .filter_map(|c| {
            let h = c.health();
            (h.state != HealthState::Healthy).then(|| {
                json!({
                    "connection": c.name(),
                    "type": c.kind().to_string(),
                    "state": h.state.as_str(),
                    "error_class": h.error_class.map(|k| k.as_str()),
                })
            })
        })
        .collect();
    if failing.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        let body = json!({ "status": "unavailable", "failing": failing });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn stats(State(e): State<Endpoints>) -> Json<Value> {
    let s = e.mgr.stats();
    Json(json!({
        "total_connections": s.total_connections,
        "healthy": s.healthy,
        "unhealthy": s.unhealthy,
        "connections": s.connections.iter().map(connection).collect::<Vec<_>>(),
    }))
}

fn connection(c: &ConnectionStats) -> Value {
    let pools: Vec<Value> = c
        .views
        .iter()
        .map(|v| {
            let p = &v.pool;
            json!({
                "pool": v.view.as_str(),
                "max_open": p.max_open,
                "open": p.open,
                "idle": p.idle,
                "in_use": p.in_use,
                "pending": p.pending,
                "acquire_count": p.acquire_count,
                "wait_seconds": p.wait_duration.as_secs_f64(),
                "acquire_timeouts": p.acquire_timeouts,
                "acquire_errors": p.acquire_errors,
                "opened_total": p.opened_total,
                "closed_total": p.closed_total,
                "closed": CloseReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_owned(), json!(p.closed(*r))))
                    .collect::<serde_json::Map<_, _>>(),
                "pool_clears": p.pool_clears,
            })
        })
        .collect();
    json!({
        "connection": c.name,
        "type": c.kind.to_string(),
        "health": c.health.as_str(),
        "last_error": c.last_error,
        "pools": pools,
        "replicas": c.replicas.iter().map(|r| json!({
            "replica": r.name,
            "weight": r.weight,
            "health": r.connection.health.as_str(),
            "lag_seconds": r.lag.map(|l| l.as_secs_f64()),
            "lagging": r.lagging,
            "reads": r.selected_total,
            "open": r.connection.pool.open,
            "in_use": r.connection.pool.in_use,
        })).collect::<Vec<_>>(),
    })
}
