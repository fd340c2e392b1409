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

/// Item 4: `acquire_timeout: 10000000000000000000s` was accepted and then panicked with
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
