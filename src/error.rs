//! The one error type of the server side (health set-up, binding, serving,
//! shutting down), and the helpers every module uses to make and read errors.

use std::fmt;
use std::io;
use std::time::Duration;

/// The longest timeout, delay or interval accepted anywhere: a year. Longer
/// ones are refused with an error, as they would overflow a deadline.
pub(crate) const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// An invalid configuration or argument: `InvalidInput`, prefixed `healthz: `.
pub(crate) fn invalid(message: impl fmt::Display) -> io::Error {
    refused(io::ErrorKind::InvalidInput, message)
}

/// Refuses a duration of zero, or over a year, for the setting `name`.
pub(crate) fn positive(name: &str, duration: Duration) -> io::Result<()> {
    if duration.is_zero() {
        return Err(invalid(format!("{name} must be greater than zero")));
    }
    at_most_a_year(name, duration)
}

/// Refuses a duration over a year (a deadline would overflow).
pub(crate) fn at_most_a_year(name: &str, duration: Duration) -> io::Result<()> {
    if duration > LONGEST {
        return Err(invalid(format!("{name} must be at most a year")));
    }
    Ok(())
}

/// A request the crate refuses, of `kind`, with a message prefixed `healthz: `.
pub(crate) fn refused(kind: io::ErrorKind, message: impl fmt::Display) -> io::Error {
    io::Error::new(kind, format!("healthz: {message}"))
}

/// Whether an I/O error is a socket timeout running out (Unix says
/// `WouldBlock`, Windows `TimedOut`).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether an I/O error says the client went away (reset or aborted the
/// connection, or closed it under a write): normal life for a server, not a fault.
pub(crate) fn client_went_away(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The error of every fallible call on the server side: registering targets
/// and checks on a [`Health`](crate::Health), binding and running a
/// [`Server`](crate::Server), shutting it down. (The rule: the server side
/// returns this type; the client, [`Probe`](crate::Probe), returns
/// [`ProbeError`](crate::ProbeError).)
///
/// Either an I/O-shaped error (an invalid name or configuration is
/// `InvalidInput`, a name taken `AlreadyExists`, a failure to bind the
/// operating system's kind), or a shutdown that reached its deadline and
/// closed connections by force. [`kind`](Error::kind) says which; it
/// converts into `io::Error` (so `?` works in a function returning
/// `io::Result`) for callers that only deal in those.
///
/// ```
/// use std::io::ErrorKind;
///
/// let health = healthz::Health::new();
/// let _db = health.target("db")?;
/// let taken: healthz::Error = health.target("db").unwrap_err();
/// assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
/// let bad = healthz::Server::new(health).request_timeout(std::time::Duration::ZERO);
/// assert_eq!(bad.bind("127.0.0.1:0").unwrap_err().kind(), ErrorKind::InvalidInput);
/// # Ok::<(), healthz::Error>(())
/// ```
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
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// An error that says all there is in its own words (ours, or the
    /// operating system's when no step needs naming).
    Io(io::Error),
    /// A step that failed (`cannot listen on 0.0.0.0:8080`), and why: the
    /// cause is the `source()`, not part of the message.
    Step { step: String, cause: io::Error },
    Deadline {
        after: Duration,
        cut: usize,
        stuck: usize,
    },
}

impl Error {
    /// `step` failed because of `cause`: `cannot listen on ADDR`, say.
    pub(crate) fn step(step: impl Into<String>, cause: io::Error) -> Error {
        Error {
            kind: Kind::Step {
                step: step.into(),
                cause,
            },
        }
    }

    pub(crate) fn deadline(after: Duration, cut: usize, stuck: usize) -> Error {
        Error {
            kind: Kind::Deadline { after, cut, stuck },
        }
    }

    /// The kind of error, as `io::Error` names them: `InvalidInput` for an
    /// invalid configuration (from [`Server::bind`](crate::Server::bind) and
    /// [`Server::run`](crate::Server::run) alike), the operating system's
    /// kind for a failure to bind or serve (`AddrInUse`, ...), and
    /// `TimedOut` for a shutdown that reached its deadline.
    pub fn kind(&self) -> io::ErrorKind {
        match &self.kind {
            Kind::Io(e) | Kind::Step { cause: e, .. } => e.kind(),
            Kind::Deadline { .. } => io::ErrorKind::TimedOut,
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
            Kind::Io(_) | Kind::Step { .. } => 0,
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
            Kind::Io(_) | Kind::Step { .. } => 0,
        }
    }

    /// The underlying I/O error, if this is one (for a step that failed,
    /// its cause).
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            Kind::Io(e) | Kind::Step { cause: e, .. } => Some(e),
            Kind::Deadline { .. } => None,
        }
    }
}

/// `Display` says what happened in the crate's words, and the cause (the
/// operating system's error) comes from `source()`: a chain reads once, as
/// `cannot listen on 0.0.0.0:8080: Address already in use (os error 98)`.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Io(e) => e.fmt(f),
            Kind::Step { step, .. } => f.write_str(step),
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
            // It says its own words already: what lies under them, if anything.
            Kind::Io(e) => e.source(),
            Kind::Step { cause, .. } => Some(cause),
            Kind::Deadline { .. } => None,
        }
    }
}

/// The whole chain on one line, as `Display` and `source()` give it: what
/// `fn main() -> Result<(), healthz::Error>` prints. `{:#?}` shows the fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f.debug_struct("Error").field("kind", &self.kind).finish();
        }
        f.write_str(&chain(self))
    }
}

/// An error and its sources, joined by `: ` into one line. A source whose
/// text its error already ends with (an error that says its cause and also
/// returns it) is not said twice.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
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
            Kind::Step { .. } | Kind::Deadline { .. } => io::Error::new(e.kind(), chain(&e)),
        }
    }
}
