//! A TCP proxy in front of the shared RabbitMQ, to simulate what cannot be done to the shared
//! broker itself: a broker that stops reading a publishing connection (what RabbitMQ does to
//! publishers under a memory alarm), dropped connections, and a broker that accepts TCP but
//! never answers. Only the proxy's own sockets are affected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How a connection names itself in its AMQP handshake when it is the transport's
/// publisher connection (`{connection_name}-publisher`).
const PUBLISHER_MARK: &[u8] = b"-publisher";

#[derive(Default)]
struct State {
    /// New connections are accepted and then left without a single byte (no upstream).
    hang_new: AtomicBool,
    /// Stop forwarding, both ways, on publisher connections.
    freeze_publishers: AtomicBool,
    accepted: AtomicUsize,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

/// A running proxy on a free loopback port; stops (dropping every connection) when dropped.
pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let accept = {
            let state = state.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    state.accepted.fetch_add(1, Ordering::SeqCst);
                    let connection = tokio::spawn(serve(client, upstream, state.clone()));
                    state.connections.lock().unwrap().push(connection);
                }
            })
        };
        Self {
            port,
            state,
            accept,
        }
    }

    /// The AMQP URL through this proxy.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Stops forwarding on publisher connections (both ways, as a broker that blocked the
    /// connection stops reading its socket); consumer connections go on.
    pub fn freeze_publishers(&self) {
        self.state.freeze_publishers.store(true, Ordering::SeqCst);
    }

    /// From now on, new connections are accepted and never answered (or, with `false`,
    /// forwarded again).
    pub fn hang_new_connections(&self, hang: bool) {
        self.state.hang_new.store(hang, Ordering::SeqCst);
    }

    /// Drops every open connection (the client sees the broker close them).
    pub fn drop_connections(&self) {
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    if state.hang_new.load(Ordering::SeqCst) {
        // Hold the socket open without a byte until the proxy drops the connection.
        let _held = client;
        return std::future::pending::<()>().await;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let publisher = Arc::new(AtomicBool::new(false));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(
        client_read,
        server_write,
        state.clone(),
        publisher.clone(),
        true,
    );
    let down = pump(server_read, client_write, state, publisher, false);
    tokio::join!(up, down);
}

/// Copies `from` to `to`; the client-to-server side spots the publisher's handshake. Once a
/// publisher connection is frozen, it holds what it read and never writes again.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<State>,
    publisher: Arc<AtomicBool>,
    spot: bool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut seen = 0usize;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if spot && seen < 16 * 1024 {
            seen += n;
            if buffer[..n]
                .windows(PUBLISHER_MARK.len())
                .any(|w| w == PUBLISHER_MARK)
            {
                publisher.store(true, Ordering::SeqCst);
            }
        }
        if publisher.load(Ordering::SeqCst) && state.freeze_publishers.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
