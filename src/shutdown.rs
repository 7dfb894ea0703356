//! Asking a server to stop, from any thread, without any polling.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::Latch;

/// How long a wake-up connection may take to be queued.
const WAKE_TIMEOUT: Duration = Duration::from_millis(500);

/// A request to shut down, shared by clones; Dapr's cancelled context.
///
/// Hand a clone to [`Server::run`](crate::Server::run) and call
/// [`trigger`](ShutdownToken::trigger) from another thread (a signal handler's
/// thread, a stdin reader, a supervisor): the server stops accepting at once
/// and shuts down gracefully. One token may stop several servers.
///
/// Triggering wakes each server's supervising thread, which wakes the threads
/// blocked in `accept` by connecting to its own listening address (those
/// connections are closed unserved): no polling anywhere.
///
/// ```
/// # fn main() -> Result<(), healthz::Error> {
/// use std::net::TcpListener;
///
/// let token = healthz::ShutdownToken::new();
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let stopper = token.clone();
/// let other = std::thread::spawn(move || stopper.trigger());
/// healthz::Server::new(healthz::Health::new()).run(listener, &token)?; // returns once triggered
/// other.join().unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default, Debug)]
pub struct ShutdownToken {
    triggered: Arc<Latch>,
}

impl ShutdownToken {
    /// A token not yet triggered.
    pub fn new() -> ShutdownToken {
        ShutdownToken::default()
    }

    /// Asks every server using this token to shut down. Returns at once (it does
    /// not wait for the shutdown to finish); calling it again does nothing.
    pub fn trigger(&self) {
        self.triggered.set();
    }

    /// Whether [`trigger`](ShutdownToken::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.triggered.is_set()
    }

    /// Blocks until the token is triggered.
    pub fn wait(&self) {
        self.triggered.wait();
    }
}

/// Wakes one blocked `accept` on `listening` by connecting to it. If this
/// fails (out of descriptors), the thread stays in `accept` and shutdown
/// reports it as left running.
pub(crate) fn wake(listening: SocketAddr) {
    let _ = TcpStream::connect_timeout(&wake_address(listening), WAKE_TIMEOUT);
}

/// A listener on the unspecified address is reached through loopback.
fn wake_address(listening: SocketAddr) -> SocketAddr {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listening.port())
}
