//! Microsoft SQL Server provider: [`tiberius`] connections in a pool.
//!
//! No pool crate supports tiberius 0.13, so this one plugs a [`Connector`] for it into
//! [`ManagedPool`] (deadpool plus the limits and counters the sqlx pools have).
//!
//! Broken connections are found without a round trip: every connection's socket is wrapped
//! in a [`TdsStream`] that remembers a failed read or write (or the server hanging up), and
//! such a connection is discarded instead of being handed out again.

use crate::classify::ErrorClass;
use crate::context::PoolContext;
use crate::error::{ProviderError, TimeoutPhase};
use crate::kind::DbType;
use crate::managed::{Connector, ManagedPool, Object};
use crate::provider::{EnginePool, OpenFuture, OpenRequest, Provider, Rules};
use crate::settings::Endpoint;
use crate::settings::{PoolSettings, ServerSettings, SslMode};
use crate::stats::PoolStats;
use futures_util::io::{AsyncRead, AsyncWrite};
use secrecy::ExposeSecret;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tiberius::{AuthMethod, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// A pooled tiberius client: dereferences to [`tiberius::Client`]. Dropping it returns the
/// connection to the pool.
pub type PooledClient = Object<TdsConnector>;

/// The tiberius client type this pool hands out.
pub type Client = tiberius::Client<TdsStream>;

/// A TCP stream that remembers whether it failed, so the pool never reuses a connection
/// whose socket broke under a query.
#[derive(Debug)]
pub struct TdsStream {
    inner: Compat<TcpStream>,
    broken: Arc<AtomicBool>,
}

impl TdsStream {
    fn mark<T>(&self, result: &Poll<std::io::Result<T>>) {
        if let Poll::Ready(Err(_)) = result {
            self.broken.store(true, Ordering::Release);
        }
    }
}

impl AsyncRead for TdsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(0))) && !buf.is_empty() {
            // The server hung up.
            self.broken.store(true, Ordering::Release);
        }
        self.mark(&r);
        r
    }
}

impl AsyncWrite for TdsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.mark(&r);
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.mark(&r);
        r
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// One pooled connection.
pub struct TdsConnection {
    client: Client,
    broken: Arc<AtomicBool>,
}

