//! The storable handle (`Db`): kept in a service's state, it serves queries across
//! `reconnect()` and reloads, as a sqlx executor with the outage policy, and its errors
//! come back as `dbmanager::Error` through `?`.

use crate::support;
use dbmanager::{Config, Error, Manager};
use std::time::Duration;

fn pg(name: &str, extra: &str) -> String {
    format!(
        "connections:\n  {name}:\n    type: postgres\n    host: 127.0.0.1\n    user: postgres\n    database: test\n{extra}"
    )
}

/// What a service does in a handler: `?` on the handle's calls and on sqlx's.
async fn handler(db: &dbmanager::PgDb) -> dbmanager::Result<i64> {
    let n: i64 = dbmanager::sqlx::query_scalar("select 40::int8")
        .fetch_one(db)
        .await?;
    let mut tx = db.begin().await?;
    let m: i64 = dbmanager::sqlx::query_scalar("select 2::int8")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n + m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_handle_serves_queries_after_reconnect_and_reload() {
    support::require_postgres().await;
    let mgr =
        Manager::new(Config::from_yaml_str(&pg("primary", "    max_open_conns: 2\n")).unwrap());
    mgr.connect().await.unwrap();
    // Stored once, as a service keeps a `PgPool` in its state.
    let db = mgr.postgres("primary").unwrap();
    let pool = mgr.get("primary").unwrap().postgres().unwrap();
    assert_eq!(handler(&db).await.unwrap(), 42);

    mgr.get("primary").unwrap().reconnect().await.unwrap();
    assert_eq!(handler(&db).await.unwrap(), 42, "after reconnect()");

    // A reload that changes the pool's limits (a new pool) and one that renews sessions.
    for extra in [
        "    max_open_conns: 3\n",
        "    max_open_conns: 3\n    application_name: handle-reloaded\n",
    ] {
        let report = mgr
            .reload(Config::from_yaml_str(&pg("primary", extra)).unwrap())
            .await
            .unwrap();
        assert_eq!(report.changed.len(), 1, "{report}");
        assert_eq!(handler(&db).await.unwrap(), 42, "after reload: {report}");
        // A new `max_open_conns` needs a new pool: the sqlx pool taken out of the
        // connection before is the replaced one, closed. This is why the handle, not the
        // pool, is what a service keeps.
        assert!(
            sqlx::query("select 1").execute(&pool).await.is_err(),
            "a sqlx pool taken before the reload is closed after it"
        );
    }
    // (Which session serves a query after a reload that renews them is the reload
    // tests' subject, tests/scaling/reload.rs; here the handle only has to keep serving.)
    // A clone is the same handle; the reader of a connection without replicas is itself.
    let reader = db.clone().reader().unwrap();
    assert_eq!(reader.name(), "primary");
    let rows: Vec<i32> = sqlx::query_scalar("select generate_series(1, 3)")
        .fetch_all(&reader)
        .await
        .unwrap();
    assert_eq!(rows, [1, 2, 3]);
    mgr.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkout_inside_a_query_comes_back_as_the_managers_error() {
    let mgr = Manager::from_yaml_str(
        "connections:\n  down:\n    type: postgres\n    host: 127.0.0.1\n    port: 1\n    database: test\n    startup: lazy\n    on_unavailable: fail_fast\n    acquire_timeout: 2s\n",
    )
    .unwrap();
    mgr.connect().await.unwrap();
    let db = mgr.postgres("down").unwrap();
    // Wait for the first connect attempt to fail, so the connection is known to be down.
    let conn = mgr.get("down").unwrap();
    for _ in 0..100 {
        if conn.health().state == dbmanager::HealthState::Unhealthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let via_sqlx = sqlx::query("select 1").execute(&db).await.unwrap_err();
    assert!(
        matches!(via_sqlx, sqlx::Error::AnyDriverError(_)),
        "{via_sqlx:?}"
    );
    let ours = Error::from(via_sqlx);
    assert!(
        matches!(ours, Error::Unavailable { ref name, .. } if name == "down"),
        "{ours:?}"
    );
    // A query's own error stays a sqlx error, under `Error::Query`.
    mgr.close().await;
    let lite = Manager::from_yaml_str(
        "connections:\n  lite:\n    type: sqlite\n    filepath: ':memory:'\n",
    )
    .unwrap();
    lite.connect().await.unwrap();
    let db = lite.sqlite("lite").unwrap();
    let bad = sqlx::query("select * from no_such_table")
        .execute(&db)
        .await;
    let ours = Error::from(bad.unwrap_err());
    assert!(
        matches!(ours, Error::Query(sqlx::Error::Database(_))),
        "{ours:?}"
    );
    lite.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_is_typed_by_engine() {
    support::require_mariadb().await;
    let mgr = Manager::from_yaml_str(
        "connections:\n  orders:\n    type: mysql\n    host: 127.0.0.1\n    user: root\n    database: test\n",
    )
    .unwrap();
    mgr.connect().await.unwrap();
    let db = mgr.mysql("orders").unwrap();
    let one: i64 = sqlx::query_scalar("select 1").fetch_one(&db).await.unwrap();
    assert_eq!(one, 1);
    let wrong = mgr.postgres("orders").unwrap_err();
    assert!(
        matches!(wrong, Error::WrongKind { .. }),
        "{wrong}: a handle of another engine is refused"
    );
    mgr.close().await;
}

/// A refused connect fails at once with its cause and the address (the pool alone would
/// retry until `connect_timeout` and report only the timeout), and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_says_refused_and_where_at_once() {
    let port = support::free_port();
    for endpoint in [
        format!(
            "    host: 127.0.0.1\n    port: {port}\n    user: app\n    password: S3cret-pw\n    database: test\n"
        ),
        format!("    dsn: 'postgres://app:S3cret-pw@127.0.0.1:{port}/test'\n"),
    ] {
        let mgr = Manager::from_yaml_str(&format!(
            "connections:\n  db:\n    type: postgres\n    connect_timeout: 30s\n{endpoint}"
        ))
        .unwrap();
        let started = std::time::Instant::now();
        let err = mgr.connect().await.unwrap_err();
        let waited = started.elapsed();
        let text = format!("{err} {err:?}");
        assert!(text.contains("refused"), "{text}");
        assert!(text.contains(&format!("(127.0.0.1:{port})")), "{text}");
        assert!(!text.contains("S3cret"), "{text}");
        // Well within connect_timeout (30 s): the refusal is the answer.
        assert!(
            waited < Duration::from_secs(10),
            "waited {waited:?}: {text}"
        );
        mgr.close().await;
    }
}
