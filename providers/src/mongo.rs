//! MongoDB provider: a [`mongodb::Client`] per named connection.
//!
//! The driver keeps its own pool (one per server it talks to) and its own server monitoring,
//! so this provider does not pool anything itself. It maps dbmanager's settings onto the
//! driver's options, counts the driver's pool events (CMAP) into the same [`PoolStats`]
//! the SQL pools report, health-checks with a `ping` that honours the configured read
//! preference, and shuts the client down on close.
//!
//! Settings the driver cannot honour (`conn_max_lifetime`, `max_idle_conns`,
//! `ping_idle_after`) are rejected or warned about by `dbmanager`'s validation; the mapping
//! of the others is in docs/configuration.md.

use crate::classify::ErrorClass;
use crate::context::PoolContext;
use crate::error::{ProviderError, TimeoutPhase};
use crate::kind::DbType;
use crate::provider::{EnginePool, OpenFuture, OpenRequest, Provider, Rules};
use crate::settings::{MongoSettings, PoolSettings, ServerSettings, SslMode};
use crate::stats::{PoolCounters, PoolStats};
use mongodb::event::EventHandler;
use mongodb::event::cmap::{CmapEvent, ConnectionCheckoutFailedReason, ConnectionClosedReason};
use mongodb::options::{
    ClientOptions, Credential, ReadPreference, SelectionCriteria, ServerAddress, Tls, TlsOptions,
};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

pub use mongodb::{Client, Database};

/// The driver's live pool sizes, kept from its events (summed over every server).
#[derive(Debug, Default)]
struct Live {
    /// Connections created and not yet closed.
    open: AtomicI64,
    /// Connections checked out and not yet checked in.
    in_use: AtomicI64,
}

/// A MongoDB client built from dbmanager's settings, with pool statistics.
#[derive(Clone)]
pub struct MongoPool {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    database: Option<String>,
    /// The read preference `ping` uses, so health matches what reads need.
    criteria: SelectionCriteria,
    counters: Arc<PoolCounters>,
    live: Arc<Live>,
    max_open: u32,
    closed: AtomicBool,
}

impl std::fmt::Debug for MongoPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoPool")
            .field("database", &self.inner.database)
            .field("criteria", &self.inner.criteria)
            .field("max_open", &self.inner.max_open)
            .finish_non_exhaustive()
    }
}

/// Parses a `read_preference` name (case-insensitive).
pub fn read_preference(name: &str) -> Option<ReadPreference> {
    Some(match name.to_ascii_lowercase().as_str() {
        "primary" => ReadPreference::Primary,
        "primarypreferred" => ReadPreference::PrimaryPreferred { options: None },
        "secondary" => ReadPreference::Secondary { options: None },
        "secondarypreferred" => ReadPreference::SecondaryPreferred { options: None },
        "nearest" => ReadPreference::Nearest { options: None },
        _ => return None,
    })
}

/// Builds the driver's options from the settings. Async because a `mongodb+srv://` DSN
/// is resolved through DNS.
pub async fn client_options(
    server: &ServerSettings,
    mongo: &MongoSettings,
    pool: &PoolSettings,
) -> Result<ClientOptions, ProviderError> {
    let mut options = match &server.dsn {
        Some(dsn) => {
            let dsn = dsn.expose_secret();
            ClientOptions::parse(dsn)
                .await
                .map_err(|e| ProviderError::invalid_dsn(e, dsn))?
        }
        None => {
            let mut o = ClientOptions::default();
            let host = server.host.clone().unwrap_or_else(|| "localhost".into());
            o.hosts = vec![ServerAddress::Tcp {
                host,
                port: Some(server.port.unwrap_or(27017)),
            }];
            if let Some(user) = &server.user {
                let mut cred = Credential::default();
                cred.username = Some(user.clone());
                cred.password = server
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned());
                o.credential = Some(cred);
            }
            o.default_database = server.database.clone();
            o.tls = tls(server)?;
            o
        }
    };
    // Typed fields win over the DSN's query string.
    if server.dsn.is_some() && server.database.is_some() {
        options.default_database = server.database.clone();
    }
    if let Some(source) = &mongo.auth_source {
        match options.credential.as_mut() {
            Some(cred) => cred.source = Some(source.clone()),
            None => {
                return Err(ProviderError::InvalidSetting {
                    field: "auth_source",
                    reason: "set without credentials (`user` or a user in the dsn)".into(),
                });
            }
        }
    }
    if let Some(rs) = &mongo.replica_set {
        options.repl_set_name = Some(rs.clone());
    }
    if let Some(name) = &mongo.read_preference {
        let pref = read_preference(name).ok_or_else(|| ProviderError::InvalidSetting {
            field: "read_preference",
            reason: format!("unknown read preference `{name}`"),
        })?;
        options.selection_criteria = Some(SelectionCriteria::ReadPreference(pref));
    }
    if let Some(app) = &server.application_name {
        options.app_name = Some(app.clone());
    }
    // The pool, mapped one to one where the driver has the setting.
    options.max_pool_size = Some(pool.max_open);
    options.min_pool_size = Some(pool.min_idle);
    options.max_idle_time = pool.max_idle_time;
    options.connect_timeout = Some(pool.connect_timeout);
    // An operation waits for a usable server at most as long as an acquire waits for a
    // connection, not the driver's default of 30 s.
    options.server_selection_timeout = Some(pool.acquire_timeout);
    Ok(options)
}

