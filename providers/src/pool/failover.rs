//! A connection with several servers (`hosts`, a multi-host DSN) and a
//! `target_session_attrs`: which server the pool connects to, and finding another when
//! that one goes away or stops being what the connection needs.
//!
//! sqlx's pool connects to one set of connect options, which it reads afresh for every
//! connect attempt. So the pool's options point at the current host, and:
//! - every new connection is checked (one round trip, only when the target asks for a
//!   role): one to the wrong kind of server is refused in the connect hook, and the
//!   options move on to the next host, which sqlx's own retry then tries;
//! - the supervisor's probe while the connection is down searches the hosts in order
//!   (each connected directly, checked, closed) and points the pool at the first that
//!   will do, so callers waiting out the outage get a connection there.

use super::ReadOnlyFn;
use crate::error::ProviderError;
use crate::settings::{LoadBalanceHosts, TargetSessionAttrs};
use sqlx::{ConnectOptions, Connection, Database, Pool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// The shortest time the search gives one host.
const PER_HOST_FLOOR: Duration = Duration::from_millis(200);

/// A connection's servers and which of them will do.
pub struct Failover<DB: Database> {
    /// Per host; replaced whole when the password changes (`password_file`).
    options: std::sync::RwLock<Vec<Options<DB>>>,
    target: TargetSessionAttrs,
    current: AtomicUsize,
    read_only: ReadOnlyFn<DB>,
    /// How to name a host in an error.
    describe: fn(&Options<DB>) -> String,
}

impl<DB: Database> std::fmt::Debug for Failover<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("hosts", &self.all().len())
            .field("target", &self.target)
            .field("current", &self.current.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Failover<DB> {
    /// The servers `options` (in order; shuffled once under `random`). `None` when there
    /// is nothing to choose: one host, and any server will do.
    pub fn new(
        mut options: Vec<Options<DB>>,
        target: TargetSessionAttrs,
        order: LoadBalanceHosts,
        read_only: ReadOnlyFn<DB>,
        describe: fn(&Options<DB>) -> String,
    ) -> Option<Self> {
        if options.is_empty() || (options.len() == 1 && target == TargetSessionAttrs::Any) {
            return None;
        }
        if order == LoadBalanceHosts::Random {
            fastrand::shuffle(&mut options);
        }
        Some(Failover {
            options: std::sync::RwLock::new(options),
            target,
            current: AtomicUsize::new(0),
            read_only,
            describe,
        })
    }

    /// Every host's options, in order.
    fn all(&self) -> Vec<Options<DB>> {
        self.options
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current host's options.
    pub(super) fn current(&self) -> Options<DB> {
        let all = self.all();
        all[self.current.load(Ordering::Acquire) % all.len()].clone()
    }

    /// Changes every host's options with `f` (a new password).
    pub(super) fn update(&self, f: impl Fn(Options<DB>) -> Options<DB>) {
        let mut all = self
            .options
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *all = all.drain(..).map(f).collect();
    }

    /// Whether a connection needs a server of one role (a primary or a standby).
    pub(super) fn checks_role(&self) -> bool {
        !(self.target.accepts(true) && self.target.accepts(false))
    }

    /// The health check's question on an open connection: `Err` when its server no longer
    /// has the role the target needs (a failover promoted a standby, or the old primary
    /// came back as one). The class clears the pool, so new connections go through
    /// [`admit`](Self::admit) to a server that will do: `ReadOnly` for a primary's
    /// connection on a standby, `Unreachable` for a standby's connection on a primary.
    pub(super) async fn verify(&self, conn: &mut DB::Connection) -> Result<(), ProviderError> {
        let read_only = (self.read_only)(conn)
            .await
            .map_err(ProviderError::Database)?;
        if self.target.accepts(read_only) {
            return Ok(());
        }
        Err(ProviderError::Driver {
            phase: crate::error::Phase::Database,
            class: if read_only {
                crate::classify::ErrorClass::ReadOnly
            } else {
                crate::classify::ErrorClass::Unreachable
            },
            source: Box::new(self.mismatch(&self.current(), self.target)),
        })
    }

    /// The connect hook's check of a new connection: `Err` (and the pool's options moved
    /// to the next host, for sqlx's retry) when its server is not what the target needs.
    pub(super) async fn admit(
        &self,
        conn: &mut DB::Connection,
        pool: Option<&Pool<DB>>,
    ) -> Result<(), sqlx::Error> {
        if self.target.accepts(true) && self.target.accepts(false) {
            return Ok(());
        }
        let read_only = (self.read_only)(conn).await?;
        if self.target.accepts(read_only) {
            return Ok(());
        }
        let all = self.all();
        let at = self.current.load(Ordering::Acquire) % all.len();
        let next = (at + 1) % all.len();
        if self
            .current
            .compare_exchange(at, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && let Some(pool) = pool
        {
            pool.set_connect_options(all[next].clone());
        }
        Err(self.mismatch(&all[at], self.target))
    }

    /// The error for `host`, which is not the kind of server `want` asks for.
    fn mismatch(&self, host: &Options<DB>, want: TargetSessionAttrs) -> sqlx::Error {
        // `want` refuses one role: the server has the other.
        let is = if want.accepts(false) {
            "is read-only (a standby)"
        } else {
            "accepts writes (a primary)"
        };
        sqlx::Error::Io(std::io::Error::other(crate::classify::WrongRole(format!(
            "{} {is}; target_session_attrs is {}",
            (self.describe)(host),
            want.as_str()
        ))))
    }

    /// Finds a server that will do, trying the hosts in order from the current one (under
    /// `prefer-standby`, a standby first, then any), each connected directly, checked
    /// and closed within `limit` in all; makes it the current one and returns its options.
    /// The error is the last host's.
    pub(super) async fn search(&self, limit: Duration) -> Result<Options<DB>, ProviderError> {
        let all = self.all();
        let n = all.len();
        let per_host = (limit / u32::try_from(n).unwrap_or(u32::MAX)).max(PER_HOST_FLOOR);
        let start = self.current.load(Ordering::Acquire);
        let passes: &[TargetSessionAttrs] = match self.target {
            TargetSessionAttrs::PreferStandby => {
                &[TargetSessionAttrs::Standby, TargetSessionAttrs::Any]
            }
            other => &[other][..],
        };
        let search = async {
            let mut last = None;
            for want in passes {
                for k in 0..n {
                    let i = (start + k) % n;
                    let connected = tokio::time::timeout(per_host, all[i].connect()).await;
                    let mut conn = match connected {
                        Ok(Ok(conn)) => conn,
                        Ok(Err(e)) => {
                            last = Some(ProviderError::Connect(e));
                            continue;
                        }
                        Err(_) => {
                            last = Some(ProviderError::Timeout {
                                phase: crate::error::TimeoutPhase::Connect,
                                after: per_host,
                            });
                            continue;
                        }
                    };
                    let fits = if want.accepts(true) && want.accepts(false) {
                        Ok(true)
                    } else {
                        (self.read_only)(&mut conn).await.map(|ro| want.accepts(ro))
                    };
                    let _ = conn.close().await;
                    match fits {
                        Ok(true) => {
                            self.current.store(i, Ordering::Release);
                            return Ok(all[i].clone());
                        }
                        Ok(false) => {
                            last = Some(ProviderError::Connect(self.mismatch(&all[i], *want)));
                        }
                        Err(e) => last = Some(ProviderError::Connect(e)),
                    }
                }
            }
            Err(last.unwrap_or(ProviderError::Closed))
        };
        tokio::time::timeout(limit.max(PER_HOST_FLOOR), search)
            .await
            .unwrap_or(Err(ProviderError::Timeout {
                phase: crate::error::TimeoutPhase::Connect,
                after: limit,
            }))
    }
}
