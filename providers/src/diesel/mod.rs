//! The diesel-async view (feature `diesel`): pools of [`diesel_async`] connections built
//! from the same settings as the connection's sqlx pool.
//!
//! diesel-async cannot use sqlx's sockets, so these pools open their own: a
//! [`ManagedPool`] per engine, with a [`Connector`] that opens
//! - PostgreSQL: [`AsyncPgConnection`] over `tokio-postgres`, TLS through rustls;
//! - MySQL/MariaDB: [`AsyncMysqlConnection`] over `mysql_async`, TLS through rustls;
//! - SQLite: [`SyncConnectionWrapper<SqliteConnection>`] (diesel's SQLite on a blocking
//!   thread), with the same PRAGMAs as the sqlx pool, sharing its `:memory:` database.
//!
//! The caller sizes the pool: dbmanager gives it the `diesel_conns` part of the
//! connection's `max_open_conns`, the sqlx pool the rest.
//!
//! DSNs in URL form are taken apart here (`user`, `password`, `host`, `port`, database,
//! and the TLS parameters `sslmode`/`ssl-mode`, `sslrootcert`/`ssl-ca`, `sslcert`/`ssl-cert`,
//! `sslkey`/`ssl-key`); PostgreSQL's `key=value` DSNs go to `tokio-postgres` as they are.
//! Other URL parameters are sqlx's and are not applied to this view.

// With SQLite alone the DSN and TLS helpers have no user.
#![cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]

use crate::classify::ErrorClass;
use crate::context::PoolContext;
use crate::error::ProviderError;
use crate::managed::{Connector, ManagedPool, Object};
use crate::settings::{PoolSettings, ServerSettings, SslMode, TlsSettings};
use diesel_async::SimpleAsyncConnection;
use diesel_async::pooled_connection::PoolableConnection;
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "mysql")]
pub use diesel_async::AsyncMysqlConnection;
#[cfg(feature = "postgres")]
pub use diesel_async::AsyncPgConnection;
#[cfg(feature = "sqlite")]
pub use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
#[cfg(feature = "mysql")]
pub use mysql::{MysqlConnector, open_mysql};
#[cfg(feature = "postgres")]
pub use pg::{PgConnector, open_postgres};
#[cfg(feature = "sqlite")]
pub use sqlite::{AsyncSqliteConnection, SqliteConnector, open_sqlite};

/// A pooled diesel-async connection of driver connection `C` (for example
/// `Pooled<AsyncPgConnection>` behind the `Object`). Use it as `&mut conn` with diesel-async's
/// `RunQueryDsl`; dropping it returns it to the pool.
pub type PooledConnection<K> = Object<K>;

/// What a diesel error means for the pool and for a retry.
pub fn classify(e: &diesel::result::Error) -> ErrorClass {
    use diesel::result::{DatabaseErrorKind as K, Error as E};
    match e {
        E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, _) => {
            ErrorClass::ConnectionLost
        }
        E::DatabaseError(K::SerializationFailure, _) => ErrorClass::Transient,
        E::DatabaseError(K::ReadOnlyTransaction, _) => ErrorClass::ReadOnly,
        _ => ErrorClass::Permanent,
    }
}

/// A URL-form DSN taken apart, or `None` for another form.
fn from_url(server: &ServerSettings) -> Result<Option<ServerSettings>, ProviderError> {
    let Some(dsn) = &server.dsn else {
        return Ok(None);
    };
    let dsn = dsn.expose_secret();
    let Some((_, rest)) = dsn.split_once("://") else {
        return Ok(None);
    };
    let fail = |reason: &str| ProviderError::invalid_dsn(format!("diesel view: {reason}"), dsn);
    let decode = |s: &str| crate::percent_decode(s).map_err(|e| fail(&e));
    // The userinfo first: its password may hold `?` or `@` (see `split_userinfo`).
    let (userinfo, rest) = crate::redact::split_userinfo(rest);
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut out = ServerSettings::default();
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        if !user.is_empty() {
            out.user = Some(decode(user)?);
        }
        if !password.is_empty() {
            out.password = Some(SecretString::from(decode(password)?));
        }
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| fail("the port is not a number"))?;
            (h, Some(port))
        }
        _ => (hostport, None),
    };
    if !host.is_empty() {
        out.host = Some(decode(host.trim_start_matches('[').trim_end_matches(']'))?);
    }
    out.port = port;
    if !path.is_empty() {
        out.database = Some(decode(path)?);
    }
    let mut tls = TlsSettings::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v)?;
        match k {
            "sslmode" | "ssl-mode" => {
                tls.mode =
                    SslMode::parse(&v).ok_or_else(|| fail(&format!("unknown sslmode `{v}`")))?;
            }
            "sslrootcert" | "ssl-ca" => tls.root_cert = Some(PathBuf::from(v)),
            "sslcert" | "ssl-cert" => tls.client_cert = Some(PathBuf::from(v)),
            "sslkey" | "ssl-key" => tls.client_key = Some(PathBuf::from(v)),
            "application_name" if server.application_name.is_none() => {
                out.application_name = Some(v);
            }
            _ => {}
        }
    }
    out.tls = tls;
    out.application_name = out
        .application_name
        .or_else(|| server.application_name.clone());
    out.schema = server.schema.clone();
    out.query_timeout = server.query_timeout;
    Ok(Some(out))
}

/// `SELECT 1` on a diesel-async connection; any failure there means the connection is gone.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
async fn ping<C: SimpleAsyncConnection + Send>(conn: &mut C) -> Result<(), ProviderError> {
    conn.batch_execute("SELECT 1").await.map_err(|e| {
        let class = match classify(&e) {
            ErrorClass::Permanent => ErrorClass::ConnectionLost,
            other => other,
        };
        ProviderError::driver(e, class)
    })
}

impl crate::classify::Classify for diesel::result::Error {
    fn class(&self) -> ErrorClass {
        classify(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_dsn_is_taken_apart_and_decoded() {
        let s = ServerSettings::from_dsn(
            "postgres://app:p%40ss%3Aw%2Frd@db.example:6432/orders?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&statement-cache-capacity=10",
        );
        let p = from_url(&s).unwrap().unwrap();
        assert_eq!(p.user.as_deref(), Some("app"));
        assert_eq!(
            p.password.as_ref().map(|p| p.expose_secret().to_owned()),
            Some("p@ss:w/rd".to_owned())
        );
        assert_eq!(p.host.as_deref(), Some("db.example"));
        assert_eq!(p.port, Some(6432));
        assert_eq!(p.database.as_deref(), Some("orders"));
        assert_eq!(p.tls.mode, SslMode::VerifyFull);
        assert_eq!(p.tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn a_bad_dsn_error_does_not_quote_the_password() {
        let s = ServerSettings::from_dsn("mysql://app:s3cr3t-pw@db:notaport/x");
        let e = from_url(&s).unwrap_err().to_string();
        assert!(e.contains("port"), "{e}");
        assert!(!e.contains("s3cr3t-pw"), "{e}");
    }
}
