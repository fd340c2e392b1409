//! [`ManagedPool`] driven without a server by a mock connector that can be slow, fail,
//! hang, or die mid-use; "sessions" are the mock connections alive, counted as a server
//! would (a connection is a session from connect until it is dropped).

use super::*;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

/// How the mock behaves; shared with the test, which changes it as it goes.
#[derive(Default)]
struct Behaviour {
    connect_delay: Duration,
    connect_fails: bool,
    connect_hangs: bool,
    ping_hangs: bool,
}

#[derive(Clone, Default)]
struct Mock {
    behaviour: Arc<Mutex<Behaviour>>,
    /// Sessions alive now, and the most ever alive at once.
    alive: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    connects: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct MockConn {
    alive: Arc<AtomicUsize>,
    /// Set by the test: the server hung up on this one.
    dead: Arc<AtomicBool>,
    id: usize,
}

impl Drop for MockConn {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Mock {
    fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }
    fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Connector for Mock {
    type Conn = MockConn;

    async fn connect(&self) -> Result<MockConn, ProviderError> {
        let (delay, fails, hangs) = {
            let b = self.behaviour.lock().unwrap();
            (b.connect_delay, b.connect_fails, b.connect_hangs)
        };
        let id = self.connects.fetch_add(1, Ordering::SeqCst);
        if hangs {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(delay).await;
        if fails {
            return Err(ProviderError::Closed);
        }
        let now = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Ok(MockConn {
            alive: Arc::clone(&self.alive),
            dead: Arc::new(AtomicBool::new(false)),
            id,
        })
    }

    async fn ping(&self, conn: &mut MockConn) -> Result<(), ProviderError> {
        let hangs = self.behaviour.lock().unwrap().ping_hangs;
        if hangs {
            std::future::pending::<()>().await;
        }
        if conn.dead.load(Ordering::SeqCst) {
            return Err(ProviderError::Closed);
        }
        Ok(())
    }

    fn is_broken(&self, conn: &mut MockConn) -> bool {
        conn.dead.load(Ordering::SeqCst)
    }
}

fn settings(max_open: u32) -> PoolSettings {
    let mut s = PoolSettings::with_max_open(max_open);
    s.max_idle = max_open;
    s.acquire_timeout = Duration::from_secs(5);
    s.connect_timeout = Duration::from_millis(200);
    s
}

async fn pool(mock: &Mock, max_open: u32) -> ManagedPool<Mock> {
    ManagedPool::open(
        mock.clone(),
        settings(max_open),
        false,
        PoolContext::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn never_more_sessions_than_the_budget_and_waiters_served_in_order() {
    let mock = Mock::default();
    mock.set(|b| b.connect_delay = Duration::from_millis(2));
    let pool = pool(&mock, 3).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (pool, order) = (pool.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                let conn = pool.acquire().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(3)).await;
                drop(conn);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        mock.peak() <= 3,
        "{} sessions at once for a budget of 3",
        mock.peak()
    );
    assert_eq!(
        pool.stats().opened_total,
        3,
        "connections are reused, not reopened"
    );
    // The waiters (all but the first three) got a connection in the order they asked.
    let order = order.lock().unwrap().clone();
    let waited: Vec<_> = order.iter().copied().filter(|i| *i >= 3).collect();
    assert!(waited.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    pool.close(Duration::from_secs(1)).await;
    assert_eq!(mock.alive(), 0);
}

#[tokio::test]
async fn a_health_check_on_a_pool_busy_the_whole_time_is_no_verdict() {
    let mock = Mock::default();
    let pool = pool(&mock, 2).await;
    let held = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    let result = pool.ping(Duration::from_millis(50)).await;
    assert!(
        matches!(result, Err(ProviderError::Busy { .. })),
        "{result:?}"
    );
    assert!(!result.unwrap_err().class().clears_pool());
    drop(held);
    assert!(pool.ping(Duration::from_millis(50)).await.is_ok());
    pool.close(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_connect_that_hangs_fails_within_connect_timeout_and_leaves_no_session() {
    let mock = Mock::default();
    mock.set(|b| b.connect_hangs = true);
    let pool = pool(&mock, 2).await;
    let started = Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                phase: TimeoutPhase::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mock.alive(), 0);
    // A failing connect is reported as such, and the pool recovers once it succeeds.
    mock.set(|b| {
        b.connect_hangs = false;
        b.connect_fails = true;
    });
    assert!(pool.acquire().await.is_err());
    mock.set(|b| b.connect_fails = false);
    assert!(pool.acquire().await.is_ok());
    pool.close(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_connection_that_died_mid_use_is_never_handed_out_again() {
    let mock = Mock::default();
    let pool = pool(&mock, 2).await;
    let conn = pool.acquire().await.unwrap();
    let (id, dead) = (conn.id, Arc::clone(&conn.dead));
    dead.store(true, Ordering::SeqCst);
    drop(conn);
    let next = pool.acquire().await.unwrap();
    assert_ne!(next.id, id, "the dead connection came back");
    drop(next);
    assert_eq!(mock.alive(), 1, "the dead one was closed");
    assert_eq!(pool.stats().closed_broken, 1);
    pool.close(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_health_check_whose_ping_hangs_fails_and_discards_the_connection() {
    let mock = Mock::default();
    let pool = pool(&mock, 2).await;
    drop(pool.acquire().await.unwrap());
    assert_eq!(mock.alive(), 1);
    mock.set(|b| b.ping_hangs = true);
    let result = pool.ping(Duration::from_millis(50)).await;
    assert!(
        matches!(result, Err(ProviderError::Timeout { .. })),
        "{result:?}"
    );
    assert_eq!(mock.alive(), 0, "the unanswered connection was closed");
    pool.close(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn clear_closes_idle_sessions_now_and_busy_ones_when_returned() {
    let mock = Mock::default();
    let pool = pool(&mock, 3).await;
    let (a, b, c) = (
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
    );
    drop(a);
    assert_eq!(pool.clear(), 1, "the idle one");
    assert_eq!(mock.alive(), 2);
    drop((b, c));
    // Returned stale: closed, not reused; the next acquire opens a fresh one.
    let fresh = pool.acquire().await.unwrap();
    assert!(
        fresh.id >= 3,
        "a stale connection was handed out: {}",
        fresh.id
    );
    assert_eq!(mock.alive(), 1);
    assert!(mock.peak() <= 3);
    drop(fresh);
    pool.close(Duration::from_secs(1)).await;
    assert_eq!(mock.alive(), 0);
}
