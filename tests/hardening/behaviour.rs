//! Behaviour: empty passwords, read-only errors, what `retry` re-runs, counters.

use crate::support::{self, PG_URL};
use dbmanager::Manager;

/// Item 14: `password: ""` (config.example.yaml's `orders`, or `${VAR:-}` with VAR unset)
/// was sent as a password and refused by a MariaDB user that has none ("using password:
/// YES"). An empty password now means none, on every engine that takes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_password_means_none() {
    support::require_mariadb().await;
    support::require_postgres().await;
    let yaml = "connections:\n  \
        my:\n    type: mariadb\n    host: 127.0.0.1\n    user: root\n    password: \"\"\n    database: test\n    sslmode: disable\n  \
        my_env:\n    type: mysql\n    host: 127.0.0.1\n    user: root\n    password: ${DBM_UNSET_PASSWORD_VAR:-}\n    database: test\n    sslmode: disable\n  \
        my_dsn:\n    type: mysql\n    dsn: 'mysql://root:@127.0.0.1:3306/test?ssl-mode=disabled'\n  \
        pg:\n    type: postgres\n    host: 127.0.0.1\n    user: postgres\n    password: ''\n    database: test\n";
    let mgr = Manager::from_yaml_str(yaml).unwrap();
    mgr.connect().await.expect("every connection connects");
    for (name, result) in mgr.health_check().await {
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    mgr.close().await;
    let _ = PG_URL;
}
