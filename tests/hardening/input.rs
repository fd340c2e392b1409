//! Bad input: durations without bounds, unbounded file reads, ambiguous environment
//! overrides, connection names.

use dbmanager::config::{Config, ConfigErrors};

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str(yaml)
}

/// Asserts `yaml` is rejected with an error at `path` whose message contains `needle`.
fn rejected(yaml: &str, path: &str, needle: &str) {
    let errs = load(yaml).expect_err("expected the configuration to be rejected");
    assert!(
        errs.errors
            .iter()
            .any(|e| e.path == path && e.message.contains(needle)),
        "no error at `{path}` containing `{needle}` in:\n{errs}"
    );
}

const SQLITE: &str = "connections:\n  cache:\n    type: sqlite\n    filepath: ':memory:'\n";

/// `acquire_timeout: 10000000000000000000s` was accepted and then panicked with
/// "overflow when adding duration to instant" on every acquire; `retry_max_delay: 1ms` and
/// `health_check_interval: 1ns` probed a down server thousands of times a second. Every
/// duration now has bounds, named in the error with the YAML path.
#[test]
fn every_duration_is_bounded() {
    for (field, value, needle) in [
        ("acquire_timeout", "10000000000000000000s", "at most"),
        ("connect_timeout", "1000000000000s", "at most"),
        ("close_timeout", "99999999999d", "at most"),
        ("drain_timeout", "1000y", "at most"),
        ("conn_max_lifetime", "10000000000000000000s", "at most"),
        ("retry_max_delay", "1ms", "at least"),
        ("retry_delay", "1ns", "at least"),
        ("health_check_interval", "1ns", "at least"),
        ("health_check_timeout", "1us", "at least"),
    ] {
        // Per connection and at the top level (inherited).
        rejected(
            &format!("{SQLITE}    {field}: {value}\n"),
            &format!("connections.cache.{field}"),
            needle,
        );
        rejected(&format!("{field}: {value}\n{SQLITE}"), field, needle);
    }
    // The bounds themselves are accepted.
    load(&format!(
        "{SQLITE}    acquire_timeout: 1h\n    retry_delay: 10ms\n    retry_max_delay: 100ms\n    health_check_interval: 100ms\n"
    ))
    .expect("values at the bounds");
}

/// The size check used metadata, so `/dev/zero` read until memory ran out and a
/// FIFO blocked forever. Now only regular files are read, and at most the limit.
#[test]
fn only_a_bounded_regular_file_is_read() {
    for path in ["/dev/zero", "/dev/urandom"] {
        let err = Config::from_yaml_file(path).expect_err(path).to_string();
        assert!(err.contains("not a regular file"), "{path}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let f = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(Config::from_yaml_file(&f).map_err(|e| e.to_string()));
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("reading a FIFO blocked");
    assert!(result.expect_err("a FIFO").contains("not a regular file"));
    // The CLI says the same, and exits 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dbmanager"))
        .args(["validate", "--config", "/dev/zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
}

/// `DBMANAGER__CONNECTIONS__PRIMARY__...` silently picked one of `Primary` and
/// `primary`. Now it is an error naming both.
#[test]
fn an_override_matching_two_connections_is_an_error() {
    let yaml = "connections:\n  Primary:\n    type: sqlite\n    filepath: ':memory:'\n  primary:\n    type: sqlite\n    filepath: ':memory:'\n";
    let errs = Config::loader()
        .env([("DBMANAGER__CONNECTIONS__PRIMARY__MAX_OPEN_CONNS", "3")])
        .load_str(yaml)
        .expect_err("ambiguous")
        .to_string();
    assert!(
        errs.contains("`Primary`") && errs.contains("`primary`"),
        "{errs}"
    );
    assert!(
        errs.contains("DBMANAGER__CONNECTIONS__PRIMARY__MAX_OPEN_CONNS"),
        "{errs}"
    );
}

/// Connection names were not validated and went unescaped into the SQLite memdb
/// URI. A name is now letters, digits, `_`, `-` and `.`, starting with a letter or digit,
/// at most 64 characters (documented).
#[test]
fn connection_names_have_a_syntax() {
    for bad in [
        "a?mode=rwc",
        "a/b",
        "a b",
        "-x",
        "x&vfs=unix",
        "é",
        &"n".repeat(65),
    ] {
        let yaml =
            format!("connections:\n  '{bad}':\n    type: sqlite\n    filepath: ':memory:'\n");
        let errs = load(&yaml).expect_err(bad).to_string();
        assert!(errs.contains("connection name"), "{bad}: {errs}");
    }
    for good in ["primary", "cache-db", "orders_v2", "eu.west.1", "A1"] {
        let yaml = format!("connections:\n  {good}:\n    type: sqlite\n    filepath: ':memory:'\n");
        load(&yaml).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

/// ResolveSpec's Go `dbmanager` sample configuration failed with three errors
/// (`default_orm: bun` twice; the inherited `max_idle_conns: 5` above `cache-db`'s
/// `max_open_conns: 1`). It now loads with warnings only: an inherited `max_idle_conns`
/// is clamped (as Go's database/sql does), `bun`/`gorm` map to the sqlx view with a
/// warning that says so. An explicit `max_idle_conns` above the same connection's
/// `max_open_conns` is still an error.
#[test]
fn resolvespecs_go_sample_configuration_validates_with_warnings() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/resolvespec-config.yaml"
    );
    let c = Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_file(path)
        .unwrap_or_else(|e| panic!("{e}"));
    let cache = c.connection("cache-db").unwrap();
    assert_eq!(cache.pool.max_open, 1);
    assert_eq!(cache.pool.max_idle, 1, "the inherited 5 is clamped");
    let warnings: Vec<String> = c
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    for path in [
        "dbmanager.connections.primary.default_orm",
        "dbmanager.connections.analytics.default_orm",
        "dbmanager.connections.cache-db.max_idle_conns",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(path)),
            "no warning at {path}: {warnings:#?}"
        );
    }
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("bun") && w.contains("sqlx")),
        "{warnings:#?}"
    );
    rejected(
        "connections:\n  a:\n    type: sqlite\n    filepath: x.db\n    max_open_conns: 1\n    max_idle_conns: 5\n",
        "connections.a.max_idle_conns",
        "max_open_conns",
    );
}
