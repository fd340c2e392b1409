//! Read replicas: [`Connection::reader`] picks one by the `load_balancing` strategy among
//! those healthy and caught up. Each replica is a [`Connection`] of its own (supervised,
//! health-checked, reconnected), built from the connection's settings with the replica's
//! address; its supervisor also measures its replication lag when `max_replica_lag` is
//! set.

use super::{Connection, Inner};
use crate::config::{ConnectionConfig, Fallback, LoadBalancing, ReplicaConfig};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::health::HealthState;
use crate::stats::ReplicaStats;
use dbmanager_providers::LagSample;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One replica of a connection.
pub(crate) struct Replica {
    pub(crate) name: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) conn: Connection,
}

/// The lag a replica has not measured yet (or cannot).
pub(crate) const LAG_UNKNOWN: u64 = u64::MAX;

pub(crate) fn build(
    configs: &[ReplicaConfig],
    shared: &super::Shared,
    primary: &std::sync::Weak<Inner>,
) -> Vec<Arc<Replica>> {
    configs
        .iter()
        .map(|r| {
            Arc::new(Replica {
                name: Arc::from(r.name.as_str()),
                weight: r.weight,
                conn: Connection::with_role(
                    r.config.clone(),
                    shared,
                    Some((Arc::from(r.name.as_str()), primary.clone())),
                ),
            })
        })
        .collect()
}

/// Whether two settings have the same replicas (secrets included).
pub(crate) fn same_replicas(a: &ConnectionConfig, b: &ConnectionConfig) -> bool {
    a.replicas == b.replicas
}

/// Whether two settings differ in their replicas (and how reads pick them) at most.
pub(crate) fn same_but_replicas(a: &ConnectionConfig, b: &ConnectionConfig) -> bool {
    let strip = |c: &ConnectionConfig| {
        let mut c = c.clone();
        c.replicas.clear();
        c.load_balancing = LoadBalancing::default();
        c.fallback = Fallback::default();
        c.max_replica_lag = None;
        c
    };
    strip(a) == strip(b)
}

impl Replica {
    /// Healthy and caught up: two atomic loads (no `Health` clone), as `reader()` asks
    /// it of every replica on every read.
    fn usable(&self) -> bool {
        let inner = &self.conn.inner;
        inner.health.load().state == HealthState::Healthy && !inner.lagging.load(Ordering::Acquire)
    }

    /// Connections in use now, without building the full statistics.
    fn in_use(&self) -> u64 {
        self.conn.in_use().into()
    }
}

impl Connection {
    /// A connection for reads: one of the `replicas` that is healthy and within
    /// `max_replica_lag`, picked by `load_balancing`; when none is, the connection itself
    /// (`fallback: primary`, the default) or [`Error::NoReplica`] (`fallback: error`).
    /// Without replicas, the connection itself. Use it as any connection:
    /// `conn.reader()?.acquire::<sqlx::Postgres>()`, `.postgres()`, `.sea_orm()`...
    /// A replica refuses writes (PostgreSQL SQLSTATE 25006); writes go to the connection
    /// itself.
    pub fn reader(&self) -> Result<Connection> {
        let replicas = self.inner.replicas.load();
        if replicas.is_empty() {
            return Ok(self.clone());
        }
        let usable: Vec<&Arc<Replica>> = replicas.iter().filter(|r| r.usable()).collect();
        let total: u64 = usable.iter().map(|r| u64::from(r.weight)).sum();
        let config = self.inner.config.load();
        let picked = if total == 0 {
            None
        } else {
            match config.load_balancing {
                LoadBalancing::RoundRobin => {
                    let n = self.inner.next_read.fetch_add(1, Ordering::Relaxed) as u64 % total;
                    by_weight(&usable, n)
                }
                LoadBalancing::Random => by_weight(&usable, fastrand::u64(0..total)),
                LoadBalancing::LeastConnections => usable
                    .iter()
                    .min_by(|a, b| {
                        // in_use / weight, compared without division.
                        (a.in_use() * u64::from(b.weight)).cmp(&(b.in_use() * u64::from(a.weight)))
                    })
                    .copied(),
            }
        };
        match (picked, config.fallback) {
            (Some(r), _) => {
                r.conn.inner.selected.fetch_add(1, Ordering::Relaxed);
                Ok(r.conn.clone())
            }
            (None, Fallback::Primary) => Ok(self.clone()),
            (None, Fallback::Error) => Err(Error::NoReplica {
                name: self.name().to_owned(),
            }),
        }
    }

    /// The replica called `name` (for its health, stats, or a direct query).
    pub fn replica(&self, name: &str) -> Option<Connection> {
        self.inner
            .replicas
            .load()
            .iter()
            .find(|r| &*r.name == name)
            .map(|r| r.conn.clone())
    }

    /// On a replica whose connection has `fallback: primary`: that connection, where a
    /// read goes when the replica is down or goes down during the checkout.
    pub(crate) fn falls_back_to(&self) -> Option<Connection> {
        let primary = self.inner.primary.upgrade()?;
        let falls_back = primary.config.load().fallback == Fallback::Primary
            && !primary.closed.load(Ordering::Acquire);
        falls_back.then_some(Connection { inner: primary })
    }

