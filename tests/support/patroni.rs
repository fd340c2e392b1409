//! A real Patroni cluster for the high-availability tests, from the Debian packages
//! (`patroni`, `etcd-server`, `haproxy`) and PostgreSQL 15's binaries: one etcd, two
//! PostgreSQL nodes each run by Patroni (`synchronous_mode: true`, `ttl: 10`,
//! `loop_wait: 1`), and an HAProxy that routes `primary_port` to the leader (Patroni's
//! `GET /primary`) and `replica_port` to the standby (`GET /replica`), as Patroni's own
//! documentation sets it up. `patronictl` switches over. Everything runs on free ports in a temporary directory and
//! is killed on drop.

use super::{free_port, is_root, kill9_tree, pg_bin};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser Patroni creates, with `password`.
pub const SUPERUSER: &str = "dbm";

/// One Patroni node: its PostgreSQL port, its REST API port, and its Patroni process
/// while it runs.
pub struct Node {
    pub name: String,
    pub pg_port: u16,
    pub api_port: u16,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    patroni: Option<Child>,
}

/// What Patroni's REST API says a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `GET /primary` answers 200.
    Leader,
    /// `GET /replica` answers 200 (a running standby).
    Replica,
    /// Neither, or no answer.
    Other,
}

pub struct Patroni {
    dir: tempfile::TempDir,
    etcd: Child,
    haproxy: Child,
    pub nodes: Vec<Node>,
    /// HAProxy's port for the leader.
    pub primary_port: u16,
    /// HAProxy's port for the standbys.
    pub replica_port: u16,
    pub password: String,
}

/// The `postgres` user's uid and gid, to run Patroni as (PostgreSQL refuses root).
fn postgres_ids() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id postgres");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id for the postgres user")
    };
    Some((id("-u"), id("-g")))
}

