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

/// A password that looks like a broken `${...}` reference had its text quoted
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

use crate::support::Captured;

/// Sqlx logs an unrecognised DSN parameter at WARN with its value
/// (`?sslpassword=...`), at validation and at every open. No secret reaches a log now.
#[test]
fn an_unrecognised_dsn_parameter_is_never_logged_with_its_value() {
    const CANARY: &str = "Canary7sslpw";
    let logs = Captured::default();
    let yaml = format!(
        "connections:\n  db:\n    type: postgres\n    dsn: 'postgres://postgres@127.0.0.1:5432/test?sslpassword={CANARY}&application_name=canary'\n"
    );
    logs.during(async {
        crate::support::require_postgres().await;
        let mgr = dbmanager::Manager::from_yaml_str(&yaml).expect("valid");
        mgr.connect().await.expect("connects");
        mgr.get("db")
            .unwrap()
            .health_check()
            .await
            .expect("healthy");
        mgr.close().await;
    });
    let text = logs.text();
    assert!(!text.contains(CANARY), "a DSN secret was logged:\n{text}");
}

/// The DSN path read `~/.pgpass` (`PGPASSFILE`), contrary to the provider's
/// comment. Now neither path reads a password file; libpq's `PG*` variables are read for
/// what the configuration leaves out, as documented. Run through the CLI so the
/// environment is the child's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_provider_reads_pg_variables_but_never_a_password_file() {
    let pg = crate::support::blocking(|| crate::support::TempPostgres::start("only-in-env")).await;
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:{}:*:dbm:only-in-env\n", pg.port),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let check = |yaml: String, env: &[(&str, &str)]| {
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dbmanager"))
            .args(["check", "--config", file.to_str().unwrap()])
            .env_remove("PGPASSWORD")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dsn = format!(
        "connections:\n  db:\n    type: postgres\n    dsn: 'postgres://dbm@127.0.0.1:{}/postgres'\n    connect_timeout: 3s\n",
        pg.port
    );
    let typed = format!(
        "connections:\n  db:\n    type: postgres\n    host: 127.0.0.1\n    port: {}\n    user: dbm\n    database: postgres\n    connect_timeout: 3s\n",
        pg.port
    );
    let file = pgpass.to_str().unwrap();
    for yaml in [&dsn, &typed] {
        let out = check(yaml.clone(), &[("PGPASSFILE", file)]);
        assert!(
            out.contains("unhealthy"),
            "a password file was read:\n{out}"
        );
        let out = check(yaml.clone(), &[("PGPASSWORD", "only-in-env")]);
        assert!(
            out.contains("healthy") && !out.contains("unhealthy"),
            "PGPASSWORD is documented as read:\n{out}"
        );
    }
}

/// Redaction gaps. `@` in a DSN's query broke the password extraction; only the
/// URL-encoded form of a password was redacted; ADO/JDBC passwords were not collected;
/// a `sqlserver://` password with `?` had its tail quoted as an "unknown parameter".
#[test]
fn every_spelling_of_a_dsn_password_is_redacted() {
    use dbmanager::Secrets;
    let cases: &[(&str, &[&str])] = &[
        // `@` in the query: the password is still the userinfo's.
        ("postgres://u:Pw7sec@h/d?application_name=a@b", &["Pw7sec"]),
        // Percent-encoded in the DSN, decoded in a driver's message.
        (
            "postgres://u:p%40ss%2Fw0rd@h/d",
            &["p%40ss%2Fw0rd", "p@ss/w0rd"],
        ),
        // An unencoded `@` inside the password.
        ("mysql://u:p@ss-w0rd@h/d", &["p@ss-w0rd"]),
        // ADO.NET and JDBC strings.
        (
            "Server=tcp:h,1433;User Id=sa;Password=Ad0Secret;Database=d",
            &["Ad0Secret"],
        ),
        (
            "server=h;pwd={br@ced;secret};database=d",
            &["br@ced;secret"],
        ),
        (
            "jdbc:sqlserver://h:1433;databaseName=d;user=sa;password=Jdbc5ecret;",
            &["Jdbc5ecret"],
        ),
        // `?` in a sqlserver:// password.
        (
            "sqlserver://sa:12345?t41lpart@h:1433/master",
            &["12345?t41lpart"],
        ),
    ];
    for (dsn, secrets) in cases {
        let mut s = Secrets::new();
        s.add_dsn(dsn);
        for secret in *secrets {
            let out = s.scrub(format!("driver said: {secret} / {dsn}"));
            assert!(!out.contains(secret), "{dsn}: `{secret}` survived: {out}");
        }
    }
}

/// A `sqlserver://` password with `?` after digits had its tail quoted in the
/// "unknown parameter" error.
#[test]
fn a_sql_server_dsn_error_never_quotes_the_password_tail() {
    let yaml = "connections:\n  legacy:\n    type: mssql\n    dsn: 'sqlserver://sa:12345?t41lpart@127.0.0.1:1433/master?encrypt=bogus'\n";
    let err = load_with_env(yaml, &[]).expect_err("a bad encrypt value");
    assert!(!err.contains("t41lpart"), "{err}");
    assert!(!err.contains("12345"), "{err}");
    // The password with `?` is read as a password: this one is valid.
    let yaml = "connections:\n  legacy:\n    type: mssql\n    dsn: 'sqlserver://sa:12345?t41lpart@127.0.0.1:1433/master?encrypt=danger_plaintext'\n";
    load_with_env(yaml, &[]).unwrap_or_else(|e| panic!("{e}"));
}
