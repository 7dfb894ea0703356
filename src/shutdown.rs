//! Asking a server to stop, from any thread, without any polling.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::{lock, Latch};

/// A request to shut down, shared by clones; Dapr's cancelled context.
///
/// Hand a clone to [`Server::run`](crate::Server::run) and call
/// [`trigger`](ShutdownToken::trigger) from another thread (a signal handler's
/// thread, a stdin reader, a supervisor): the server stops accepting at once
/// and shuts down gracefully. One token may stop several servers.
///
/// Triggering wakes each server's supervising thread, which wakes the threads
/// blocked in `accept` (on Linux by shutdown(2) on the listening socket;
/// elsewhere by connecting to it, and closing those connections unserved):
/// no polling anywhere.
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
    request: Arc<Request>,
}

/// The request itself: whether it was made, and the drain asked with it.
#[derive(Default, Debug)]
struct Request {
    triggered: Latch,
    drain: Mutex<Option<Duration>>,
}

impl ShutdownToken {
    /// A token not yet triggered.
    pub fn new() -> ShutdownToken {
        ShutdownToken::default()
    }

    /// Asks every server using this token to shut down. Returns at once (it does
    /// not wait for the shutdown to finish); calling it again does nothing.
    pub fn trigger(&self) {
        self.request.triggered.set();
    }

    /// Asks for a shutdown that drains for `delay` first (overriding the
    /// server's own drain delay): the request and its drain travel together.
    pub(crate) fn trigger_draining(&self, delay: Duration) {
        *lock(&self.request.drain) = Some(delay);
        self.trigger();
    }

    /// The drain asked for with the request, if one was.
    pub(crate) fn drain(&self) -> Option<Duration> {
        *lock(&self.request.drain)
    }

    /// Whether [`trigger`](ShutdownToken::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.request.triggered.is_set()
    }

    /// Blocks until the token is triggered.
    pub fn wait(&self) {
        self.request.triggered.wait();
    }
}

/// The time a stop may take beyond the shutdown timeout (and the drain),
/// written down in one place. Shutdown waits for requests in flight until
/// the timeout; then, at most:
/// - [`FORCE_GRACE`] for the connections closed by force (and the server's
///   own threads, woken in `accept` or closed while idle) to leave, counted
///   from the later of the deadline and a grace after the start;
/// - [`NOTIFY_GRACE`] for each of systemd's threads to end (one may be
///   running a check; past it, it is left to end on its own);
/// - and [`Running::wait`](crate::Running::wait) allows [`WAIT_MARGIN`] more
///   before it reports the supervisor itself as stuck, so it never hangs.
pub(crate) mod budget {
    use std::time::Duration;

    /// For force-closed connections to end, and the server's own threads to leave.
    pub const FORCE_GRACE: Duration = Duration::from_millis(250);
    /// For each of systemd's threads to end.
    pub const NOTIFY_GRACE: Duration = Duration::from_millis(250);
    /// systemd's threads: readiness, and the watchdog.
    pub const NOTIFY_THREADS: u32 = 2;
    /// `Running::wait`'s margin over the supervisor's own bound.
    pub const WAIT_MARGIN: Duration = Duration::from_secs(1);

    /// The most a supervisor takes once asked to stop, not counting the drain:
    /// the true bound, every grace summed.
    pub fn bound(shutdown_timeout: Duration, systemd: bool) -> Duration {
        let notify = if systemd {
            NOTIFY_GRACE * NOTIFY_THREADS
        } else {
            Duration::ZERO
        };
        shutdown_timeout.max(FORCE_GRACE) + FORCE_GRACE + notify
    }
}
