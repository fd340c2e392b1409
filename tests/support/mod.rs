//! Test support shared by every integration test: checks that the machine's servers are
//! up (a missing server is a failure with a clear message, never a skip), throwaway
//! server instances for tests that need their own, and small helpers.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "postgres")]
pub mod patroni;
#[cfg(feature = "postgres")]
pub mod pgbouncer;
pub mod proxy;
pub mod replica;
pub mod tds;

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

/// Panics with a clear message unless the machine's server for `kind` (`postgres` or
/// `mysql`) answers.
pub async fn require_server(kind: &str) {
    match kind {
        "postgres" => {
            require_postgres().await.close().await;
        }
        "mysql" => {
            require_mariadb().await.close().await;
        }
        other => panic!("no shared test server for `{other}`"),
    }
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

/// Gives `path` (recursively) to the `postgres` user when we are root: PostgreSQL's and
/// PgBouncer's binaries refuse to run as root and must read what the tests write.
fn chown_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown of {} failed", path.display());
    }
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

/// The PID of the postmaster running on the data directory `data`, from its
/// `postmaster.pid`.
fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
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
        chown_to_postgres(root);
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

    /// Failed password logins so far, from the server's log.
    pub fn failed_logins(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .matches("password authentication failed")
            .count()
    }

    /// The server's PID (the postmaster), from `postmaster.pid`.
    pub fn pid(&self) -> Option<u32> {
        postmaster_pid(&self.data())
    }

    /// `kill -9` of the server and every backend: a crash, as an OOM kill or a power cut
    /// looks to clients (sockets reset, no goodbye).
    pub fn kill9(&self) {
        if let Some(pid) = self.pid() {
            kill9_tree(pid);
        }
    }

    /// Starts the server again on the same port and data directory (after `kill9` or
    /// `stop`). Crash recovery runs first; returns when it accepts connections.
    pub fn restart(&self) {
        if let Some(pid) = self.pid() {
            // A killed postmaster may linger as a zombie until something reaps it, and
            // PostgreSQL takes a zombie's PID in postmaster.pid for a live server. A
            // crashed server's lock file is stale: remove it, as an operator would.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while process_exists(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !process_running(pid) {
                std::fs::remove_file(self.data().join("postmaster.pid")).ok();
            }
        }
        self.pg_ctl_start();
    }

    /// A URL for the superuser (password percent-encoded) on `port` (the server's own
    /// port, or a proxy's).
    pub fn url_via(&self, port: u16) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{port}/postgres",
            self.superuser,
            percent(&self.password)
        )
    }

    /// Stops the server (immediate shutdown).
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

    /// What a failover does to the old primary: it comes back as a standby (stopped,
    /// `standby.signal` written, started again). It then refuses writes with `25006`.
    pub fn restart_as_standby(&self) {
        self.stop();
        let signal = self.data().join("standby.signal");
        std::fs::write(&signal, "").expect("write standby.signal");
        if is_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&signal)
                .status()
                .ok();
        }
        self.pg_ctl_start();
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the resilience tests need of a throwaway server, whatever its engine.
pub trait TempServer: Send + Sync {
    /// The port it listens on.
    fn port(&self) -> u16;
    /// A URL for its superuser through `port` (its own, or a proxy's).
    fn url_via(&self, port: u16) -> String;
    /// `kill -9`, no goodbye to clients.
    fn kill9(&self);
    /// Start again on the same port; returns when it accepts connections.
    fn restart(&self);
}

impl TempServer for TempPostgres {
    fn port(&self) -> u16 {
        self.port
    }
    fn url_via(&self, port: u16) -> String {
        TempPostgres::url_via(self, port)
    }
    fn kill9(&self) {
        TempPostgres::kill9(self)
    }
    fn restart(&self) {
        TempPostgres::restart(self)
    }
}

impl TempServer for TempMariaDb {
    fn port(&self) -> u16 {
        self.port
    }
    fn url_via(&self, port: u16) -> String {
        TempMariaDb::url_via(self, port)
    }
    fn kill9(&self) {
        TempMariaDb::kill9(self)
    }
    fn restart(&self) {
        TempMariaDb::restart(self)
    }
}

