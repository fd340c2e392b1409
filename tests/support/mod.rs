//! Test support shared by every integration test: checks that the machine's servers are
//! up (a missing server is a failure with a clear message, never a skip), throwaway
//! server instances for tests that need their own, and small helpers.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The machine's PostgreSQL (trust auth).
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The machine's MariaDB (root, empty password).
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A name unique in this test run, for application names, users, tables.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Panics with a clear message unless the machine's PostgreSQL answers.
pub async fn require_postgres() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(PG_URL)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required at {PG_URL} but is not reachable: {e}. \
                 Start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or run scripts/test.sh"
            )
        })
}

/// Panics with a clear message unless the machine's MariaDB answers.
pub async fn require_mariadb() -> sqlx::MySqlPool {
    sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(MYSQL_URL)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MariaDB is required at {MYSQL_URL} but is not reachable: {e}. \
                 Start it (start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd) or run scripts/test.sh"
            )
        })
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("PostgreSQL server binary `{name}` not found under /usr/lib/postgresql/*/bin")
        })
}

/// Runs a PostgreSQL server binary, as the `postgres` user when we are root (initdb and
/// postgres refuse to run as root).
fn run_pg(bin: &str, args: &[&str]) -> std::process::Output {
    let path = pg_bin(bin);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
}

/// A throwaway PostgreSQL instance on a free port, with SCRAM password authentication.
/// Stopped (and its directory removed) on drop. Never the machine's shared server.
pub struct TempPostgres {
    dir: tempfile::TempDir,
    pub port: u16,
    pub superuser: String,
    pub password: String,
}

impl TempPostgres {
    /// initdb + pg_ctl start with `scram-sha-256` for TCP; the superuser `dbm` gets
    /// `password` (any characters).
    pub fn start(password: &str) -> TempPostgres {
        let dir = tempfile::Builder::new()
            .prefix("dbm-pg-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {} failed", root.display());
        }
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write pwfile");
        if is_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pwfile)
                .status()
                .ok();
        }
        let data = root.join("data");
        let out = run_pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "dbm",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let pg = TempPostgres {
            dir,
            port,
            superuser: "dbm".into(),
            password: password.into(),
        };
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let out = run_pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&self) {
        run_pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Samples `count` every few milliseconds until `stop` is set; returns the maximum seen.
pub async fn max_while<F, Fut>(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut count: F,
) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let mut max = 0;
    while !stop.load(Ordering::Acquire) {
        max = max.max(count().await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    max.max(count().await)
}

/// Runs `tasks` concurrent copies of `work(i)` while sampling `count()` every few
/// milliseconds; returns the largest count seen. Used to compare the server's own session
/// count with a pool's limit under load.
pub async fn max_count_during<C, CF, W, WF>(count: C, tasks: u32, work: W) -> i64
where
    C: FnMut() -> CF + Send + 'static,
    CF: std::future::Future<Output = i64> + Send + 'static,
    W: Fn(u32) -> WF,
    WF: std::future::Future<Output = ()> + Send + 'static,
{
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(max_while(stop.clone(), count));
    let handles: Vec<_> = (0..tasks).map(|i| tokio::spawn(work(i))).collect();
    for h in handles {
        h.await.expect("a load task failed");
    }
    stop.store(true, Ordering::Release);
    sampler.await.expect("the sampler failed")
}

/// Escapes a string for a single-quoted SQL literal.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The password with every character the foundation issue names: `@:/?#%'`, a space, `"`.
pub const NASTY_PASSWORD: &str = "p@ss:w/rd?#%'x y\"z";
