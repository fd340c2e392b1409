//! The `dbmanager` command against the machine's servers.

use crate::support;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dbmanager"))
        .args(args)
        .output()
        .expect("run dbmanager");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_exit_codes_and_every_error_on_stderr() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.example.yaml");
    let (code, stdout, stderr) = run(&["validate", "--config", example]);
    assert_eq!(code, 0);
    assert!(stdout.contains("valid, 6 connection(s)"), "{stdout}");
    // The project's own example is clean: no warning.
    assert!(stderr.is_empty(), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "max_open_conns: 0\nconnections:\n  a:\n    type: oracle\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["validate", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("max_open_conns (line 1"), "{stderr}");
    assert!(stderr.contains("connections.a.type (line 4"), "{stderr}");

    let (code, _, stderr) = run(&["validate", "--config", "/nonexistent/dbm.yaml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read the file"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_connection_and_exits_by_health() {
    support::require_postgres().await;
    support::require_mariadb().await;
    let dir = tempfile::tempdir().unwrap();
    let healthy = dir.path().join("ok.yaml");
    std::fs::write(
        &healthy,
        "connections:\n  pg:\n    type: postgres\n    host: 127.0.0.1\n    user: postgres\n    database: test\n  my:\n    type: mariadb\n    host: 127.0.0.1\n    user: root\n    database: test\n  lite:\n    type: sqlite\n    filepath: \":memory:\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["check", "--config", healthy.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for name in ["pg", "my", "lite"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(line.contains("healthy"), "{line}");
        assert!(line.contains("ms"), "latency in {line}");
        assert!(line.contains("open<=25"), "pool settings in {line}");
    }

    let (code, stdout, _) = run(&[
        "check",
        "--config",
        healthy.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(
        list.iter()
            .all(|c| c["status"] == "healthy" && c["round_trip_ms"].is_number())
    );
    // Strict connections report how long opening them took, apart from the round trip.
    assert!(list.iter().all(|c| c["connect_ms"].is_number()), "{stdout}");
    assert_eq!(list[0]["pool"]["max_open_conns"], 25);

    // An invalid file, asked for JSON, answers in JSON too (exit 2).
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "connections:\n  a:\n    type: postgres\n    max_open_conns: 0\n",
    )
    .unwrap();
    let (code, stdout, _) = run(&[
        "check",
        "--config",
        bad.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 2, "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["valid"], false);
    assert!(
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "connections.a.max_open_conns"),
        "{stdout}"
    );

    let down = dir.path().join("down.yaml");
    let port = support::free_port();
    std::fs::write(
        &down,
        format!("connections:\n  lite:\n    type: sqlite\n    filepath: \":memory:\"\n  gone:\n    type: postgres\n    host: 127.0.0.1\n    port: {port}\n    user: postgres\n    database: test\n    connect_timeout: 1s\n"),
    )
    .unwrap();
    let (code, stdout, _) = run(&["check", "--config", down.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("gone") && l.contains("unhealthy")),
        "{stdout}"
    );
    assert!(stdout.contains("error: connection `gone`"), "{stdout}");
    // The refusal and the address, not a bare timeout.
    assert!(
        stdout.contains(&format!("(127.0.0.1:{port})")) && stdout.contains("refused"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_mongodb_and_sql_server() {
    let mock = support::tds::MockTds::start(support::tds::Tls::Plain);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("five.yaml");
    std::fs::write(
        &path,
        format!(
            "connections:\n  documents:\n    type: mongodb\n    dsn: '{}'\n    database: app\n  legacy:\n    type: mssql\n    host: 127.0.0.1\n    port: {}\n    user: {}\n    password: '{}'\n    database: master\n    sslmode: disable\n",
            support::mongo::mongo_url(),
            mock.port,
            support::tds::MSSQL_USER,
            support::tds::MSSQL_PASSWORD.replace('\'', "''"),
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[
        "check",
        "--config",
        path.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let rows = report
        .as_array()
        .or_else(|| report["connections"].as_array())
        .expect("a list");
    for (name, kind) in [("documents", "mongodb"), ("legacy", "mssql")] {
        let row = rows
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {stdout}"));
        assert_eq!(row["type"], kind, "{row}");
        assert_eq!(row["status"], "healthy", "{row}");
    }
    assert!(!stdout.contains(support::tds::MSSQL_PASSWORD));

    // The SQL Server stops: check says so and exits 1.
    mock.stop();
    let (code, stdout, _) = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("legacy"))
        .expect("legacy row");
    assert!(line.contains("unhealthy"), "{line}");
}

/// `dbmanager serve`: serves the endpoints, logs JSON, and on SIGTERM closes every
/// connection and exits 0. A canary password in the file never reaches its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_until_sigterm_then_closes_and_exits_zero() {
    const CANARY: &str = "Kq$%@:/?#'\" ñ€Zt";
    support::require_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serve.yaml");
    std::fs::write(
        &file,
        format!(
            "connections:\n  pg:\n    type: postgres\n    host: 127.0.0.1\n    user: postgres\n    password: '{}'\n    database: test\n  lite:\n    type: sqlite\n    filepath: ':memory:'\n",
            CANARY.replace('\'', "''")
        ),
    )
    .unwrap();
    let port = support::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dbmanager"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        support::blocking(move || support::wait_for_port(port, std::time::Duration::from_secs(20)))
            .await,
        "serve did not listen"
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (status, _, ready) = support::http_get(addr, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{ready}");
    let (_, _, metrics) = support::http_get(addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains(r#"dbmanager_connection_up{connection="pg",type="postgres"} 1"#),
        "{metrics}"
    );
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = support::blocking(move || child.wait_with_output().unwrap()).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    for fragment in [CANARY, "Kq$%", "ñ€Zt"] {
        assert!(
            !stderr.contains(fragment) && !metrics.contains(fragment),
            "`{fragment}` leaked"
        );
    }
}
