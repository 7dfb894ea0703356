//! What the server tells its owner: one [`Event`] per noteworthy thing, never one per probe.

use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::address::Address;

/// Something the server did or saw, passed to the hook set with
/// [`Server::on_event`](crate::Server::on_event).
///
/// Events are rare by design: a server answering probes all day emits nothing
/// after [`Event::Listening`] unless readiness changes or something goes wrong.
/// `Display` gives a one-line, human-readable form.
///
/// ```
/// let event = healthz::Event::ReadinessChanged {
///     ready: false,
///     failing: vec!["database".to_string()],
/// };
/// assert_eq!(event.to_string(), "readiness changed: not ready (failing: database)");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The server is bound and about to accept connections.
    Listening {
        /// The bound address, with the real port when port 0 was asked for,
        /// or the Unix socket's path.
        addr: Address,
    },
    /// Shutdown began: the listener is closed and idle connections are being closed.
    ShuttingDown,
    /// The server stopped and every thread it started has been joined (or given up on).
    Stopped {
        /// Client connections accepted over the server's life.
        connections: u64,
        /// Connections still busy at the shutdown deadline and closed by force.
        cut: usize,
    },
    /// `accept` failed (for example, out of file descriptors), or no thread
    /// could be started to keep accepting while a new connection is served
    /// (that connection is then closed). The server keeps accepting, after a
    /// short back-off for errors that a retry cannot fix at once.
    AcceptError {
        /// What the operating system said.
        error: io::Error,
    },
    /// A connection failed mid-request: a read or write error or a timeout.
    /// Clients that close an idle connection are normal and not reported.
    ConnectionError {
        /// The client's address; for a Unix socket, whose clients have
        /// none, the socket's own.
        peer: Address,
        /// What went wrong.
        error: io::Error,
    },
    /// A connection was refused or closed by the server's own rules: a malformed
    /// or oversized request, or the connection limit.
    Rejected {
        /// The client's address; for a Unix socket, whose clients have
        /// none, the socket's own.
        peer: Address,
        /// Why, in a few words.
        reason: &'static str,
    },
    /// Overall readiness flipped. Reported once per change, however often it
    /// is probed.
    ReadinessChanged {
        /// The new state.
        ready: bool,
        /// What fails, when not ready: `ready` (the service's own flag),
        /// `shutdown` (draining), and the names of targets and checks.
        failing: Vec<String>,
    },
    /// Overall liveness flipped; once per change.
    LivenessChanged {
        /// The new state.
        alive: bool,
        /// The liveness targets and checks that fail.
        failing: Vec<String>,
    },
    /// A check started failing. The reason goes here, and into response
    /// bodies only when the server is configured to show reasons.
    CheckFailed {
        /// The check's name.
        name: String,
        /// What the check said (cut to 128 bytes), or that it timed out or panicked.
        reason: String,
    },
    /// A failing check (or one not run yet) passes.
    CheckPassed {
        /// The check's name.
        name: String,
    },
    /// A message to systemd (see [`Server::notify_systemd`](crate::Server::notify_systemd))
    /// could not be sent (the receiver's queue is full, or nothing listens),
    /// or the watchdog systemd asked for cannot be read from `WATCHDOG_USEC`
    /// or `WATCHDOG_PID`. Reported once per server: later failures are
    /// silent, and nothing is retried.
    NotifyError {
        /// `NOTIFY_SOCKET`, as systemd set it.
        socket: String,
        /// What the operating system said.
        error: io::Error,
    },
    /// [`Server::bind_unix`](crate::Server::bind_unix) found a socket file that
    /// nothing listened on (a process that ended without removing it, say
    /// one killed with `SIGKILL`, left it) and replaced it. Comes just before
    /// [`Event::Listening`].
    StaleSocketReplaced {
        /// The socket file's path, absolute.
        path: PathBuf,
    },
    /// Shutdown began with a drain: readiness fails at once, liveness keeps
    /// passing, and the server keeps serving for `delay` before it stops.
    Draining {
        /// How long it keeps serving.
        delay: Duration,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Listening { addr } => write!(f, "listening on {addr}"),
            Event::ShuttingDown => f.write_str("shutting down"),
            Event::Stopped {
                connections,
                cut: 0,
            } => {
                write!(f, "stopped after {connections} connections")
            }
            Event::Stopped { connections, cut } => write!(
                f,
                "stopped after {connections} connections; {cut} cut at the shutdown deadline"
            ),
            Event::AcceptError { error } => write!(f, "accept failed: {error}"),
            Event::ConnectionError { peer, error } => {
                write!(f, "connection from {peer} failed: {error}")
            }
            Event::Rejected { peer, reason } => write!(f, "rejected {peer}: {reason}"),
            Event::ReadinessChanged { ready: true, .. } => f.write_str("readiness changed: ready"),
            Event::ReadinessChanged { failing, .. } => {
                write!(
                    f,
                    "readiness changed: not ready (failing: {})",
                    failing.join(", ")
                )
            }
            Event::LivenessChanged { alive: true, .. } => f.write_str("liveness changed: alive"),
            Event::LivenessChanged { failing, .. } => {
                write!(
                    f,
                    "liveness changed: not alive (failing: {})",
                    failing.join(", ")
                )
            }
            Event::CheckFailed { name, reason } => write!(f, "check {name} failed: {reason}"),
            Event::CheckPassed { name } => write!(f, "check {name} passes"),
            Event::NotifyError { socket, error } => {
                write!(f, "systemd notification to {socket} failed: {error}")
            }
            Event::StaleSocketReplaced { path } => write!(
                f,
                "replaced a stale socket file at {}: nothing listened on it",
                path.display()
            ),
            Event::Draining { delay } => {
                write!(f, "draining: readiness fails, serving {delay:?} more")
            }
        }
    }
}

/// The user's hook, shared by every thread of a server.
pub(crate) type Hook = Arc<dyn Fn(&Event) + Send + Sync>;

/// Delivers events to an optional hook; a panicking hook loses that event, nothing more.
#[derive(Clone, Default)]
pub(crate) struct Events {
    hook: Option<Hook>,
}

impl Events {
    pub fn new(hook: Option<Hook>) -> Events {
        Events { hook }
    }

    pub fn hook(&self) -> Option<&Hook> {
        self.hook.as_ref()
    }

    pub fn emit(&self, event: Event) {
        if let Some(hook) = &self.hook {
            deliver(hook, &event);
        }
    }
}

/// Calls `hook`, containing a panic so that no server thread dies of it.
pub(crate) fn deliver(hook: &Hook, event: &Event) {
    let _ = panic::catch_unwind(AssertUnwindSafe(|| hook(event)));
}
