//! A TCP forwarder on `127.0.0.1:0` in front of a real server, which a test
//! switches down and up: an outage of that server exactly as its clients see
//! it. Down, every open connection is closed and every new one is dropped as
//! soon as it is accepted; up, connections are forwarded again.
//!
//! Built on `tokio::net` alone (readiness plus `try_read`/`try_write`), so it
//! needs no tokio feature the crate does not already ask for.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    addr: SocketAddr,
    /// True while connections are forwarded. Every forwarding task watches
    /// it, so that switching it off closes them all at once.
    up: watch::Sender<bool>,
    /// Connections dropped on arrival while down: proof that clients tried.
    refused: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`
    /// (`host:port`), up.
    pub async fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = watch::channel(true);
        let refused = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream.to_owned(),
            up.subscribe(),
            refused.clone(),
        ));
        TcpProxy {
            addr,
            up,
            refused,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and drops new ones until [`TcpProxy::up`].
    pub fn down(&self) {
        self.up.send_replace(false);
    }

    pub fn up(&self) {
        self.up.send_replace(true);
    }

    /// Connections dropped on arrival while down.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.down();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    up: watch::Receiver<bool>,
    refused: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !*up.borrow() {
            refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let mut cut = up.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            // Dropping `forward` (at a cut) drops both sockets: closed.
            let forward = async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                // Either side closing ends the connection for both.
                tokio::select! {
                    _ = pump(client_read, server_write) => {}
                    _ = pump(server_read, client_write) => {}
                }
            };
            tokio::select! {
                _ = forward => {}
                _ = cut.wait_for(|up| !*up) => {}
            }
        });
    }
}

/// Copies bytes from `from` to `to` until either side closes or fails.
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let read = match from.try_read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut written = 0;
        while written < read {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buffer[written..read]) {
                Ok(n) => written += n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// A URL cut around its host and port: (what comes before them, scheme and
/// any `user[:password]@`; the host and port; what follows them).
fn split_authority(url: &str) -> (&str, &str, &str) {
    let authority_start = url.find("://").expect("a URL with a scheme") + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host_start = rest[..authority_end].rfind('@').map_or(0, |at| at + 1);
    (
        &url[..authority_start + host_start],
        &rest[host_start..authority_end],
        &rest[authority_end..],
    )
}

/// The `host:port` that `url` (`scheme://[user[:password]@]host[:port]/…`)
/// names, with `default_port` when it names none: where a proxy forwards to.
pub fn url_host_port(url: &str, default_port: u16) -> String {
    let (_, host_port, _) = split_authority(url);
    // A port follows the last colon, unless that colon is inside an IPv6
    // literal (`[::1]`).
    match host_port.rfind(':') {
        Some(colon) if !host_port[colon..].contains(']') => host_port.to_owned(),
        _ => format!("{host_port}:{default_port}"),
    }
}

/// `url` with its host and port replaced by `addr`: the same server, reached
/// through a proxy listening there.
pub fn url_with_host_port(url: &str, addr: SocketAddr) -> String {
    let (before, _, after) = split_authority(url);
    format!("{before}{addr}{after}")
}
