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
/// Every struct-like variant is `#[non_exhaustive]`, so fields can be added
/// without breaking a `match`: match with `..`.
///
/// ```
/// # fn main() -> Result<(), healthz::Error> {
/// use healthz::Event;
///
/// let health = healthz::Health::new();
/// let server = healthz::Server::new(health.clone())
///     .on_event(|event| match event {
///         Event::ReadinessChanged { ready: false, failing, .. } => {
///             eprintln!("not ready: {}", failing.join(", "))
///         }
///         other => eprintln!("healthz: {other}"), // one line each
///     })
///     .bind("127.0.0.1:0")?;
/// let _db = health.target("database")?; // "not ready: ready, database"
/// server.shutdown()
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The server is bound and about to accept connections.
    #[non_exhaustive]
    Listening {
        /// The bound address, with the real port when port 0 was asked for,
        /// or the Unix socket's path.
        addr: Address,
    },
    /// Shutdown began: the listener is closed and idle connections are being closed.
    ShuttingDown,
    /// The server stopped and every thread it started has been joined (or given up on).
    #[non_exhaustive]
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
    #[non_exhaustive]
    AcceptError {
        /// What the operating system said.
        error: io::Error,
    },
    /// A connection failed mid-request: a read or write error or a timeout.
    /// Clients that close an idle connection are normal and not reported.
    #[non_exhaustive]
    ConnectionError {
        /// The client's address; for a Unix socket, whose clients have
        /// none, the socket's own.
        peer: Address,
        /// What went wrong.
        error: io::Error,
    },
    /// A connection was refused or closed by the server's own rules: a malformed
    /// or oversized request, or the connection limit.
    #[non_exhaustive]
    Rejected {
        /// The client's address; for a Unix socket, whose clients have
        /// none, the socket's own.
        peer: Address,
        /// Why, in a few words.
        reason: &'static str,
    },
    /// Overall readiness flipped. Reported once per change, however often it
    /// is probed.
    #[non_exhaustive]
    ReadinessChanged {
        /// The new state.
        ready: bool,
        /// What fails, when not ready: `ready` (the service's own flag),
        /// `shutdown` (draining), and the names of targets and checks.
        failing: Vec<String>,
    },
    /// Overall liveness flipped; once per change.
    #[non_exhaustive]
    LivenessChanged {
        /// The new state.
        alive: bool,
        /// The liveness targets and checks that fail.
        failing: Vec<String>,
    },
    /// A check started failing (after its failure threshold), or a check
    /// that was not known to pass yet failed its first run. The reason goes
    /// here, and into response bodies only when the server is configured to
    /// show reasons.
    #[non_exhaustive]
    CheckFailed {
        /// The check's (heartbeat's, guard's) name.
        name: String,
        /// What it is: a check, a heartbeat or a thread guard.
        item: ItemKind,
        /// What the check said (cut to 128 bytes), or that it timed out or panicked.
        reason: String,
    },
    /// A failing check (or one not run yet) passes.
    #[non_exhaustive]
    CheckPassed {
        /// The check's (heartbeat's, guard's) name.
        name: String,
        /// What it is: a check, a heartbeat or a thread guard.
        item: ItemKind,
    },
    /// A message to systemd (see [`Server::notify_systemd`](crate::Server::notify_systemd))
    /// could not be sent (the receiver's queue is full, or nothing listens),
    /// or the watchdog systemd asked for cannot be read from `WATCHDOG_USEC`
    /// or `WATCHDOG_PID`. Reported once per server: later failures are
    /// silent, and nothing is retried.
    #[non_exhaustive]
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
    #[non_exhaustive]
    StaleSocketReplaced {
        /// The socket file's path, absolute.
        path: PathBuf,
    },
    /// Shutdown began with a drain: readiness fails at once, liveness keeps
    /// passing, and the server keeps serving for `delay` before it stops.
    #[non_exhaustive]
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
                write!(f, "stopped after {}", count(*connections, "connection"))
            }
            Event::Stopped { connections, cut } => write!(
                f,
                "stopped after {}; {cut} cut at the shutdown deadline",
                count(*connections, "connection")
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
            Event::CheckFailed { name, item, reason } => {
                write!(f, "{item} {name} failed: {reason}")
            }
            Event::CheckPassed { name, item } => write!(f, "{item} {name} passes"),
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

/// `1 connection`, `2 connections`.
fn count(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// What an [`Event::CheckFailed`] or [`Event::CheckPassed`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemKind {
    /// A [`Check`](crate::Check), on request or in the background.
    Check,
    /// A [`Heartbeat`](crate::Heartbeat): overdue, or beating again.
    Heartbeat,
    /// A [`ThreadGuard`](crate::ThreadGuard) whose thread died.
    Guard,
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ItemKind::Check => "check",
            ItemKind::Heartbeat => "heartbeat",
            ItemKind::Guard => "thread guard",
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_counts_one_connection_in_the_singular() {
        let stopped = |connections| Event::Stopped {
            connections,
            cut: 0,
        };
        assert_eq!(stopped(1).to_string(), "stopped after 1 connection");
        assert_eq!(stopped(0).to_string(), "stopped after 0 connections");
        assert_eq!(stopped(2).to_string(), "stopped after 2 connections");
    }
}