impl TdsConnection {
    /// Whether its socket failed; the pool discards it instead of reusing it.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Marks it broken (for example after a query was abandoned half-read, which leaves
    /// the connection out of step with the server): the pool closes it when it comes back.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for TdsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdsConnection")
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for TdsConnection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for TdsConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Opens tiberius connections for [`ManagedPool`].
pub struct TdsConnector {
    config: Config,
    connect_timeout: Duration,
}

impl std::fmt::Debug for TdsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Config` holds the password: show only where it goes.
        f.debug_struct("TdsConnector")
            .field("addr", &self.config.get_addr())
            .finish_non_exhaustive()
    }
}

/// Opens one connection: TCP (bounded by `connect_timeout`), then the TDS login, following
/// one Azure-style redirect.
async fn connect(config: &Config, timeout: Duration) -> Result<TdsConnection, ProviderError> {
    let attempt = async {
        let mut config = config.clone();
        for _ in 0..2 {
            let tcp = TcpStream::connect(config.get_addr()).await.map_err(|e| {
                let class = crate::classify::classify_io(&e);
                ProviderError::driver_connect(e, class)
            })?;
            let _ = tcp.set_nodelay(true);
            let broken = Arc::new(AtomicBool::new(false));
            let stream = TdsStream {
                inner: tcp.compat(),
                broken: Arc::clone(&broken),
            };
            // Boxed: the login future is tens of kilobytes and would otherwise sit on the
            // stack of every future that awaits an acquire.
            match Box::pin(tiberius::Client::connect(config.clone(), stream)).await {
                Ok(client) => {
                    return Ok(TdsConnection { client, broken });
                }
                Err(tiberius::error::Error::Routing { host, port }) => {
                    config.host(host);
                    config.port(port);
                }
                Err(e) => {
                    let class = classify(&e);
                    return Err(ProviderError::driver_connect(e, class));
                }
            }
        }
        Err(ProviderError::InvalidSetting {
            field: "host",
            reason: "the server redirected the login more than once".into(),
        })
    };
    match tokio::time::timeout(timeout, Box::pin(attempt)).await {
        Ok(r) => r,
        Err(_) => Err(ProviderError::Timeout {
            phase: TimeoutPhase::Connect,
            after: timeout,
        }),
    }
}

impl Connector for TdsConnector {
    type Conn = TdsConnection;

    async fn connect(&self) -> Result<TdsConnection, ProviderError> {
        connect(&self.config, self.connect_timeout).await
    }

    async fn ping<'c>(&'c self, conn: &'c mut TdsConnection) -> Result<(), ProviderError> {
        ping_conn(conn, self.connect_timeout).await
    }

    fn is_broken(&self, conn: &mut TdsConnection) -> bool {
        conn.is_broken()
    }
}

async fn ping_conn(conn: &mut TdsConnection, timeout: Duration) -> Result<(), ProviderError> {
    let round_trip = async {
        let stream = conn.client.simple_query("SELECT 1").await?;
        stream.into_results().await.map(|_| ())
    };
    match tokio::time::timeout(timeout, round_trip).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            conn.mark_broken();
            let class = classify(&e);
            Err(ProviderError::driver(e, class))
        }
        Err(_) => {
            conn.mark_broken();
            Err(ProviderError::Timeout {
                phase: TimeoutPhase::HealthCheck,
                after: timeout,
            })
        }
    }
}

/// A pool of tiberius connections with dbmanager's limits. Cheap to clone.
#[derive(Clone)]
pub struct MssqlPool {
    pool: ManagedPool<TdsConnector>,
    database: Option<Arc<str>>,
}

impl std::fmt::Debug for MssqlPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MssqlPool")
            .field("connector", self.pool.connector())
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// Builds tiberius's configuration from the settings.
pub fn config(server: &ServerSettings, pool: &PoolSettings) -> Result<Config, ProviderError> {
    let mut config = match &server.dsn {
        Some(dsn) => parse_dsn(dsn.expose_secret())?,
        None => {
            let mut c = Config::new();
            c.host(server.host.as_deref().unwrap_or("localhost"));
            c.port(server.port.unwrap_or(1433));
            if let Some(user) = &server.user {
                let password = server
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default();
                c.authentication(AuthMethod::sql_server(user, password));
            }
            if let Some(db) = &server.database {
                c.database(db);
            }
            apply_tls(&mut c, server)?;
            c
        }
    };
    if server.dsn.is_some()
        && let Some(db) = &server.database
    {
        config.database(db);
    }
    if let Some(app) = &server.application_name {
        config.application_name(app);
    }
    config.handshake_timeout(Some(pool.connect_timeout));
    // A client-side bound on each server round trip; `None` waits as long as the server
    // takes, as on the other engines.
    config.command_timeout(server.query_timeout);
    Ok(config)
}

fn apply_tls(c: &mut Config, server: &ServerSettings) -> Result<(), ProviderError> {
    let t = &server.tls;
    let verify = |c: &mut Config| {
        if let Some(ca) = &t.root_cert {
            c.trust_cert_ca(ca.display());
        }
    };
    match t.mode {
        SslMode::Disable => c.encryption(EncryptionLevel::NotSupported),
        // Like PostgreSQL's allow/prefer: TLS when the server offers it, unverified.
        SslMode::Allow | SslMode::Prefer => {
            c.encryption(EncryptionLevel::Off);
            c.trust_cert();
        }
        SslMode::Require => {
            c.encryption(EncryptionLevel::Required);
            c.trust_cert();
        }
        // tiberius always checks the host name when it verifies: verify-ca is as strict as
        // verify-full here.
        SslMode::VerifyCa | SslMode::VerifyFull => {
            c.encryption(EncryptionLevel::Required);
            verify(c);
        }
        SslMode::Strict => {
            c.encryption(EncryptionLevel::Strict);
            verify(c);
        }
    }
    match (&t.client_cert, &t.client_key) {
        (Some(cert), Some(key)) => c.client_certificate(cert, key),
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(ProviderError::InvalidSetting {
                field: "ssl_cert",
                reason: "SQL Server client certificates need both `ssl_cert` and `ssl_key`".into(),
            });
        }
    }
    Ok(())
}

/// Parses an ADO.NET string (`server=tcp:host,1433;user id=...`), a JDBC string
/// (`jdbc:sqlserver://...`) or a URL (`sqlserver://user:password@host:1433/db?encrypt=...`).
/// Errors never quote the DSN.
pub fn parse_dsn(dsn: &str) -> Result<Config, ProviderError> {
    let fail = |e: &dyn std::fmt::Display| ProviderError::invalid_dsn(e, dsn);
    let lower = dsn.trim_start().to_ascii_lowercase();
    if lower.starts_with("jdbc:") {
        return Config::from_jdbc_string(dsn).map_err(|e| fail(&e));
    }
    if !(lower.starts_with("sqlserver://") || lower.starts_with("mssql://")) {
        return Config::from_ado_string(dsn).map_err(|e| fail(&e));
    }
    let (_, rest) = dsn.split_once("://").unwrap_or(("", dsn));
    // The userinfo first: a password may hold `?` (and `@`), which must not be taken for
    // the start of the query.
    let (userinfo, after) = crate::redact::split_userinfo(rest);
    let (hostport, tail) = match after.find(['/', '?']) {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, q),
        None => (tail, ""),
    };
    let mut c = Config::new();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => {
            let port = p
                .parse::<u16>()
                .map_err(|_| fail(&"the port is not a number from 1 to 65535"))?;
            (h, Some(port))
        }
        None => (hostport, None),
    };
    let host = crate::percent_decode(host).map_err(|e| fail(&e))?;
    // `host\instance`, as SQL Server spells named instances.
    match host.split_once('\\') {
        Some((h, instance)) => {
            c.host(h);
            c.instance_name(instance);
        }
        None => c.host(if host.is_empty() { "localhost" } else { &host }),
    }
    c.port(port.unwrap_or(1433));
    if let Some(ui) = userinfo {
        let (user, password) = ui.split_once(':').unwrap_or((ui, ""));
        let user = crate::percent_decode(user).map_err(|e| fail(&e))?;
        let password = crate::percent_decode(password).map_err(|e| fail(&e))?;
        c.authentication(AuthMethod::sql_server(user, password));
    }
    let db = path.trim_start_matches('/');
    if !db.is_empty() {
        c.database(crate::percent_decode(db).map_err(|e| fail(&e))?);
    }
    let mut trust = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::percent_decode(v).map_err(|e| fail(&e))?;
        match k.to_ascii_lowercase().as_str() {
            "encrypt" => c.encryption(match v.to_ascii_lowercase().as_str() {
                "strict" => EncryptionLevel::Strict,
                "true" | "yes" | "mandatory" => EncryptionLevel::Required,
                "false" | "no" | "optional" => EncryptionLevel::Off,
                "danger_plaintext" | "off" => EncryptionLevel::NotSupported,
                other => {
                    return Err(fail(&format!(
                        "unknown encrypt value `{other}` (expected strict, true, false or \
                         danger_plaintext)"
                    )));
                }
            }),
            "trustservercertificate" => trust = matches!(v.as_str(), "true" | "yes"),
            "trustservercertificateca" => c.trust_cert_ca(v),
            "applicationname" | "application_name" => c.application_name(v),
            "database" => c.database(v),
            other => {
                return Err(fail(&format!(
                    "unknown parameter `{other}` (supported: encrypt, trustServerCertificate, \
                     trustServerCertificateCa, applicationName, database)"
                )));
            }
        }
    }
    if trust {
        c.trust_cert();
    }
    Ok(c)
}

