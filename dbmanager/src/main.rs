//! The `dbmanager` command: validate a configuration file, or check every connection in it.
//!
//! ```text
//! dbmanager validate --config FILE                    exit 0 valid, 2 invalid
//! dbmanager check --config FILE [--format table|json] exit 0 all healthy, 1 not, 2 invalid
//! dbmanager serve --config FILE --listen ADDR [--log-format text|json]
//!                                                     /metrics /healthz /readyz /stats until
//!                                                     SIGTERM/SIGINT, then close and exit 0
//! ```
#![forbid(unsafe_code)]

mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use dbmanager::config::{Config, ConnectionConfig};
use dbmanager::{HealthState, Manager};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "dbmanager",
    version,
    about = "Validate, check and serve dbmanager configurations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file: exit 0 if valid, 2 with every error if not.
    Validate {
        /// The YAML file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Connect to every connection and run a real round trip on each.
    Check {
        /// The YAML file.
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Connect every connection and serve /metrics, /healthz, /readyz and /stats until
    /// SIGTERM or SIGINT; then close every connection and exit 0.
    Serve {
        /// The YAML file.
        #[arg(long, short)]
        config: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:9187")]
        listen: std::net::SocketAddr,
        /// Log format (to stderr).
        #[arg(long, value_enum, default_value_t = serve::LogFormat::Text)]
        log_format: serve::LogFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Check { config, format } => check(&config, format),
        Command::Serve {
            config,
            listen,
            log_format,
        } => serve::serve(&config, listen, log_format),
    }
}

/// Builds the command's runtime, or says why it could not (exit 1).
fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}

fn load(path: &PathBuf) -> Result<Config, ExitCode> {
    Config::from_yaml_file(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
}

fn validate(path: &PathBuf) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    let names: Vec<String> = config
        .connections
        .iter()
        .map(|c| format!("{} ({})", c.name, c.kind))
        .collect();
    println!(
        "{}: valid, {} connection(s): {}",
        path.display(),
        names.len(),
        names.join(", ")
    );
    ExitCode::SUCCESS
}

struct Row {
    name: String,
    kind: String,
    status: HealthState,
    latency: Option<Duration>,
    error: Option<String>,
    pool: String,
    settings: serde_json::Value,
}

fn settings(c: &ConnectionConfig) -> (String, serde_json::Value) {
    let p = &c.pool;
    let d = |d: Option<Duration>| {
        d.map_or_else(
            || "none".to_owned(),
            |d| humantime::format_duration(d).to_string(),
        )
    };
    let text = format!(
        "open<={} idle<={} min={} life={} idle_time={} acquire={}",
        p.max_open,
        p.max_idle,
        p.min_idle,
        d(p.max_lifetime),
        d(p.max_idle_time),
        d(Some(p.acquire_timeout))
    );
    let json = serde_json::json!({
        "max_open_conns": p.max_open,
        "max_idle_conns": p.max_idle,
        "min_idle_conns": p.min_idle,
        "conn_max_lifetime": d(p.max_lifetime),
        "conn_max_idle_time": d(p.max_idle_time),
        "acquire_timeout": d(Some(p.acquire_timeout)),
        "connect_timeout": d(Some(p.connect_timeout)),
        "startup": format!("{:?}", c.startup).to_lowercase(),
    });
    (text, json)
}

fn check(path: &PathBuf, format: Format) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    let runtime = match runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let rows = runtime.block_on(async {
        let mgr = Manager::new(config);
        // A connection that failed to open is reported with its connect error.
        let mut connect_errors = std::collections::HashMap::new();
        if let Err(dbmanager::Error::Startup { failures }) = mgr.connect().await {
            for f in failures {
                if let Some(name) = f.connection() {
                    connect_errors.insert(name.to_owned(), f.to_string());
                }
            }
        }
        let results = mgr.health_check().await;
        let mut rows = Vec::new();
        for (name, result) in results {
            let Ok(conn) = mgr.get(&name) else { continue };
            let (pool, settings) = settings(&conn.config());
            // A driver's message may quote what it was given: scrub every error printed
            // of the connection's secrets (every spelling of its password and DSN).
            let secrets = conn.config().endpoint.secrets();
            let (status, latency, error) = match result {
                Ok(l) => (HealthState::Healthy, Some(l), None),
                Err(e) => (
                    HealthState::Unhealthy,
                    None,
                    Some(
                        secrets.scrub(
                            connect_errors
                                .remove(&name)
                                .unwrap_or_else(|| e.to_string()),
                        ),
                    ),
                ),
            };
            let replicas = conn.replicas();
            rows.push(Row {
                name: name.clone(),
                kind: conn.kind().to_string(),
                status,
                latency,
                error,
                pool,
                settings,
            });
            // Each read replica, under its connection.
            for replica in replicas {
                let rname = format!("{name}/{}", replica.replica_name().unwrap_or("?"));
                let (pool, settings) = crate::settings(&replica.config());
                let secrets = replica.config().endpoint.secrets();
                let (status, latency, error) = match replica.health_check().await {
                    Ok(l) => (HealthState::Healthy, Some(l), None),
                    Err(e) => (
                        HealthState::Unhealthy,
                        None,
                        Some(secrets.scrub(e.to_string())),
                    ),
                };
                rows.push(Row {
                    name: rname,
                    kind: replica.kind().to_string(),
                    status,
                    latency,
                    error,
                    pool,
                    settings,
                });
            }
        }
        mgr.close().await;
        rows
    });
    match format {
        Format::Table => print_table(&rows),
        Format::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": r.name,
                        "type": r.kind,
                        "status": r.status.as_str(),
                        "latency_ms": r.latency.map(|l| l.as_secs_f64() * 1000.0),
                        "error": r.error,
                        "pool": r.settings,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into())
            );
        }
    }
    if rows.iter().all(|r| r.status == HealthState::Healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_table(rows: &[Row]) {
    let header = ["NAME", "TYPE", "STATUS", "LATENCY", "POOL"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.clone(),
                r.status.to_string(),
                r.latency.map_or_else(
                    || "-".into(),
                    |l| format!("{:.2}ms", l.as_secs_f64() * 1000.0),
                ),
                r.pool.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cols: [&str; 5]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&format!("{c:<w$}"));
        }
        println!("{}", s.trim_end());
    };
    line(header);
    for (row, r) in cells.iter().zip(rows) {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
        if let Some(e) = &r.error {
            println!("  error: {e}");
        }
    }
}
