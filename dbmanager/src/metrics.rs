//! Prometheus metrics (feature `metrics`), on a registry the service passes in.
//!
//! Two sources, no global state and no call in the checkout path beyond the pool's own
//! counters:
//! - on every scrape, a [`Collector`] reads each connection's health and pool statistics
//!   (sizes, pending acquires, the acquire-wait histogram, opens, closes by reason,
//!   timeouts), so a closed connection simply has no series any more;
//! - a [`Subscriber`] of the event stream counts what only events know (reconnect
//!   attempts, pool clears by reason, swaps, unavailable, health-check durations).
//!
//! Every series has the labels `connection` and `type`; pool series also `pool` (`main`,
//! or `diesel` for the diesel view's own pool). A connection with `enable_metrics: false`
//! has none. docs/metrics.md lists each metric with a PromQL example.

use crate::events::{ClearReason, Event, EventKind, Subscriber};
use crate::health::HealthState;
use crate::manager::Manager;
use dbmanager_providers::stats::{CloseReason, PoolStats, WAIT_BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The upper bounds (seconds) of the health-check duration histogram.
const CHECK_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The states `dbmanager_connection_state` has a series for.
const STATES: [HealthState; 4] = [
    HealthState::Connecting,
    HealthState::Healthy,
    HealthState::Unhealthy,
    HealthState::Closed,
];

/// A fixed-bucket histogram of durations in seconds.
#[derive(Debug, Default)]
struct Durations {
    /// Not cumulative; the last slot counts values above the last bound.
    buckets: [AtomicU64; CHECK_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Durations {
    fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let slot = CHECK_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(CHECK_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the event stream counted for one connection.
#[derive(Debug, Default)]
struct Counted {
    reconnect_ok: AtomicU64,
    reconnect_error: AtomicU64,
    clears: [AtomicU64; ClearReason::LABELS.len()],
    swaps: AtomicU64,
    unavailable: AtomicU64,
    leaks_suspected: AtomicU64,
    check_ok: Durations,
    check_error: Durations,
}

/// The event-stream half: counters per connection name.
#[derive(Debug, Default)]
struct Events {
    by_connection: Mutex<HashMap<Arc<str>, Arc<Counted>>>,
}

impl Events {
    fn of(&self, name: &Arc<str>) -> Arc<Counted> {
        let mut map = self
            .by_connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(Arc::clone(name)).or_default())
    }
}

impl Subscriber for Events {
    fn on_event(&self, event: &Event) {
        let inc = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        // A replica's events count apart from its connection's.
        let key = match &event.replica {
            Some(r) => Arc::from(format!("{}/{r}", event.connection)),
            None => Arc::clone(&event.connection),
        };
        let counted = || self.of(&key);
        match &event.kind {
            // Its series go with it; a connection added later under the name starts at 0.
            EventKind::Removed => {
                self.by_connection
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&key);
            }
            EventKind::ReconnectAttempt { result, .. } => {
                let c = counted();
                inc(if result.is_ok() {
                    &c.reconnect_ok
                } else {
                    &c.reconnect_error
                });
            }
            EventKind::PoolCleared { reason, .. } => inc(&counted().clears[reason.label_index()]),
            EventKind::Swapped { .. } => inc(&counted().swaps),
            EventKind::Unavailable { .. } => inc(&counted().unavailable),
            EventKind::LeakSuspected { .. } => inc(&counted().leaks_suspected),
            EventKind::HealthChecked { took, ok } => {
                let c = counted();
                if *ok {
                    c.check_ok.observe(*took);
                } else {
                    c.check_error.observe(*took);
                }
            }
            _ => {}
        }
    }
}

/// The scrape half: reads the manager on every scrape.
struct Scrape {
    manager: std::sync::Weak<crate::manager::Inner>,
    events: Arc<Events>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dbmanager metrics")
    }
}

/// One connection as a scrape sees it.
struct Row {
    labels: [(&'static str, String); 2],
    health: HealthState,
    pools: Vec<(&'static str, PoolStats)>,
    counted: Arc<Counted>,
    replicas: Vec<crate::stats::ReplicaStats>,
}

impl Row {
    fn with(&self, extra: (&'static str, String)) -> [(&'static str, String); 3] {
        let [a, b] = self.labels.clone();
        [a, b, extra]
    }
}

/// A value written with the right encoder call for its family's type.
enum Value {
    Gauge(i64),
    /// A gauge in base units that are not whole (seconds).
    GaugeF(f64),
    Counter(u64),
}

impl Scrape {
    fn rows(&self) -> Vec<Row> {
        let Some(inner) = self.manager.upgrade() else {
            return Vec::new();
        };
        let mgr = Manager::from_inner(inner);
        if mgr.is_closed() {
            return Vec::new();
        }
        mgr.connections()
            .into_iter()
            .filter(|c| c.config().enable_metrics && !c.is_closed())
            .map(|c| {
                let stats = c.stats();
                Row {
                    labels: [
                        ("connection", c.name().to_owned()),
                        ("type", c.kind().to_string()),
                    ],
                    health: stats.health,
                    pools: stats
                        .views
                        .iter()
                        .map(|v| (v.view.as_str(), v.pool))
                        .collect(),
                    counted: self.events.of(&Arc::from(c.name())),
                    replicas: c.replica_stats(),
                }
            })
            .collect()
    }
}

/// Writes one family: its descriptor, then one series per `(labels, value)`.
fn family<L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (L, Value)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let mut s = m.encode_family(&labels)?;
        match value {
            Value::Gauge(v) => s.encode_gauge(&v)?,
            Value::GaugeF(v) => s.encode_gauge(&v)?,
            Value::Counter(v) => {
                s.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)?
            }
        }
    }
    Ok(())
}

/// Writes one histogram family.
fn histograms<L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, f64, u64, Vec<(f64, u64)>)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, sum, count, buckets) in series {
        let mut s: MetricEncoder = m.encode_family(&labels)?;
        s.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

fn buckets(bounds: &[f64], counts: impl Iterator<Item = u64>) -> Vec<(f64, u64)> {
    bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .zip(counts)
        .collect()
}

fn count(v: u64) -> Value {
    Value::Counter(v)
}

fn gauge(v: u64) -> Value {
    Value::Gauge(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let rows = self.rows();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            &mut e,
            "dbmanager_connection_up",
            "1 when the connection is healthy, else 0",
            Gauge,
            rows.iter().map(|r| {
                (
                    r.labels.clone(),
                    gauge(u64::from(r.health == HealthState::Healthy)),
                )
            }),
        )?;
        family(
            &mut e,
            "dbmanager_connection_state",
            "1 for the connection's current health state, 0 for the others",
            Gauge,
            rows.iter().flat_map(|r| {
                STATES.iter().map(move |s| {
                    (
                        r.with(("state", s.as_str().to_owned())),
                        gauge(u64::from(r.health == *s)),
                    )
                })
            }),
        )?;
        let pools = || {
            rows.iter()
                .flat_map(|r| r.pools.iter().map(move |(pool, s)| (r, *pool, s)))
        };
        family(
            &mut e,
            "dbmanager_pool_connections",
            "open connections of the pool, by state (idle, in_use)",
            Gauge,
            pools().flat_map(|(r, pool, s)| {
                let [a, b] = r.labels.clone();
                [
                    (
                        [
                            a.clone(),
                            b.clone(),
                            ("pool", pool.to_owned()),
                            ("state", "idle".to_owned()),
                        ],
                        gauge(u64::from(s.idle)),
                    ),
                    (
                        [
                            a,
                            b,
                            ("pool", pool.to_owned()),
                            ("state", "in_use".to_owned()),
                        ],
                        gauge(u64::from(s.in_use)),
                    ),
                ]
            }),
        )?;
        family(
            &mut e,
            "dbmanager_pool_max_connections",
            "the most connections the pool may open (its share of max_open_conns)",
            Gauge,
            pools().map(|(r, pool, s)| {
                (
                    r.with(("pool", pool.to_owned())),
                    gauge(u64::from(s.max_open)),
                )
            }),
        )?;
        family(
            &mut e,
            "dbmanager_pool_pending_requests",
            "acquires waiting for a connection (or opening one) now",
            Gauge,
            pools().map(|(r, pool, s)| {
                (
                    r.with(("pool", pool.to_owned())),
                    gauge(u64::from(s.pending)),
                )
            }),
        )?;
        histograms(
            &mut e,
            "dbmanager_acquire_duration_seconds",
            "how long acquires through the manager waited for a connection",
            pools().map(|(r, pool, s)| {
                (
                    r.with(("pool", pool.to_owned())),
                    s.wait_duration.as_secs_f64(),
                    s.acquire_count,
                    buckets(&WAIT_BUCKETS, s.wait_buckets.iter().copied()),
                )
            }),
        )?;
        family(
            &mut e,
            "dbmanager_acquire_timeouts",
            "acquires that gave up after acquire_timeout",
            Counter,
            pools()
                .map(|(r, pool, s)| (r.with(("pool", pool.to_owned())), count(s.acquire_timeouts))),
        )?;
        family(
            &mut e,
            "dbmanager_connections_opened",
            "connections the pool opened",
            Counter,
            pools().map(|(r, pool, s)| (r.with(("pool", pool.to_owned())), count(s.opened_total))),
        )?;
        family(
            &mut e,
            "dbmanager_connections_closed",
            "connections the pool closed, by reason",
            Counter,
            pools().flat_map(|(r, pool, s)| {
                CloseReason::ALL
                    .map(|reason| (reason.as_str(), s.closed(reason)))
                    .map(|(reason, n)| {
                        let [a, b] = r.labels.clone();
                        (
                            [
                                a,
                                b,
                                ("pool", pool.to_owned()),
                                ("reason", reason.to_owned()),
                            ],
                            count(n),
                        )
                    })
            }),
        )?;
        family(
            &mut e,
            "dbmanager_pool_clears",
            "times the connection's pool was cleared, by reason",
            Counter,
            rows.iter().flat_map(|r| {
                ClearReason::LABELS
                    .iter()
                    .enumerate()
                    .map(move |(i, reason)| {
                        (
                            r.with(("reason", (*reason).to_owned())),
                            count(load(&r.counted.clears[i])),
                        )
                    })
            }),
        )?;
        family(
            &mut e,
            "dbmanager_reconnect_attempts",
            "probes the supervisor made while the connection was down, by result",
            Counter,
            rows.iter().flat_map(|r| {
                [
                    (
                        r.with(("result", "ok".to_owned())),
                        count(load(&r.counted.reconnect_ok)),
                    ),
                    (
                        r.with(("result", "error".to_owned())),
                        count(load(&r.counted.reconnect_error)),
                    ),
                ]
            }),
        )?;
        family(
            &mut e,
            "dbmanager_swaps",
            "pools replaced by Connection::reconnect",
            Counter,
            rows.iter()
                .map(|r| (r.labels.clone(), count(load(&r.counted.swaps)))),
        )?;
        family(
            &mut e,
            "dbmanager_unavailable",
            "requests refused or timed out by the outage policy (Error::Unavailable)",
            Counter,
            rows.iter()
                .map(|r| (r.labels.clone(), count(load(&r.counted.unavailable)))),
        )?;
        family(
            &mut e,
            "dbmanager_leaks_suspected",
            "checkouts held longer than leak_detection_threshold",
            Counter,
            rows.iter()
                .map(|r| (r.labels.clone(), count(load(&r.counted.leaks_suspected)))),
        )?;
        histograms(
            &mut e,
            "dbmanager_health_check_duration_seconds",
            "how long health checks took, by result",
            rows.iter().flat_map(|r| {
                [
                    ("ok", &r.counted.check_ok),
                    ("error", &r.counted.check_error),
                ]
                .map(|(result, d)| {
                    (
                        r.with(("result", result.to_owned())),
                        load(&d.sum_nanos) as f64 / 1e9,
                        load(&d.count),
                        buckets(&CHECK_BUCKETS, d.buckets.iter().map(load)),
                    )
                })
            }),
        )?;
        encode_replicas(&mut e, &rows)
    }
}

