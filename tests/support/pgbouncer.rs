//! A throwaway PgBouncer (Debian package `pgbouncer`, installed by scripts/test.sh) on a
//! free port in front of the machine's PostgreSQL. Stopped on drop.

use super::{chown_to_postgres, free_port, is_root, wait_for_port};
use std::process::{Child, Command, Stdio};

/// A PgBouncer in `pool_mode` (`transaction`, `session`) with `pool_size` server
/// connections for every user/database pair. Database `test`, logged in as `postgres`
/// whatever user the client names (`auth_type = any`).
pub struct TempPgBouncer {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

impl TempPgBouncer {
    pub fn start(pool_mode: &str, pool_size: u32) -> TempPgBouncer {
        TempPgBouncer::start_with(pool_mode, pool_size, "")
    }

    /// As [`start`](Self::start), with more `[pgbouncer]` settings (`key = value` lines).
    pub fn start_with(pool_mode: &str, pool_size: u32, extra: &str) -> TempPgBouncer {
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "PgBouncer is required (Debian package `pgbouncer`) but is not installed: \
                     run scripts/test.sh, which installs it"
                )
            });
        let dir = tempfile::Builder::new()
            .prefix("dbm-bouncer-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 test = host=127.0.0.1 port=5432 dbname=test user=postgres\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = any\n\
                 pool_mode = {pool_mode}\n\
                 default_pool_size = {pool_size}\n\
                 max_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {log}\n\
                 {extra}",
                log = dir.path().join("log").display()
            ),
        )
        .expect("write pgbouncer.ini");
        // PgBouncer refuses to run as root: `-u` drops to the `postgres` user, which must
        // be able to read the directory.
        let mut cmd = Command::new(bin);
        chown_to_postgres(dir.path());
        if is_root() {
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let bouncer = TempPgBouncer { dir, child, port };
        assert!(
            wait_for_port(port, std::time::Duration::from_secs(10)),
            "PgBouncer did not listen on {port}: {}",
            bouncer.log()
        );
        bouncer
    }

    /// A URL through the bouncer (TLS off: the bouncer has no certificate).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/test?sslmode=disable",
            self.port
        )
    }

    /// The bouncer's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for TempPgBouncer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
