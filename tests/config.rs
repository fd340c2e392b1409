//! Configuration loading and validation: every error names its YAML path; environment
//! interpolation and overrides; no input makes the loader panic.

use dbmanager::config::{Config, ConfigErrors, Endpoint, Origin, SqliteTarget, SslMode, Startup};
use proptest::prelude::*;
use std::time::Duration;

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str(yaml)
}

fn errors(yaml: &str) -> ConfigErrors {
    load(yaml).expect_err("expected the configuration to be rejected")
}

/// Asserts an error at `path` whose message contains `needle`.
fn assert_error(errs: &ConfigErrors, path: &str, needle: &str) {
    let found = errs
        .errors
        .iter()
        .any(|e| e.path == path && e.message.contains(needle) && e.to_string().starts_with(path));
    assert!(
        found,
        "no error at `{path}` containing `{needle}` in:\n{errs}"
    );
}

const PG: &str = "type: postgres\n    host: h\n    database: d";

#[test]
fn a_complete_file_loads_with_defaults_and_overrides() {
    let c = load(
        r#"
max_open_conns: 10
conn_max_lifetime: 1h30m
connections:
  primary:
    type: postgresql
    host: db.internal
    port: 6432
    user: app
    password: s3cret
    database: app
    sslmode: verify-full
    max_idle_conns: 3
    min_idle_conns: 1
    startup: lazy
    tags: { team: core }
  cache:
    type: sqlite
    filepath: ":memory:"
    max_open_conns: 2
    max_idle_conns: 2
"#,
    )
    .unwrap();
    assert_eq!(c.default_connection, None);
    let p = c.connection("primary").unwrap();
    assert_eq!(p.pool.max_open, 10);
    assert_eq!(p.pool.max_idle, 3);
    assert_eq!(p.pool.min_idle, 1);
    assert_eq!(p.pool.max_lifetime, Some(Duration::from_secs(5400)));
    assert_eq!(p.pool.max_idle_time, Some(Duration::from_secs(300)));
    assert_eq!(p.startup, Startup::Lazy);
    assert_eq!(p.tags["team"], "core");
    let Endpoint::Server(s) = &p.endpoint else {
        panic!()
    };
    assert_eq!(s.port, Some(6432));
    assert_eq!(s.tls.mode, SslMode::VerifyFull);
    let cache = c.connection("cache").unwrap();
    assert_eq!(cache.pool.max_open, 2);
    let Endpoint::Sqlite(s) = &cache.endpoint else {
        panic!()
    };
    assert!(matches!(s.target, SqliteTarget::Memory { .. }));
}

#[test]
fn settings_may_sit_under_a_dbmanager_key_beside_the_apps_own() {
    let c = load("app:\n  port: 8080\ndbmanager:\n  connections:\n    c:\n      type: sqlite\n      filepath: x.db\n").unwrap();
    assert_eq!(c.connections.len(), 1);
    let errs = errors(
        "dbmanager:\n  connections:\n    c:\n      type: sqlite\n      filepath: x.db\n      max_open_conns: -1\n",
    );
    assert_error(&errs, "dbmanager.connections.c.max_open_conns", "negative");
}

#[test]
fn malformed_yaml_reports_line_and_column() {
    let errs = errors("connections:\n  a:\n    type: [postgres\n");
    let e = &errs.errors[0];
    assert!(e.message.starts_with("malformed YAML"), "{e}");
    assert!(
        matches!(e.origin, Origin::Yaml { line, .. } if line >= 3),
        "{e:?}"
    );
    assert!(errors("").errors[0].message.contains("empty"));
    assert!(
        errors("- a\n- b\n").errors[0]
            .message
            .contains("expected a mapping")
    );
}

#[test]
fn unknown_field_suggests_the_nearest() {
    let errs = errors(&format!(
        "connections:\n  a:\n    {PG}\n    max_idel_conns: 2\nhealth_check_intervall: 1s\n"
    ));
    assert_error(
        &errs,
        "connections.a.max_idel_conns",
        "did you mean `max_idle_conns`",
    );
    assert_error(
        &errs,
        "health_check_intervall",
        "did you mean `health_check_interval`",
    );
}