fn tls(server: &ServerSettings) -> Result<Option<Tls>, ProviderError> {
    let t = &server.tls;
    let mut o = TlsOptions::default();
    match t.mode {
        // MongoDB has no opportunistic TLS: without a demand for it, the connection is plain.
        SslMode::Disable | SslMode::Allow | SslMode::Prefer => return Ok(None),
        SslMode::Require => {
            o.allow_invalid_certificates = Some(true);
        }
        // With rustls the driver always checks the host name when it verifies: verify-ca
        // is as strict as verify-full here.
        SslMode::VerifyCa | SslMode::VerifyFull => {}
        SslMode::Strict => return Err(ProviderError::strict_is_mssql()),
    }
    o.ca_file_path = t.root_cert.clone();
    match (&t.client_cert, &t.client_key) {
        (Some(cert), None) => o.cert_key_file_path = Some(cert.clone()),
        (Some(cert), Some(key)) if cert == key => o.cert_key_file_path = Some(cert.clone()),
        (_, Some(_)) => {
            return Err(ProviderError::InvalidSetting {
                field: "ssl_key",
                reason: "the MongoDB driver reads the client certificate and its key from one \
                         PEM file: put both in the file `ssl_cert` names and leave `ssl_key` unset"
                    .into(),
            });
        }
        (None, None) => {}
    }
    Ok(Some(Tls::Enabled(o)))
}

/// Counts the driver's pool events into `counters` and `live`, and calls `cleared` when the
/// driver clears a server's pool.
fn event_handler(
    counters: Arc<PoolCounters>,
    live: Arc<Live>,
    ctx: &PoolContext,
) -> EventHandler<CmapEvent> {
    let broken = Arc::clone(&ctx.broken);
    let hook = ctx.on_driver_clear.clone();
    EventHandler::callback(move |event: CmapEvent| match event {
        CmapEvent::ConnectionCreated(_) => {
            PoolCounters::inc(&counters.opened);
            live.open.fetch_add(1, Ordering::Relaxed);
        }
        CmapEvent::ConnectionClosed(e) => {
            live.open.fetch_sub(1, Ordering::Relaxed);
            let counter = match e.reason {
                ConnectionClosedReason::Idle => &counters.closed_idle_timeout,
                ConnectionClosedReason::Stale => &counters.closed_cleared,
                ConnectionClosedReason::PoolClosed => &counters.closed_shutdown,
                // Error, Dropped (an operation abandoned mid-flight) and any later reason.
                _ => &counters.closed_broken,
            };
            PoolCounters::inc(counter);
        }
        CmapEvent::ConnectionCheckedOut(e) => {
            live.in_use.fetch_add(1, Ordering::Relaxed);
            counters.record_wait(e.duration);
        }
        CmapEvent::ConnectionCheckedIn(_) => {
            live.in_use.fetch_sub(1, Ordering::Relaxed);
        }
        CmapEvent::ConnectionCheckoutFailed(e) => {
            counters.record_wait(e.duration);
            match e.reason {
                ConnectionCheckoutFailedReason::Timeout => {
                    PoolCounters::inc(&counters.acquire_timeouts);
                }
                _ => PoolCounters::inc(&counters.acquire_errors),
            }
        }
        CmapEvent::PoolCleared(_) => {
            PoolCounters::inc(&counters.clears);
            broken.notify_one();
            if let Some(hook) = &hook {
                hook.call();
            }
        }
        _ => {}
    })
}

