//! The same metrics for every engine behind the seam: MongoDB (counted from the driver's
//! CMAP events), SQL Server (the TDS test server), the diesel view's own pool and a
//! provider of the service's own (`examples/line_device`). For each, N uses move the
//! acquire histogram's count by N, `up` is 1, the pool's maximum is the configured
//! budget, and a closed manager leaves no series behind.

use crate::line_device;
use crate::support;

use dbmanager::Manager;
use dbmanager::config::Config;
use dbmanager::mongodb::bson::doc;
use dbmanager::prometheus_client::registry::Registry;
use line_device::{Device, LineConnector, LineProvider};
use support::metrics::{text, value};
use support::mongo::mongo_url;
use support::tds::{MSSQL_PASSWORD, MSSQL_USER, MockTds, Tls};
use support::{PG_URL, require_postgres};

const N: u32 = 5;

fn yaml(mongo: &str, tds_port: u16, device_port: u16) -> String {
    format!(
        "health_check_interval: 1h\n\
         connections:\n  \
           docs:\n    type: mongodb\n    dsn: '{mongo}'\n    database: dbm_metrics\n    max_open_conns: 4\n  \
           legacy:\n    type: mssql\n    host: 127.0.0.1\n    port: {tds_port}\n    user: {MSSQL_USER}\n    \
             password: '{}'\n    database: master\n    sslmode: disable\n    max_open_conns: 3\n  \
           primary:\n    type: postgres\n    dsn: '{PG_URL}'\n    max_open_conns: 6\n    diesel_conns: 2\n  \
           router:\n    type: line\n    host: 127.0.0.1\n    port: {device_port}\n    user: admin\n    \
             password: secret\n    max_open_conns: 2\n",
        MSSQL_PASSWORD.replace('\'', "''"),
    )
}

/// The histogram count of `connection`'s `pool`.
fn acquires(registry: &Registry, connection: &str, pool: &str) -> f64 {
    value(
        registry,
        "dbmanager_acquire_duration_seconds_count",
        &[("connection", connection), ("pool", pool)],
    )
    .unwrap_or_else(|| {
        panic!(
            "no acquire histogram for {connection}/{pool}\n{}",
            text(registry)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_and_the_diesel_view_report_through_the_same_metrics() {
    require_postgres().await;
    let tds = MockTds::start(Tls::Plain);
    let device = Device::start("admin", "secret").await.unwrap();
    let config = Config::loader()
        .provider(LineProvider)
        .load_str(&yaml(&mongo_url(), tds.port, device.port))
        .expect("valid config");
    let mgr = Manager::new(config);
    let mut registry = Registry::default();
    mgr.register_metrics(&mut registry);
    mgr.connect().await.unwrap();

    for (name, kind, max) in [
        ("docs", "mongodb", 4.0),
        ("legacy", "mssql", 3.0),
        ("router", "line", 2.0),
    ] {
        let labels = [("connection", name), ("type", kind)];
        assert_eq!(
            value(&registry, "dbmanager_connection_up", &labels),
            Some(1.0),
            "{name}"
        );
        assert_eq!(
            value(
                &registry,
                "dbmanager_pool_max_connections",
                &[labels[0], labels[1], ("pool", "main")]
            ),
            Some(max),
            "{name}"
        );
    }

    // MongoDB: every command checks a connection out of the driver's pool (a CMAP event).
    let before = acquires(&registry, "docs", "main");
    let db = mgr.get("docs").unwrap().mongo_database().unwrap();
    for _ in 0..N {
        db.run_command(doc! { "ping": 1 }).await.unwrap();
    }
    assert_eq!(acquires(&registry, "docs", "main") - before, f64::from(N));

    // SQL Server: each `mssql()` is one acquire from the managed pool.
    let legacy = mgr.get("legacy").unwrap();
    let before = acquires(&registry, "legacy", "main");
    for _ in 0..N {
        let mut client = legacy.mssql().await.unwrap();
        client
            .simple_query("SELECT 1")
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap();
    }
    assert_eq!(acquires(&registry, "legacy", "main") - before, f64::from(N));

    // The diesel view: its own pool, its own series, its share of the budget.
    let primary = mgr.get("primary").unwrap();
    drop(primary.diesel_postgres().await.unwrap());
    let before = acquires(&registry, "primary", "diesel");
    let main_before = acquires(&registry, "primary", "main");
    for _ in 0..N {
        drop(primary.diesel_postgres().await.unwrap());
    }
    assert_eq!(
        acquires(&registry, "primary", "diesel") - before,
        f64::from(N)
    );
    assert_eq!(
        acquires(&registry, "primary", "main"),
        main_before,
        "diesel counts apart"
    );
    assert_eq!(
        value(
            &registry,
            "dbmanager_pool_max_connections",
            &[("connection", "primary"), ("pool", "diesel")]
        ),
        Some(2.0)
    );
    assert!(
        value(
            &registry,
            "dbmanager_connections_opened_total",
            &[("connection", "primary"), ("pool", "diesel")]
        )
        .unwrap()
            >= 1.0
    );

    // A provider of the service's own, through the same seam.
    let router = mgr.get("router").unwrap();
    let before = acquires(&registry, "router", "main");
    for _ in 0..N {
        let mut session = router.managed::<LineConnector>().await.unwrap();
        session.call("ECHO hi").await.unwrap();
    }
    assert_eq!(acquires(&registry, "router", "main") - before, f64::from(N));

    let exposition = text(&registry);
    assert!(!exposition.contains(MSSQL_PASSWORD) && !exposition.contains("secret"));
    mgr.close().await;
    assert!(
        !text(&registry).contains("connection="),
        "closed: no series\n{}",
        text(&registry)
    );
}