#[test]
fn unknown_type_lists_valid_ones() {
    let errs = errors("connections:\n  a:\n    type: oracle\n    host: h\n    database: d\n");
    assert_error(
        &errs,
        "connections.a.type",
        "postgres, postgresql, mysql, mariadb, sqlite",
    );
    assert_error(
        &errors("connections:\n  a:\n    host: h\n"),
        "connections.a.type",
        "missing `type`",
    );
}

#[test]
fn default_connection_must_exist() {
    let errs = errors(&format!(
        "default_connection: replica\nconnections:\n  a:\n    {PG}\n"
    ));
    assert_error(
        &errs,
        "default_connection",
        "`replica` is not among the connections (configured: a)",
    );
}

#[test]
fn no_connections() {
    assert_error(
        &errors("max_open_conns: 3\n"),
        "connections",
        "no connections",
    );
    assert_error(
        &errors("connections: {}\n"),
        "connections",
        "no connections",
    );
    assert_error(&errors("connections:\n"), "connections", "no connections");
    assert_error(
        &errors("connections: [a]\n"),
        "connections",
        "expected a mapping",
    );
}

#[test]
fn max_idle_above_max_open_names_where_the_value_was_set() {
    let errs = errors(&format!(
        "connections:\n  a:\n    {PG}\n    max_open_conns: 4\n    max_idle_conns: 8\n"
    ));
    assert_error(
        &errs,
        "connections.a.max_idle_conns",
        "must not exceed max_open_conns (4)",
    );
    // Inherited from the top level: lowered to the connection's max_open_conns, with a
    // warning (Go's database/sql does the same).
    let c = load(&format!(
        "max_idle_conns: 8\nconnections:\n  a:\n    {PG}\n    max_open_conns: 4\n"
    ))
    .unwrap();
    assert_eq!(c.connections[0].pool.max_idle, 4);
    assert_eq!(c.warnings[0].path, "connections.a.max_idle_conns");
    let errs = errors(&format!(
        "connections:\n  a:\n    {PG}\n    min_idle_conns: 9\n"
    ));
    assert_error(
        &errs,
        "connections.a.min_idle_conns",
        "must not exceed max_idle_conns",
    );
}

/// MongoDB's driver has no idle cap (`max_idle_conns` is refused there), so its
/// `min_idle_conns` (the driver's minPoolSize) is bounded by `max_open_conns` only. It used
/// to be held to the unsettable default `max_idle_conns` of 5 (found by the memory bench).
#[test]
fn mongodb_min_idle_is_bounded_by_max_open() {
    let c = load(
        "connections:\n  d:\n    type: mongodb\n    host: h\n    database: app\n    max_open_conns: 30\n    min_idle_conns: 20\n",
    )
    .unwrap();
    assert_eq!(c.connections[0].pool.min_idle, 20);
    let errs = errors(
        "connections:\n  d:\n    type: mongodb\n    host: h\n    database: app\n    max_open_conns: 10\n    min_idle_conns: 20\n",
    );
    assert_error(
        &errs,
        "connections.d.min_idle_conns",
        "must not exceed max_open_conns (10)",
    );
}

#[test]
fn lifetime_shorter_than_idle_time() {
    let errs = errors(&format!(
        "connections:\n  a:\n    {PG}\n    conn_max_lifetime: 1m\n    conn_max_idle_time: 10m\n"
    ));
    assert_error(
        &errs,
        "connections.a.conn_max_lifetime",
        "must not be shorter than conn_max_idle_time",
    );
    // `none` disables the limit, so there is nothing to compare.
    load(&format!(
        "connections:\n  a:\n    {PG}\n    conn_max_lifetime: none\n"
    ))
    .unwrap();
}

