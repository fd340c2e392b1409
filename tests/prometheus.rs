//! The dashboard and the alert rules, verified on a real Prometheus (the Debian package,
//! installed by scripts/test.sh when missing). Prometheus scrapes two targets every
//! second, both with the same configuration (the machine's PostgreSQL and MariaDB, an
//! embedded SQLite and a throwaway PostgreSQL):
//! - job `serve`: a `dbmanager serve` process, the sidecar form;
//! - job `embedded`: the router mounted in this test's own process, the library form,
//!   which is also where the test drives load and forces an acquire timeout (a separate
//!   `serve` process has no callers but its health checks).
//!
//! The test kills and restarts the throwaway PostgreSQL, then checks:
//! - the "connection down" alert fires for both jobs during the outage and resolves after;
//! - every PromQL expression of docs/grafana/dbmanager.json and
//!   docs/prometheus/alerts.yml returns data through Prometheus's HTTP API.
//!
//! With `DBMANAGER_CHART_DATA=FILE` it runs longer and writes a range query of every
//! dashboard panel over the run to FILE, which `scripts/charts.sh` renders into the PNG
//! charts of docs/observability.md.

use crate::support;

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
    /// Scrapes each `(job, target)` every second and evaluates `rules` every second.
    fn start(targets: &[(&str, SocketAddr)], rules: &str) -> Prometheus {
        let bin = which("prometheus").unwrap_or_else(|| {
            panic!(
                "the `prometheus` binary is required (Debian package `prometheus`); \
                 scripts/test.sh installs it"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n",
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
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

    /// The `data.result` of a query API call for `expr` (`path` holds the query).
    async fn result(&self, expr: &str, path: &str) -> Vec<serde_json::Value> {
        let body = self.get(path).await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("`{expr}`: not JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "`{expr}`: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", support::percent(expr));
        self.result(expr, &path).await
    }

    /// A range query's result matrix, one point per second.
    async fn range(&self, expr: &str, start: f64, end: f64) -> Vec<serde_json::Value> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1",
            support::percent(expr)
        );
        self.result(expr, &path).await
    }

    /// The jobs DbmanagerConnectionDown is firing in for `connection`.
    async fn down_firing(&self, connection: &str) -> Vec<String> {
        let Some(body) = self.get("/api/v1/alerts").await else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut jobs: Vec<String> = v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| {
                a["labels"]["alertname"] == "DbmanagerConnectionDown"
                    && a["labels"]["connection"] == connection
                    && a["state"] == "firing"
            })
            .filter_map(|a| a["labels"]["job"].as_str().map(str::to_owned))
            .collect();
        jobs.sort();
        jobs
    }
}

/// `dbmanager serve` as a child process; killed on drop.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    fn start(config: &Path) -> Serve {
        let port = support::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_dbmanager"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbmanager serve");
        assert!(
            support::wait_for_port(port, Duration::from_secs(30)),
            "dbmanager serve did not listen"
        );
        Serve {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The dashboard's panels.
fn panels() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(docs("grafana/dbmanager.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap().clone();
    assert!(panels.len() >= 10, "the dashboard's panels");
    panels
}

/// A panel target's expression with the dashboard's variables set.
fn expr_of(target: &serde_json::Value, rate_interval: &str) -> String {
    target["expr"]
        .as_str()
        .unwrap()
        .replace("$connection", ".*")
        .replace("$__rate_interval", rate_interval)
}

/// Every PromQL expression of the dashboard, with its variables set for the test.
fn dashboard_exprs() -> Vec<String> {
    panels()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| expr_of(&t, "1m"))
        .collect()
}

/// `{{label}}` of a legend format filled from a series' labels.
fn legend(format: &str, metric: &serde_json::Value) -> String {
    let mut out = format.to_owned();
    if let Some(labels) = metric.as_object() {
        for (k, v) in labels {
            out = out.replace(&format!("{{{{{k}}}}}"), v.as_str().unwrap_or_default());
        }
    }
    out
}

/// Every panel's range queries over `[start, end]`, as the chart renderer reads them:
/// `[{title, unit, series: [{name, points: [[t, v], ...]}]}]`.
async fn chart_data(prom: &Prometheus, start: f64, end: f64) -> serde_json::Value {
    let mut out = Vec::new();
    for panel in panels() {
        let mut series = Vec::new();
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            let format = target["legendFormat"].as_str().unwrap_or_default();
            for s in prom.range(&expr_of(&target, "5s"), start, end).await {
                let points: Vec<serde_json::Value> = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let t = p[0].as_f64()? - start;
                        let v: f64 = p[1].as_str()?.parse().ok()?;
                        v.is_finite().then(|| serde_json::json!([t, v]))
                    })
                    .collect();
                // An unaggregated series (the status panel's) exists once per job.
                let mut name = legend(format, &s["metric"]);
                if let Some(job) = s["metric"]["job"].as_str() {
                    name = format!("{name} ({job})");
                }
                series.push(serde_json::json!({
                    "name": name,
                    "points": points,
                }));
            }
        }
        out.push(serde_json::json!({
            "title": panel["title"],
            "unit": panel["fieldConfig"]["defaults"]["unit"],
            "series": series,
        }));
    }
    serde_json::Value::Array(out)
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

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_work_on_a_real_prometheus() {
    support::require_postgres().await;
    support::require_mariadb().await;
    // Chart mode runs longer, so the rendered charts show load, the outage and recovery.
    let charts = std::env::var_os("DBMANAGER_CHART_DATA").map(PathBuf::from);
    let (rounds, outage) = match charts {
        Some(_) => (300, Duration::from_secs(8)),
        None => (60, Duration::ZERO),
    };
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
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dbmanager.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let serve = blocking(move || Serve::start(&file)).await;

    let mgr = Manager::from_yaml_str(&yaml).unwrap();
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let embedded = listener.local_addr().unwrap();
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
    let prom = Prometheus::start(&[("serve", serve.addr), ("embedded", embedded)], &rules);
    assert!(
        until(Duration::from_secs(30), || async {
            prom.get("/-/ready")
                .await
                .is_some_and(|b| b.contains("Ready"))
        })
        .await,
        "Prometheus did not become ready"
    );
    assert!(
        until(Duration::from_secs(15), || async {
            prom.query("dbmanager_connection_up{connection=\"primary\"} == 1")
                .await
                .len()
                == 2
        })
        .await,
        "Prometheus never scraped both `dbmanager serve` and the embedded router"
    );
    let started = unix_now();

    // Load: acquires on every connection for a few seconds, and one forced timeout.
    let load = |name: &'static str| {
        let conn = mgr.get(name).unwrap();
        tokio::spawn(async move {
            for i in 0..rounds {
                match conn.kind() {
                    dbmanager::DbType::MySql => drop(conn.acquire::<sqlx::MySql>().await),
                    dbmanager::DbType::Sqlite => drop(conn.acquire::<sqlx::Sqlite>().await),
                    _ => drop(conn.acquire::<sqlx::Postgres>().await),
                }
                // A varying rate, so the charts show movement.
                tokio::time::sleep(Duration::from_millis(20 + (i % 7) * 10)).await;
            }
        })
    };
    let loads = [load("primary"), load("orders"), load("volatile")];
    let cache = mgr.get("cache").unwrap();
    // In chart mode, mid-load, so the chart's rate shows it.
    tokio::time::sleep(outage / 4).await;
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

    // An outage: the alert fires in both jobs, then resolves.
    let v = Arc::clone(&volatile);
    blocking(move || v.kill9()).await;
    let both = || async { prom.down_firing("volatile").await == ["embedded", "serve"] };
    assert!(
        until(Duration::from_secs(30), both).await,
        "DbmanagerConnectionDown did not fire for both jobs during the outage: {:?}",
        prom.down_firing("volatile").await
    );
    tokio::time::sleep(outage).await;
    let v = Arc::clone(&volatile);
    blocking(move || v.restart()).await;
    let up = || {
        mgr.get("volatile")
            .is_ok_and(|c| c.health().state == dbmanager::HealthState::Healthy)
    };
    assert!(eventually(Duration::from_secs(30), up).await);
    assert!(
        until(Duration::from_secs(30), || async {
            prom.down_firing("volatile").await.is_empty()
        })
        .await,
        "DbmanagerConnectionDown did not resolve"
    );
    tokio::time::sleep(outage).await;

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
    if let Some(path) = charts {
        let data = chart_data(&prom, started, unix_now()).await;
        std::fs::write(&path, serde_json::to_string_pretty(&data).unwrap()).unwrap();
        eprintln!("chart data written to {}", path.display());
    }
    mgr.close().await;
    server.abort();
    drop(serve);
}
