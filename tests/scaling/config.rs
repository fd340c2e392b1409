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
