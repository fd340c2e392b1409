//! The canary test. A password made of every character that breaks quoting
//! (`$ % @ : / ? # ' "`, a space, non-ASCII) is set in a typed field, a URL DSN, an ADO
//! DSN (SQL Server) and an environment override, against the SCRAM PostgreSQL, a MariaDB
//! user, the MongoDB auth instance and the TDS gate, with the right password and a wrong
//! one. It must appear in no error, `Debug` output, event, health, stats, log line or CLI
//! output; the right password must connect and the wrong one fail as `Auth`.

use crate::support::Captured;
use crate::support::{self, percent, unique};
use dbmanager::config::Config;
use dbmanager::{ErrorClass, Manager};

const CANARY: &str = "Kq$%@:/?#'\" ñ€Zt";

/// Every fragment whose presence means a leak.
fn leak(text: &str) -> Option<String> {
    let encoded = percent(CANARY);
    [
        CANARY,
        "Kq$%",
        "ñ€Zt",
        "€Zt",
        encoded.as_str(),
        "%E2%82%ACZt",
    ]
    .into_iter()
    .find(|f| text.contains(f))
    .map(str::to_owned)
}

fn yaml_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One way of giving the password.
struct Form {
    label: &'static str,
    /// The whole file: one connection `db`.
    yaml: String,
    env: Vec<(String, String)>,
}

/// An engine's forms: typed fields (`typed(Some(password))`), the same with the password
/// from an environment override, a URL DSN and optionally an ADO string.
fn forms(typed: impl Fn(Option<&str>) -> String, url: String, ado: Option<String>) -> Vec<Form> {
    let conn = |body: String| format!("connections:\n  db:\n{body}    connect_timeout: 5s\n");
    let mut out = vec![
        Form {
            label: "typed field",
            yaml: conn(typed(Some(&yaml_quoted(CANARY)))),
            env: vec![],
        },
        Form {
            label: "environment override",
            yaml: conn(typed(None)),
            env: vec![(
                "DBMANAGER__CONNECTIONS__DB__PASSWORD".to_owned(),
                CANARY.to_owned(),
            )],
        },
        Form {
            label: "URL DSN",
            yaml: conn(url),
            env: vec![],
        },
    ];
    if let Some(ado) = ado {
        out.push(Form {
            label: "ADO DSN",
            yaml: conn(ado),
            env: vec![],
        });
    }
    out
}

/// Runs one form, in process (captured logs, events, errors, Debug) and through the CLI;
/// returns everything it printed.
fn run(engine: &str, form: &Form, right: bool) -> String {
    let what = format!(
        "{engine}, {}, {} password",
        form.label,
        if right { "right" } else { "wrong" }
    );
    let logs = Captured::default();
    let mut out = String::new();
    logs.during(async {
        let config = Config::loader()
            .env(form.env.clone())
            .load_str(&form.yaml)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        out.push_str(&format!("{config:?}\n"));
        let mgr = Manager::new(config);
        let mut events = mgr.subscribe();
        let connected = mgr.connect().await;
        if let Err(e) = &connected {
            out.push_str(&format!("{e}\n{e:?}\n"));
        }
        let conn = mgr.get("db").unwrap();
        let checked = conn.health_check().await;
        if let Err(e) = &checked {
            out.push_str(&format!("{e}\n{e:?}\n"));
        }
        out.push_str(&format!(
            "{conn:?}\n{:?}\n{:?}\n{mgr:?}\n",
            conn.health(),
            conn.stats()
        ));
        if right {
            assert!(
                connected.is_ok() && checked.is_ok(),
                "{what}: {connected:?} {checked:?}"
            );
        } else {
            let err = connected.expect_err(&what);
            assert_eq!(err.class(), Some(ErrorClass::Auth), "{what}: {err:?}");
        }
        mgr.close().await;
        while let Ok(e) = events.try_recv() {
            out.push_str(&format!("{e:?}\n"));
        }
    });
    out.push_str(&logs.text());
    // The CLI, with the same file and environment.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, &form.yaml).unwrap();
    for command in ["validate", "check"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dbmanager"))
            .args([command, "--config", file.to_str().unwrap()])
            .envs(form.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if command == "check" {
            let healthy = printed.contains("healthy") && !printed.contains("unhealthy");
            assert_eq!(healthy, right, "{what}: CLI check printed:\n{printed}");
        }
        out.push_str(&printed);
    }
    if let Some(fragment) = leak(&out) {
        panic!("{what}: `{fragment}` leaked in:\n{out}");
    }
    out
}

fn run_all(engine: &str, forms: &[Form], right: bool) {
    for form in forms {
        run(engine, form, right);
    }
}

#[test]
fn canary_postgres_scram() {
    let pg = support::TempPostgres::start(CANARY);
    let typed = |pw: Option<&str>| {
        format!(
            "    type: postgres\n    host: 127.0.0.1\n    port: {}\n    user: dbm\n    database: postgres\n    sslmode: disable\n{}",
            pg.port,
            pw.map(|p| format!("    password: {p}\n"))
                .unwrap_or_default()
        )
    };
    let url = format!(
        "    type: postgres\n    dsn: 'postgres://dbm:{}@127.0.0.1:{}/postgres?sslmode=disable'\n",
        percent(CANARY),
        pg.port
    );
    let forms = forms(typed, url, None);
    run_all("postgres", &forms, true);
    // The server's password changes: every form now holds a wrong one.
    Captured::default().during(async {
        let url = format!(
            "postgres://dbm:{}@127.0.0.1:{}/postgres",
            percent(CANARY),
            pg.port
        );
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query("alter user dbm password 'other-pw'")
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    });
    run_all("postgres", &forms, false);
}

#[test]
fn canary_mariadb() {
    let user = unique("canary");
    let set_password = |pw: &'static str| {
        let user = user.clone();
        Captured::default().during(async move {
            let admin = support::require_mariadb().await;
            support::create_user(&admin, &user, pw).await;
            admin.close().await;
        });
    };
    set_password(CANARY);
    let typed = |pw: Option<&str>| {
        format!(
            "    type: mariadb\n    host: 127.0.0.1\n    port: 3306\n    user: {user}\n    database: test\n    sslmode: disable\n{}",
            pw.map(|p| format!("    password: {p}\n"))
                .unwrap_or_default()
        )
    };
    let url = format!(
        "    type: mysql\n    dsn: 'mysql://{user}:{}@127.0.0.1:3306/test?ssl-mode=disabled'\n",
        percent(CANARY)
    );
    let forms = forms(typed, url, None);
    run_all("mariadb", &forms, true);
    set_password("other-pw");
    run_all("mariadb", &forms, false);
    Captured::default().during(async {
        let admin = support::require_mariadb().await;
        support::drop_user(&admin, &user).await;
    });
}

