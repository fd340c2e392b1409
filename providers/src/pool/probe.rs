//! The pool's side of the supervisor's probes: the health check, the reconnect attempt
//! while down, and the read-only question after a failover.

use super::SqlPool;
use crate::error::{ProviderError, TimeoutPhase};
use crate::fast::sqlx_idle;
use sqlx::{Connection, Database};
use std::time::{Duration, Instant};

/// How long a probe's connect may take before it also checks that the server's address
/// accepts connections. A connect on a local network takes a few milliseconds, and a
/// login the server rejects fails at once: this keeps the check off the common path (on
/// MySQL, a socket closed before the handshake counts towards the server's
/// `max_connect_errors`, which the next successful login resets).
const REACH_AFTER: Duration = Duration::from_millis(50);

/// Where a server listens: what the probe's reachability check connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// A TCP address.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix-domain socket file.
    Unix(std::path::PathBuf),
}

/// Reads where the server listens from an engine's connect options (`None`: no network
/// server, as for SQLite).
pub type ListenerFn<DB> =
    fn(&<<DB as Database>::Connection as sqlx::Connection>::Options) -> Option<Listener>;

impl Listener {
    /// A Unix-domain socket file when there is one, else `host:port`.
    pub fn socket_or_tcp(socket: Option<std::path::PathBuf>, host: &str, port: u16) -> Self {
        match socket {
            Some(path) => Listener::Unix(path),
            None => Listener::Tcp {
                host: host.to_owned(),
                port,
            },
        }
    }

    /// Opens a socket connection and closes it at once (no bytes sent: no session, no
    /// login attempt). `Err` is the refusal.
    pub async fn reach(&self) -> std::io::Result<()> {
        match self {
            Listener::Tcp { host, port } => {
                drop(tokio::net::TcpStream::connect((host.as_str(), *port)).await?);
            }
            #[cfg(unix)]
            Listener::Unix(path) => drop(tokio::net::UnixStream::connect(path).await?),
            #[cfg(not(unix))]
            Listener::Unix(_) => {}
        }
        Ok(())
    }
}

