//! The one error type of the crate's fallible, non-`io` calls: serving and shutting down.

use std::fmt;
use std::io;
use std::time::Duration;

/// Why [`Running::shutdown`](crate::Running::shutdown) or
/// [`Server::run`](crate::Server::run) did not end cleanly.
///
/// Either an I/O error (from configuring or binding the server), or a shutdown
/// that reached its deadline and closed connections by force. Converts into
/// `io::Error` for callers that only deal in those.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let server = healthz::Server::new(healthz::Health::new()).bind("127.0.0.1:0")?;
/// match server.shutdown() {
///     Ok(()) => {}
///     Err(e) => eprintln!("{e} ({} connections cut)", e.connections_cut()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Io(io::Error),
    Deadline {
        after: Duration,
        cut: usize,
        stuck: usize,
    },
}

impl Error {
    pub(crate) fn deadline(after: Duration, cut: usize, stuck: usize) -> Error {
        Error {
            kind: Kind::Deadline { after, cut, stuck },
        }
    }

    /// Whether the shutdown deadline passed before every connection finished.
    pub fn is_deadline(&self) -> bool {
        matches!(self.kind, Kind::Deadline { .. })
    }

    /// How many connections were still busy at the deadline and were closed by force.
    pub fn connections_cut(&self) -> usize {
        match self.kind {
            Kind::Deadline { cut, .. } => cut,
            Kind::Io(_) => 0,
        }
    }

    /// How many of the server's threads had still not ended shortly after the
    /// deadline and were left running (detached). Zero unless a thread is stuck
    /// in an event hook that never returns, or a thread waiting in `accept`
    /// could not be woken (the server could not open the connection that
    /// wakes it, being out of file descriptors).
    pub fn threads_left(&self) -> usize {
        match self.kind {
            Kind::Deadline { stuck, .. } => stuck,
            Kind::Io(_) => 0,
        }
    }

    /// The underlying I/O error, if this is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            Kind::Io(e) => Some(e),
            Kind::Deadline { .. } => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Io(e) => e.fmt(f),
            Kind::Deadline { after, cut, stuck } => {
                write!(f, "shutdown deadline of {after:?} passed; closed {cut} busy connection(s) by force")?;
                if *stuck > 0 {
                    write!(f, "; {stuck} thread(s) did not end and were detached")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io(e) => Some(e),
            Kind::Deadline { .. } => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error { kind: Kind::Io(e) }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e.kind {
            Kind::Io(e) => e,
            Kind::Deadline { .. } => io::Error::new(io::ErrorKind::TimedOut, e),
        }
    }
}
