//! `dbmanager serve`: connects every connection of a file and serves the HTTP endpoints
//! (`/metrics`, `/healthz`, `/readyz`, `/stats`) until SIGTERM or SIGINT, then closes the
//! manager and exits 0. Reloads the file on SIGHUP and when it changes, logging what
//! changed (an invalid file is logged and the running configuration stays).

use dbmanager::Manager;
use dbmanager::prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// How `serve` logs.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Installs the log subscriber: `info` and up, to stderr.
fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs `serve`: exit 0 after a clean shutdown, 1 if the listener fails, 2 if the file is
/// invalid. Connections that fail to start are logged and keep retrying in the background
/// (`/readyz` says which).
pub(crate) fn serve(path: &Path, listen: SocketAddr, format: LogFormat) -> ExitCode {
    init_logging(format);
    let config = match dbmanager::Config::from_yaml_file(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let runtime = match crate::runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let mgr = Manager::new(config);
        let mut registry = Registry::default();
        mgr.register_metrics(&mut registry);
        if let Err(e) = mgr.connect().await {
            // Already redacted; the supervisors keep trying the failed ones.
            tracing::warn!(error = %e, "not every connection started");
        }
        // The signal handlers first: a SIGHUP or SIGTERM that arrives once the port
        // answers (a supervisor's reload right after start) must not meet the default
        // action, which ends the process.
        let hangups = hangup_signals();
        let shutdown = shutdown_signal();
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%listen, error = %e, "cannot listen");
                mgr.close().await;
                return ExitCode::from(1);
            }
        };
        let _watcher = match mgr.watch(path) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "not watching the file; SIGHUP still reloads it");
                None
            }
        };
        tokio::spawn(reload_on_hangup(mgr.clone(), path.to_path_buf(), hangups));
        let bound = listener.local_addr().map_or(listen, |a| a);
        tracing::info!(listen = %bound, "serving /metrics /healthz /readyz /stats");
        let app = dbmanager::http::router(mgr.clone(), Arc::new(registry));
        let served = dbmanager::axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        tracing::info!("shutting down: closing every connection");
        let drained = mgr.close().await;
        tracing::info!(drained, "closed");
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "the HTTP server failed");
                ExitCode::from(1)
            }
        }
    })
}

/// SIGHUP, registered now (on Unix; `None` elsewhere or if it cannot be).
#[cfg(unix)]
fn hangup_signals() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signals() -> Option<()> {
    None
}

/// Reloads the file on every SIGHUP, until the manager closes.
#[cfg(unix)]
async fn reload_on_hangup(
    mgr: Manager,
    path: std::path::PathBuf,
    hangups: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() && !mgr.is_closed() {
        match mgr.reload_file(&path).await {
            Ok(report) => {
                tracing::info!(file = %path.display(), %report, "SIGHUP: configuration reloaded");
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "SIGHUP: configuration rejected; the running one stays");
            }
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(mgr: Manager, path: std::path::PathBuf, hangups: Option<()>) {
    let _ = (mgr, path, hangups);
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM; on Unix the handlers are registered when this
/// is called, not when it is first polled.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(terminate) => {}
            () = wait(interrupt) => {}
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