#[test]
fn zero_and_negative_sizes() {
    for (field, value, word) in [
        ("max_open_conns", "0", "zero"),
        ("max_open_conns", "-5", "negative"),
        ("max_idle_conns", "0", "zero"),
        ("min_idle_conns", "-1", "negative"),
        ("retry_attempts", "0", "zero"),
    ] {
        let errs = errors(&format!(
            "connections:\n  a:\n    {PG}\n    {field}: {value}\n"
        ));
        assert_error(&errs, &format!("connections.a.{field}"), word);
    }
    assert_error(
        &errors(&format!(
            "connections:\n  a:\n    {PG}\n    max_open_conns: lots\n"
        )),
        "connections.a.max_open_conns",
        "whole number",
    );
    assert_error(
        &errors(&format!("connections:\n  a:\n    {PG}\n    port: 70000\n")),
        "connections.a.port",
        "1 to 65535",
    );
}

#[test]
fn unparsable_durations() {
    for (value, needle) in [
        ("soon", "cannot parse duration"),
        ("30", "has no unit"),
        ("\"30\"", "has no unit"),
        ("-1s", "negative"),
        ("0s", "greater than zero"),
        ("[1s]", "expected a duration"),
    ] {
        let errs = errors(&format!(
            "connections:\n  a:\n    {PG}\n    acquire_timeout: {value}\n"
        ));
        assert_error(&errs, "connections.a.acquire_timeout", needle);
    }
    let c = load(&format!(
        "connections:\n  a:\n    {PG}\n    acquire_timeout: 1h30m\n    connect_timeout: 500ms\n"
    ))
    .unwrap();
    assert_eq!(
        c.connections[0].pool.acquire_timeout,
        Duration::from_secs(5400)
    );
    assert_eq!(
        c.connections[0].pool.connect_timeout,
        Duration::from_millis(500)
    );
}

#[test]
fn missing_host_database_without_dsn_and_filepath_for_sqlite() {
    let errs = errors("connections:\n  a:\n    type: postgres\n  b:\n    type: sqlite\n");
    assert_error(&errs, "connections.a.host", "missing `host`");
    assert_error(&errs, "connections.a.database", "missing `database`");
    assert_error(&errs, "connections.b.filepath", "missing `filepath`");
    // A DSN replaces them.
    load("connections:\n  a:\n    type: postgres\n    dsn: postgres://u@h/d\n").unwrap();
}

#[test]
fn unknown_sslmode() {
    let errs = errors(&format!(
        "connections:\n  a:\n    {PG}\n    sslmode: sometimes\n"
    ));
    assert_error(
        &errs,
        "connections.a.sslmode",
        "disable, allow, prefer, require, verify-ca, verify-full",
    );
}

#[test]
fn settings_an_engine_cannot_honour_are_rejected_or_warned() {
    let errs = errors(
        "connections:\n  s:\n    type: sqlite\n    filepath: x.db\n    host: h\n    query_timeout: 5s\n  m:\n    type: mysql\n    host: h\n    database: d\n    schema: s\n    application_name: app\n  p:\n    type: postgres\n    host: h\n    database: d\n    filepath: x\n    auth_source: admin\n",
    );
    assert_error(&errs, "connections.s.host", "does not apply to sqlite");
    assert_error(
        &errs,
        "connections.s.query_timeout",
        "not supported for sqlite",
    );
    assert_error(&errs, "connections.m.schema", "does not apply to mysql");
    assert_error(
        &errs,
        "connections.m.application_name",
        "not supported for mysql",
    );
    assert_error(
        &errs,
        "connections.p.filepath",
        "does not apply to postgres",
    );
    assert_error(
        &errs,
        "connections.p.auth_source",
        "does not apply to postgres",
    );
    // Inherited from the top level: applied where it can be, left out quietly elsewhere.
    let c = load("application_name: svc\nconnections:\n  s:\n    type: sqlite\n    filepath: x.db\n  p:\n    type: postgres\n    host: h\n    database: d\n").unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let Endpoint::Server(s) = &c.connection("p").unwrap().endpoint else {
        panic!()
    };
    assert_eq!(s.application_name.as_deref(), Some("svc"));
    // A DSN next to individual fields: a warning that they are ignored.
    let c = load(
        "connections:\n  p:\n    type: postgres\n    dsn: postgres://u@h/d\n    host: other\n",
    )
    .unwrap();
    assert!(c.warnings[0].message.contains("host"), "{:?}", c.warnings);
    assert_error(
        &errors("connections:\n  a:\n    type: postgres\n    dsn: \"postgres://u@h:notaport/d\"\n"),
        "connections.a.dsn",
        "invalid dsn",
    );
    // The Go ORM names ResolveSpec's configuration uses map to the sqlx view, with a warning.
    let c = load(&format!(
        "connections:\n  a:\n    {PG}\n    default_orm: gorm\n"
    ))
    .unwrap();
    assert!(
        c.warnings[0].message.contains("`sqlx` view"),
        "{:?}",
        c.warnings
    );
    assert_error(
        &errors(&format!(
            "connections:\n  a:\n    {PG}\n    startup: eventually\n"
        )),
        "connections.a.startup",
        "strict",
    );
    assert_error(
        &errors(&format!("connections:\n  a:\n    {PG}\n    name: b\n")),
        "connections.a.name",
        "must match",
    );
    assert_error(
        &errors(&format!(
            "connections:\n  a:\n    {PG}\n    retry_delay: 1m\n    retry_max_delay: 1s\n"
        )),
        "connections.a.retry_max_delay",
        "must not be shorter than retry_delay",
    );
}

