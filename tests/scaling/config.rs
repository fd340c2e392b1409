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
        e.contains("connections.p.schema (line 8, column 13): `schema` cannot be combined with `pgbouncer: true`"),
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

#[test]
fn keyed_groups_are_validated_at_startup_with_their_paths() {
    let e = errors(
        "connections:\n  c:\n    type: sqlite\n    filepath: ':memory:'\nkeyed:\n  devices:\n    template:\n      \
         type: postgres\n      host: h\n      database: d\n      max_open_conns: 0\n    max_keys: 0\n    \
         idle_evict_afer: 1m\n    keys:\n      a: 5\n  'bad name':\n    template: {}\n  empty: {}\n",
    );
    for needle in [
        "keyed.devices.template.max_open_conns",
        "keyed.devices.max_keys",
        "keyed.devices.idle_evict_afer (line 13, column 22): unknown field `idle_evict_afer` (did you mean `idle_evict_after`?)",
        "keyed.devices.keys.a",
        "keyed.bad name",
        "keyed.empty",
        "missing `template`",
    ] {
        assert!(e.contains(needle), "`{needle}` not in:\n{e}");
    }
    let ok = Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str(
            "connections:\n  c:\n    type: sqlite\n    filepath: ':memory:'\nmax_open_conns: 3\nkeyed:\n  t:\n    \
             template: {type: postgres, host: h, database: d}\n    idle_evict_after: none\n",
        )
        .unwrap();
    let k = &ok.keyed[0];
    assert_eq!(
        (k.name.as_str(), k.idle_evict_after, k.max_keys),
        ("t", None, 1000)
    );
    assert_eq!(
        k.template.pool.max_open, 3,
        "top-level defaults apply to the template"
    );
    let key = k
        .for_key("x1", &[("database".into(), "other".into())])
        .unwrap();
    assert_eq!(key.name, "t.x1");
    assert_eq!(key.pool.max_open, 3, "and to every key");
}

#[test]
fn replicas_are_validated_with_their_paths_and_inherit_the_connection() {
    let e = errors(
        "connections:\n  main:\n    type: postgres\n    host: h\n    database: d\n    load_balancing: random\n    \
         replicas:\n      - host: r1\n        weight: 0\n      - port: 5433\n      - name: x\n        host: a\n      - name: x\n        host: b\n        \
         bogus: 1\n  lite:\n    type: sqlite\n    filepath: ':memory:'\n    replicas: []\n",
    );
    let lb = errors(
        "connections:\n  main:\n    type: postgres\n    host: h\n    database: d\n    load_balancing: fastest\n",
    );
    assert!(lb.contains("connections.main.load_balancing (line 6, column 21): unknown load balancing strategy `fastest`"), "{lb}");
    // A near miss is named, with the spelling meant.
    let typo = errors(
        "connections:\n  main:\n    type: postgres\n    host: h\n    database: d\n    load_balancing: round_robbin\n    sslmode: verify_ful\n    fallback: primry\n",
    );
    for needle in [
        "unknown load balancing strategy `round_robbin` (did you mean `round_robin`?): expected one of round_robin, least_connections, random",
        "unknown sslmode `verify_ful` (did you mean `verify-full`?)",
        "unknown replica fallback `primry` (did you mean `primary`?): expected one of primary, error",
    ] {
        assert!(typo.contains(needle), "{needle}\n{typo}");
    }
    for needle in [
        "connections.main.replicas[0].weight",
        "connections.main.replicas[1] (line 10, column 9): a replica needs `host`, `hosts` or `dsn`",
        "connections.main.replicas[3]",
        "a second replica named `x`",
        "connections.main.replicas[3].bogus",
        "connections.lite.replicas",
    ] {
        assert!(e.contains(needle), "`{needle}` not in:\n{e}");
    }
    let ok = Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str(
            "connections:\n  main:\n    type: postgres\n    host: h\n    database: d\n    password: pw\n    max_open_conns: 7\n    \
             max_replica_lag: 2s\n    fallback: error\n    replicas:\n      - host: r1\n      - name: east\n        dsn: 'postgres://u:p@e/db'\n        weight: 3\n",
        )
        .unwrap();
    let main = &ok.connections[0];
    assert_eq!(main.fallback, dbmanager::config::Fallback::Error);
    let [a, b] = &main.replicas[..] else {
        panic!("{:?}", main.replicas)
    };
    assert_eq!(
        (a.name.as_str(), a.weight, b.name.as_str(), b.weight),
        ("replica-1", 1, "east", 3)
    );
    assert_eq!(a.config.pool.max_open, 7, "settings are inherited");
    assert_eq!(
        a.config.max_replica_lag,
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(a.config.startup, dbmanager::config::Startup::Lazy);
    match (&a.config.endpoint, &b.config.endpoint) {
        (dbmanager::config::Endpoint::Server(x), dbmanager::config::Endpoint::Server(y)) => {
            assert_eq!(
                (x.host.as_deref(), x.database.as_deref()),
                (Some("r1"), Some("d"))
            );
            assert!(x.password.is_some(), "credentials are inherited");
            assert!(
                y.dsn.is_some() && y.host.is_none(),
                "a dsn replaces the address"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(a.config.replicas.is_empty());

    // A multi-host primary: a replica's `host` replaces the `hosts`, its `hosts` stand on
    // their own, and `target_session_attrs` is not inherited.
    let ha = Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str(
            "connections:\n  main:\n    type: postgres\n    hosts: [a, 'b:5433']\n    database: d\n    \
             target_session_attrs: read-write\n    replicas:\n      - host: r1\n      - hosts: [a, 'b:5433']\n        \
             target_session_attrs: prefer-standby\n",
        )
        .unwrap();
    let [one, both] = &ha.connections[0].replicas[..] else {
        panic!("{:?}", ha.connections[0].replicas)
    };
    use dbmanager::config::{Endpoint, TargetSessionAttrs};
    match (&one.config.endpoint, &both.config.endpoint) {
        (Endpoint::Server(x), Endpoint::Server(y)) => {
            assert_eq!((x.host.as_deref(), x.hosts.len()), (Some("r1"), 0));
            assert_eq!(x.target_session_attrs, TargetSessionAttrs::Any);
            assert_eq!((y.host.as_deref(), y.hosts.len()), (None, 2));
            assert_eq!(y.target_session_attrs, TargetSessionAttrs::PreferStandby);
        }
        other => panic!("{other:?}"),
    }
}
