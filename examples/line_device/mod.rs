//! A kind of connection dbmanager does not ship: a line-protocol TCP device API (a router's
//! management port, say), pooled and supervised through the manager by a provider of the
//! service's own. Shared by `examples/custom_provider.rs` and `tests/custom_provider.rs`.
//!
//! The protocol, one line each way: `LOGIN <user> <password>` → `OK` or `ERR auth`;
//! `PING` → `PONG`; `ECHO <text>` → `<text>`; `SESSIONS` → the number of open sessions.
//!
//! The provider is the whole integration: [`LineConnector`] opens, pings and recognises a
//! broken connection; [`LineProvider`] declares the YAML it reads (`type: line`, host, port,
//! user, password, `options.greeting`) and builds a [`ManagedPool`] of connectors. The
//! manager adds the pool limits, health checks, reconnect with backoff, the outage policy,
//! statistics and events.
#![allow(dead_code)]

use dbmanager::managed::{Connector, ManagedPool};
use dbmanager::provider::{OpenFuture, OpenRequest, Provider, Rules};
use dbmanager::{DbType, EnginePool, ErrorClass, ExposeSecret, ProviderError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The provider: `type: line` in YAML.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineProvider;

impl Provider for LineProvider {
    fn kind(&self) -> DbType {
        DbType::Custom("line")
    }

    fn names(&self) -> &'static [&'static str] {
        &["line"]
    }

    fn rules(&self) -> Rules {
        // Host and port, user and password; no database. `options` carries the rest.
        Rules::server()
            .with_extra(&["options"])
            .with_required(&["host"])
            .with_unsupported(&[
                ("query_timeout", "the device has no statement timeout"),
                ("application_name", "the device does not take one"),
            ])
    }

    fn open<'a>(&'a self, req: OpenRequest<'a>) -> OpenFuture<'a> {
        Box::pin(async move {
            let server = req.server()?;
            let connector = LineConnector {
                addr: format!(
                    "{}:{}",
                    server.host.as_deref().unwrap_or("127.0.0.1"),
                    server.port.unwrap_or(7000)
                ),
                user: server.user.clone().unwrap_or_default(),
                password: server
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default(),
            };
            let pool = ManagedPool::open(connector, req.pool, req.eager, req.ctx).await?;
            Ok(Arc::new(pool) as Arc<dyn EnginePool>)
        })
    }
}

/// Opens authenticated device sessions.
pub struct LineConnector {
    addr: String,
    user: String,
    password: String,
}

/// One device session.
pub struct LineConn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    broken: AtomicBool,
}

/// An I/O failure: the session (or the device) is gone.
fn lost(e: std::io::Error) -> ProviderError {
    ProviderError::driver(e, ErrorClass::ConnectionLost)
}

impl LineConn {
    async fn exchange(&mut self, command: &str) -> std::io::Result<String> {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the device closed the session",
            ));
        }
        Ok(line.trim_end().to_owned())
    }

    /// Sends one command and reads its one-line answer. An I/O error marks the session
    /// broken, so the pool never hands it out again.
    pub async fn call(&mut self, command: &str) -> Result<String, ProviderError> {
        self.exchange(command).await.map_err(|e| {
            self.broken.store(true, Ordering::Relaxed);
            lost(e)
        })
    }
}

impl Connector for LineConnector {
    type Conn = LineConn;

    async fn connect(&self) -> Result<LineConn, ProviderError> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::ConnectionLost))?;
        let (r, w) = stream.into_split();
        let mut conn = LineConn {
            reader: BufReader::new(r),
            writer: w,
            broken: AtomicBool::new(false),
        };
        let answer = conn
            .exchange(&format!("LOGIN {} {}", self.user, self.password))
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::ConnectionLost))?;
        if answer != "OK" {
            return Err(ProviderError::driver_connect(
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, "login refused"),
                ErrorClass::Auth,
            ));
        }
        Ok(conn)
    }

    async fn ping<'c>(&'c self, conn: &'c mut LineConn) -> Result<(), ProviderError> {
        match conn.call("PING").await?.as_str() {
            "PONG" => Ok(()),
            other => Err(ProviderError::driver(
                std::io::Error::other(format!("unexpected answer to PING: {other}")),
                ErrorClass::ConnectionLost,
            )),
        }
    }

    fn is_broken(&self, conn: &mut LineConn) -> bool {
        conn.broken.load(Ordering::Relaxed)
    }
}

/// The device itself: a line-protocol server on loopback, stoppable and restartable on the
/// same port (a killed device drops every session at once).
pub struct Device {
    pub port: u16,
    user: String,
    password: String,
    sessions: Arc<AtomicUsize>,
    /// The most sessions open at once.
    pub peak: Arc<AtomicUsize>,
    /// Login attempts, good or bad.
    pub logins: Arc<AtomicUsize>,
    tasks: Option<tokio::task::JoinSet<()>>,
}

impl Device {
    /// Starts a device on a free loopback port.
    pub async fn start(user: &str, password: &str) -> std::io::Result<Device> {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = probe.local_addr()?.port();
        drop(probe);
        let mut d = Device {
            port,
            user: user.into(),
            password: password.into(),
            sessions: Arc::default(),
            peak: Arc::default(),
            logins: Arc::default(),
            tasks: None,
        };
        d.restart().await?;
        Ok(d)
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Kills the device: the listener and every session close at once.
    pub async fn kill(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        self.sessions.store(0, Ordering::SeqCst);
    }

    /// Starts (again) on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.kill().await;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(([127, 0, 0, 1], self.port).into())?;
        let listener = socket.listen(128)?;
        let mut tasks = tokio::task::JoinSet::new();
        let (user, password) = (self.user.clone(), self.password.clone());
        let (sessions, peak, logins) = (
            Arc::clone(&self.sessions),
            Arc::clone(&self.peak),
            Arc::clone(&self.logins),
        );
        let (spawn_tx, mut spawn_rx) = tokio::sync::mpsc::unbounded_channel::<TcpStream>();
        tasks.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if spawn_tx.send(stream).is_err() {
                    return;
                }
            }
        });
        let mut sessions_tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            while let Some(stream) = spawn_rx.recv().await {
                let (user, password) = (user.clone(), password.clone());
                let (sessions, peak, logins) = (
                    Arc::clone(&sessions),
                    Arc::clone(&peak),
                    Arc::clone(&logins),
                );
                sessions_tasks.spawn(serve(stream, user, password, sessions, peak, logins));
            }
        });
        self.tasks = Some(tasks);
        Ok(())
    }
}

async fn serve(
    stream: TcpStream,
    user: String,
    password: String,
    sessions: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    logins: Arc<AtomicUsize>,
) {
    struct Session(Arc<AtomicUsize>);
    impl Drop for Session {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let now = sessions.fetch_add(1, Ordering::SeqCst) + 1;
    peak.fetch_max(now, Ordering::SeqCst);
    let _session = Session(sessions);
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut authed = false;
    while let Ok(Some(line)) = lines.next_line().await {
        let (cmd, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match (cmd, authed) {
            ("LOGIN", _) => {
                logins.fetch_add(1, Ordering::SeqCst);
                authed = rest == format!("{user} {password}");
                if authed {
                    "OK".to_owned()
                } else {
                    "ERR auth".to_owned()
                }
            }
            (_, false) => "ERR login first".to_owned(),
            ("PING", true) => "PONG".to_owned(),
            ("ECHO", true) => rest.to_owned(),
            ("SESSIONS", true) => "?".to_owned(),
            _ => "ERR unknown command".to_owned(),
        };
        if w.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}