#[test]
fn mongodb_and_mssql_settings_their_drivers_cannot_honour() {
    let errs = errors(
        "connections:\n  d:\n    type: mongodb\n    host: h\n    database: app\n    conn_max_lifetime: 1h\n    max_idle_conns: 3\n    ping_idle_after: 10s\n    query_timeout: 5s\n    schema: x\n  l:\n    type: mssql\n    host: h\n    database: d\n    schema: dbo\n  p:\n    type: postgres\n    host: h\n    database: d\n    sslmode: strict\n",
    );
    assert_error(
        &errs,
        "connections.d.conn_max_lifetime",
        "not supported for mongodb",
    );
    assert_error(&errs, "connections.d.max_idle_conns", "minPoolSize");
    assert_error(&errs, "connections.d.ping_idle_after", "heartbeats");
    assert_error(
        &errs,
        "connections.d.query_timeout",
        "not supported for mongodb",
    );
    assert_error(&errs, "connections.d.schema", "does not apply to mongodb");
    assert_error(&errs, "connections.l.schema", "DEFAULT_SCHEMA");
    assert_error(&errs, "connections.p.sslmode", "mssql connections only");
    // Inherited from the top level: a default for the connections that can use it, left
    // out quietly by the others.
    let c = load(
        "conn_max_lifetime: 1h\nmax_idle_conns: 3\nconnections:\n  d:\n    type: mongodb\n    host: h\n    database: app\n    read_preference: nearest\n  l:\n    type: mssql\n    host: h\n    database: d\n    sslmode: strict\n    query_timeout: 5s\n",
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let d = c.connection("d").unwrap();
    assert_eq!(d.mongo.read_preference.as_deref(), Some("nearest"));
    let Endpoint::Server(l) = &c.connection("l").unwrap().endpoint else {
        panic!()
    };
    assert_eq!(l.tls.mode, dbmanager::config::SslMode::Strict);
    assert_eq!(l.query_timeout, Some(std::time::Duration::from_secs(5)));
}

#[test]
fn several_errors_are_all_reported() {
    let errs = errors(
        "max_open_conns: 0\nconnections:\n  a:\n    type: nope\n  b:\n    type: sqlite\n    busy_timeout: forever\n  c:\n    type: postgres\n    sslmode: x\n",
    );
    assert!(errs.errors.len() >= 5, "{errs}");
    for path in [
        "max_open_conns",
        "connections.a.type",
        "connections.b.busy_timeout",
        "connections.b.filepath",
        "connections.c.sslmode",
        "connections.c.host",
    ] {
        assert!(errs.has_path(path), "missing {path} in:\n{errs}");
    }
}

#[test]
fn env_interpolation() {
    let c = Config::loader()
        .env([("DB_HOST", "db.example"), ("DB_PASSWORD", "pw$1"), ("EMPTY", "")])
        .load_str("connections:\n  a:\n    type: postgres\n    host: ${DB_HOST}\n    password: ${DB_PASSWORD}\n    user: ${DB_USER:-app}\n    database: ${EMPTY:-main}\n    application_name: cost$$5\n")
        .unwrap();
    let Endpoint::Server(s) = &c.connections[0].endpoint else {
        panic!()
    };
    assert_eq!(s.host.as_deref(), Some("db.example"));
    assert_eq!(s.user.as_deref(), Some("app"));
    assert_eq!(s.database.as_deref(), Some("main"));
    assert_eq!(s.application_name.as_deref(), Some("cost$5"));
    use dbmanager::ExposeSecret;
    assert_eq!(s.password.as_ref().unwrap().expose_secret(), "pw$1");

    let errs = Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str("connections:\n  a:\n    type: postgres\n    host: ${MISSING_HOST}\n    database: ${BROKEN\n")
        .unwrap_err();
    assert_error(&errs, "connections.a.host", "`MISSING_HOST` is not set");
    assert_error(&errs, "connections.a.database", "unterminated");
}

#[test]
fn env_overrides_any_field() {
    let c = Config::loader()
        .env([
            ("DBMANAGER__CONNECTIONS__PRIMARY__PASSWORD", "from-env"),
            ("DBMANAGER__CONNECTIONS__PRIMARY__MAX_OPEN_CONNS", "7"),
            ("DBMANAGER__CONNECTIONS__CACHE_DB__FILEPATH", "/tmp/override.db"),
            ("DBMANAGER__MAX_IDLE_CONNS", "2"),
            ("DBMANAGER__DEFAULT_CONNECTION", "cache-db"),
            ("UNRELATED", "x"),
        ])
        .load_str("connections:\n  primary:\n    type: postgres\n    host: h\n    database: d\n    password: from-file\n  cache-db:\n    type: sqlite\n    filepath: x.db\n")
        .unwrap();
    let p = c.connection("primary").unwrap();
    let Endpoint::Server(s) = &p.endpoint else {
        panic!()
    };
    use dbmanager::ExposeSecret;
    assert_eq!(s.password.as_ref().unwrap().expose_secret(), "from-env");
    assert_eq!(p.pool.max_open, 7);
    assert_eq!(p.pool.max_idle, 2);
    assert_eq!(c.default_connection.as_deref(), Some("cache-db"));
    let Endpoint::Sqlite(s) = &c.connection("cache-db").unwrap().endpoint else {
        panic!()
    };
    assert_eq!(s.target, SqliteTarget::File("/tmp/override.db".into()));

    // A bad override is reported with the variable's name.
    let errs = Config::loader()
        .env([("DBMANAGER__CONNECTIONS__PRIMARY__MAX_OPEN_CONNS", "many")])
        .load_str("connections:\n  primary:\n    type: postgres\n    host: h\n    database: d\n")
        .unwrap_err();
    let e = errs
        .errors
        .iter()
        .find(|e| e.path == "connections.primary.max_open_conns")
        .unwrap();
    assert_eq!(
        e.origin,
        Origin::Env("DBMANAGER__CONNECTIONS__PRIMARY__MAX_OPEN_CONNS".into())
    );
    assert!(
        e.to_string()
            .contains("DBMANAGER__CONNECTIONS__PRIMARY__MAX_OPEN_CONNS")
    );
}

#[test]
fn the_example_file_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.example.yaml");
    let c = Config::loader()
        .env([("PGPASSWORD", "example-pw")])
        .load_file(path)
        .unwrap();
    assert_eq!(c.connections.len(), 6);
    // Clean: the top-level pool settings the MongoDB driver has no equivalent for are
    // left out of that connection without a warning.
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

// ---- never panics ----------------------------------------------------------------------

const KEYS: &[&str] = &[
    "connections",
    "dbmanager",
    "default_connection",
    "type",
    "host",
    "port",
    "dsn",
    "password",
    "database",
    "filepath",
    "max_open_conns",
    "max_idle_conns",
    "min_idle_conns",
    "conn_max_lifetime",
    "conn_max_idle_time",
    "sslmode",
    "tags",
    "startup",
    "a",
    "b",
    "acquire_timeout",
    "query_timeout",
    "application_name",
    "schema",
    "busy_timeout",
];
const SCALARS: &[&str] = &[
    "postgres",
    "sqlite",
    "mysql",
    "mongodb",
    "mssql",
    ":memory:",
    "1s",
    "0",
    "-1",
    "none",
    "${X}",
    "${X:-y}",
    "${",
    "verify-full",
    "lazy",
    "",
    "1h30m",
    "postgres://u:p@h/d",
    "💥",
];

fn yaml_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|i| serde_json::json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        prop::sample::select(SCALARS).prop_map(|s| serde_json::json!(s)),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(KEYS).prop_map(String::from),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = load(&text);
    }

    #[test]
    fn arbitrary_yaml_trees_never_panic(tree in yaml_value()) {
        let text = serde_saphyr::to_string(&tree).unwrap();
        let _ = load(&text);
        let wrapped = serde_json::json!({ "connections": { "a": tree.clone() } });
        let _ = load(&serde_saphyr::to_string(&wrapped).unwrap());
        let wrapped = serde_json::json!({ "dbmanager": { "connections": tree } });
        let _ = load(&serde_saphyr::to_string(&wrapped).unwrap());
    }

    #[test]
    fn arbitrary_env_overrides_never_panic(
        keys in prop::collection::vec(prop::collection::vec(prop::sample::select(KEYS), 0..4), 0..4),
        value in ".{0,10}",
    ) {
        let env: Vec<(String, String)> = keys
            .iter()
            .map(|k| (format!("DBMANAGER__{}", k.join("__").to_uppercase()), value.clone()))
            .collect();
        let _ = Config::loader().env(env).load_str("connections:\n  a:\n    type: sqlite\n    filepath: x.db\n");
    }
}

