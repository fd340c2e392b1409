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
use crate::error::ProviderError;
use crate::managed::{Connector, ManagedPool, Object};
use crate::pool::PoolContext;
use crate::settings::{PoolSettings, ServerSettings, SslMode, TlsSettings};
use diesel_async::SimpleAsyncConnection;
use diesel_async::pooled_connection::PoolableConnection;
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;

#[cfg(feature = "mysql")]
pub use diesel_async::AsyncMysqlConnection;
#[cfg(feature = "postgres")]
pub use diesel_async::AsyncPgConnection;
#[cfg(feature = "sqlite")]
pub use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;

/// diesel's SQLite connection run on a blocking thread, as diesel-async offers it.
#[cfg(feature = "sqlite")]
pub type AsyncSqliteConnection = SyncConnectionWrapper<diesel::SqliteConnection>;

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
    let fail = |reason: &str| {
        ProviderError::invalid_dsn(
            format!("diesel view: {reason}"),
            dsn,
            &crate::dsn_secrets(dsn),
        )
    };
    let decode = |s: &str| crate::percent_decode(s).map_err(|e| fail(&e));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
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

/// rustls's configuration for a TLS mode (PostgreSQL).
#[cfg(feature = "postgres")]
fn rustls_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, ProviderError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::install_crypto_provider();
    let bad = |field: &'static str, e: &dyn std::fmt::Display| ProviderError::InvalidSetting {
        field,
        reason: format!("diesel view: {e}"),
    };
    let builder = rustls::ClientConfig::builder();
    let builder = match tls.mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            match &tls.root_cert {
                Some(path) => {
                    for cert in
                        CertificateDer::pem_file_iter(path).map_err(|e| bad("ssl_root_cert", &e))?
                    {
                        roots
                            .add(cert.map_err(|e| bad("ssl_root_cert", &e))?)
                            .map_err(|e| bad("ssl_root_cert", &e))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots)
        }
        // `require`, `prefer` and `allow` encrypt without checking the certificate, as
        // libpq and sqlx do.
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify::new())),
    };
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad("ssl_cert", &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("ssl_cert", &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("ssl_key", &e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| bad("ssl_cert", &e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any server certificate (`sslmode: require`), still checking the handshake's
/// signatures.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct NoVerify(std::sync::Arc<rustls::crypto::CryptoProvider>);

#[cfg(feature = "postgres")]
impl NoVerify {
    fn new() -> Self {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
        NoVerify(provider)
    }
}

#[cfg(feature = "postgres")]
impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn strict_is_mssql() -> ProviderError {
    ProviderError::InvalidSetting {
        field: "sslmode",
        reason: "`strict` (TDS 8.0) is a SQL Server mode".into(),
    }
}

// ---- PostgreSQL --------------------------------------------------------------------------

/// Opens [`AsyncPgConnection`]s.
#[cfg(feature = "postgres")]
pub struct PgConnector {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

#[cfg(feature = "postgres")]
impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: show only where it goes.
        f.debug_struct("PgConnector")
            .field("hosts", &self.config.get_hosts())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Escapes a value for PostgreSQL's `options` startup parameter.
#[cfg(feature = "postgres")]
fn pg_option(v: &str) -> String {
    v.replace('\\', "\\\\").replace(' ', "\\ ")
}

#[cfg(feature = "postgres")]
impl PgConnector {
    /// Builds the connector from the connection's settings.
    pub fn new(server: &ServerSettings, pool: &PoolSettings) -> Result<Self, ProviderError> {
        use std::str::FromStr;
        use tokio_postgres::config::SslMode as PgSsl;
        let parsed = from_url(server)?;
        let (mut config, tls) = match (&parsed, &server.dsn) {
            (None, Some(dsn)) => {
                // `key=value` form: tokio-postgres reads it (sslmode disable/prefer/require).
                let dsn = dsn.expose_secret();
                let c = tokio_postgres::Config::from_str(dsn).map_err(|e| {
                    ProviderError::invalid_dsn(
                        format!("diesel view: {e}"),
                        dsn,
                        &crate::dsn_secrets(dsn),
                    )
                })?;
                let mode = match c.get_ssl_mode() {
                    PgSsl::Disable => SslMode::Disable,
                    PgSsl::Require => SslMode::Require,
                    _ => SslMode::Prefer,
                };
                let tls = TlsSettings {
                    mode,
                    ..TlsSettings::default()
                };
                (c, tls)
            }
            _ => {
                let s = parsed.as_ref().unwrap_or(server);
                let mut c = tokio_postgres::Config::new();
                c.host(s.host.as_deref().unwrap_or("localhost"));
                c.port(s.port.unwrap_or(5432));
                if let Some(user) = &s.user {
                    c.user(user);
                }
                if let Some(p) = &s.password {
                    c.password(p.expose_secret());
                }
                if let Some(db) = &s.database {
                    c.dbname(db);
                }
                (c, s.tls.clone())
            }
        };
        let s = parsed.as_ref().unwrap_or(server);
        if let Some(name) = &s.application_name {
            config.application_name(name);
        }
        let mut options = Vec::new();
        if let Some(schema) = &s.schema {
            options.push(format!("-c search_path={}", pg_option(schema)));
        }
        if let Some(t) = s.query_timeout {
            options.push(format!("-c statement_timeout={}ms", t.as_millis()));
        }
        if !options.is_empty() {
            config.options(options.join(" "));
        }
        config.connect_timeout(pool.connect_timeout);
        let (mode, connector) = match tls.mode {
            SslMode::Disable => (PgSsl::Disable, None),
            SslMode::Allow | SslMode::Prefer => (PgSsl::Prefer, Some(rustls_config(&tls)?)),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                (PgSsl::Require, Some(rustls_config(&tls)?))
            }
            SslMode::Strict => return Err(strict_is_mssql()),
        };
        config.ssl_mode(mode);
        Ok(PgConnector {
            config,
            tls: connector.map(tokio_postgres_rustls::MakeRustlsConnect::new),
        })
    }
}

/// The class of a `tokio-postgres` error met while connecting.
#[cfg(feature = "postgres")]
fn pg_connect_class(e: &tokio_postgres::Error) -> ErrorClass {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            ErrorClass::Auth
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => ErrorClass::Config,
        Some(c) if *c == SqlState::TOO_MANY_CONNECTIONS => ErrorClass::Transient,
        Some(_) => ErrorClass::ConnectionLost,
        None => ErrorClass::ConnectionLost,
    }
}

#[cfg(feature = "postgres")]
impl Connector for PgConnector {
    type Conn = AsyncPgConnection;

    async fn connect(&self) -> Result<AsyncPgConnection, ProviderError> {
        let fail = |e: tokio_postgres::Error| {
            let class = pg_connect_class(&e);
            ProviderError::driver_connect(e, class)
        };
        let built = match &self.tls {
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await.map_err(fail)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await
            }
            None => {
                let (client, conn) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(fail)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await
            }
        };
        built.map_err(|e| ProviderError::driver_connect(e, ErrorClass::ConnectionLost))
    }

    async fn ping<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> Result<(), ProviderError> {
        ping(conn).await
    }

    fn is_broken(&self, conn: &mut AsyncPgConnection) -> bool {
        PoolableConnection::is_broken(conn)
    }
}

async fn ping<C: SimpleAsyncConnection + Send>(conn: &mut C) -> Result<(), ProviderError> {
    conn.batch_execute("SELECT 1").await.map_err(|e| {
        let class = match classify(&e) {
            ErrorClass::Permanent => ErrorClass::ConnectionLost,
            other => other,
        };
        ProviderError::driver(e, class)
    })
}

/// Builds the PostgreSQL diesel pool (see [`ManagedPool::open`]).
#[cfg(feature = "postgres")]
pub async fn open_postgres(
    server: &ServerSettings,
    settings: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<ManagedPool<PgConnector>, ProviderError> {
    let connector = PgConnector::new(server, &settings)?;
    ManagedPool::open(connector, settings, eager, ctx).await
}

// ---- MySQL / MariaDB ---------------------------------------------------------------------

/// Opens [`AsyncMysqlConnection`]s.
#[cfg(feature = "mysql")]
pub struct MysqlConnector {
    opts: mysql_async::Opts,
    query_timeout: Option<std::time::Duration>,
}

#[cfg(feature = "mysql")]
impl std::fmt::Debug for MysqlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConnector")
            .field("host", &self.opts.ip_or_hostname())
            .field("port", &self.opts.tcp_port())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "mysql")]
impl MysqlConnector {
    /// Builds the connector from the connection's settings. `prefer` and `allow` mean plain
    /// text here: `mysql_async` has no opportunistic TLS.
    pub fn new(server: &ServerSettings, _pool: &PoolSettings) -> Result<Self, ProviderError> {
        let parsed = from_url(server)?;
        if parsed.is_none() && server.dsn.is_some() {
            return Err(ProviderError::InvalidDsn {
                reason: "diesel view: a MySQL DSN must be a URL (mysql://user:password@host/db)"
                    .into(),
            });
        }
        let s = parsed.as_ref().unwrap_or(server);
        let mut b = mysql_async::OptsBuilder::default()
            .ip_or_hostname(s.host.clone().unwrap_or_else(|| "localhost".into()))
            .tcp_port(s.port.unwrap_or(3306))
            .user(s.user.clone())
            .pass(s.password.as_ref().map(|p| p.expose_secret().to_owned()))
            .db_name(s.database.clone())
            .prefer_socket(false);
        let ssl = match s.tls.mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => None,
            SslMode::Require => Some(
                mysql_async::SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let mut o = mysql_async::SslOpts::default()
                    .with_danger_skip_domain_validation(s.tls.mode == SslMode::VerifyCa);
                if let Some(ca) = &s.tls.root_cert {
                    o = o.with_root_certs(vec![ca.clone().into()]);
                }
                if let (Some(cert), Some(key)) = (&s.tls.client_cert, &s.tls.client_key) {
                    o = o.with_client_identity(Some(mysql_async::ClientIdentity::new(
                        cert.clone().into(),
                        key.clone().into(),
                    )));
                }
                Some(o)
            }
            SslMode::Strict => return Err(strict_is_mssql()),
        };
        if ssl.is_some() {
            crate::install_crypto_provider();
        }
        b = b.ssl_opts(ssl);
        Ok(MysqlConnector {
            opts: b.into(),
            query_timeout: s.query_timeout,
        })
    }
}

