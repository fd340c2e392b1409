//! A real Patroni cluster (etcd, two PostgreSQL 15 nodes, `synchronous_mode: true`,
//! `ttl: 10`) whose leader is killed (kill -9 of Patroni and of PostgreSQL) under a
//! TPC-B-like write load through `retry`, seen through both topologies at once:
//! - `proxied`: HAProxy routing to the leader by Patroni's `GET /primary`, with a replica
//!   through HAProxy's `GET /replica` route;
//! - `direct`: both nodes in `hosts` with `target_session_attrs: read-write`, with a
//!   replica over the same hosts with `target_session_attrs: standby`.
//!
//! Every acknowledged transaction is present exactly once afterwards (and the balances
//! agree with the history), no write is refused as read-only, reads through `reader()`
//! keep answering, the old leader rejoins as a standby that serves reads again, and a
//! planned switchover back to it is followed by both topologies.

use crate::support::blocking;
use crate::support::patroni::{Patroni, Role, SUPERUSER};
use dbmanager::{Connection, ErrorClass, Manager, PooledConnection};
use sqlx::Connection as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writers per topology (16 in all, as a service's pool under load).
const WRITERS: usize = 8;
/// Readers per topology.
const READERS: usize = 2;
/// pgbench's scale 1: 100,000 accounts, 10 tellers, 1 branch.
const ACCOUNTS: i32 = 100_000;

fn yaml(c: &Patroni) -> String {
    let common = format!(
        "    type: postgres\n    user: {SUPERUSER}\n    password: '{}'\n    database: postgres\n    \
         sslmode: disable\n    health_check_interval: 1s\n    retry_delay: 100ms\n    \
         retry_max_delay: 500ms\n    connect_timeout: 2s\n    max_open_conns: 6\n",
        c.password
    );
    let hosts: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("'127.0.0.1:{}'", n.pg_port))
        .collect();
    let hosts = hosts.join(", ");
    format!(
        "connections:\n  proxied:\n{common}    application_name: proxied\n    host: 127.0.0.1\n    port: {}\n    replicas:\n      \
         - name: standby\n        host: 127.0.0.1\n        port: {}\n  direct:\n{common}    application_name: direct\n    \
         hosts: [{hosts}]\n    target_session_attrs: read-write\n    replicas:\n      \
         - name: standby\n        hosts: [{hosts}]\n        target_session_attrs: standby\n",
        c.primary_port, c.replica_port
    )
}

/// pgbench's TPC-B-like transaction, its history row carrying `id`. Returns the port of
/// the server that committed it.
async fn tpcb(mut c: PooledConnection<sqlx::Postgres>, id: i32) -> Result<i32, sqlx::Error> {
    let aid = fastrand::i32(1..=ACCOUNTS);
    let tid = fastrand::i32(1..=10);
    let delta = fastrand::i32(-5000..=5000);
    let mut tx = c.begin().await?;
    sqlx::query("update pgbench_accounts set abalance = abalance + $1 where aid = $2")
        .bind(delta)
        .bind(aid)
        .execute(&mut *tx)
        .await?;
    sqlx::query_scalar::<_, i32>("select abalance from pgbench_accounts where aid = $1")
        .bind(aid)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("update pgbench_tellers set tbalance = tbalance + $1 where tid = $2")
        .bind(delta)
        .bind(tid)
        .execute(&mut *tx)
        .await?;
    sqlx::query("update pgbench_branches set bbalance = bbalance + $1 where bid = 1")
        .bind(delta)
        .execute(&mut *tx)
        .await?;
    let port = sqlx::query_scalar::<_, i32>(
        "insert into pgbench_history (tid, bid, aid, delta, mtime, id) \
         values ($1, 1, $2, $3, now(), $4) returning inet_server_port()",
    )
    .bind(tid)
    .bind(aid)
    .bind(delta)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(port)
}

