//! The diesel view's MySQL/MariaDB connector.

use super::*;

/// Opens [`AsyncMysqlConnection`]s.
pub struct MysqlConnector {
    opts: mysql_async::Opts,
    query_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for MysqlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConnector")
            .field("host", &self.opts.ip_or_hostname())
            .field("port", &self.opts.tcp_port())
            .finish_non_exhaustive()
    }
}

impl MysqlConnector {
    /// Builds the connector from the connection's settings. `prefer` and `allow` mean plain
    /// text here: `mysql_async` has no opportunistic TLS.
    pub fn new(server: &ServerSettings, _pool: &PoolSettings) -> Result<Self, ProviderError> {
        if !server.hosts.is_empty() && server.dsn.is_none() {
            return Err(ProviderError::InvalidSetting {
                field: "hosts",
                reason: "the diesel view does not follow several MySQL servers yet: \
                         use the sqlx and SeaORM views, or `host`"
                    .into(),
            });
        }
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
            // `password_file`: read when the view is built (not yet followed when it
            // changes; the sqlx pool's sessions are).
            .pass(match &server.password_file {
                Some(path) => Some(
                    crate::settings::password_from_file(path)?
                        .expose_secret()
                        .to_owned(),
                ),
                None => s.password.as_ref().map(|p| p.expose_secret().to_owned()),
            })
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
            SslMode::Strict => return Err(ProviderError::strict_is_mssql()),
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
            let [mariadb, mysql] = crate::mysql::query_timeout_statements(t);
            if conn.batch_execute(&mariadb).await.is_err() {
                conn.batch_execute(&mysql)
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
pub async fn open_mysql(
    server: &ServerSettings,
    settings: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<ManagedPool<MysqlConnector>, ProviderError> {
    let connector = MysqlConnector::new(server, &settings)?;
    ManagedPool::open(connector, settings, eager, ctx).await
}