/// Builds the pool. With `eager`, opens one connection now (bounded by `connect_timeout`)
/// so a wrong address or password fails here, and fills `min_idle_conns`.
pub async fn open(
    server: &ServerSettings,
    settings: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<MssqlPool, ProviderError> {
    crate::install_crypto_provider();
    let connector = TdsConnector {
        config: config(server, &settings)?,
        connect_timeout: settings.connect_timeout,
    };
    Ok(MssqlPool {
        pool: ManagedPool::open(connector, settings, eager, ctx).await?,
        database: server.database.as_deref().map(Arc::from),
    })
}

impl MssqlPool {
    /// Checks out a connection, waiting at most `limit`, and counts the wait.
    pub async fn acquire_within(&self, limit: Duration) -> Result<PooledClient, ProviderError> {
        self.pool.acquire_within(limit).await
    }

    /// Checks out a connection within `acquire_timeout`.
    pub async fn acquire(&self) -> Result<PooledClient, ProviderError> {
        self.pool.acquire().await
    }

    /// The configured database, if any.
    pub fn database_name(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Marks every open connection stale and closes the idle ones now; checked-out ones are
    /// closed when they come back. Returns how many idle connections it closed.
    pub fn clear(&self) -> u32 {
        self.pool.clear()
    }

    /// Connections checked out now.
    pub fn in_use(&self) -> u32 {
        self.pool.in_use()
    }

    /// Live sizes and counters.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// One round trip (`SELECT 1`) on a pooled connection, bounded by `timeout`. A failure
    /// discards that connection; a lost connection also clears the pool.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        self.pool.ping(timeout).await
    }

    /// Closes the pool: new acquires fail at once; waits up to `drain` for checked-out
    /// connections to come back, then closes everything. Returns whether it drained.
    pub async fn close(&self, drain: Duration) -> bool {
        self.pool.close(drain).await
    }
}

/// What a tiberius error means for the pool and for a retry.
pub fn classify(e: &tiberius::error::Error) -> ErrorClass {
    use tiberius::error::Error as E;
    match e {
        E::Io { .. } => ErrorClass::ConnectionLost,
        E::Tls(_) => ErrorClass::Config,
        E::Routing { .. } => ErrorClass::ConnectionLost,
        E::Server(token) => match token.code() {
            // Login failed; password expired or must change; account locked.
            18456 | 18487 | 18488 | 18486 => ErrorClass::Auth,
            // Cannot open the database requested by the login.
            4060 => ErrorClass::Config,
            // Deadlock victim; lock request timeout; snapshot update conflict.
            1205 | 1222 | 3960 => ErrorClass::Transient,
            // The database is read-only (a failover to a readable secondary); the
            // database is not accessible / in transition (failover in progress).
            3906 | 976 | 983 | 952 => ErrorClass::ReadOnly,
            // Service paused / shutting down; Azure's "resource limits / not currently
            // available" family.
            6005 | 17142 | 40613 | 40197 | 40501 | 49918 | 49919 | 49920 => {
                ErrorClass::ConnectionLost
            }
            _ => ErrorClass::Permanent,
        },
        _ => ErrorClass::Permanent,
    }
}

crate::provider::engine_pool!(MssqlPool);

/// The SQL Server provider, as the manager's registry holds it.
#[derive(Debug, Default, Clone, Copy)]
pub struct MssqlProvider;

impl Provider for MssqlProvider {
    fn kind(&self) -> DbType {
        DbType::MsSql
    }

    fn names(&self) -> &'static [&'static str] {
        DbType::MsSql.names()
    }

    fn rules(&self) -> Rules {
        DbType::MsSql.rules()
    }

    fn check(&self, endpoint: &Endpoint) -> Result<(), ProviderError> {
        if let Some(s) = endpoint.server()
            && let Some(dsn) = &s.dsn
        {
            parse_dsn(secrecy::ExposeSecret::expose_secret(dsn))?;
        }
        Ok(())
    }

    fn open<'a>(&'a self, req: OpenRequest<'a>) -> OpenFuture<'a> {
        Box::pin(async move {
            let pool = open(req.server()?, req.pool, req.eager, req.ctx).await?;
            Ok(std::sync::Arc::new(pool) as std::sync::Arc<dyn EnginePool>)
        })
    }
}

impl crate::classify::Classify for tiberius::error::Error {
    fn class(&self) -> ErrorClass {
        classify(self)
    }
}
