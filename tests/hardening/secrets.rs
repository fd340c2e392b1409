//! Secrets: what must never reach an error, a log line, an event or the CLI.

use dbmanager::ExposeSecret;
use dbmanager::config::{Config, Endpoint};

fn load_with_env(yaml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    Config::loader()
        .env(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .load_str(yaml)
        .map_err(|e| e.to_string())
}

fn password_of(c: &Config) -> String {
    match &c.connections[0].endpoint {
        Endpoint::Server(s) => s
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_owned())
            .unwrap_or_default(),
        other => panic!("not a server: {other:?}"),
    }
}

const PG: &str = "connections:\n  db:\n    type: postgres\n    host: h\n    database: d\n";

/// Item 6: a password that looks like a broken `${...}` reference had its text quoted
/// ("`${Kf9#mQ2x}` is not a valid variable reference"; "`ABC` is not set"), and an
/// environment override was interpolated (`$$` in it became `$`).
#[test]
fn interpolation_errors_never_quote_a_secret_and_overrides_are_literal() {
    for (password, fragment) in [("a${Kf9#mQ2x}", "Kf9#mQ2x"), ("x${ABC}y", "ABC")] {
        for field in ["password", "dsn"] {
            let yaml = format!("{PG}    {field}: '{password}'\n");
            let err = load_with_env(&yaml, &[]).expect_err("an invalid reference");
            assert!(err.contains(&format!("connections.db.{field}")), "{err}");
            assert!(!err.contains(fragment), "{field}: the secret leaked: {err}");
        }
    }
    // A plain reference still says which variable is missing: that is not a secret.
    let err = load_with_env(&format!("{PG}    password: ${{DB_PASSWORD}}\n"), &[]).unwrap_err();
    assert!(err.contains("DB_PASSWORD"), "{err}");
    // Overrides are taken literally: `$$`, `${X}` stay as they are.
    let c = load_with_env(
        PG,
        &[("DBMANAGER__CONNECTIONS__DB__PASSWORD", "pa$$w${X}rd")],
    )
    .expect("a literal override");
    assert_eq!(password_of(&c), "pa$$w${X}rd");
}
