//! The MongoDB test servers: SecantusDB (`secantusdb==0.7.0b3` from PyPI), which speaks the
//! MongoDB wire protocol. scripts/test.sh installs it into `.venv/secantus`, starts one
//! instance without auth and one with `--auth` and a SCRAM user, and exports where they
//! are. Tests that kill or restart a server start their own [`TempMongo`].

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The SCRAM user of the auth instance (scripts/test.sh creates it).
pub const MONGO_USER: &str = "dbm_app";
/// Its password: `@ : / ? # % &` and a space, which a URL must escape.
pub const MONGO_PASSWORD: &str = "m0ng@:p/w?#%&x y";

fn env_or_fail(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: the MongoDB tests need the SecantusDB test servers that \
             scripts/test.sh installs (secantusdb==0.7.0b3 into .venv/secantus) and starts. \
             Run the tests with scripts/test.sh."
        )
    })
}

/// The URL of the instance without auth (`mongodb://127.0.0.1:P/?directConnection=true`).
pub fn mongo_url() -> String {
    env_or_fail("DBMANAGER_TEST_MONGO_URL")
}

/// `host:port` of the instance with `--auth`.
pub fn mongo_auth_addr() -> (String, u16) {
    let addr = env_or_fail("DBMANAGER_TEST_MONGO_AUTH_ADDR");
    let (host, port) = addr
        .rsplit_once(':')
        .expect("DBMANAGER_TEST_MONGO_AUTH_ADDR is host:port");
    (host.to_owned(), port.parse().expect("a port number"))
}

fn secantusd() -> PathBuf {
    PathBuf::from(env_or_fail("DBMANAGER_SECANTUSD"))
}

/// A throwaway SecantusDB on a free port with its own storage directory, for tests that
/// kill and restart the server. Killed on drop.
pub struct TempMongo {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl TempMongo {
    /// Starts it; returns once it accepts connections.
    pub fn start() -> TempMongo {
        let m = TempMongo {
            port: super::free_port(),
            dir: tempfile::tempdir().expect("a temp dir"),
            child: Mutex::new(None),
        };
        m.spawn();
        m
    }

    fn spawn(&self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("a log file");
        let child = Command::new(secantusd())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--storage-path",
            ])
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("could not start secantusd-py");
        *self.child.lock().unwrap() = Some(child);
        assert!(
            super::wait_for_port(self.port, Duration::from_secs(30)),
            "the throwaway MongoDB server did not start on port {}",
            self.port
        );
    }

    /// Its URL (no auth, direct connection).
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// `kill -9`: no goodbye to clients. Returns once the port is closed.
    pub fn kill9(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for TempMongo {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
