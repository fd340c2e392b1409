//! The diesel view's PostgreSQL connector.

use super::*;

/// rustls's configuration for a TLS mode (PostgreSQL).
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
#[derive(Debug)]
struct NoVerify(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl NoVerify {
    fn new() -> Self {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
        NoVerify(provider)
    }
}

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

/// Opens [`AsyncPgConnection`]s.
pub struct PgConnector {
    config: tokio_postgres::Config,
    /// `password_file`: read for every new connection.
    password_file: Option<std::path::PathBuf>,
    /// `pgbouncer: true`: no statement cache.
    pgbouncer: bool,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

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
fn pg_option(v: &str) -> String {
    v.replace('\\', "\\\\").replace(' ', "\\ ")
}

impl PgConnector {
    /// Builds the connector from the connection's settings.
    pub fn new(server: &ServerSettings, pool: &PoolSettings) -> Result<Self, ProviderError> {
        use std::str::FromStr;
        use tokio_postgres::config::SslMode as PgSsl;
        // Every host of a multi-host connection (`hosts`, or a multi-host DSN, read the
        // same way as the sqlx pool reads them), for tokio-postgres's own multi-host
        // connect. The DSN's other parts are read from its first host's form.
        let servers = crate::postgres::hosts_of(server)?;
        let first = server.dsn.as_ref().map(|d| {
            let mut first = server.clone();
            first.dsn = crate::postgres::split_hosts(d.expose_secret())
                .into_iter()
                .next()
                .map(secrecy::SecretString::from);
            first
        });
        let parsed = from_url(first.as_ref().unwrap_or(server))?;
        let (mut config, tls) = match (&parsed, &server.dsn) {
            (None, Some(dsn)) => {
                // `key=value` form: tokio-postgres reads it (sslmode disable/prefer/require).
                let dsn = dsn.expose_secret();
                let c = tokio_postgres::Config::from_str(dsn)
                    .map_err(|e| ProviderError::invalid_dsn(format!("diesel view: {e}"), dsn))?;
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
                if servers.options.len() > 1 || !server.hosts.is_empty() {
                    for o in &servers.options {
                        c.host(o.get_host());
                        c.port(o.get_port());
                    }
                } else {
                    c.host(s.host.as_deref().unwrap_or("localhost"));
                    c.port(s.port.unwrap_or(5432));
                }
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
        // tokio-postgres checks `transaction_read_only` where the sqlx pool asks
        // `pg_is_in_recovery()`; `prefer-standby` has no counterpart there and takes any.
        {
            use crate::settings::TargetSessionAttrs as Want;
            use tokio_postgres::config::{LoadBalanceHosts as Order, TargetSessionAttrs as Attrs};
            config.target_session_attrs(match servers.target {
                Want::ReadWrite | Want::Primary => Attrs::ReadWrite,
                Want::ReadOnly | Want::Standby => Attrs::ReadOnly,
                Want::Any | Want::PreferStandby => Attrs::Any,
            });
            if servers.order == crate::settings::LoadBalanceHosts::Random {
                config.load_balance_hosts(Order::Random);
            }
        }
        let (mode, connector) = match tls.mode {
            SslMode::Disable => (PgSsl::Disable, None),
            SslMode::Allow | SslMode::Prefer => (PgSsl::Prefer, Some(rustls_config(&tls)?)),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                (PgSsl::Require, Some(rustls_config(&tls)?))
            }
            SslMode::Strict => return Err(ProviderError::strict_is_mssql()),
        };
        config.ssl_mode(mode);
        if let Some(path) = &server.password_file {
            config.password(crate::settings::password_from_file(path)?.expose_secret());
        }
        Ok(PgConnector {
            config,
            password_file: server.password_file.clone(),
            pgbouncer: server.pgbouncer,
            tls: connector.map(tokio_postgres_rustls::MakeRustlsConnect::new),
        })
    }
}

impl PgConnector {
    /// Wraps a new client in diesel-async's connection, which sets the session up with two
    /// statements sent at once. Behind a transaction-mode bouncer (`pgbouncer: true`) those
    /// could reach two server connections (one of them without the other's prepared
    /// statement) or have an answer delivered to another client, so there the set-up runs
    /// inside one transaction, which keeps it on one server connection.
    async fn set_up<S>(
        &self,
        client: tokio_postgres::Client,
        conn: tokio_postgres::Connection<tokio_postgres::Socket, S>,
    ) -> Result<AsyncPgConnection, ProviderError>
    where
        S: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
    {
        let lost = |e| ProviderError::driver_connect(e, ErrorClass::ConnectionLost);
        if !self.pgbouncer {
            return AsyncPgConnection::try_from_client_and_connection(client, conn)
                .await
                .map_err(lost);
        }
        // The client needs its connection driven before diesel-async takes it; the task
        // ends when the client is dropped (or the server goes away).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::ConnectionLost))?;
        let mut built = AsyncPgConnection::try_from(client).await.map_err(lost)?;
        diesel_async::SimpleAsyncConnection::batch_execute(&mut built, "COMMIT")
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::ConnectionLost))?;
        Ok(built)
    }
}

/// The class of a `tokio-postgres` error met while connecting.
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

impl Connector for PgConnector {
    type Conn = AsyncPgConnection;

    async fn connect(&self) -> Result<AsyncPgConnection, ProviderError> {
        let fail = |e: tokio_postgres::Error| {
            let class = pg_connect_class(&e);
            ProviderError::driver_connect(e, class)
        };
        // A rotated password file: this connection logs in with what it holds now.
        let rotated = match &self.password_file {
            Some(path) => {
                let mut config = self.config.clone();
                config.password(crate::settings::password_from_file(path)?.expose_secret());
                Some(config)
            }
            None => None,
        };
        let config = rotated.as_ref().unwrap_or(&self.config);
        let mut conn = match &self.tls {
            Some(tls) => {
                let (client, conn) = config.connect(tls.clone()).await.map_err(fail)?;
                self.set_up(client, conn).await?
            }
            None => {
                let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(fail)?;
                self.set_up(client, conn).await?
            }
        };
        if self.pgbouncer {
            use diesel_async::AsyncConnection;
            conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        }
        Ok(conn)
    }

    async fn ping<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> Result<(), ProviderError> {
        ping(conn).await
    }

    fn is_broken(&self, conn: &mut AsyncPgConnection) -> bool {
        PoolableConnection::is_broken(conn)
    }
}

/// Builds the PostgreSQL diesel pool (see [`ManagedPool::open`]).
pub async fn open_postgres(
    server: &ServerSettings,
    settings: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<ManagedPool<PgConnector>, ProviderError> {
    let connector = PgConnector::new(server, &settings)?;
    ManagedPool::open(connector, settings, eager, ctx).await
}
