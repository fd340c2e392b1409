//! A streaming standby of a throwaway PostgreSQL: `pg_basebackup -R` of the primary,
//! started on a free port. It is a [`TempPostgres`] itself (kill, restart, stop).

use super::{TempPostgres, chown_to_postgres, is_root, pg_bin};
use std::process::Command;

impl TempPostgres {
    /// A hot standby streaming from this server, caught up when it returns.
    pub fn start_standby(&self) -> TempPostgres {
        let dir = tempfile::Builder::new()
            .prefix("dbm-standby-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        chown_to_postgres(dir.path());
        let data = dir.path().join("data");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(pg_bin("pg_basebackup"));
            c
        } else {
            Command::new(pg_bin("pg_basebackup"))
        };
        let out = cmd
            .env("PGPASSWORD", &self.password)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                &self.superuser,
            ])
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let standby = TempPostgres {
            dir,
            port: super::free_port(),
            superuser: self.superuser.clone(),
            password: self.password.clone(),
        };
        standby.pg_ctl_start();
        standby
    }

    /// Promotes this standby to a primary (`pg_ctl promote`), returning once it accepts
    /// writes.
    pub fn promote(&self) {
        let out = super::run_pg(
            "pg_ctl",
            &["-D", self.data().to_str().unwrap(), "-w", "promote"],
        );
        assert!(
            out.status.success(),
            "pg_ctl promote failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