fn require(bin: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{bin}` is not installed: the Patroni cluster tests need the Debian package \
         `{package}` (scripts/test.sh installs it)"
    );
}

/// The status code of `GET path` on 127.0.0.1:`port`, or `None` without an answer.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 16];
    let n = s.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool, logs: &[&Path]) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tails: String = logs
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            format!(
                "--- {}:\n{}\n",
                p.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect();
    panic!("the Patroni cluster: {what} within {limit:?}\n{tails}");
}

impl Patroni {
    /// Starts etcd, both nodes and HAProxy; returns once one node leads, the other is its
    /// synchronous standby, and HAProxy routes to both.
    pub fn start(password: &str) -> Patroni {
        require("patroni", "patroni");
        require("etcd", "etcd-server");
        require("haproxy", "haproxy");
        let dir = tempfile::Builder::new()
            .prefix("dbm-patroni-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let (client, peer) = (free_port(), free_port());
        let etcd_log = root.join("etcd.log");
        let etcd = Command::new("etcd")
            .args(["--name", "e", "--data-dir"])
            .arg(root.join("etcd"))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("e=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&etcd_log).expect("etcd log"))
            .spawn()
            .expect("start etcd");
        let bin_dir = pg_bin("postgres").parent().expect("bin dir").to_path_buf();
        let mut nodes: Vec<Node> = (1..=2)
            .map(|i| {
                let name = format!("n{i}");
                let home = root.join(&name);
                std::fs::create_dir_all(&home).expect("node dir");
                let (pg_port, api_port) = (free_port(), free_port());
                let config = root.join(format!("{name}.yml"));
                std::fs::write(
                    &config,
                    node_config(&name, &home, pg_port, api_port, client, &bin_dir, password),
                )
                .expect("write the Patroni config");
                Node {
                    name,
                    pg_port,
                    api_port,
                    config,
                    data: home.join("data"),
                    log: root.join(format!("n{i}.log")),
                    patroni: None,
                }
            })
            .collect();
        super::chown_to_postgres(&root);
        wait_until(
            "etcd did not listen",
            Duration::from_secs(20),
            || TcpStream::connect(("127.0.0.1", client)).is_ok(),
            &[&etcd_log],
        );
        for node in &mut nodes {
            node.start();
        }
        let (primary_port, replica_port) = (free_port(), free_port());
        let haproxy_cfg = root.join("haproxy.cfg");
        std::fs::write(
            &haproxy_cfg,
            haproxy_config(&nodes, primary_port, replica_port),
        )
        .expect("write the HAProxy config");
        let haproxy = Command::new("haproxy")
            .arg("-f")
            .arg(&haproxy_cfg)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("haproxy.log")).expect("haproxy log"))
            .spawn()
            .expect("start haproxy");
        let cluster = Patroni {
            dir,
            etcd,
            haproxy,
            nodes,
            primary_port,
            replica_port,
            password: password.to_owned(),
        };
        cluster.wait_for_pair(Duration::from_secs(90));
        cluster
    }

    /// Waits until one node leads and the other is its synchronous standby.
    pub fn wait_for_pair(&self, limit: Duration) {
        let logs: Vec<&Path> = self.nodes.iter().map(|n| n.log.as_path()).collect();
        wait_until(
            "no leader with a synchronous standby",
            limit,
            || {
                let roles: Vec<Role> = (0..self.nodes.len()).map(|i| self.role(i)).collect();
                let leader = roles.iter().position(|r| *r == Role::Leader);
                leader.is_some_and(|l| {
                    (0..self.nodes.len()).filter(|&i| i != l).all(|i| {
                        roles[i] == Role::Replica
                            && http_status(self.nodes[i].api_port, "/sync") == Some(200)
                    })
                })
            },
            &logs,
        );
    }

    /// What node `i` is now, by Patroni's REST API.
    pub fn role(&self, i: usize) -> Role {
        let port = self.nodes[i].api_port;
        if http_status(port, "/primary") == Some(200) {
            Role::Leader
        } else if http_status(port, "/replica") == Some(200) {
            Role::Replica
        } else {
            Role::Other
        }
    }

    /// The node that leads now.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.role(i) == Role::Leader)
    }

    /// `kill -9` of node `i`'s Patroni and its PostgreSQL (the postmaster and every
    /// backend): the machine's crash, as the cluster sees it.
    pub fn kill9(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut p) = node.patroni.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Some(pid) = node.postmaster_pid() {
            kill9_tree(pid);
        }
    }

    /// Starts node `i`'s Patroni again: it rejoins the cluster (as a standby after a
    /// failover, rewound with `pg_rewind` when needed).
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
    }

    /// A planned switchover to node `to` (`patronictl switchover --force`): Patroni
    /// demotes the leader cleanly and promotes `to`. Returns once `to` leads.
    pub fn switchover(&self, to: usize) {
        // With `synchronous_mode`, Patroni switches over only to the synchronous standby.
        self.wait_for_pair(Duration::from_secs(30));
        let from = self.leader().expect("a leader to switch over from");
        let out = Command::new("patronictl")
            .arg("-c")
            .arg(&self.nodes[to].config)
            .args(["switchover", "--force", "--leader"])
            .arg(&self.nodes[from].name)
            .arg("--candidate")
            .arg(&self.nodes[to].name)
            .output()
            .expect("run patronictl");
        // patronictl reports a refused switchover on stdout and exits 0.
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !said.contains("failed"),
            "patronictl switchover failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let logs: Vec<&Path> = self.nodes.iter().map(|n| n.log.as_path()).collect();
        wait_until(
            "the switchover's candidate did not lead",
            Duration::from_secs(30),
            || self.role(to) == Role::Leader,
            &logs,
        );
    }

    /// A URL for the superuser on `port` (a node's or HAProxy's).
    pub fn url(&self, port: u16) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{port}/postgres?sslmode=disable",
            super::percent(&self.password)
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("Patroni log");
        let mut cmd = Command::new("patroni");
        cmd.arg(&self.config)
            .current_dir(self.config.parent().expect("config dir"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some((uid, gid)) = postgres_ids() {
            cmd.uid(uid).gid(gid).env("HOME", "/var/lib/postgresql");
        }
        self.patroni = Some(cmd.spawn().expect("start patroni"));
    }

    fn postmaster_pid(&self) -> Option<u32> {
        super::postmaster_pid(&self.data)
    }
}

impl Drop for Patroni {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

fn node_config(
    name: &str,
    home: &Path,
    pg_port: u16,
    api_port: u16,
    etcd_port: u16,
    bin_dir: &Path,
    password: &str,
) -> String {
    let quoted = password.replace('\'', "''");
    format!(
        "scope: dbm
name: {name}
restapi:
  listen: 127.0.0.1:{api_port}
  connect_address: 127.0.0.1:{api_port}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        fsync: 'off'
        max_connections: 80
        wal_log_hints: 'on'
  initdb:
    - encoding: UTF8
    - auth-host: scram-sha-256
    - auth-local: trust
  pg_hba:
    - local all all trust
    - host replication repl 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {home}/pgpass
  authentication:
    superuser: {{username: {SUPERUSER}, password: '{quoted}'}}
    replication: {{username: repl, password: 'repl-{quoted}'}}
    rewind: {{username: {SUPERUSER}, password: '{quoted}'}}
  parameters:
    unix_socket_directories: {home}
",
        data = home.join("data").display(),
        bin = bin_dir.display(),
        home = home.display(),
    )
}

/// HAProxy as Patroni's documentation configures it: TCP, health-checked through each
/// node's REST API every 200 ms, sessions to a node marked down shut at once.
fn haproxy_config(nodes: &[Node], primary_port: u16, replica_port: u16) -> String {
    let servers: String = nodes
        .iter()
        .map(|n| {
            format!(
                "  server {} 127.0.0.1:{} check port {}\n",
                n.name, n.pg_port, n.api_port
            )
        })
        .collect();
    let listen = |name: &str, port: u16, check: &str| {
        format!(
            "listen {name}\n  bind 127.0.0.1:{port}\n  option httpchk GET {check}\n  \
             http-check expect status 200\n  default-server inter 200ms fall 1 rise 1 \
             on-marked-down shutdown-sessions\n{servers}"
        )
    };
    format!(
        "global\n  maxconn 400\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 30m\n  \
         timeout server 30m\n  timeout check 1s\n{}{}",
        listen("primary", primary_port, "/primary"),
        listen("replicas", replica_port, "/replica")
    )
}