#[test]
fn resilience_settings_are_validated_and_inherited() {
    let errs = errors(
        "on_unavailable: sometimes\nconnections:\n  db:\n    type: sqlite\n    filepath: ':memory:'\n    failure_threshold: 0\n    drain_timeout: soon\n",
    );
    assert_error(&errs, "on_unavailable", "wait, fail_fast");
    assert_error(&errs, "connections.db.failure_threshold", "");
    assert_error(&errs, "connections.db.drain_timeout", "");

    let cfg = load(
        "on_unavailable: fail_fast\nfailure_threshold: 3\nconnections:\n  a:\n    type: sqlite\n    filepath: ':memory:'\n  b:\n    type: sqlite\n    filepath: ':memory:'\n    on_unavailable: wait\n    drain_timeout: 2s\n",
    )
    .expect("valid");
    let a = &cfg.connections[0];
    let b = &cfg.connections[1];
    assert_eq!(a.on_unavailable, dbmanager::OnUnavailable::FailFast);
    assert_eq!(a.failure_threshold, 3);
    assert_eq!(a.drain_timeout, std::time::Duration::from_secs(30));
    assert_eq!(b.on_unavailable, dbmanager::OnUnavailable::Wait);
    assert_eq!(b.drain_timeout, std::time::Duration::from_secs(2));
}

