//! Tracing spans for what the manager does itself: connect, acquire, health check,
//! reconnect attempt, pool clear, swap, drain, `retry` and `begin`.
//!
//! They are `tracing` spans with OpenTelemetry's database attribute names, so a service
//! that installs `tracing-opentelemetry` exports them as OpenTelemetry client spans (the
//! `otel.name` field names the span). The library itself depends on `tracing` only. Only
//! connections with `enable_tracing: true` make spans. No span carries a credential or a
//! DSN: the address and port are read from the typed fields, or from a URL's host part.

use crate::config::{ConnectionConfig, Endpoint};
use std::sync::Arc;
use tracing::Span;
use tracing::field::Empty;

/// What every span of one connection says about it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    enabled: bool,
    name: Arc<str>,
    system: &'static str,
    namespace: Option<String>,
    address: Option<String>,
    port: Option<u16>,
}

/// Host and port of a URL DSN, without its userinfo, path or query; `None` for another
/// form (an ADO.NET string, say).
fn url_host(dsn: &str) -> Option<(String, Option<u16>)> {
    let (_, rest) = dsn.split_once("://")?;
    let (_, after) = dbmanager_providers::redact::split_userinfo(rest);
    let hostport = after.split(['/', '?', '#']).next()?;
    // Several hosts (a MongoDB seed list): the first.
    let first = hostport.split(',').next().filter(|h| !h.is_empty())?;
    // `[v6]:port` keeps its brackets; `host:port`; or a host alone.
    let split = if first.starts_with('[') {
        first.rsplit_once("]:").map(|(h, p)| (format!("{h}]"), p))
    } else {
        first.rsplit_once(':').map(|(h, p)| (h.to_owned(), p))
    };
    Some(match split {
        Some((host, port)) => (host, port.parse().ok()),
        None => (first.to_owned(), None),
    })
}

impl Target {
    pub(crate) fn of(c: &ConnectionConfig) -> Target {
        let (namespace, address, port) = match &c.endpoint {
            Endpoint::Server(s) => {
                let from_dsn = s
                    .dsn
                    .as_ref()
                    .and_then(|d| url_host(secrecy::ExposeSecret::expose_secret(d)));
                match from_dsn {
                    Some((host, port)) => (s.database.clone(), Some(host), port),
                    None => (s.database.clone(), s.host.clone(), s.port),
                }
            }
            _ => (None, None, None),
        };
        Target {
            enabled: c.enable_tracing,
            name: Arc::from(c.name.as_str()),
            system: c.kind.db_system(),
            namespace,
            address,
            port,
        }
    }

    /// A span for `op` (`dbmanager.acquire`, ...), or a disabled one when the connection's
    /// `enable_tracing` is off. Fields recorded later: `dbmanager.wait_seconds` (acquire),
    /// `dbmanager.ok` (health check, reconnect attempt), `dbmanager.reason` (pool clear),
    /// `dbmanager.attempts` (retry), `error.type` (an error's class).
    pub(crate) fn span(&self, op: &'static str) -> Span {
        if !self.enabled {
            return Span::none();
        }
        tracing::info_span!(
            target: "dbmanager",
            "dbmanager",
            otel.name = op,
            otel.kind = "client",
            db.system.name = self.system,
            db.namespace = self.namespace.as_deref(),
            server.address = self.address.as_deref(),
            server.port = self.port,
            dbmanager.connection = &*self.name,
            dbmanager.wait_seconds = Empty,
            dbmanager.ok = Empty,
            dbmanager.reason = Empty,
            dbmanager.attempts = Empty,
            error.type = Empty,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn a_urls_host_is_read_without_its_userinfo() {
        assert_eq!(
            url_host("postgres://u:p@ss@db.example:6432/app?sslmode=require"),
            Some(("db.example".into(), Some(6432)))
        );
        assert_eq!(
            url_host("mongodb://u:pw@a:27017,b:27017/?replicaSet=rs"),
            Some(("a".into(), Some(27017)))
        );
        assert_eq!(url_host("mysql://h/db"), Some(("h".into(), None)));
        assert_eq!(
            url_host("postgres://[::1]:5432/db"),
            Some(("[::1]".into(), Some(5432)))
        );
        assert_eq!(url_host("server=tcp:h,1433;password=x"), None);
    }
}