/// Builds the client. With `eager`, also pings once (bounded by `connect_timeout`) so a
/// wrong address or password fails here; otherwise the driver connects in the background.
pub async fn open(
    server: &ServerSettings,
    mongo: &MongoSettings,
    pool: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<MongoPool, ProviderError> {
    crate::install_crypto_provider();
    let mut options = client_options(server, mongo, &pool).await?;
    let live = Arc::new(Live::default());
    options.cmap_event_handler = Some(event_handler(
        Arc::clone(&ctx.counters),
        Arc::clone(&live),
        &ctx,
    ));
    let criteria = options
        .selection_criteria
        .clone()
        .unwrap_or(SelectionCriteria::ReadPreference(ReadPreference::Primary));
    let database = options.default_database.clone();
    let client = Client::with_options(options).map_err(|e| {
        let class = classify(&e);
        ProviderError::driver_connect(e, class)
    })?;
    let pool_handle = MongoPool {
        inner: Arc::new(Inner {
            client,
            database,
            criteria,
            counters: ctx.counters,
            live,
            max_open: pool.max_open,
            closed: AtomicBool::new(false),
        }),
    };
    if eager && let Err(e) = pool_handle.ping(pool.connect_timeout).await {
        pool_handle.close(Duration::ZERO).await;
        return Err(match e {
            ProviderError::Driver { class, source, .. } => ProviderError::Driver {
                phase: crate::error::Phase::Connect,
                class,
                source,
            },
            other => other,
        });
    }
    Ok(pool_handle)
}

impl MongoPool {
    /// The driver's client (cheap to clone; it shares this pool).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The configured database (`database`, or the one in the DSN's path), if any.
    pub fn database_name(&self) -> Option<&str> {
        self.inner.database.as_deref()
    }

    /// A handle to the configured database, if one is configured.
    pub fn database(&self) -> Option<Database> {
        self.inner
            .database
            .as_deref()
            .map(|d| self.inner.client.database(d))
    }

    /// Live sizes and counters, from the driver's pool events.
    pub fn stats(&self) -> PoolStats {
        let open = u32::try_from(self.inner.live.open.load(Ordering::Relaxed).max(0)).unwrap_or(0);
        let in_use =
            u32::try_from(self.inner.live.in_use.load(Ordering::Relaxed).max(0)).unwrap_or(0);
        self.inner
            .counters
            .snapshot(self.inner.max_open, open, open.saturating_sub(in_use))
    }

    /// Connections checked out now.
    pub fn in_use(&self) -> u32 {
        u32::try_from(self.inner.live.in_use.load(Ordering::Relaxed).max(0)).unwrap_or(0)
    }

    /// One `ping` on a server the configured read preference selects, bounded by `timeout`.
    /// With `read_preference: secondary`, a down primary does not fail it.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ProviderError::Closed);
        }
        let started = Instant::now();
        let db = self.inner.client.database("admin");
        let ping = db
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .selection_criteria(self.inner.criteria.clone());
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => {
                let class = classify(&e);
                Err(ProviderError::driver(e, class))
            }
            Err(_) => Err(ProviderError::Timeout {
                phase: TimeoutPhase::HealthCheck,
                after: timeout,
            }),
        }
    }

    /// The driver clears its own pools (on a network error or a failed heartbeat) and
    /// offers no way to do it from outside, so this closes nothing and returns 0.
    pub fn clear(&self) -> u32 {
        0
    }

    /// Shuts the client down: waits up to `drain` for operations in flight (sessions,
    /// cursors) to finish, then closes every connection. Returns whether it drained.
    pub async fn close(&self, drain: Duration) -> bool {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return true;
        }
        let client = self.inner.client.clone();
        if tokio::time::timeout(drain, client.clone().shutdown())
            .await
            .is_ok()
        {
            return true;
        }
        client.shutdown().immediate(true).await;
        false
    }
}

/// What a MongoDB error means for the pool and for a retry.
pub fn classify(e: &mongodb::error::Error) -> ErrorClass {
    use mongodb::error::ErrorKind;
    if e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError") {
        return ErrorClass::Transient;
    }
    match e.kind.as_ref() {
        ErrorKind::Authentication { .. } => ErrorClass::Auth,
        ErrorKind::Io(io) => crate::classify::classify_io(io),
        ErrorKind::ConnectionPoolCleared { .. } => ErrorClass::ConnectionLost,
        // No server to send to (down, unknown host, no member of the wanted kind).
        ErrorKind::ServerSelection { .. } | ErrorKind::DnsResolve { .. } => ErrorClass::Unreachable,
        ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            ErrorClass::Config
        }
        ErrorKind::Command(c) => match c.code {
            // AuthenticationFailed, Unauthorized
            18 | 13 => ErrorClass::Auth,
            // NotWritablePrimary, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary,
            // PrimarySteppedDown
            10107 | 13435 | 13436 | 189 => ErrorClass::ReadOnly,
            // InterruptedAtShutdown, ShutdownInProgress, HostUnreachable, HostNotFound,
            // NetworkTimeout, SocketException
            11600 | 91 | 6 | 7 | 89 | 9001 => ErrorClass::ConnectionLost,
            // WriteConflict, LockTimeout, ExceededTimeLimit
            112 | 24 | 262 | 50 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        },
        _ => ErrorClass::Permanent,
    }
}

crate::provider::engine_pool!(MongoPool);

/// The MongoDB provider, as the manager's registry holds it.
#[derive(Debug, Default, Clone, Copy)]
pub struct MongoProvider;

impl Provider for MongoProvider {
    fn kind(&self) -> DbType {
        DbType::MongoDb
    }

    fn names(&self) -> &'static [&'static str] {
        DbType::MongoDb.names()
    }

    fn rules(&self) -> Rules {
        DbType::MongoDb.rules()
    }

    fn open<'a>(&'a self, req: OpenRequest<'a>) -> OpenFuture<'a> {
        Box::pin(async move {
            let pool = open(req.server()?, req.mongo, req.pool, req.eager, req.ctx).await?;
            Ok(std::sync::Arc::new(pool) as std::sync::Arc<dyn EnginePool>)
        })
    }
}

impl crate::classify::Classify for mongodb::error::Error {
    fn class(&self) -> ErrorClass {
        classify(self)
    }
}
