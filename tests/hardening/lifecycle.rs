//! Hangs, storms, data loss and races around `close()`.

use crate::support::{self, PG_URL, unique};
use dbmanager::Manager;
use std::time::Duration;

/// Runs `f` on a current-thread runtime in its own thread and fails the test if it does
/// not finish within `limit` (a future that never yields would hang the test instead).
fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = tx.send(rt.block_on(f()));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}: a hang or a spin"))
}

fn pg_yaml(app: &str, extra: &str) -> String {
    format!(
        "connections:\n  db:\n    type: postgres\n    dsn: '{PG_URL}?application_name={app}'\n    acquire_timeout: 3s\n{extra}"
    )
}

/// Item 1: a pool closed by user code (not `Manager::close`) made `acquire` spin without
/// ever yielding. Now the connection replaces the closed pool and the acquire succeeds.
#[test]
fn acquire_recovers_when_user_code_closed_the_pool() {
    let app = unique("closed_by_user");
    within(Duration::from_secs(20), move || {
        Box::pin(async move {
            support::require_postgres().await;
            let mgr = Manager::from_yaml_str(&pg_yaml(&app, "")).unwrap();
            mgr.connect().await.unwrap();
            let conn = mgr.get("db").unwrap();
            conn.postgres().unwrap().close().await;
            let mut c = conn.acquire::<sqlx::Postgres>().await.expect("a new pool");
            let one: i32 = sqlx::query_scalar("select 1")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            assert_eq!(one, 1);
            drop(c);
            // The supervisor's probe recovers it too, and the raw pool is usable again.
            conn.postgres().unwrap().close().await;
            assert!(conn.health_check().await.is_ok(), "{:?}", conn.health());
            assert!(!conn.postgres().unwrap().is_closed());
            assert!(mgr.close().await);
        })
    });
}
