//! The dashboard and the alert rules, verified on a real Prometheus (the Debian package,
//! installed by scripts/test.sh when missing). Prometheus scrapes this test's `/metrics`
//! every second. The test drives load on the machine's PostgreSQL and MariaDB and an
//! embedded SQLite, forces an acquire timeout, and kills and restarts a throwaway
//! PostgreSQL. It then checks:
//! - the "connection down" alert fires during the outage and resolves after it;
//! - every PromQL expression of docs/grafana/dbmanager.json and
//!   docs/prometheus/alerts.yml returns data through Prometheus's HTTP API.

mod support;

use dbmanager::Manager;
use dbmanager::prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::{blocking, eventually};

fn docs(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(path)
}

/// A Prometheus on a free port; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates `rules` every second.
    fn start(target: SocketAddr, rules: &str) -> Prometheus {
        let bin = which("prometheus").unwrap_or_else(|| {
            panic!(
                "the `prometheus` binary is required (Debian package `prometheus`); \
                 scripts/test.sh installs it"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n  - job_name: dbmanager\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = support::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        }
    }

    /// `GET path`, the body (`None` while Prometheus does not answer).
    async fn get(&self, path: &str) -> Option<String> {
        let (_, _, body) = support::http_get(self.addr, path).await.ok()?;
        Some(body)
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let body = self
            .get(&format!("/api/v1/query?query={}", support::percent(expr)))
            .await
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("`{expr}`: not JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "`{expr}`: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Whether DbmanagerConnectionDown is firing for `connection`.
    async fn down_firing(&self, connection: &str) -> bool {
        let Some(body) = self.get("/api/v1/alerts").await else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["alerts"].as_array().is_some_and(|alerts| {
            alerts.iter().any(|a| {
                a["labels"]["alertname"] == "DbmanagerConnectionDown"
                    && a["labels"]["connection"] == connection
                    && a["state"] == "firing"
            })
        })
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Polls an async condition every 200 ms until it holds or `limit` passes.
async fn until<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Every PromQL expression of the dashboard, with its variables set for the test.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(docs("grafana/dbmanager.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "the dashboard's panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$connection", ".*")
                .replace("$__rate_interval", "1m")
        })
        .collect()
}

/// Every alert expression, without its threshold (so it returns data when not firing).
fn alert_exprs(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let mut expr = rest.trim().to_owned();
        if expr == ">" {
            expr.clear();
            while let Some(next) = lines.peek() {
                let is_key = next.trim_start().split_once(':').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                if is_key {
                    break;
                }
                expr.push(' ');
                expr.push_str(next.trim());
                lines.next();
            }
        }
        let expr = expr.trim();
        let cut = [" == ", " >= ", " > "]
            .iter()
            .filter_map(|op| expr.rfind(op))
            .max()
            .unwrap_or(expr.len());
        out.push(expr[..cut].trim().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_work_on_a_real_prometheus() {
    support::require_postgres().await;
    support::require_mariadb().await;
    let volatile = Arc::new(blocking(|| support::TempPostgres::start("volatile-pw")).await);
    let yaml = format!(
        "health_check_interval: 500ms\nhealth_check_timeout: 1s\nretry_delay: 200ms\nretry_max_delay: 1s\nconnect_timeout: 2s\n\
         connections:\n  primary:\n    type: postgres\n    dsn: '{}'\n  orders:\n    type: mariadb\n    dsn: '{}'\n  \
         cache:\n    type: sqlite\n    filepath: ':memory:'\n    max_open_conns: 1\n    acquire_timeout: 200ms\n  \
         volatile:\n    type: postgres\n    dsn: '{}'\n",
        support::PG_URL,
        support::MYSQL_URL,
        volatile.url_via(volatile.port)
    );
    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let app = dbmanager::http::router(mgr.clone(), Arc::new(registry));
    let server = tokio::spawn(async move { dbmanager::axum::serve(listener, app).await });

    // The rules as shipped, with every `for:` at 0s so the test need not wait minutes.
    let shipped = std::fs::read_to_string(docs("prometheus/alerts.yml")).unwrap();
    let rules: String = shipped
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let prom = Prometheus::start(target, &rules);
    assert!(
        until(Duration::from_secs(30), || async {
            prom.get("/-/ready")
                .await
                .is_some_and(|b| b.contains("Ready"))
        })
        .await,
        "Prometheus did not become ready"
    );

    // Load: acquires on every connection for a few seconds, and one forced timeout.
    let load = |name: &'static str| {
        let conn = mgr.get(name).unwrap();
        tokio::spawn(async move {
            for _ in 0..60 {
                match conn.kind() {
                    dbmanager::DbType::MySql => drop(conn.acquire::<sqlx::MySql>().await),
                    dbmanager::DbType::Sqlite => drop(conn.acquire::<sqlx::Sqlite>().await),
                    _ => drop(conn.acquire::<sqlx::Postgres>().await),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let loads = [load("primary"), load("orders"), load("volatile")];
    let cache = mgr.get("cache").unwrap();
    let held = cache.acquire::<sqlx::Sqlite>().await.unwrap();
    assert!(
        cache.acquire::<sqlx::Sqlite>().await.is_err(),
        "the forced timeout"
    );
    drop(held);
    for l in loads {
        l.await.unwrap();
    }
    assert!(
        until(Duration::from_secs(15), || async {
            !prom
                .query("dbmanager_acquire_timeouts_total{connection=\"cache\"} > 0")
                .await
                .is_empty()
        })
        .await,
        "Prometheus never saw the acquire timeout"
    );

    // An outage: the alert fires, then resolves.
    let v = Arc::clone(&volatile);
    blocking(move || v.kill9()).await;
    assert!(
        until(Duration::from_secs(30), || prom.down_firing("volatile")).await,
        "DbmanagerConnectionDown did not fire during the outage"
    );
    let v = Arc::clone(&volatile);
    blocking(move || v.restart()).await;
    let up = || {
        mgr.get("volatile")
            .is_ok_and(|c| c.health().state == dbmanager::HealthState::Healthy)
    };
    assert!(eventually(Duration::from_secs(30), up).await);
    assert!(
        until(Duration::from_secs(30), || async {
            !prom.down_firing("volatile").await
        })
        .await,
        "DbmanagerConnectionDown did not resolve"
    );

    // Every expression of the dashboard and of the alert rules returns data.
    let mut exprs = dashboard_exprs();
    let alerts = alert_exprs(&shipped);
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    exprs.extend(alerts);
    let mut empty = Vec::new();
    for expr in &exprs {
        if prom.query(expr).await.is_empty() {
            empty.push(expr.clone());
        }
    }
    assert!(empty.is_empty(), "no data for:\n{}", empty.join("\n"));
    mgr.close().await;
    server.abort();
}
