//! Microsoft SQL Server provider: [`tiberius`] connections in a pool.
//!
//! No pool crate supports tiberius 0.13, so this one puts a small [`deadpool`] `Manager`
//! around it (deadpool gives the bounded, FIFO-fair checkout with a wait timeout) and adds
//! what the sqlx pools have: `max_idle_conns`, `min_idle_conns`, `conn_max_lifetime`,
//! `conn_max_idle_time`, a ping only for connections idle longer than `ping_idle_after`,
//! pool clearing by generation, broken-connection detection and the same counters.
//!
//! Broken connections are found without a round trip: every connection's socket is wrapped
//! in a [`TdsStream`] that remembers a failed read or write (or the server hanging up), and
//! such a connection is discarded instead of being handed out again.

use crate::classify::ErrorClass;
use crate::error::ProviderError;
use crate::pool::PoolContext;
use crate::settings::{PoolSettings, ServerSettings, SslMode};
use crate::stats::{PoolCounters, PoolStats};
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use futures_util::io::{AsyncRead, AsyncWrite};
use secrecy::ExposeSecret;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tiberius::{AuthMethod, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// A pooled tiberius client: dereferences to [`tiberius::Client`]. Dropping it returns the
/// connection to the pool.
pub type PooledClient = Object<TdsManager>;

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
    generation: u64,
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
            .field("generation", &self.generation)
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

/// The deadpool manager: opens tiberius connections and decides whether an idle one may be
/// handed out again.
pub struct TdsManager {
    config: Config,
    settings: PoolSettings,
    counters: Arc<PoolCounters>,
    generation: AtomicU64,
}

impl std::fmt::Debug for TdsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Config` holds the password: show only where it goes.
        f.debug_struct("TdsManager")
            .field("addr", &self.config.get_addr())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Opens one connection: TCP (bounded by `connect_timeout`), then the TDS login, following
/// one Azure-style redirect.
async fn connect(config: &Config, timeout: Duration) -> Result<TdsConnection, ProviderError> {
    let attempt = async {
        let mut config = config.clone();
        for _ in 0..2 {
            let tcp = TcpStream::connect(config.get_addr())
                .await
                .map_err(|e| ProviderError::driver_connect(e, ErrorClass::ConnectionLost))?;
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
                    return Ok(TdsConnection {
                        client,
                        broken,
                        generation: 0,
                    });
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
            phase: "connect",
            after: timeout,
        }),
    }
}

/// Why an idle connection may not be handed out again, if it may not.
fn stale(conn: &TdsConnection, metrics: &Metrics, m: &TdsManager) -> Option<&'static str> {
    let s = &m.settings;
    if conn.is_broken() {
        Some("broken")
    } else if conn.generation != m.generation.load(Ordering::Acquire) {
        Some("cleared")
    } else if s.max_lifetime.is_some_and(|l| metrics.age() >= l) {
        Some("max_lifetime")
    } else if s.max_idle_time.is_some_and(|l| metrics.last_used() >= l) {
        Some("idle_timeout")
    } else {
        None
    }
}

impl TdsManager {
    fn count_close(&self, reason: &str) {
        let c = &self.counters;
        PoolCounters::inc(match reason {
            "broken" => &c.closed_broken,
            "cleared" => &c.closed_cleared,
            "max_lifetime" => &c.closed_max_lifetime,
            "idle_timeout" => &c.closed_idle_timeout,
            "max_idle" => &c.closed_max_idle,
            _ => &c.closed_shutdown,
        });
    }
}

impl managed::Manager for TdsManager {
    type Type = TdsConnection;
    type Error = ProviderError;

    async fn create(&self) -> Result<TdsConnection, ProviderError> {
        let mut conn = connect(&self.config, self.settings.connect_timeout).await?;
        conn.generation = self.generation.load(Ordering::Acquire);
        PoolCounters::inc(&self.counters.opened);
        Ok(conn)
    }

    async fn recycle(
        &self,
        conn: &mut TdsConnection,
        metrics: &Metrics,
    ) -> RecycleResult<ProviderError> {
        if let Some(reason) = stale(conn, metrics, self) {
            self.count_close(reason);
            return Err(RecycleError::message(reason));
        }
        if self
            .settings
            .ping_idle_after
            .is_some_and(|after| metrics.last_used() >= after)
        {
            let timeout = self.settings.connect_timeout;
            if let Err(e) = ping_conn(conn, timeout).await {
                self.count_close("broken");
                return Err(RecycleError::Backend(e));
            }
        }
        Ok(())
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
                phase: "health check",
                after: timeout,
            })
        }
    }
}

/// A pool of tiberius connections with dbmanager's limits. Cheap to clone.
#[derive(Clone)]
pub struct MssqlPool {
    pool: managed::Pool<TdsManager>,
    inner: Arc<Inner>,
}

struct Inner {
    counters: Arc<PoolCounters>,
    broken: Arc<tokio::sync::Notify>,
    cancel: tokio_util::sync::CancellationToken,
    settings: PoolSettings,
    database: Option<String>,
}

impl std::fmt::Debug for MssqlPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MssqlPool")
            .field("manager", self.pool.manager())
            .field("status", &self.pool.status())
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
    let secrets = crate::dsn_secrets(dsn);
    let fail = |e: &dyn std::fmt::Display| ProviderError::invalid_dsn(e, dsn, &secrets);
    let lower = dsn.trim_start().to_ascii_lowercase();
    if lower.starts_with("jdbc:") {
        return Config::from_jdbc_string(dsn).map_err(|e| fail(&e));
    }
    if !(lower.starts_with("sqlserver://") || lower.starts_with("mssql://")) {
        return Config::from_ado_string(dsn).map_err(|e| fail(&e));
    }
    let (_, rest) = dsn.split_once("://").unwrap_or(("", dsn));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
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
    let host = decode(host).map_err(|e| fail(&e))?;
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
        let user = decode(user).map_err(|e| fail(&e))?;
        let password = decode(password).map_err(|e| fail(&e))?;
        c.authentication(AuthMethod::sql_server(user, password));
    }
    let db = path.trim_start_matches('/');
    if !db.is_empty() {
        c.database(decode(db).map_err(|e| fail(&e))?);
    }
    let mut trust = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v).map_err(|e| fail(&e))?;
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

/// Percent-decodes one URL component.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a `%` is not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a percent-encoded value is not UTF-8".to_owned())
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
    let config = config(server, &settings)?;
    let database = server.database.clone();
    let manager = TdsManager {
        config,
        settings: settings.clone(),
        counters: Arc::clone(&ctx.counters),
        generation: AtomicU64::new(0),
    };
    let max = usize::try_from(settings.max_open).unwrap_or(usize::MAX);
    let pool = managed::Pool::builder(manager)
        .max_size(max)
        .queue_mode(managed::QueueMode::Fifo)
        .runtime(deadpool::Runtime::Tokio1)
        .create_timeout(Some(settings.connect_timeout))
        .build()
        .map_err(|e| ProviderError::InvalidSetting {
            field: "max_open_conns",
            reason: e.to_string(),
        })?;
    let this = MssqlPool {
        pool,
        inner: Arc::new(Inner {
            counters: ctx.counters,
            broken: ctx.broken,
            cancel: ctx.cancel.child_token(),
            settings,
            database,
        }),
    };
    if eager {
        let conn = this
            .acquire_within(this.inner.settings.connect_timeout)
            .await?;
        drop(conn);
        this.fill_min_idle().await;
    }
    ctx.tasks.spawn(maintain(this.clone()));
    Ok(this)
}

/// Every 250 ms: closes idle connections that expired, were cleared or broke, trims idle
/// ones beyond `max_idle_conns`, and opens connections up to `min_idle_conns`.
async fn maintain(pool: MssqlPool) {
    let tick = Duration::from_millis(250);
    loop {
        tokio::select! {
            () = pool.inner.cancel.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        if pool.pool.is_closed() {
            return;
        }
        pool.trim();
        pool.fill_min_idle().await;
    }
}

impl MssqlPool {
    /// Checks out a connection, waiting at most `limit`, and counts the wait.
    pub async fn acquire_within(&self, limit: Duration) -> Result<PooledClient, ProviderError> {
        let started = Instant::now();
        let timeouts = managed::Timeouts {
            wait: Some(limit),
            create: Some(
                self.inner
                    .settings
                    .connect_timeout
                    .min(limit.max(Duration::from_millis(1))),
            ),
            recycle: Some(self.inner.settings.connect_timeout),
        };
        let result = self.pool.timeout_get(&timeouts).await;
        let waited = started.elapsed();
        self.inner.counters.record_wait(waited);
        result.map_err(|e| {
            let c = &self.inner.counters;
            match e {
                PoolError::Timeout(managed::TimeoutType::Create) => {
                    PoolCounters::inc(&c.acquire_errors);
                    ProviderError::Timeout {
                        phase: "connect",
                        after: self.inner.settings.connect_timeout,
                    }
                }
                PoolError::Timeout(_) => {
                    PoolCounters::inc(&c.acquire_timeouts);
                    ProviderError::AcquireTimeout { waited }
                }
                PoolError::Backend(e) => {
                    PoolCounters::inc(&c.acquire_errors);
                    e
                }
                PoolError::Closed => ProviderError::Closed,
                other => {
                    PoolCounters::inc(&c.acquire_errors);
                    ProviderError::InvalidSetting {
                        field: "max_open_conns",
                        reason: other.to_string(),
                    }
                }
            }
        })
    }

    /// Checks out a connection within `acquire_timeout`.
    pub async fn acquire(&self) -> Result<PooledClient, ProviderError> {
        self.acquire_within(self.inner.settings.acquire_timeout)
            .await
    }

    /// The configured database, if any.
    pub fn database_name(&self) -> Option<&str> {
        self.inner.database.as_deref()
    }

    /// Closes idle connections that may not be reused and those beyond `max_idle_conns`.
    fn trim(&self) {
        let manager = self.pool.manager();
        let max_idle = self.inner.settings.max_idle as usize;
        let mut kept = 0usize;
        let removed = self.pool.retain(|conn, metrics| {
            if let Some(reason) = stale(conn, &metrics, manager) {
                manager.count_close(reason);
                return false;
            }
            if kept >= max_idle {
                manager.count_close("max_idle");
                return false;
            }
            kept += 1;
            true
        });
        drop(removed);
    }

    async fn fill_min_idle(&self) {
        let want = self.inner.settings.min_idle as usize;
        if want == 0 || self.pool.status().size >= want || self.pool.is_closed() {
            return;
        }
        let limit = self.inner.settings.connect_timeout;
        let held =
            futures_util::future::join_all((0..want).map(|_| self.acquire_within(limit))).await;
        drop(held);
    }

    /// Marks every open connection stale and closes the idle ones now; checked-out ones are
    /// closed when they come back. Returns how many idle connections it closed.
    pub fn clear(&self) -> u32 {
        let manager = self.pool.manager();
        manager.generation.fetch_add(1, Ordering::AcqRel);
        PoolCounters::inc(&self.inner.counters.clears);
        self.inner.broken.notify_one();
        let result = self.pool.retain(|conn, metrics| {
            if let Some(reason) = stale(conn, &metrics, manager) {
                manager.count_close(reason);
                return false;
            }
            true
        });
        u32::try_from(result.removed.len()).unwrap_or(u32::MAX)
    }

    /// Connections checked out now.
    pub fn in_use(&self) -> u32 {
        let s = self.pool.status();
        let idle = s.available;
        u32::try_from(s.size.saturating_sub(idle)).unwrap_or(u32::MAX)
    }

    /// Live sizes and counters.
    pub fn stats(&self) -> PoolStats {
        let s = self.pool.status();
        let open = u32::try_from(s.size).unwrap_or(u32::MAX);
        let idle = u32::try_from(s.available).unwrap_or(u32::MAX);
        self.inner
            .counters
            .snapshot(self.inner.settings.max_open, open, idle)
    }

    /// One round trip (`SELECT 1`) on a pooled connection, bounded by `timeout`. A failure
    /// discards that connection; a lost connection also clears the pool.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        let started = Instant::now();
        let mut conn = self.acquire_within(timeout).await.map_err(|e| match e {
            ProviderError::AcquireTimeout { .. } => ProviderError::Timeout {
                phase: "health check",
                after: timeout,
            },
            other => other,
        })?;
        let left = timeout.saturating_sub(started.elapsed());
        match ping_conn(&mut conn, left).await {
            Ok(()) => Ok(started.elapsed()),
            Err(e) => {
                if e.class().clears_pool() {
                    drop(conn);
                    self.clear();
                }
                Err(e)
            }
        }
    }

    /// Closes the pool: new acquires fail at once; waits up to `drain` for checked-out
    /// connections to come back, then closes everything. Returns whether it drained.
    pub async fn close(&self, drain: Duration) -> bool {
        self.inner.cancel.cancel();
        if !self.pool.is_closed() {
            let open = self.pool.status().size;
            for _ in 0..open {
                PoolCounters::inc(&self.inner.counters.closed_shutdown);
            }
            // Fails waiting and new acquires at once and drops the idle connections; those
            // in use are dropped when they come back.
            self.pool.close();
        }
        let deadline = Instant::now() + drain;
        while self.pool.status().size > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.pool.status().size == 0
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