/// The class of a `mysql_async` error met while connecting.
#[cfg(feature = "mysql")]
fn mysql_connect_class(e: &mysql_async::Error) -> ErrorClass {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            1045 | 1044 | 1698 => ErrorClass::Auth,
            1049 => ErrorClass::Config,
            1040 | 1203 => ErrorClass::Transient,
            _ => ErrorClass::ConnectionLost,
        },
        mysql_async::Error::Url(_) => ErrorClass::Config,
        _ => ErrorClass::ConnectionLost,
    }
}

#[cfg(feature = "mysql")]
impl Connector for MysqlConnector {
    type Conn = AsyncMysqlConnection;

    async fn connect(&self) -> Result<AsyncMysqlConnection, ProviderError> {
        let conn = mysql_async::Conn::new(self.opts.clone())
            .await
            .map_err(|e| {
                let class = mysql_connect_class(&e);
                ProviderError::driver_connect(e, class)
            })?;
        let mut conn = AsyncMysqlConnection::try_from(conn)
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::ConnectionLost))?;
        if let Some(t) = self.query_timeout {
            // As the sqlx pool does: MariaDB's `max_statement_time`, else MySQL's
            // `max_execution_time` (SELECT only).
            let set = format!("SET SESSION max_statement_time = {}", t.as_secs_f64());
            if conn.batch_execute(&set).await.is_err() {
                let set = format!("SET SESSION max_execution_time = {}", t.as_millis());
                conn.batch_execute(&set)
                    .await
                    .map_err(|e| ProviderError::driver_connect(e, ErrorClass::Config))?;
            }
        }
        Ok(conn)
    }

    async fn ping<'c>(&'c self, conn: &'c mut AsyncMysqlConnection) -> Result<(), ProviderError> {
        ping(conn).await
    }

    fn is_broken(&self, conn: &mut AsyncMysqlConnection) -> bool {
        PoolableConnection::is_broken(conn)
    }
}

