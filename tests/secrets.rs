//! A recognisable canary password must appear in no Debug output, error, log line or CLI
//! output.

use crate::support;

use dbmanager::{Config, Manager};
use std::io::Write;
use std::sync::{Arc, Mutex};

const CANARY: &str = "Canary-7f3a9-DoNotLeak";

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(CANARY),
        "the canary password leaked into {what}:\n{text}"
    );
    // Also its percent-encoded form (as it would appear inside a DSN).
    assert!(
        !text.contains("Canary-7f3a9"),
        "part of the canary leaked into {what}:\n{text}"
    );
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn yaml(port: u16) -> String {
    format!(
        r#"
application_name: leak-test
connections:
  down:
    type: postgres
    host: 127.0.0.1
    port: {port}
    user: app
    password: "{CANARY}"
    database: test
    connect_timeout: 1s
  dsn:
    type: postgres
    dsn: "postgres://app:{CANARY}@127.0.0.1:{port}/test"
    connect_timeout: 1s
    host: ignored-with-a-warning
  my:
    type: mysql
    dsn: "mysql://app:{CANARY}@127.0.0.1:{port}/test"
    connect_timeout: 1s
  lite:
    type: sqlite
    filepath: ":memory:"
"#
    )
}

#[test]
fn canary_never_leaks() {
    let port = support::free_port();
    let text = yaml(port);
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = Config::loader().env([("X", "y")]).load_str(&text).unwrap();
    assert_clean("Debug of the config", &format!("{config:?} {config:#?}"));
    assert!(!config.warnings.is_empty());
    assert_clean("config warnings", &format!("{:?}", config.warnings));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut errors = Vec::new();
    rt.block_on(async {
        let mgr = Manager::new(config);
        assert_clean("Debug of the manager", &format!("{mgr:?} {mgr:#?}"));
        let err = mgr.connect().await.unwrap_err();
        errors.push(format!("{err} {err:?}"));
        for name in ["down", "dsn", "my"] {
            let conn = mgr.get(name).unwrap();
            assert_clean("Debug of a connection", &format!("{conn:?}"));
            if let Some(e) = conn.health().last_error {
                errors.push(e);
            }
            if let Err(e) = conn.health_check().await {
                errors.push(format!("{e} {e:?}"));
            }
            errors.push(format!("{:?}", conn.stats()));
        }
        assert_clean("Debug of the manager after connect", &format!("{mgr:?}"));
        mgr.close().await;
    });

    // Config errors around secrets: a malformed DSN, a password of the wrong type,
    // a syntax error on the password's line.
    for bad in [
        format!(
            "connections:\n  a:\n    type: postgres\n    dsn: \"postgres://app:{CANARY}@h:port/d\"\n"
        ),
        format!(
            "connections:\n  a:\n    type: mysql\n    dsn: \"mysql://app:{CANARY}@h:99999/d\"\n"
        ),
        format!(
            "connections:\n  a:\n    type: postgres\n    host: h\n    database: d\n    password: [{CANARY}]\n"
        ),
        format!("connections:\n  a:\n    type: postgres\n    password: \"{CANARY}\n    host: [\n"),
        format!(
            "connections:\n  a:\n    type: postgres\n    host: h\n    database: d\n    password: {CANARY}\n    max_open_conns: {CANARY}\n"
        ),
        format!(
            "connections:\n  a:\n    type: sqlite\n    filepath: x.db\n    password: {CANARY}\n"
        ),
    ] {
        let e = Config::loader()
            .env([("X", "y")])
            .load_str(&bad)
            .unwrap_err();
        errors.push(format!("{e} {e:?}"));
    }
    assert!(errors.len() >= 10);
    for e in &errors {
        assert_clean("an error", e);
    }
    drop(_guard);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty(), "expected some log output to check");
    assert_clean("the logs", &logs);
}

#[test]
fn canary_never_leaks_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, yaml(support::free_port())).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("connections:\n  a:\n    type: postgres\n    dsn: \"postgres://app:{CANARY}@h:port/d\"\n    password: {CANARY}\n    max_open_conns: {CANARY}\n"),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_dbmanager");
    for (args, expect) in [
        (vec!["validate", "--config", good.to_str().unwrap()], 0),
        (vec!["validate", "--config", bad.to_str().unwrap()], 2),
        (vec!["check", "--config", good.to_str().unwrap()], 1),
        (
            vec![
                "check",
                "--config",
                good.to_str().unwrap(),
                "--format",
                "json",
            ],
            1,
        ),
        (vec!["check", "--config", bad.to_str().unwrap()], 2),
    ] {
        let out = std::process::Command::new(bin)
            .args(&args)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(expect), "{args:?}:\n{all}");
        assert_clean(&format!("the output of dbmanager {}", args.join(" ")), &all);
    }
}
