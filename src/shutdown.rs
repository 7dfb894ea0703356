//! Asking a server to stop, from any thread, without any polling.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::{lock, Latch};

/// How long a trigger waits for its wake-up connection to be queued.
const WAKE_TIMEOUT: Duration = Duration::from_millis(500);

/// A request to shut down, shared by clones; Dapr's cancelled context.
///
/// Hand a clone to [`Server::run`](crate::Server::run) and call
/// [`trigger`](ShutdownToken::trigger) from another thread (a signal handler's
/// thread, a stdin reader, a supervisor): the server stops accepting at once
/// and shuts down gracefully. One token may stop several servers.
///
/// Triggering wakes each server's blocked `accept` by connecting to its own
/// listening address; that connection is recognised and never served.
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
    inner: Arc<TokenInner>,
}

#[derive(Default, Debug)]
struct TokenInner {
    triggered: Latch,
    /// Where to connect to wake each server's `accept`.
    wake: Mutex<Vec<SocketAddr>>,
}

impl ShutdownToken {
    /// A token not yet triggered.
    pub fn new() -> ShutdownToken {
        ShutdownToken::default()
    }

    /// Asks every server using this token to shut down. Returns at once (it does
    /// not wait for the shutdown to finish); calling it again does nothing.
    pub fn trigger(&self) {
        if !self.inner.triggered.set() {
            return;
        }
        let targets = lock(&self.inner.wake).clone();
        for addr in targets {
            wake(addr);
        }
    }

    /// Whether [`trigger`](ShutdownToken::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.is_set()
    }

    /// Blocks until the token is triggered.
    pub fn wait(&self) {
        self.inner.triggered.wait();
    }

    /// Blocks until the token is triggered or `timeout` passes; true if triggered.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        self.inner.triggered.wait_timeout(timeout)
    }

    /// Registers a listener to wake on trigger. Call before the first `accept`,
    /// then check [`is_triggered`](Self::is_triggered): a trigger is never missed.
    pub(crate) fn add_wake(&self, listening: SocketAddr) {
        lock(&self.inner.wake).push(listening);
    }

    pub(crate) fn remove_wake(&self, listening: SocketAddr) {
        let mut wake = lock(&self.inner.wake);
        if let Some(at) = wake.iter().position(|a| *a == listening) {
            wake.swap_remove(at);
        }
    }
}

/// Wakes a blocked `accept` on `listening` by connecting to it. If this fails
/// the listener is already closed, or its accept thread is busy and will see
/// why it was woken before it blocks again.
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
