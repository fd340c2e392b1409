//! [`Manager::watch`]: reload the configuration when its file changes (feature `watch`).
//!
//! The watcher watches the file's directory, not the file: editors and deploy tools
//! replace a file by renaming a new one over it, which a watch on the old inode would
//! miss. Events are coalesced for [`SETTLE`] so a write in several steps reloads once.

use super::Manager;
use crate::config::Config;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// How long the watcher waits after a change for more changes before it reloads.
const SETTLE: Duration = Duration::from_millis(200);

/// The outcome of the last reload a [`ConfigWatcher`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchOutcome {
    /// Nothing has changed since the watcher started.
    Started,
    /// The file was reloaded; the summary of what changed ([`super::ReloadReport`]'s
    /// display).
    Reloaded(String),
    /// The file was invalid (or unreadable): the errors, with their YAML paths. The
    /// running configuration stays.
    Rejected(String),
}

/// Watches a configuration file for a [`Manager`]; stops when dropped (or when the
/// manager closes).
#[derive(Debug)]
pub struct ConfigWatcher {
    outcome: watch::Receiver<(u64, WatchOutcome)>,
    _watcher: notify::RecommendedWatcher,
    _stop: tokio_util::sync::DropGuard,
}

impl ConfigWatcher {
    /// The last reload's outcome, and how many reloads were tried so far.
    pub fn last(&self) -> (u64, WatchOutcome) {
        self.outcome.borrow().clone()
    }

    /// Waits for the next reload attempt and returns its outcome.
    pub async fn next(&mut self) -> Option<WatchOutcome> {
        self.outcome.changed().await.ok()?;
        Some(self.outcome.borrow_and_update().1.clone())
    }
}

impl Manager {
    /// Loads `path` and applies it with [`reload`](Self::reload). An invalid file is
    /// rejected with the same errors as at startup ([`Error::Config`]) and the running
    /// configuration stays. What `dbmanager serve` does on SIGHUP.
    pub async fn reload_file(&self, path: impl AsRef<Path>) -> Result<super::ReloadReport> {
        let config = Config::from_yaml_file(path)?;
        self.reload(config).await
    }

    /// Reloads the configuration whenever `path` changes (feature `watch`, the `notify`
    /// crate): each change is loaded, validated and applied with
    /// [`reload`](Self::reload), and logged (what changed, or why the file was rejected).
    /// Keep the returned watcher: dropping it stops the watching.
    ///
    /// Must be called inside a Tokio runtime (it fails otherwise).
    pub fn watch(&self, path: impl AsRef<Path>) -> Result<ConfigWatcher> {
        use notify::Watcher;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| watch_error(path.as_ref(), &e))?;
        let path =
            std::fs::canonicalize(path.as_ref()).map_err(|e| watch_error(path.as_ref(), &e))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let name = path.file_name().map(|n| n.to_os_string());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                if event
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
                {
                    let _ = tx.send(());
                }
            })
            .map_err(|e| watch_error(&path, &e))?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| watch_error(&path, &e))?;
        let (outcome_tx, outcome) = watch::channel((0, WatchOutcome::Started));
        let stop = self.inner.shared.cancel.child_token();
        let ended = stop.clone();
        let weak = self.downgrade();
        runtime.spawn(async move {
            let mut attempts = 0u64;
            loop {
                tokio::select! {
                    () = ended.cancelled() => return,
                    got = rx.recv() => if got.is_none() { return },
                }
                // Let a write in several steps settle, then take every event it made.
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
                let Some(inner) = weak.upgrade() else { return };
                let mgr = Manager::from_inner(inner);
                attempts += 1;
                let outcome = match mgr.reload_file(&path).await {
                    Ok(report) => {
                        tracing::info!(file = %path.display(), %report, "configuration reloaded");
                        WatchOutcome::Reloaded(report.to_string())
                    }
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "configuration rejected; the running one stays");
                        WatchOutcome::Rejected(e.to_string())
                    }
                };
                let _ = outcome_tx.send((attempts, outcome));
            }
        });
        Ok(ConfigWatcher {
            outcome,
            _watcher: watcher,
            _stop: stop.drop_guard(),
        })
    }
}

fn watch_error(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::Config(crate::config::ConfigErrors {
        source_name: path.display().to_string(),
        errors: vec![crate::config::ConfigError::new(
            "",
            crate::config::Origin::Unknown,
            format!("cannot watch the file: {e}"),
        )],
    })
}
