//! Configuration rules of the scale-out settings: each error names its YAML path.

use dbmanager::config::Config;

fn errors(yaml: &str) -> String {
    Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str(yaml)
        .expect_err("expected the configuration to be rejected")
        .to_string()
}

#[test]
fn pgbouncer_refuses_session_settings_and_other_engines() {
    let e = errors(
        "query_timeout: 5s\nconnections:\n  p:\n    type: postgres\n    host: h\n    database: d\n    \
         pgbouncer: true\n    schema: app\n  m:\n    type: mysql\n    host: h\n    database: d\n    pgbouncer: true\n",
    );
    assert!(
        e.contains("connections.p.schema: `schema` cannot be combined with `pgbouncer: true`"),
        "{e}"
    );
    assert!(e.contains("ALTER ROLE"), "{e}");
    // Inherited from the top level: named there, and said to apply.
    assert!(e.contains("- query_timeout (line 1, column 16): `query_timeout` cannot be combined with `pgbouncer: true` (the top-level value applies to `connections.p`)"), "{e}");
    assert_eq!(e.matches("cannot be combined").count(), 2, "{e}");
    assert!(e.contains("connections.m.pgbouncer"), "{e}");
    let ok = Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str("connections:\n  p:\n    type: postgres\n    host: h\n    database: d\n    pgbouncer: true\n")
        .unwrap();
    match &ok.connections[0].endpoint {
        dbmanager::config::Endpoint::Server(s) => assert!(s.pgbouncer),
        other => panic!("{other:?}"),
    }
}