/// docs/configuration.md's field tables are generated from the one field table; run with
/// `DBMANAGER_BLESS=1` to rewrite them after changing a field.
#[test]
fn docs_field_tables_match_the_field_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let docs = std::fs::read_to_string(path).unwrap();
    let (start, end) = ("<!-- fields:start", "<!-- fields:end -->");
    let a = docs.find(start).expect("start marker");
    let a = a + docs[a..].find("-->\n").expect("end of start marker") + 4;
    let b = docs.find(end).expect("end marker");
    let generated = dbmanager::config::reference();
    if std::env::var_os("DBMANAGER_BLESS").is_some() {
        let text = format!("{}{}{}", &docs[..a], generated, &docs[b..]);
        std::fs::write(path, text).unwrap();
        return;
    }
    assert_eq!(
        docs[a..b],
        generated,
        "docs/configuration.md is stale: DBMANAGER_BLESS=1 cargo test -p dbmanager --test integration config::docs_"
    );
}

/// `conn_max_lifetime_jitter`: a tenth of the lifetime when left out, off when set to
/// `0s`/`none`, and never more than the lifetime.
#[test]
fn lifetime_jitter_defaults_to_a_tenth_turns_off_and_is_bounded_by_the_lifetime() {
    let jitter = |extra: &str| {
        let yaml = format!(
            "connections:\n  db:\n    type: sqlite\n    filepath: ':memory:'\n    conn_max_lifetime: 10m\n{extra}"
        );
        Config::from_yaml_str(&yaml).map(|c| c.connection("db").unwrap().pool.max_lifetime_jitter)
    };
    assert_eq!(jitter("").unwrap(), Duration::from_secs(60));
    assert_eq!(
        jitter("    conn_max_lifetime_jitter: 0s\n").unwrap(),
        Duration::ZERO
    );
    assert_eq!(
        jitter("    conn_max_lifetime_jitter: none\n").unwrap(),
        Duration::ZERO
    );
    assert_eq!(
        jitter("    conn_max_lifetime_jitter: 90s\n").unwrap(),
        Duration::from_secs(90)
    );
    let err = jitter("    conn_max_lifetime_jitter: 11m\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("connections.db.conn_max_lifetime_jitter") && err.contains("must not exceed"),
        "{err}"
    );
}