    /// Gives new sessions of this connection and its replicas passwords from `provider`
    /// (see [`Manager::set_credential_provider`](crate::Manager::set_credential_provider)).
    pub(crate) fn set_credentials(&self, provider: dbmanager_providers::context::Credentials) {
        for r in self.replicas() {
            r.set_credentials(provider.clone());
        }
        *self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(provider);
    }

    /// Gives the connection's credential provider (if any) to its current replicas (new
    /// ones, after a reload changed them).
    pub(crate) fn credentials_to_replicas(&self) {
        let provider = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(provider) = provider {
            for r in self.replicas() {
                r.set_credentials(provider.clone());
            }
        }
    }

    /// This connection's replica name, if it is a replica.
    pub fn replica_name(&self) -> Option<&str> {
        self.inner.replica_of.as_deref()
    }

    /// Every replica's state.
    pub fn replica_stats(&self) -> Vec<ReplicaStats> {
        self.inner
            .replicas
            .load()
            .iter()
            .map(|r| {
                let lag = r.conn.inner.lag_ms.load(Ordering::Acquire);
                ReplicaStats {
                    name: r.name.to_string(),
                    weight: r.weight,
                    lag: (lag != LAG_UNKNOWN).then(|| Duration::from_millis(lag)),
                    lagging: r.conn.inner.lagging.load(Ordering::Acquire),
                    selected_total: r.conn.inner.selected.load(Ordering::Relaxed),
                    connection: r.conn.stats(),
                }
            })
            .collect()
    }

    /// Every replica's connection, in the order of `replicas`.
    pub fn replicas(&self) -> Vec<Connection> {
        self.inner
            .replicas
            .load()
            .iter()
            .map(|r| r.conn.clone())
            .collect()
    }

    /// Opens every replica (lazily: one that is down comes up in the background).
    pub(crate) async fn open_replicas(&self) {
        let conns = self.replicas();
        for (c, r) in conns
            .iter()
            .zip(futures_util::future::join_all(conns.iter().map(|c| c.open())).await)
        {
            if let Err(e) = r {
                tracing::warn!(connection = %self.name(), replica = c.replica_name().unwrap_or(""), error = %e, "replica not opened");
            }
        }
    }

    /// Replaces the replicas by new ones built from `new` (a reload changed them): the new
    /// ones open, then the old ones drain and close.
    pub(crate) async fn replace_replicas(&self, new: &ConnectionConfig, shared: &super::Shared) {
        let fresh = build(&new.replicas, shared, &self.inner.me);
        let old = self.inner.replicas.swap(Arc::new(fresh));
        self.credentials_to_replicas();
        self.open_replicas().await;
        futures_util::future::join_all(old.iter().map(|r| r.conn.close())).await;
    }
}

/// The replica at position `n` of the weighted cycle.
fn by_weight<'a>(usable: &[&'a Arc<Replica>], mut n: u64) -> Option<&'a Arc<Replica>> {
    for r in usable {
        let w = u64::from(r.weight);
        if n < w {
            return Some(r);
        }
        n -= w;
    }
    None
}

impl Inner {
    /// After a successful health check of a replica with `max_replica_lag`: measures its
    /// lag and marks it lagging (skipped) or caught up. A failed measurement keeps the
    /// last verdict.
    pub(crate) async fn check_lag(&self) {
        if self.replica_of.is_none() {
            return;
        }
        let config = self.config.load_full();
        let Some(limit) = config.max_replica_lag else {
            return;
        };
        let Some(pools) = self.pools.load_full() else {
            return;
        };
        let measured =
            tokio::time::timeout(config.health_check_timeout, pools.main.replication_lag()).await;
        let Ok(Some(sample)) = measured else {
            return;
        };
        let lag = self.lag_from(sample);
        let ms = u64::try_from(lag.as_millis()).unwrap_or(LAG_UNKNOWN - 1);
        self.lag_ms.store(ms, Ordering::Release);
        let lagging = lag > limit;
        if self.lagging.swap(lagging, Ordering::AcqRel) != lagging {
            self.emit(EventKind::ReplicaLag { lag, lagging });
        }
    }
}

impl Inner {
    /// The lag a sample means. Behind, the lag is at least the server's figure and at
    /// least how long the applied position has not moved: PostgreSQL has no replay
    /// timestamp until a standby replays its first transaction, so a standby paused
    /// since it started reports none.
    fn lag_from(&self, s: LagSample) -> Duration {
        let mut stalled = self
            .stalled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.caught_up {
            *stalled = None;
            return Duration::ZERO;
        }
        let since = match (&*stalled, &s.applied) {
            (Some((at, since)), Some(now)) if at == now => *since,
            _ => std::time::Instant::now(),
        };
        *stalled = s.applied.clone().map(|a| (a, since));
        s.server_lag.unwrap_or_default().max(since.elapsed())
    }
}
