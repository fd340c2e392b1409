//! The SQL Server test server: Microsoft's `mssql-mock-tds`, which speaks TDS (prelogin,
//! login, `SELECT 1`, plain and TDS 8.0 strict TLS), run on its own runtime so that
//! [`MockTds::stop`] closes every connection the way a stopped server does.
//!
//! The mock accepts any password, so in plain mode a small login gate sits in front of it:
//! it reads the client's Login7 packet, decodes the password (TDS scrambles it, it does not
//! encrypt it) and answers a wrong one with SQL Server's own error 18456 ("Login failed").
//! With strict TLS the login is encrypted and the gate cannot read it, so only plain mode
//! checks passwords.

use mssql_mock_tds::MockTdsServer;
use mssql_mock_tds::protocol::build_terminal_error_tokens;
use mssql_mock_tds::query_response::TerminalError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The user and password the gate accepts.
pub const MSSQL_USER: &str = "sa";
/// `@ : / ? # % ; = '` and a space: what an ADO string or a URL must escape.
pub const MSSQL_PASSWORD: &str = "Pa55@:/?#%;='w rd";

/// How the mock negotiates encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// No TLS at all (tiberius `NotSupported` / `sslmode: disable`).
    Plain,
    /// TDS 8.0: TLS from the first byte (`sslmode: strict`).
    Strict,
}

/// A mock SQL Server on a fixed port that can be stopped and started again.
pub struct MockTds {
    pub port: u16,
    tls: Tls,
    /// The CA (PEM) that signed the certificate strict mode serves, for `ssl_root_cert`.
    pub cert: Option<PathBuf>,
    server_cert: Option<PathBuf>,
    key: Option<PathBuf>,
    _dir: tempfile::TempDir,
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    sessions: Arc<AtomicUsize>,
    failed_logins: Arc<AtomicUsize>,
    password: Arc<str>,
}

impl MockTds {
    /// Starts it on a free port.
    pub fn start(tls: Tls) -> MockTds {
        Self::start_with_password(tls, MSSQL_PASSWORD)
    }

    /// Starts it on a free port; the gate (plain mode) accepts `sa` with `password`.
    pub fn start_with_password(tls: Tls, password: &str) -> MockTds {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (cert, server_cert, key) = match tls {
            Tls::Plain => (None, None, None),
            Tls::Strict => {
                let (ca, c, k) = test_certificates(dir.path());
                (Some(ca), Some(c), Some(k))
            }
        };
        let m = MockTds {
            port: super::free_port(),
            tls,
            cert,
            server_cert,
            key,
            _dir: dir,
            rt: Mutex::new(None),
            sessions: Arc::new(AtomicUsize::new(0)),
            failed_logins: Arc::new(AtomicUsize::new(0)),
            password: Arc::from(password),
        };
        m.resume();
        m
    }

    /// Logged-in sessions open now, as the server sees them (plain mode: counted by the
    /// gate).
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Logins refused so far (plain mode: counted by the gate).
    pub fn failed_logins(&self) -> usize {
        self.failed_logins.load(Ordering::Acquire)
    }

    /// Stops it: the listener and every open connection close, as when a server stops.
    pub fn stop(&self) {
        if let Some(rt) = self.rt.lock().unwrap().take() {
            rt.shutdown_background();
        }
    }

    /// Starts it again on the same port; returns once it accepts connections.
    pub fn resume(&self) {
        self.stop();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the mock server");
        let port = self.port;
        let tls = self.tls;
        let identity = self
            .server_cert
            .as_ref()
            .zip(self.key.as_ref())
            .map(|(c, k)| {
                mssql_mock_tds::tls_helper::create_test_identity(
                    &std::fs::read(c).expect("cert"),
                    &std::fs::read(k).expect("key"),
                )
                .expect("a TLS identity")
            });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sessions = Arc::clone(&self.sessions);
        let failed = Arc::clone(&self.failed_logins);
        let password = Arc::clone(&self.password);
        rt.spawn(async move {
            match tls {
                Tls::Plain => {
                    // The mock on a private port, the password-checking gate on `port`.
                    let mock = MockTdsServer::new("127.0.0.1:0").await.expect("mock");
                    let inner = mock.local_addr();
                    tokio::spawn(mock.run());
                    let gate = bind(port).await;
                    let _ = ready_tx.send(());
                    run_gate(gate, inner, sessions, failed, password).await;
                }
                Tls::Strict => {
                    let mock = MockTdsServer::new_with_strict_tls(
                        &format!("127.0.0.1:{port}"),
                        identity.expect("identity"),
                    )
                    .await
                    .expect("strict mock");
                    let _ = ready_tx.send(());
                    let _ = mock.run().await;
                }
            }
        });
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the mock TDS server did not start");
        *self.rt.lock().unwrap() = Some(rt);
    }
}

