//! Changing the set of connections while the manager runs: [`Manager::add`],
//! [`Manager::remove`] and [`Manager::reload`]. Each holds the manager's change lock, so
//! they apply one at a time; `get` never waits for them (it reads the index they swap).

use super::{Index, Manager};
use crate::config::{Config, ConnectionConfig};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::events::EventKind;
use std::sync::Arc;

/// What a [`Manager::reload`] did, connection by connection.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Connections that are new: created and opened.
    pub added: Vec<String>,
    /// Connections no longer in the configuration: drained and closed.
    pub removed: Vec<String>,
    /// Connections whose settings changed, with the fields that did. Settings no session
    /// depends on applied in place; a change of what sessions are opened with renewed
    /// them within the budget; a change of the pool's limits (or another engine's pool)
    /// built a new pool, and the old one drained (docs/resilience.md).
    pub changed: Vec<(String, Vec<&'static str>)>,
    /// Connections left exactly as they were (no reconnect, no metric reset).
    pub unchanged: Vec<String>,
    /// Connections that could not take their new settings (or, when added, could not
    /// open): the old settings and pool stay (an added one is left out). The reload
    /// applied everything else.
    pub failed: Vec<Error>,
}

impl ReloadReport {
    /// Whether the reload changed nothing.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.failed.is_empty()
    }
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let changed: Vec<String> = self
            .changed
            .iter()
            .map(|(n, fields)| format!("{n} ({})", fields.join(", ")))
            .collect();
        write!(
            f,
            "added: [{}]; removed: [{}]; changed: [{}]; unchanged: {}",
            self.added.join(", "),
            self.removed.join(", "),
            changed.join(", "),
            self.unchanged.len()
        )?;
        for e in &self.failed {
            write!(f, "; failed: {e}")?;
        }
        Ok(())
    }
}

/// The YAML fields whose values differ between two settings of one connection; each
/// field's row in the field table says how to compare it.
pub(crate) fn changed_fields(a: &ConnectionConfig, b: &ConnectionConfig) -> Vec<&'static str> {
    let mut out = crate::config::changed(a, b);
    // Only the provider (a service's own, registered anew) differs.
    if out.is_empty() && a != b {
        out.push("provider");
    }
    out
}

impl Manager {
    /// Adds a connection while the manager runs, validated as the file's were (take its
    /// settings from [`Config`] or [`ConnectionConfig::from_yaml`]). Opens it as
    /// [`connect`](Self::connect) would (`startup: strict` connects now and fails here if
    /// it cannot; `lazy` comes up in the background) and starts its supervisor; then
    /// `get(name)` finds it. Fails with [`Error::AlreadyExists`] if the name is taken.
    pub async fn add(&self, config: ConnectionConfig) -> Result<Connection> {
        let _one_change = self.inner.changing.lock().await;
        self.add_locked(config).await
    }

    async fn add_locked(&self, config: ConnectionConfig) -> Result<Connection> {
        let name = config.name.clone();
        if self.is_closed() {
            return Err(Error::Closed { name });
        }
        if self.inner.index.load().by_name.contains_key(&name) {
            return Err(Error::AlreadyExists { name });
        }
        let conn = Connection::new(config, &self.inner.shared);
        if let Err(e) = conn.open().await {
            conn.close().await;
            return Err(e);
        }
        let slot = self.inner.slots.push(conn.clone());
        let next = self.inner.index.load().with(&name, slot);
        self.inner.index.store(Arc::new(next));
        self.start_monitor();
        Ok(conn)
    }

    /// Removes a connection while the manager runs: `get(name)` fails at once with
    /// [`Error::UnknownConnection`]; work in flight on it finishes (up to its
    /// `close_timeout`), then its pool closes, its supervisor ends and its metrics series
    /// go. Handles taken before fail with [`Error::Closed`]. Returns whether everything
    /// drained in time.
    pub async fn remove(&self, name: &str) -> Result<bool> {
        let _one_change = self.inner.changing.lock().await;
        self.remove_locked(name).await
    }

    async fn remove_locked(&self, name: &str) -> Result<bool> {
        if self.is_closed() {
            return Err(Error::Closed { name: name.into() });
        }
        let index = self.inner.index.load_full();
        let Some(&slot) = index.by_name.get(name) else {
            return Err(Error::UnknownConnection {
                name: name.to_owned(),
                known: index.order.clone(),
            });
        };
        self.inner.index.store(Arc::new(index.without(name)));
        if self.default_name().as_deref() == Some(name) {
            self.inner.default.store(None);
        }
        let conn = &self.inner.slots[slot];
        let drained = conn.close().await;
        conn.shed();
        Ok(drained)
    }

    /// Applies a new configuration while the manager runs: connections it adds are
    /// created and opened, connections it drops are drained and closed, connections whose
    /// settings changed take them in place (a new pool, the old one drained: handles keep
    /// working), and the others are not touched (no reconnect, no metric reset).
    ///
    /// The configuration was validated when it was loaded, with the same rules as at
    /// startup: load it with [`Config::from_yaml_file`] and an invalid file never reaches
    /// the manager. A connection that cannot take its change (its new server refuses a
    /// strict connect) keeps running as it was and is listed in
    /// [`ReloadReport::failed`]. `monitor_interval` is read at startup only.
    pub async fn reload(&self, config: Config) -> Result<ReloadReport> {
        let _one_change = self.inner.changing.lock().await;
        if self.is_closed() {
            return Err(Error::Closed { name: "*".into() });
        }
        let mut report = ReloadReport::default();
        let order: Vec<String> = config.connections.iter().map(|c| c.name.clone()).collect();
        for name in self.names() {
            if !order.contains(&name) {
                self.remove_locked(&name).await?;
                report.removed.push(name);
            }
        }
        for w in &config.warnings {
            tracing::warn!(path = %w.path, "{}", w.message);
        }
        for new in config.connections {
            let name = new.name.clone();
            match self.connection(&name).ok().cloned() {
                None => match self.add_locked(new).await {
                    Ok(_) => report.added.push(name),
                    Err(e) => report.failed.push(e),
                },
                Some(conn) => {
                    let current = conn.config();
                    if *current == new {
                        report.unchanged.push(name);
                        continue;
                    }
                    let fields = changed_fields(&current, &new);
                    match conn.reconfigure(new).await {
                        Ok(()) => {
                            conn.emit_reconfigured(fields.clone());
                            report.changed.push((name, fields));
                        }
                        Err(e) => report.failed.push(e),
                    }
                }
            }
        }
        // The file's order, for `names()` and everything listed in it.
        let index = self.inner.index.load_full();
        let next = Index {
            order: order
                .into_iter()
                .filter(|n| index.by_name.contains_key(n))
                .collect(),
            by_name: index.by_name.clone(),
        };
        self.inner.index.store(Arc::new(next));
        let default = config
            .default_connection
            .filter(|n| self.inner.index.load().by_name.contains_key(n));
        self.inner.default.store(default.map(Arc::new));
        Ok(report)
    }
}

impl Connection {
    pub(crate) fn emit_removed(&self) {
        self.emit(EventKind::Removed);
    }

    fn emit_reconfigured(&self, changed: Vec<&'static str>) {
        self.emit(EventKind::Reconfigured { changed });
    }
}