/// `hosts` lists servers in place of `host`; a bad entry names its place in the list, and
/// `target_session_attrs` takes libpq's names with a suggestion for a near miss.
#[test]
fn hosts_and_target_session_attrs_are_read_and_checked() {
    let read = |extra: &str| {
        let yaml = format!(
            "connections:\n  db:\n    type: postgres\n    user: app\n    database: app\n{extra}"
        );
        Config::from_yaml_str(&yaml)
    };
    let c = read("    hosts: ['a:5432', b, '[::1]:6000']\n    target_session_attrs: read-write\n")
        .unwrap();
    let s = c
        .connection("db")
        .unwrap()
        .endpoint
        .server()
        .unwrap()
        .clone();
    assert_eq!(
        s.hosts,
        [
            ("a".to_owned(), Some(5432)),
            ("b".to_owned(), None),
            ("::1".to_owned(), Some(6000))
        ]
    );
    assert_eq!(
        s.target_session_attrs,
        dbmanager::config::TargetSessionAttrs::ReadWrite
    );
    let c = read("    hosts: 'a:1,b:2'\n").unwrap();
    assert_eq!(
        c.connection("db")
            .unwrap()
            .endpoint
            .server()
            .unwrap()
            .hosts
            .len(),
        2
    );
    // libpq's multi-host DSN is read the same way.
    let dsn = "connections:\n  db:\n    type: postgres\n    \
               dsn: 'postgres://app@a:5432,b:5433/app?target_session_attrs=read-write'\n";
    assert!(
        Config::from_yaml_str(dsn).is_ok(),
        "{:?}",
        Config::from_yaml_str(dsn).err()
    );
    let err = read("    hosts: ['a:5432', 'b:0']\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("connections.db.hosts[1]") && err.contains("port"),
        "{err}"
    );
    let err = read("    host: a\n    target_session_attrs: read-wirte\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `read-write`"), "{err}");
}

/// A replica may set how long and whether reads wait for it; else it inherits the
/// connection's values.
#[test]
fn a_replica_sets_its_own_acquire_timeout_and_outage_policy() {
    let c = Config::from_yaml_str(
        "connections:\n  db:\n    type: postgres\n    host: a\n    database: d\n    acquire_timeout: 30s\n    \
         replicas:\n      - host: b\n        acquire_timeout: 2s\n        on_unavailable: fail_fast\n      - host: c\n",
    )
    .unwrap();
    let db = c.connection("db").unwrap();
    assert_eq!(db.pool.acquire_timeout, Duration::from_secs(30));
    assert_eq!(db.on_unavailable, dbmanager::OnUnavailable::Wait);
    let (b, c2) = (&db.replicas[0].config, &db.replicas[1].config);
    assert_eq!(b.pool.acquire_timeout, Duration::from_secs(2));
    assert_eq!(b.on_unavailable, dbmanager::OnUnavailable::FailFast);
    assert_eq!(c2.pool.acquire_timeout, Duration::from_secs(30));
    assert_eq!(c2.on_unavailable, dbmanager::OnUnavailable::Wait);
}