/// What one topology's tasks saw.
#[derive(Default)]
struct Seen {
    /// Acknowledged transactions: id, server port, when.
    acks: Mutex<Vec<(i32, i32, Instant)>>,
    failed: AtomicU32,
    /// When writes were refused as read-only.
    refused_read_only: Mutex<Vec<Instant>>,
    last_error: Mutex<Option<String>>,
    /// Reads: when they started, how long they took, the port that answered.
    reads: Mutex<Vec<(Instant, Duration, i32)>>,
    reads_failed: AtomicU32,
    last_read_error: Mutex<Option<String>>,
}

impl Seen {
    fn first_ack_on(&self, port: u16, after: Instant) -> Option<Instant> {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .find(|(_, p, at)| *p == i32::from(port) && *at > after)
            .map(|(_, _, at)| *at)
    }

    fn read_from(&self, port: u16, after: Instant) -> bool {
        self.reads
            .lock()
            .unwrap()
            .iter()
            .any(|(at, _, p)| *p == i32::from(port) && *at > after)
    }
}

fn spawn_load(
    tasks: &mut tokio::task::JoinSet<()>,
    conn: &Connection,
    seen: &Arc<Seen>,
    next_id: &Arc<AtomicI32>,
    stop: &Arc<AtomicBool>,
) {
    for _ in 0..WRITERS {
        let (conn, seen, next_id, stop) =
            (conn.clone(), seen.clone(), next_id.clone(), stop.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                match conn.retry(move |c| tpcb(c, id)).await {
                    Ok(port) => seen.acks.lock().unwrap().push((id, port, Instant::now())),
                    // The commit's outcome is unknown (the connection was lost while it
                    // ran): `retry` returns it, and it is not counted as acknowledged.
                    Err(e) => {
                        seen.failed.fetch_add(1, Ordering::Relaxed);
                        if e.class() == Some(ErrorClass::ReadOnly) {
                            seen.refused_read_only.lock().unwrap().push(Instant::now());
                        }
                        seen.last_error.lock().unwrap().replace(e.to_string());
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        });
    }
    for _ in 0..READERS {
        let (conn, seen, stop) = (conn.clone(), seen.clone(), stop.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let started = Instant::now();
                let read = match conn.reader() {
                    Ok(r) => {
                        r.retry_idempotent(|mut c: PooledConnection<sqlx::Postgres>| async move {
                            sqlx::query_scalar::<_, i32>(
                                "select inet_server_port() from pgbench_branches where bid = 1",
                            )
                            .fetch_one(&mut *c)
                            .await
                        })
                        .await
                    }
                    Err(e) => Err(e),
                };
                match read {
                    Ok(port) => seen
                        .reads
                        .lock()
                        .unwrap()
                        .push((started, started.elapsed(), port)),
                    Err(e) => {
                        seen.reads_failed.fetch_add(1, Ordering::Relaxed);
                        seen.last_read_error.lock().unwrap().replace(e.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

/// When a fresh connection to any of `urls` first takes a write (`txid_current()`) on
/// the server listening on `on`, polled every 50 ms.
async fn first_fresh_write(urls: Vec<String>, on: u16) -> Instant {
    loop {
        for url in &urls {
            let attempt = async {
                let mut c = sqlx::PgConnection::connect(url).await.ok()?;
                // Both columns, so the write check is not planned away.
                let port =
                    sqlx::query_as::<_, (i32, i64)>("select inet_server_port(), txid_current()")
                        .fetch_one(&mut c)
                        .await
                        .ok()
                        .map(|(port, _)| port);
                let _ = c.close().await;
                (port == Some(i32::from(on))).then(Instant::now)
            };
            if let Ok(Some(at)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
                return at;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The budget of each topology's sessions on the servers: 6 for the connection (fewer
/// than its 8 writers, so they queue) and 6 for its replica (each replica has a budget
/// of its own).
const BUDGET: i64 = 12;

/// The most sessions each topology (by `application_name`) had at once on both nodes,
/// from `pg_stat_activity`, sampled every 50 ms until `stop`. The two nodes cannot be
/// read at one instant: a sum over the budget is read again at once, and counts only
/// if still over (a session closed on one node after it was counted, while another
/// opened on the other, is not two at once).
async fn sample_sessions(urls: Vec<String>, stop: Arc<AtomicBool>) -> HashMap<String, i64> {
    async fn once(
        urls: &[String],
        conns: &mut [Option<sqlx::PgConnection>],
    ) -> HashMap<String, i64> {
        let mut now: HashMap<String, i64> = HashMap::new();
        for (url, conn) in urls.iter().zip(conns.iter_mut()) {
            if conn.is_none() {
                let connect = sqlx::PgConnection::connect(url);
                *conn = tokio::time::timeout(Duration::from_millis(500), connect)
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            let Some(c) = conn.as_mut() else { continue };
            let rows = sqlx::query_as::<_, (String, i64)>(
                "select application_name, count(*) from pg_stat_activity \
                 where application_name in ('proxied', 'direct') group by 1",
            )
            .fetch_all(c);
            match tokio::time::timeout(Duration::from_millis(500), rows).await {
                Ok(Ok(rows)) => {
                    for (app, n) in rows {
                        *now.entry(app).or_default() += n;
                    }
                }
                _ => *conn = None,
            }
        }
        now
    }
    let urls: Vec<String> = urls
        .into_iter()
        .map(|u| format!("{u}&application_name=sampler"))
        .collect();
    let mut conns: Vec<Option<sqlx::PgConnection>> = urls.iter().map(|_| None).collect();
    let mut max: HashMap<String, i64> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        let mut now = once(&urls, &mut conns).await;
        if now.values().any(|n| *n > BUDGET) {
            let again = once(&urls, &mut conns).await;
            for (app, n) in &mut now {
                *n = (*n).min(again.get(app).copied().unwrap_or(0));
            }
        }
        for (app, n) in now {
            let m = max.entry(app).or_default();
            *m = (*m).max(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    max
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patroni_failover_and_switchover_are_followed_through_haproxy_and_multi_host() {
    let mut cluster = blocking(|| Patroni::start("patroni-pw")).await;
    let old = cluster.leader().expect("a leader");
    let new = 1 - old;
    let (old_port, new_port) = (cluster.nodes[old].pg_port, cluster.nodes[new].pg_port);

    // pgbench's tables at scale 1, each history row with the transaction's id.
    let out = std::process::Command::new("pgbench")
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-U",
            SUPERUSER,
            "postgres",
        ])
        .args(["-p", &old_port.to_string()])
        .env("PGPASSWORD", &cluster.password)
        .output()
        .expect("run pgbench -i");
    assert!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut admin = sqlx::PgConnection::connect(&cluster.url(old_port))
        .await
        .unwrap();
    sqlx::query("alter table pgbench_history add column id int")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.ok();

    let mgr = Manager::from_yaml_str(&yaml(&cluster)).unwrap();
    mgr.connect().await.unwrap();
    let events = crate::support::Recorder::start(&mgr);
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_sessions(
        cluster
            .nodes
            .iter()
            .map(|n| cluster.url(n.pg_port))
            .collect(),
        sampling.clone(),
    ));
    let topologies = ["proxied", "direct"];
    let seen: HashMap<&str, Arc<Seen>> = topologies
        .iter()
        .map(|t| (*t, Arc::new(Seen::default())))
        .collect();
    let next_id = Arc::new(AtomicI32::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for t in topologies {
        spawn_load(&mut tasks, &mgr.get(t).unwrap(), &seen[t], &next_id, &stop);
    }
    // Both replicas serve reads from the standby before the failover.
    let start = Instant::now();
    wait_for(
        "reads from the standby through both replicas",
        Duration::from_secs(20),
        || {
            topologies
                .iter()
                .all(|t| seen[t].read_from(new_port, start))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let killed = Instant::now();
    tokio::task::block_in_place(|| cluster.kill9(old));
    let all_nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| cluster.url(n.pg_port))
        .collect();
    let proxy = vec![cluster.url(cluster.primary_port)];
    let fresh_proxied = tokio::spawn(first_fresh_write(proxy.clone(), new_port));
    let fresh_direct = tokio::spawn(first_fresh_write(all_nodes.clone(), new_port));
    wait_for(
        "writes on the new leader through both topologies",
        Duration::from_secs(60),
        || {
            topologies
                .iter()
                .all(|t| seen[t].first_ack_on(new_port, killed).is_some())
        },
    )
    .await;
    let fresh = [fresh_proxied.await.unwrap(), fresh_direct.await.unwrap()];

    // The old leader comes back: it rejoins as a standby and serves reads again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = Instant::now();
    tokio::task::block_in_place(|| cluster.restart(old));
    let rejoined = {
        let c = &cluster;
        tokio::task::block_in_place(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while c.role(old) != Role::Replica {
                assert!(
                    Instant::now() < deadline,
                    "the old leader did not rejoin as a standby"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Instant::now()
        })
    };
    wait_for(
        "reads from the rejoined standby through both replicas",
        Duration::from_secs(30),
        || {
            topologies
                .iter()
                .all(|t| seen[t].read_from(old_port, rejoined))
        },
    )
    .await;
    let reading_again = Instant::now();

    // A planned switchover back to the old node: both topologies follow it.
    let switching = Instant::now();
    let switch_fresh = [
        tokio::spawn(first_fresh_write(proxy, old_port)),
        tokio::spawn(first_fresh_write(all_nodes, old_port)),
    ];
    {
        let c = &cluster;
        tokio::task::block_in_place(|| c.switchover(old));
    }
    wait_for(
        "writes on the switchover's new leader through both topologies",
        Duration::from_secs(30),
        || {
            topologies
                .iter()
                .all(|t| seen[t].first_ack_on(old_port, switching).is_some())
        },
    )
    .await;
    let mut switch_fresh_at = Vec::new();
    for f in switch_fresh {
        switch_fresh_at.push(f.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Release);
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    sampling.store(true, Ordering::Release);
    let peak = sampler.await.unwrap();

    // Exactly once, on the last leader: every acknowledged id present once, none twice,
    // and the balances agree with the history.
    let mut on_new = sqlx::PgConnection::connect(&cluster.url(old_port))
        .await
        .unwrap();
    let ids: Vec<i32> = sqlx::query_scalar("select id from pgbench_history")
        .fetch_all(&mut on_new)
        .await
        .unwrap();
    let mut counts: HashMap<i32, u32> = HashMap::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    let twice: Vec<i32> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(twice, [] as [i32; 0], "transactions present twice");
    let (accounts, history): (i64, i64) = sqlx::query_as(
        "select (select sum(abalance)::bigint from pgbench_accounts), \
                (select coalesce(sum(delta), 0)::bigint from pgbench_history)",
    )
    .fetch_one(&mut on_new)
    .await
    .unwrap();
    assert_eq!(accounts, history, "the balances disagree with the history");

    for ((t, fresh), switch_fresh) in topologies.iter().zip(fresh).zip(switch_fresh_at) {
        let s = &seen[t];
        let resumed = s.first_ack_on(new_port, killed).unwrap();
        let switched = s.first_ack_on(old_port, switching).unwrap();
        let acks = s.acks.lock().unwrap();
        let lost: Vec<i32> = acks
            .iter()
            .filter(|(id, _, _)| !counts.contains_key(id))
            .map(|(id, _, _)| *id)
            .collect();
        let paused = acks
            .iter()
            .filter(|(_, p, at)| *p == i32::from(new_port) && *at < switched)
            .map(|(_, _, at)| *at)
            .max()
            .map(|last| switched.saturating_duration_since(last))
            .unwrap_or_default();
        // Refusals before the switchover began (the crash failover and the rejoin) and
        // after it (HAProxy still routing to the demoted leader: see docs/scaling.md).
        let refused = s.refused_read_only.lock().unwrap().clone();
        let refused_in_failover = refused.iter().filter(|at| **at < switching).count();
        let reads = s.reads.lock().unwrap();
        let longest = reads
            .iter()
            .map(|(_, took, _)| *took)
            .max()
            .unwrap_or_default();
        let conn = mgr.get(t).unwrap();
        let opened = conn.stats().pool.opened_total
            + conn
                .replica_stats()
                .iter()
                .map(|r| r.connection.pool.opened_total)
                .sum::<u64>();
        let clears = events.count_for(t, |k| matches!(k, dbmanager::EventKind::PoolCleared { .. }));
        println!(
            "{t}: killed at 0; a fresh connection wrote at {:.2?}, the service at {:.2?} ({:+.0} ms); \
             {} acknowledged ({} on the new leader), {} lost, 0 twice; {} failed ({} refused as \
             read-only in the failover, {} in the switchover), the last with {:?}; {} reads, {} failed, the longest {:.0?}; the rejoined \
             standby served reads {:.2?} after it rejoined ({:.2?} after its restart); a \
             switchover paused writes {:.2?} (a fresh connection first wrote on the new leader \
             {:.2?} after the switchover began, the service {:.2?}); {opened} sessions opened and {clears} pool clears \
             in all (primary and replica), at most {} at once on the servers",
            fresh - killed,
            resumed - killed,
            (resumed.duration_since(killed).as_secs_f64()
                - fresh.duration_since(killed).as_secs_f64())
                * 1000.0,
            acks.len(),
            acks.iter()
                .filter(|(_, p, _)| *p == i32::from(new_port))
                .count(),
            lost.len(),
            s.failed.load(Ordering::Relaxed),
            refused_in_failover,
            refused.len() - refused_in_failover,
            s.last_error.lock().unwrap(),
            reads.len(),
            s.reads_failed.load(Ordering::Relaxed),
            longest,
            reading_again.saturating_duration_since(rejoined),
            reading_again.saturating_duration_since(restarted),
            paused,
            switch_fresh - switching,
            switched - switching,
            peak.get(*t).copied().unwrap_or(0),
        );
        assert_eq!(
            lost,
            [] as [i32; 0],
            "{t}: acknowledged transactions missing"
        );
        assert_eq!(
            refused_in_failover, 0,
            "{t}: writes refused as read-only in the failover"
        );
        assert_eq!(
            s.reads_failed.load(Ordering::Relaxed),
            0,
            "{t}: reads failed: {:?}",
            s.last_read_error.lock().unwrap()
        );
        // A bound far above what was measured, below `acquire_timeout` (30 s): a reader
        // that waited out a vanished replica would show here.
        assert!(
            longest < Duration::from_secs(15),
            "{t}: a read took {longest:?}"
        );
        // No reconnect storm on a node of the wrong role: a few sessions per writer and
        // reader over the whole run, and a clear per failover, not hundreds.
        assert!(opened < 400, "{t}: {opened} sessions opened");
        let most = peak.get(*t).copied().unwrap_or(0);
        assert!(most > 0, "{t}: the sampler saw no session");
        assert!(
            most <= BUDGET,
            "{t}: {most} sessions at once on the servers"
        );
        assert!(clears < 60, "{t}: {clears} pool clears");
        assert!(
            resumed.saturating_duration_since(fresh) < Duration::from_secs(5),
            "{t}: writes resumed {:?} after a fresh connection could write",
            resumed.saturating_duration_since(fresh)
        );
    }
    mgr.close().await;
}