impl Drop for MockTds {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn bind(port: u16) -> TcpListener {
    // The port may still be held for a moment by the runtime that was just shut down.
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
            return l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("could not bind 127.0.0.1:{port} for the mock TDS server");
}

async fn run_gate(
    listener: TcpListener,
    inner: SocketAddr,
    sessions: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    password: Arc<str>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let sessions = Arc::clone(&sessions);
        let failed = Arc::clone(&failed);
        let password = Arc::clone(&password);
        tokio::spawn(async move {
            let _ = gate(client, inner, &sessions, &failed, &password).await;
        });
    }
}

/// Counts a session for as long as it lives (dropped too when the runtime stops).
struct Session<'a>(&'a AtomicUsize);

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one TDS packet (header + body).
async fn read_packet(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 8];
    s.read_exact(&mut header).await?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut packet = header.to_vec();
    packet.resize(len.max(8), 0);
    s.read_exact(&mut packet[8..]).await?;
    Ok(packet)
}

/// The user name and password of a Login7 body (after the 8-byte header).
fn login_credentials(body: &[u8]) -> Option<(String, String)> {
    let field = |entry: usize, scrambled: bool| -> Option<String> {
        let off = usize::from(u16::from_le_bytes([
            *body.get(entry)?,
            *body.get(entry + 1)?,
        ]));
        let chars = usize::from(u16::from_le_bytes([
            *body.get(entry + 2)?,
            *body.get(entry + 3)?,
        ]));
        let bytes = body.get(off..off + chars * 2)?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| {
                let (mut a, mut b) = (c[0], c[1]);
                if scrambled {
                    // The client swapped each byte's nibbles and XORed it with 0xA5.
                    a = (a ^ 0xA5).rotate_left(4);
                    b = (b ^ 0xA5).rotate_left(4);
                }
                u16::from_le_bytes([a, b])
            })
            .collect();
        String::from_utf16(&units).ok()
    };
    Some((field(40, false)?, field(44, true)?))
}

async fn gate(
    mut client: TcpStream,
    inner: SocketAddr,
    sessions: &AtomicUsize,
    failed: &AtomicUsize,
    password: &str,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(inner).await?;
    // Prelogin, both ways.
    let prelogin = read_packet(&mut client).await?;
    server.write_all(&prelogin).await?;
    let answer = read_packet(&mut server).await?;
    client.write_all(&answer).await?;
    // Login7: check the password, then step aside.
    let login = read_packet(&mut client).await?;
    let ok = login.first() == Some(&0x10)
        && login_credentials(&login[8..]).is_some_and(|(u, p)| u == MSSQL_USER && p == password);
    if !ok {
        failed.fetch_add(1, Ordering::AcqRel);
        let user = login_credentials(&login[8..])
            .map(|c| c.0)
            .unwrap_or_default();
        let tokens = build_terminal_error_tokens(&TerminalError::new(
            18456,
            14,
            format!("Login failed for user '{user}'."),
        ));
        let len = u16::try_from(tokens.len() + 8).expect("a small packet");
        let mut packet = vec![0x04, 0x01];
        packet.extend_from_slice(&len.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 1, 0]);
        packet.extend_from_slice(&tokens);
        client.write_all(&packet).await?;
        return Ok(());
    }
    server.write_all(&login).await?;
    sessions.fetch_add(1, Ordering::AcqRel);
    let _session = Session(sessions);
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1, made with
/// the openssl tool. Returns (CA certificate, server certificate, server key); the mock
/// serves the server pair, clients trust the CA.
fn test_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("the openssl tool (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=dbmanager test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        p("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the extensions file");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}