/// Builds the MySQL diesel pool (see [`ManagedPool::open`]).
#[cfg(feature = "mysql")]
pub async fn open_mysql(
    server: &ServerSettings,
    settings: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<ManagedPool<MysqlConnector>, ProviderError> {
    let connector = MysqlConnector::new(server, &settings)?;
    ManagedPool::open(connector, settings, eager, ctx).await
}

// ---- SQLite ------------------------------------------------------------------------------

/// Opens [`AsyncSqliteConnection`]s on the same file (or `:memory:` database) as the sqlx
/// pool, with the same PRAGMAs.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub struct SqliteConnector {
    url: String,
    pragmas: String,
}

#[cfg(feature = "sqlite")]
impl SqliteConnector {
    /// Builds the connector. `settings.target` must be the one the sqlx pool was opened
    /// with (for `:memory:`, the same unique name).
    pub fn new(settings: &crate::settings::SqliteSettings) -> Result<Self, ProviderError> {
        use crate::settings::SqliteTarget;
        let (url, journal) = match &settings.target {
            SqliteTarget::File(path) => {
                let path = path.to_str().ok_or_else(|| ProviderError::InvalidSetting {
                    field: "filepath",
                    reason: "diesel view: the path is not UTF-8".into(),
                })?;
                (path.to_owned(), "wal")
            }
            SqliteTarget::Memory { name } => (format!("file:/{name}?vfs=memdb"), "memory"),
        };
        let word = |v: &str, field: &'static str| {
            if v.chars().all(|c| c.is_ascii_alphabetic()) {
                Ok(v.to_owned())
            } else {
                Err(ProviderError::InvalidSetting {
                    field,
                    reason: format!("`{v}` is not a mode name"),
                })
            }
        };
        let journal = word(
            settings.journal_mode.as_deref().unwrap_or(journal),
            "journal_mode",
        )?;
        let sync = word(
            settings.synchronous.as_deref().unwrap_or("normal"),
            "synchronous",
        )?;
        let pragmas = format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = {}; PRAGMA journal_mode = {journal}; PRAGMA synchronous = {sync};",
            settings.busy_timeout.as_millis(),
            if settings.foreign_keys { "ON" } else { "OFF" },
        );
        Ok(SqliteConnector { url, pragmas })
    }
}

#[cfg(feature = "sqlite")]
impl Connector for SqliteConnector {
    type Conn = AsyncSqliteConnection;

    async fn connect(&self) -> Result<AsyncSqliteConnection, ProviderError> {
        use diesel_async::AsyncConnection;
        let mut conn = AsyncSqliteConnection::establish(&self.url)
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::Config))?;
        conn.batch_execute(&self.pragmas)
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::Config))?;
        Ok(conn)
    }

    async fn ping<'c>(&'c self, conn: &'c mut AsyncSqliteConnection) -> Result<(), ProviderError> {
        ping(conn).await
    }

    fn is_broken(&self, conn: &mut AsyncSqliteConnection) -> bool {
        PoolableConnection::is_broken(conn)
    }
}

/// Builds the SQLite diesel pool (see [`ManagedPool::open`]).
#[cfg(feature = "sqlite")]
pub async fn open_sqlite(
    sqlite: &crate::settings::SqliteSettings,
    settings: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<ManagedPool<SqliteConnector>, ProviderError> {
    let connector = SqliteConnector::new(sqlite)?;
    ManagedPool::open(connector, settings, eager, ctx).await
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