/// Percent-encodes everything but unreserved characters, for a URL's userinfo.
pub fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Exists and is not a zombie.
fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// `kill -9` of `pid` and all its descendants, children first.
fn kill9_tree(pid: u32) {
    let children = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    // Stop the parent first so it cannot respawn children, then the children.
    Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .ok();
    for child in children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
    {
        kill9_tree(child);
    }
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .ok();
    // Wait until it is gone (a zombie is reaped by its parent or by init).
    for _ in 0..200 {
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if !alive || zombie {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `port` on 127.0.0.1 until something accepts a TCP connection, up to `limit`.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A throwaway MariaDB instance: its own datadir, socket and free port
/// (`mariadb-install-db` + `mariadbd`), `root@127.0.0.1` without a password. Killed and
/// its directory removed on drop. Never the machine's shared server.
pub struct TempMariaDb {
    dir: tempfile::TempDir,
    pub port: u16,
    child: std::sync::Mutex<Option<std::process::Child>>,
    /// Server options of its own (a replication primary's `--log-bin`, a `--server-id`).
    args: Vec<String>,
}

impl TempMariaDb {
    /// Installs a fresh datadir and starts the server; returns when it accepts connections.
    pub fn start() -> TempMariaDb {
        TempMariaDb::start_with(&[])
    }

    /// [`start`](Self::start) with server options of its own (`--log-bin=...` replaces
    /// the default `--skip-log-bin`).
    pub fn start_with(args: &[&str]) -> TempMariaDb {
        let dir = tempfile::Builder::new()
            .prefix("dbm-mariadb-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let data = dir.path().join("data");
        // Each instance's own tmpdir: instances installed at once in the shared /tmp
        // failed now and then on each other's temporary tables ("Error on delete of
        // '/tmp/#sql-temptable-...'").
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmpdir");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if is_root() {
            install.arg("--user=root");
        }
        let out = install.output().unwrap_or_else(|e| {
            panic!("cannot run mariadb-install-db (install the mariadb-server package): {e}")
        });
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let db = TempMariaDb {
            dir,
            port: free_port(),
            child: std::sync::Mutex::new(None),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        db.restart();
        db
    }

    /// Starts `mariadbd` (again) on the same port and datadir; returns when it accepts
    /// connections. After a `kill9`, InnoDB recovers first.
    pub fn restart(&self) {
        let d = self.dir.path();
        let mut cmd = Command::new(mariadbd());
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("err.log").display()))
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .arg(format!("--port={}", self.port))
            .args(
                (!self.args.iter().any(|a| a.starts_with("--log-bin"))).then_some("--skip-log-bin"),
            )
            .args(&self.args)
            .args([
                "--bind-address=127.0.0.1",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                "--max-connections=60",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mariadbd: {e}"));
        *self.child.lock().unwrap() = Some(child);
        if !wait_for_port(self.port, Duration::from_secs(30)) {
            panic!(
                "mariadbd did not accept connections on port {} within 30 s:\n{}",
                self.port,
                std::fs::read_to_string(d.join("err.log")).unwrap_or_default()
            );
        }
    }

    /// `kill -9` of the server: sockets reset, no goodbye.
    pub fn kill9(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// A URL for root on `port` (the server's own port, or a proxy's).
    pub fn url_via(&self, port: u16) -> String {
        format!("mysql://root@127.0.0.1:{port}/mysql")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TempMariaDb {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn mariadbd() -> PathBuf {
    [
        "/usr/sbin/mariadbd",
        "/usr/bin/mariadbd",
        "/usr/local/bin/mariadbd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("mariadbd not found (install the mariadb-server package)"))
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

/// Collects every event of a manager.
#[derive(Clone)]
pub struct Recorder(pub std::sync::Arc<std::sync::Mutex<Vec<dbmanager::Event>>>);

impl Recorder {
    pub fn start(mgr: &dbmanager::Manager) -> Recorder {
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut rx = mgr.subscribe();
        let sink = std::sync::Arc::clone(&events);
        tokio::spawn(async move {
            while let Ok(e) = rx.recv().await {
                sink.lock().unwrap().push(e);
            }
        });
        Recorder(events)
    }

    pub fn count(&self, pred: impl Fn(&dbmanager::EventKind) -> bool) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| pred(&e.kind))
            .count()
    }

    /// Events of the connection `name` (and its replicas) for which `pred` holds.
    pub fn count_for(&self, name: &str, pred: impl Fn(&dbmanager::EventKind) -> bool) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| &*e.connection == name && pred(&e.kind))
            .count()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.name())
            .collect()
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs a blocking server command (start/kill) off the runtime's threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// A connection with a wrong password: waits (up to `limit`) until it is marked fatal, then
/// checks that `attempt` fails at once with `Unavailable { class: Auth }` and that the
/// supervisor makes only 1–5 attempts in the next 2.5 s (no tight retry loop).
pub async fn assert_auth_failure_not_retried<T, Fut>(
    conn: &dbmanager::Connection,
    events: &Recorder,
    limit: std::time::Duration,
    attempt: impl FnOnce() -> Fut,
) where
    T: std::fmt::Debug,
    Fut: std::future::Future<Output = dbmanager::Result<T>>,
{
    use dbmanager::{Error, ErrorClass, EventKind};
    assert!(
        eventually(limit, || conn.health().is_fatal()).await,
        "{:?}",
        conn.health()
    );
    let started = std::time::Instant::now();
    let err = attempt().await.expect_err("unavailable");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                class: Some(ErrorClass::Auth),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let attempts = events.count(|k| matches!(k, EventKind::ReconnectAttempt { .. }));
    assert!((1..=5).contains(&attempts), "{attempts} attempts in 2.5 s");
}

/// Creates (or replaces) a MariaDB user with every right on `test`, from any host.
pub async fn create_user(admin: &sqlx::MySqlPool, user: &str, password: &str) {
    for host in ["localhost", "%"] {
        let stmt = format!(
            "CREATE OR REPLACE USER '{user}'@'{host}' IDENTIFIED BY {}",
            sql_literal(password)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(admin)
            .await
            .unwrap();
        let grant = format!("GRANT ALL ON test.* TO '{user}'@'{host}'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(grant))
            .execute(admin)
            .await
            .unwrap();
    }
}

/// Drops a user made by [`create_user`].
pub async fn drop_user(admin: &sqlx::MySqlPool, user: &str) {
    for host in ["localhost", "%"] {
        let stmt = format!("DROP USER IF EXISTS '{user}'@'{host}'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(admin)
            .await
            .ok();
    }
}

/// A session counter for [`max_count_during`] and friends.
pub type SessionCount = std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>>;

/// The server's count from `sessions` once it reaches `want`, or the last count after 2 s.
/// A client's close is seen by the server a moment later (a backend leaves
/// `pg_stat_activity` as it exits), longer on a loaded machine: a count taken right after
/// a close can still include the closed session.
pub async fn sessions_settled(sessions: &impl Fn() -> SessionCount, want: i64) -> i64 {
    let mut left = sessions().await;
    for _ in 0..100 {
        if left == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = sessions().await;
    }
    left
}

/// Counts the PostgreSQL sessions whose `application_name` is `app`, as the server sees
/// them (`pg_stat_activity`), through `observer`.
pub fn pg_sessions(
    observer: &sqlx::PgPool,
    app: &str,
) -> impl Fn() -> SessionCount + Clone + Send + 'static {
    let (observer, app) = (observer.clone(), app.to_owned());
    move || {
        let (observer, app) = (observer.clone(), app.clone());
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from pg_stat_activity where application_name = $1",
            )
            .bind(app)
            .fetch_one(&observer)
            .await
            .unwrap()
        })
    }
}

/// Counts the MariaDB sessions of `user`, as the server sees them
/// (`information_schema.PROCESSLIST`), through `admin`.
pub fn mariadb_sessions(
    admin: &sqlx::MySqlPool,
    user: &str,
) -> impl Fn() -> SessionCount + Clone + Send + 'static {
    let (admin, user) = (admin.clone(), user.to_owned());
    move || {
        let (admin, user) = (admin.clone(), user.clone());
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            )
            .bind(user)
            .fetch_one(&admin)
            .await
            .unwrap()
        })
    }
}

/// Runs `f` on a fresh current-thread runtime with `subscriber` as this thread's default
/// `tracing` subscriber (so every event and span of `f` reaches it).
pub fn block_on_with<T>(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
    f: impl std::future::Future<Output = T>,
) -> T {
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
}

/// Collects everything logged through `tracing` (every level, no colours).
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Runs `f` on a current-thread runtime with every log line captured.
    pub fn during<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        block_on_with(subscriber, f)
    }
}

/// `GET path` from `addr` over a fresh TCP connection, as HTTP/1.0 (so the answer is never
/// chunked): (status, content type, body).
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_owned()))
}

/// With both places of a budget of 2 held, runs `change` (a swap, a reload) while two
/// more acquires wait, and releases the two held after 500 ms. Returns each later
/// connection's `application_name`, as the server reports it.
pub async fn across_a_full_budget_of_two(
    conn: &dbmanager::Connection,
    change: impl std::future::Future<Output = ()>,
) -> Vec<String> {
    let a = conn.acquire::<sqlx::Postgres>().await.unwrap();
    let b = conn.acquire::<sqlx::Postgres>().await.unwrap();
    let later = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = conn.acquire::<sqlx::Postgres>().await.unwrap();
        let mut d = conn.acquire::<sqlx::Postgres>().await.unwrap();
        let mut names = Vec::new();
        for x in [&mut c, &mut d] {
            names.push(
                sqlx::query_scalar("select current_setting('application_name')")
                    .fetch_one(&mut **x)
                    .await
                    .unwrap(),
            );
        }
        names
    };
    let release = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop((a, b));
    };
    let ((), names, ()) = tokio::join!(change, later, release);
    names
}