#[test]
fn canary_mongodb_scram() {
    use crate::support::mongo::{MONGO_PASSWORD, MONGO_USER, mongo_auth_addr};
    let (host, port) = mongo_auth_addr();
    let user = unique("canary");
    let set_password = |pw: &'static str, create: bool| {
        let (host, user) = (host.clone(), user.clone());
        Captured::default().during(async move {
            let url = format!(
                "mongodb://{MONGO_USER}:{}@{host}:{port}/?authSource=admin&directConnection=true",
                percent(MONGO_PASSWORD)
            );
            let client = mongodb::Client::with_uri_str(&url).await.unwrap();
            let command = if create {
                mongodb::bson::doc! { "createUser": &user, "pwd": pw, "roles": [{ "role": "readWrite", "db": "test" }] }
            } else {
                mongodb::bson::doc! { "updateUser": &user, "pwd": pw }
            };
            client.database("admin").run_command(command).await.unwrap();
        });
    };
    set_password(CANARY, true);
    let typed = |pw: Option<&str>| {
        format!(
            "    type: mongodb\n    host: {host}\n    port: {port}\n    user: {user}\n    auth_source: admin\n    database: test\n{}",
            pw.map(|p| format!("    password: {p}\n"))
                .unwrap_or_default()
        )
    };
    let url = format!(
        "    type: mongodb\n    database: test\n    dsn: 'mongodb://{user}:{}@{host}:{port}/?authSource=admin&directConnection=true'\n",
        percent(CANARY)
    );
    let forms = forms(typed, url, None);
    run_all("mongodb", &forms, true);
    set_password("other-pw", false);
    run_all("mongodb", &forms, false);
}

/// The canary without its non-ASCII part: tiberius's ADO.NET parser refuses any non-ASCII
/// character (with a clear error, checked below), so the ADO form runs with this one.
const ASCII_CANARY: &str = "Kq$%@:/?#'\" Zt";

#[test]
fn canary_sql_server_tds_gate() {
    use crate::support::tds::{MockTds, Tls};
    let right = MockTds::start_with_password(Tls::Plain, CANARY);
    let wrong = MockTds::start_with_password(Tls::Plain, "other-pw");
    let ado = |port: u16, password: &str| {
        format!(
            "    type: mssql\n    dsn: {}\n",
            yaml_quoted(&format!(
                "server=tcp:127.0.0.1,{port};user id=sa;password=\"{}\";database=master;encrypt=DANGER_PLAINTEXT",
                password.replace('"', "\"\"")
            ))
        )
    };
    // A non-ASCII password in an ADO string: refused at validation, without quoting it.
    let yaml = format!("connections:\n  db:\n{}", ado(right.port, CANARY));
    let err = Config::loader()
        .env(Vec::<(String, String)>::new())
        .load_str(&yaml)
        .expect_err("tiberius refuses non-ASCII ADO strings")
        .to_string();
    assert!(err.contains("non-ASCII"), "{err}");
    assert_eq!(leak(&err), None, "{err}");
    // The ASCII canary through an ADO string, right and wrong.
    let ascii_right = MockTds::start_with_password(Tls::Plain, ASCII_CANARY);
    let ado_form = |port| {
        vec![Form {
            label: "ADO DSN",
            yaml: format!(
                "connections:\n  db:\n{}    connect_timeout: 5s\n",
                ado(port, ASCII_CANARY)
            ),
            env: vec![],
        }]
    };
    run_all("sql server", &ado_form(ascii_right.port), true);
    run_all("sql server", &ado_form(wrong.port), false);
    for (server, is_right) in [(&right, true), (&wrong, false)] {
        let port = server.port;
        let typed = |pw: Option<&str>| {
            format!(
                "    type: mssql\n    host: 127.0.0.1\n    port: {port}\n    user: sa\n    database: master\n    sslmode: disable\n{}",
                pw.map(|p| format!("    password: {p}\n"))
                    .unwrap_or_default()
            )
        };
        let url = format!(
            "    type: mssql\n    dsn: 'sqlserver://sa:{}@127.0.0.1:{port}/master?encrypt=danger_plaintext'\n",
            percent(CANARY)
        );
        run_all("sql server", &forms(typed, url, None), is_right);
    }
}