impl<DB: Database> SqlPool<DB> {
    /// One real round trip to the server, bounded by `timeout`. Returns its latency.
    ///
    /// An idle connection (the fast path's or sqlx's) is pinged when there is one. A
    /// connection whose ping does not answer in time is closed rather than returned (sqlx
    /// would ping it again on release and could hang there). When none is idle and the
    /// pool has room, the probe opens a session through the pool (see
    /// [`reconnect`](Self::reconnect)), so it holds one of the pool's places like any
    /// caller; when the pool is full, it waits for a connection to come back, and a pool
    /// in use the whole time is [`ProviderError::Busy`] (no verdict).
    ///
    /// A failed ping does not clear the pool: the caller decides from the error's class
    /// (the connection's supervisor does, once, so a failed probe counts one clear and one
    /// event).
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        let deadline = tokio::time::Instant::from_std(crate::time::deadline_in(timeout));
        let elapsed = || ProviderError::Timeout {
            phase: TimeoutPhase::HealthCheck,
            after: timeout,
        };
        let inner = &self.inner;
        let conn = loop {
            if inner.pool.is_closed() {
                return Err(ProviderError::Closed);
            }
            let freed = inner.cache.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(conn) = inner.cache.try_acquire() {
                break conn;
            }
            // Idle in sqlx: through its acquire, whose hooks drop stale connections (its
            // `try_acquire` runs none).
            if sqlx_idle(&inner.pool) > 0 {
                break tokio::time::timeout_at(deadline, self.acquire_within(timeout))
                    .await
                    .map_err(|_| elapsed())??;
            }
            // Room in the pool: a new session, in one of the pool's places.
            if inner.cache.has_room() {
                return self.connect_probe(timeout, deadline, false).await;
            }
            let recheck = tokio::time::Instant::now() + Duration::from_millis(5);
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep_until(recheck.min(deadline)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                // Every connection in use the whole time: busy, not dead (no verdict).
                return Err(ProviderError::Busy { waited: timeout });
            }
        };
        let started = Instant::now();
        ping_by(conn, deadline, timeout, self.inner.failover.as_deref()).await?;
        Ok(started.elapsed())
    }

    /// A probe while the connection is down: a session opened through the pool, pinged
    /// and kept, all within `timeout`. Once the server's address accepts connections
    /// again, the fast path's borrows sleeping in sqlx's connect loop start again (see
    /// `Cache::kick`): one of them, or this probe, connects as soon as the server takes
    /// logins, and callers waiting for the server get a connection then, not after that
    /// sleep.
    ///
    /// A connection with several servers, or one that needs a primary or a standby
    /// (`target_session_attrs`), first finds a server that will do (each host connected
    /// directly and checked, in order from the current one) and points the pool at it.
    pub async fn reconnect(&self, timeout: Duration) -> Result<Duration, ProviderError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(crate::time::deadline_in(timeout));
        self.inner.follow_password_file();
        // Down: perhaps the server refused the credential in use; ask for a fresh one.
        self.inner.refresh_credential(true, timeout / 2).await;
        if let Some(failover) = &self.inner.failover {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let found = failover.search(left).await?;
            self.inner.pool.set_connect_options(found);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.connect_probe(left, deadline, true).await?;
            return Ok(started.elapsed());
        }
        self.connect_probe(timeout, deadline, true).await
    }

    /// Opens a session through the pool (so it takes one of the pool's places, like any
    /// caller's: the server never sees more sessions than `max_open_conns`), pings it and
    /// returns it to the pool; kicks the fast path's borrows on success.
    ///
    /// sqlx's acquire retries a refused connect with a growing sleep until its deadline
    /// and then reports only that it timed out. So when no connection came within
    /// [`REACH_AFTER`], the probe also checks that the server's address accepts a socket
    /// connection (opened and closed at once: no session, no login). A refusal there is
    /// the verdict at once, with its cause; when `down` and the address answers, the
    /// borrows sleeping in sqlx's loop are kicked once. An acquire that runs out of time
    /// while the pool still has room is a failure (connects do not complete); with the
    /// pool full, it is [`ProviderError::Busy`].
    async fn connect_probe(
        &self,
        timeout: Duration,
        deadline: tokio::time::Instant,
        down: bool,
    ) -> Result<Duration, ProviderError> {
        let elapsed = || ProviderError::Timeout {
            phase: TimeoutPhase::HealthCheck,
            after: timeout,
        };
        let inner = &self.inner;
        let started = Instant::now();
        let limit = deadline.saturating_duration_since(tokio::time::Instant::now());
        let acquire = tokio::time::timeout_at(deadline, inner.cache.acquire(limit));
        let reach = async {
            tokio::time::sleep(REACH_AFTER.min(timeout / 4)).await;
            if let Some(at) = self.listener() {
                match tokio::time::timeout_at(deadline, at.reach()).await {
                    Ok(Err(refused)) => return Err::<(), _>(refused),
                    Ok(Ok(())) if down => inner.cache.kick(),
                    _ => {}
                }
            }
            std::future::pending().await
        };
        let conn = tokio::select! {
            acquired = acquire => match acquired {
                Ok(Ok(conn)) => conn,
                Ok(Err(ProviderError::AcquireTimeout { .. })) | Err(_) => {
                    return Err(if inner.cache.has_room() { elapsed() } else {
                        ProviderError::Busy { waited: timeout }
                    });
                }
                Ok(Err(e)) => return Err(e),
            },
            Err(refused) = reach => {
                return Err(ProviderError::Connect(sqlx::Error::Io(refused)));
            }
        };
        ping_by(conn, deadline, timeout, self.inner.failover.as_deref()).await?;
        inner.cache.kick();
        Ok(started.elapsed())
    }

    /// Where the server listens, from the pool's current connect options.
    fn listener(&self) -> Option<Listener> {
        let find = self.inner.listener?;
        find(&self.inner.pool.connect_options())
    }

    /// Whether the server refuses writes now, asked on one pooled connection within
    /// `timeout`; `Ok(true)` when the engine has no way to tell.
    pub async fn read_only(&self, timeout: Duration) -> Result<bool, ProviderError> {
        self.ask(self.inner.read_only.as_ref(), true, timeout).await
    }

    /// Whether the server was promoted moments ago (see
    /// [`EnginePool::recently_promoted`](crate::EnginePool::recently_promoted)), asked on
    /// one pooled connection within `timeout`; `Ok(false)` when the engine cannot tell.
    pub async fn recently_promoted(&self, timeout: Duration) -> Result<bool, ProviderError> {
        self.ask(self.inner.promoted.as_ref(), false, timeout).await
    }

    /// `check`'s answer on one pooled connection within `timeout`; `unknown` without one.
    async fn ask(
        &self,
        check: Option<&super::ReadOnlyFn<DB>>,
        unknown: bool,
        timeout: Duration,
    ) -> Result<bool, ProviderError> {
        let Some(check) = check else {
            return Ok(unknown);
        };
        let ask = async {
            let mut conn = self.acquire_within(timeout).await?;
            check(&mut *conn).await.map_err(ProviderError::Database)
        };
        tokio::time::timeout(timeout, ask)
            .await
            .unwrap_or(Err(ProviderError::Timeout {
                phase: TimeoutPhase::ReadOnlyCheck,
                after: timeout,
            }))
    }
}

/// Pings `conn` by `deadline` and returns it to the pool; one that fails or does not
/// answer in time is closed instead (sqlx would ping it again on release and could hang
/// there). A connection that needs a primary or a standby (`target_session_attrs`) asks
/// the server's role instead, in the same one round trip: a server that changed role (a
/// failover promoted or demoted it) fails the check.
async fn ping_by<DB: Database>(
    mut conn: crate::fast::PooledConnection<DB>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    role: Option<&super::Failover<DB>>,
) -> Result<(), ProviderError> {
    let check = async {
        match role {
            Some(f) if f.checks_role() => f.verify(&mut conn).await,
            _ => conn.ping().await.map_err(ProviderError::Database),
        }
    };
    let outcome = tokio::time::timeout_at(deadline, check).await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            conn.close_broken();
            Err(e)
        }
        Err(_) => {
            conn.close_broken();
            Err(ProviderError::Timeout {
                phase: TimeoutPhase::HealthCheck,
                after: timeout,
            })
        }
    }
}
