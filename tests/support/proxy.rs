//! A fault-injecting TCP proxy for partition tests: put it between a pool and a server,
//! then cut every connection, refuse new ones, black-hole traffic (no RST, no answer) or
//! add latency, and heal again. The server itself is never touched.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Faults {
    black_hole: bool,
    latency: Duration,
}

/// The proxy. Dropping it stops it and resets every connection through it.
pub struct FaultProxy {
    listen: SocketAddr,
    target: SocketAddr,
    faults: watch::Sender<Faults>,
    listener: Mutex<Option<JoinHandle<()>>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Chunks of data read from clients and sent on to the server.
    upstream: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `127.0.0.1:target_port`.
    pub async fn start(target_port: u16) -> FaultProxy {
        Self::start_to(SocketAddr::from(([127, 0, 0, 1], target_port))).await
    }

    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub async fn start_to(target: SocketAddr) -> FaultProxy {
        let proxy = FaultProxy {
            listen: SocketAddr::from(([127, 0, 0, 1], super::free_port())),
            target,
            faults: watch::Sender::new(Faults {
                black_hole: false,
                latency: Duration::ZERO,
            }),
            listener: Mutex::new(None),
            conns: Arc::new(Mutex::new(Vec::new())),
            upstream: Arc::default(),
        };
        proxy.accept_again();
        proxy
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.listen.port()
    }

    /// Connections currently forwarded.
    pub fn connections(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        conns.retain(|h| !h.is_finished());
        conns.len()
    }

    /// Chunks of data clients have sent through the proxy so far: with latency set, each
    /// request a client flushes separately is one chunk, so this counts round trips.
    pub fn upstream_chunks(&self) -> usize {
        self.upstream.load(Ordering::SeqCst)
    }

    /// Resets every forwarded connection (RST to the client, close to the server).
    pub fn cut_all(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// Stops listening: new connections are refused (ECONNREFUSED), existing ones go on.
    pub fn refuse(&self) {
        if let Some(h) = self.listener.lock().unwrap().take() {
            h.abort();
        }
    }

    /// A full outage: refuse new connections and reset every existing one.
    pub fn down(&self) {
        self.refuse();
        self.cut_all();
    }

    /// Listens again on the same port (after `refuse`/`down`).
    pub fn accept_again(&self) {
        let mut slot = self.listener.lock().unwrap();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(self.listen)
            .unwrap_or_else(|e| panic!("proxy cannot bind {}: {e}", self.listen));
        let listener = socket.listen(128).expect("listen");
        let target = self.target;
        let faults = self.faults.subscribe();
        let conns = Arc::clone(&self.conns);
        let upstream = Arc::clone(&self.upstream);
        *slot = Some(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                // Dropping the client side resets it (no FIN): what a cut looks like.
                client.set_zero_linger().ok();
                let faults = faults.clone();
                let upstream = Arc::clone(&upstream);
                let handle = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    forward(client, server, faults, upstream).await;
                });
                conns.lock().unwrap().push(handle);
            }
        }));
    }

    /// Black-holes traffic: bytes in both directions are held, not delivered, and nothing
    /// is reset, so peers see silence (as a partition without RST looks). New connections
    /// are accepted and then hear nothing. `false` delivers what was held and heals.
    pub fn black_hole(&self, on: bool) {
        self.faults.send_modify(|f| f.black_hole = on);
    }

    /// Delays every chunk of data, both ways, by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.send_modify(|f| f.latency = latency);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.refuse();
        self.cut_all();
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    faults: watch::Receiver<Faults>,
    upstream: Arc<AtomicUsize>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pipe(cr, sw, faults.clone(), Some(upstream));
    let down = pipe(sr, cw, faults, None);
    // When either direction ends, the whole connection ends.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn pipe<R, W>(
    mut from: R,
    mut to: W,
    mut faults: watch::Receiver<Faults>,
    chunks: Option<Arc<AtomicUsize>>,
) where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(c) = &chunks {
            c.fetch_add(1, Ordering::SeqCst);
        }
        loop {
            let f = *faults.borrow_and_update();
            if !f.black_hole {
                if !f.latency.is_zero() {
                    tokio::time::sleep(f.latency).await;
                }
                break;
            }
            if faults.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
