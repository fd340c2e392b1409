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
    /// How long `connect()` took to open it (strict connections; lazy ones connect on
    /// their first round trip).
    connect: Option<Duration>,
    /// One round trip on an open connection.
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
    // What the engine applies: a setting its driver has no use for (MongoDB's idle cap and
    // lifetime) is left out, as the configuration's warnings say.
    let rules = c.rules();
    let all = [
        ("max_open_conns", "open<=", p.max_open.to_string()),
        ("max_idle_conns", "idle<=", p.max_idle.to_string()),
        ("min_idle_conns", "min=", p.min_idle.to_string()),
        ("conn_max_lifetime", "life=", d(p.max_lifetime)),
        (
            "conn_max_lifetime_jitter",
            "jitter=",
            d(Some(p.max_lifetime_jitter)),
        ),
        ("conn_max_idle_time", "idle_time=", d(p.max_idle_time)),
        ("acquire_timeout", "acquire=", d(Some(p.acquire_timeout))),
        ("connect_timeout", "connect=", d(Some(p.connect_timeout))),
    ];
    let applied: Vec<&(&str, &str, String)> = all
        .iter()
        .filter(|(field, _, _)| rules.unsupported(field).is_none())
        .collect();
    let text = applied
        .iter()
        .filter(|(field, _, _)| *field != "connect_timeout")
        .map(|(_, short, v)| format!("{short}{v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut json = serde_json::Map::new();
    for (field, _, v) in &applied {
        let value = v
            .parse::<u64>()
            .map_or_else(|_| serde_json::json!(v), |n| serde_json::json!(n));
        json.insert((*field).to_owned(), value);
    }
    json.insert("startup".to_owned(), serde_json::json!(c.startup.as_str()));
    (text, serde_json::Value::Object(json))
}

/// A configuration that does not load, as `check --format json` prints it.
fn invalid_json(errors: &dbmanager::config::ConfigErrors) -> serde_json::Value {
    serde_json::json!({
        "valid": false,
        "source": errors.source_name,
        "errors": errors.errors.iter().map(|e| serde_json::json!({
            "path": e.path,
            "origin": e.origin.to_string(),
            "message": e.message,
        })).collect::<Vec<_>>(),
    })
}

fn check(path: &PathBuf, format: Format) -> ExitCode {
    let config = match (Config::from_yaml_file(path), format) {
        (Ok(c), _) => c,
        (Err(errors), Format::Json) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&invalid_json(&errors)).unwrap_or_default()
            );
            return ExitCode::from(2);
        }
        (Err(errors), Format::Table) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
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
        // When each connection opened, from its `Opened` event's time.
        let mut events = mgr.subscribe();
        let started = std::time::SystemTime::now();
        // A connection that failed to open is reported with its connect error.
        let mut connect_errors = std::collections::HashMap::new();
        let connected = mgr.connect().await;
        let mut connect_times = std::collections::HashMap::new();
        while let Ok(event) = events.try_recv() {
            if let (dbmanager::EventKind::Opened { lazy: false }, None) =
                (&event.kind, &event.replica)
                && let Ok(took) = event.at.duration_since(started)
            {
                connect_times.insert(event.connection.to_string(), took);
            }
        }
        if let Err(dbmanager::Error::Startup { failures }) = connected {
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
            let failed_to_open = connect_errors.contains_key(&name);
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
                connect: connect_times.get(&name).copied(),
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
                    // Its connection did not open, so neither did the replica.
                    Err(_) if failed_to_open => (
                        HealthState::Unhealthy,
                        None,
                        Some(format!(
                            "not checked: connection `{name}` failed to open (above)"
                        )),
                    ),
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
                    connect: None,
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
                        "connect_ms": r.connect.map(|l| l.as_secs_f64() * 1000.0),
                        "round_trip_ms": r.latency.map(|l| l.as_secs_f64() * 1000.0),
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
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".into(),
            |l| format!("{:.2}ms", l.as_secs_f64() * 1000.0),
        )
    };
    let header = ["NAME", "TYPE", "STATUS", "CONNECT", "ROUND TRIP", "POOL"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.clone(),
                r.status.to_string(),
                ms(r.connect),
                ms(r.latency),
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
    let line = |cols: [&str; 6]| {
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
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
        if let Some(e) = &r.error {
            println!("  error: {e}");
        }
    }
}