/// The read replicas' families: one series per replica, labelled `replica`.
fn encode_replicas(e: &mut DescriptorEncoder, rows: &[Row]) -> Result<(), std::fmt::Error> {
    use MetricType::{Counter, Gauge};
    let replicas = || {
        rows.iter().flat_map(|r| {
            r.replicas
                .iter()
                .map(move |s| (r.with(("replica", s.name.clone())), s))
        })
    };
    family(
        e,
        "dbmanager_replica_up",
        "1 when the read replica is healthy, else 0",
        Gauge,
        replicas().map(|(l, s)| {
            (
                l,
                gauge(u64::from(s.connection.health == HealthState::Healthy)),
            )
        }),
    )?;
    family(
        e,
        "dbmanager_replica_lagging",
        "1 while the replica is past max_replica_lag (reader() skips it)",
        Gauge,
        replicas().map(|(l, s)| (l, gauge(u64::from(s.lagging)))),
    )?;
    family(
        e,
        "dbmanager_replica_lag_seconds",
        "the replica's replication lag at its last health check (with max_replica_lag)",
        Gauge,
        replicas().filter_map(|(l, s)| Some((l, Value::GaugeF(s.lag?.as_secs_f64())))),
    )?;
    family(
        e,
        "dbmanager_replica_reads",
        "reads reader() sent to the replica",
        Counter,
        replicas().map(|(l, s)| (l, count(s.selected_total))),
    )?;
    histograms(
        e,
        "dbmanager_replica_acquire_duration_seconds",
        "how long acquires on the replica (reads through reader()) waited for a connection",
        replicas().map(|(l, s)| {
            let p = &s.connection.pool;
            (
                l,
                p.wait_duration.as_secs_f64(),
                p.acquire_count,
                buckets(&WAIT_BUCKETS, p.wait_buckets.iter().copied()),
            )
        }),
    )?;
    family(
        e,
        "dbmanager_replica_connections",
        "the replica's open connections, by state (idle, in_use)",
        Gauge,
        replicas().flat_map(|(l, s)| {
            let [a, b, c] = l;
            let p = &s.connection.pool;
            [
                (
                    [
                        a.clone(),
                        b.clone(),
                        c.clone(),
                        ("state", "idle".to_owned()),
                    ],
                    gauge(u64::from(p.idle)),
                ),
                (
                    [a, b, c, ("state", "in_use".to_owned())],
                    gauge(u64::from(p.in_use)),
                ),
            ]
        }),
    )
}

impl Manager {
    /// Registers this manager's metrics on `registry` (the service's own; nothing is
    /// global). Two managers can share a registry through sub-registries with a label of
    /// their own (`registry.sub_registry_with_label(("manager", "a".into()))`), or use one
    /// registry each. Call it once per manager and registry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> dbmanager::Result<()> {
    /// let mgr = dbmanager::Manager::from_yaml_str(
    ///     "connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\n",
    /// )?;
    /// use dbmanager::prometheus_client;
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// mgr.register_metrics(&mut registry);
    /// mgr.connect().await?;
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains(r#"dbmanager_connection_up{connection="cache",type="sqlite"} 1"#));
    /// # mgr.close().await; Ok(()) }
    /// ```
    pub fn register_metrics(&self, registry: &mut Registry) {
        let events = Arc::new(Events::default());
        self.add_subscriber(Arc::clone(&events) as Arc<dyn Subscriber>);
        registry.register_collector(Box::new(Scrape {
            manager: self.downgrade(),
            events,
        }));
    }
}
