//! The two kinds of socket a server listens on, TCP and Unix, made one: after
//! `accept`, a connection is a [`Stream`] whichever it came from, so
//! everything above this module is one code path. Also the socket file's
//! life: binding over a stale one, and removing it at the end.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::address::Address;

#[cfg(unix)]
pub(crate) use self::unix::{bind_unix, connect_unix, SocketFile};

/// A socket file the server created; there are none off Unix.
#[cfg(not(unix))]
pub(crate) enum SocketFile {}

#[cfg(not(unix))]
impl SocketFile {
    pub fn replaced_stale(&self) -> Option<&std::path::Path> {
        match *self {}
    }

    pub fn remove(self) {
        match self {}
    }
}

/// What [`Server::listen`](crate::Server::listen) and
/// [`Server::run`](crate::Server::run) serve on: a `TcpListener`, or (on
/// Unix) a `UnixListener`. Sealed: it is implemented for those two only.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let server = healthz::Server::new(healthz::Health::new()).listen(tcp)?;
/// let port: u16 = server.local_addr().port(); // a std::net::SocketAddr
/// # assert_ne!(port, 0);
/// # Ok(())
/// # }
/// ```
pub trait Listener: sealed::Sealed {
    /// The listener's address type, which
    /// [`Running::local_addr`](crate::Running::local_addr) returns.
    type Addr: Clone + fmt::Debug + Send + Sync + 'static;

    /// The socket, made blocking, and its own address.
    #[doc(hidden)]
    fn into_socket(self) -> io::Result<(sealed::Socket, Self::Addr)>;
}

impl Listener for TcpListener {
    type Addr = SocketAddr;

    fn into_socket(self) -> io::Result<(sealed::Socket, SocketAddr)> {
        self.set_nonblocking(false)?;
        let addr = self.local_addr()?;
        Ok((sealed::Socket(ListenSocket::Tcp(self)), addr))
    }
}

#[cfg(unix)]
impl Listener for std::os::unix::net::UnixListener {
    type Addr = std::os::unix::net::SocketAddr;

    fn into_socket(self) -> io::Result<(sealed::Socket, Self::Addr)> {
        self.set_nonblocking(false)?;
        let addr = self.local_addr()?;
        Ok((sealed::Socket(ListenSocket::Unix(self, addr.clone())), addr))
    }
}

pub(crate) mod sealed {
    /// Only the crate's listeners are [`Listener`](super::Listener)s.
    pub trait Sealed {}
    impl Sealed for std::net::TcpListener {}
    #[cfg(unix)]
    impl Sealed for std::os::unix::net::UnixListener {}

    /// A listener on its way to the server; nothing outside the crate can name it.
    pub struct Socket(pub(crate) super::ListenSocket);
}

/// A listening socket of either kind.
pub(crate) enum ListenSocket {
    Tcp(TcpListener),
    /// With its own address: a Unix client has none, so connections are
    /// reported by the socket they came in on.
    #[cfg(unix)]
    Unix(
        std::os::unix::net::UnixListener,
        std::os::unix::net::SocketAddr,
    ),
}

impl ListenSocket {
    pub fn accept(&self) -> io::Result<(Stream, Address)> {
        match self {
            ListenSocket::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                Ok((Stream::Tcp(stream), Address::Tcp(peer)))
            }
            #[cfg(unix)]
            ListenSocket::Unix(listener, addr) => {
                let (stream, _unnamed) = listener.accept()?;
                Ok((Stream::Unix(stream), Address::Unix(addr.clone())))
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<Address> {
        match self {
            ListenSocket::Tcp(listener) => listener.local_addr().map(Address::Tcp),
            #[cfg(unix)]
            ListenSocket::Unix(_, addr) => Ok(Address::Unix(addr.clone())),
        }
    }

    /// Shuts the listening socket down where that wakes every thread in
    /// `accept` at once (they fail with `EINVAL`) and refuses connections from
    /// then on: Linux; true if it did. Elsewhere wake-up connections do the job.
    pub fn shut_down(&self) -> bool {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return self
            .socket_calls()
            .and_then(|s| s.shutdown(Shutdown::Both))
            .is_ok();
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        false
    }

    /// Makes `accept` give up after `quiet` with no connection, where the
    /// system honours a receive timeout on a listening socket: Linux.
    /// Elsewhere, or if it cannot be set, `accept` waits for as long as it takes.
    pub fn set_accept_timeout(&self, quiet: Duration) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Ok(socket) = self.socket_calls() {
            let _ = socket.set_read_timeout(Some(quiet));
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = quiet;
    }

    /// The listening socket as a stream value, for the socket calls std
    /// offers on streams only (shutdown(2), `SO_RCVTIMEO`): they act on the
    /// socket, whatever its family, and a duplicate shares it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn socket_calls(&self) -> io::Result<TcpStream> {
        use std::os::fd::OwnedFd;
        let socket = match self {
            ListenSocket::Tcp(listener) => OwnedFd::from(listener.try_clone()?),
            ListenSocket::Unix(listener, _) => OwnedFd::from(listener.try_clone()?),
        };
        Ok(TcpStream::from(socket))
    }
}

impl Address {
    /// Connects here from inside the process, within `timeout`: how threads
    /// blocked in `accept` are woken. A listener on the unspecified IP
    /// address is reached through loopback.
    pub(crate) fn connect(&self, timeout: Duration) -> io::Result<Stream> {
        match self {
            Address::Tcp(addr) => {
                TcpStream::connect_timeout(&loopback(*addr), timeout).map(Stream::Tcp)
            }
            #[cfg(unix)]
            Address::Unix(addr) => connect_unix(addr, timeout).map(Stream::Unix),
        }
    }
}

/// A listener on the unspecified address is reached through loopback.
fn loopback(listening: SocketAddr) -> SocketAddr {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listening.port())
}

/// A connected socket of either kind.
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

/// Calls `$call` on the stream inside `$stream`, whichever kind it is.
macro_rules! either {
    ($stream:expr, $s:ident => $call:expr) => {
        match $stream {
            Stream::Tcp($s) => $call,
            #[cfg(unix)]
            Stream::Unix($s) => $call,
        }
    };
}

impl Stream {
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(self, s => s.set_read_timeout(timeout))
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(self, s => s.set_write_timeout(timeout))
    }

    /// Sends small writes at once. A Unix socket has no Nagle delay: nothing to do.
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_nodelay(true),
            #[cfg(unix)]
            Stream::Unix(_) => Ok(()),
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        either!(self, s => s.shutdown(how))
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(*self, s => (&*s).read(buf))
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(*self, s => (&*s).write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(unix)]
mod unix {
    use std::fs;
    use std::io;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    /// How long binding waits to learn whether a server answers on an
    /// existing socket file.
    const STALE_CHECK: Duration = Duration::from_secs(1);

    /// Connects to `addr` within `timeout`. A connect to a Unix socket whose
    /// backlog is full blocks, and std cannot bound it: it runs on a thread
    /// of its own, left to finish alone if the time runs out.
    pub fn connect_unix(addr: &SocketAddr, timeout: Duration) -> io::Result<UnixStream> {
        let (done, result) = mpsc::sync_channel(1);
        let addr = addr.clone();
        thread::Builder::new()
            .name("healthz-connect".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = done.send(UnixStream::connect_addr(&addr));
            })?;
        result
            .recv_timeout(timeout)
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// A socket file this server created: removed when the server stops,
    /// if it is still the one created.
    #[derive(Debug)]
    pub struct SocketFile {
        path: PathBuf,
        id: (u64, u64),
        /// Whether a stale file was removed to make this one.
        stale: bool,
    }

    impl SocketFile {
        /// Removes the file now (as dropping it does), if it is still ours.
        pub fn remove(self) {
            drop(self);
        }

        /// The path, if binding replaced a stale socket file there.
        pub fn replaced_stale(&self) -> Option<&Path> {
            self.stale.then_some(self.path.as_path())
        }
    }

    impl Drop for SocketFile {
        /// Removes the file, unless something else has taken its place.
        fn drop(&mut self) {
            if fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
                let _ = fs::remove_file(&self.path);
            }
        }
    }

    /// Binds a Unix socket at `path`, over a stale socket file if one is
    /// there: a socket file that refuses connections, as nothing listens
    /// on it. Anything else (a file that is not a socket, a socket a server
    /// answers on, or one whose answer does not come within a second) is
    /// left alone and the error is `AddrInUse`.
    pub fn bind_unix(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
        let mut stale = false;
        let listener = match UnixListener::bind(path) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let in_use = |why: &str| {
                    io::Error::new(io::ErrorKind::AddrInUse, format!("{why}; not replaced"))
                };
                let meta = fs::symlink_metadata(path)?;
                if !meta.file_type().is_socket() {
                    return Err(in_use("a file there is not a socket"));
                }
                let addr = SocketAddr::from_pathname(path)?;
                match connect_unix(&addr, STALE_CHECK) {
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        fs::remove_file(path)?;
                        stale = true;
                        UnixListener::bind(path)?
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(in_use("a server there does not answer in time"))
                    }
                    Err(e) => return Err(e),
                    Ok(_) => return Err(in_use("another server listens on it")),
                }
            }
            other => other?,
        };
        let meta = fs::symlink_metadata(path)?;
        // Absolute, so that a change of directory before shutdown does not
        // make it remove another file (or none).
        let path = match std::env::current_dir() {
            Ok(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        };
        let file = SocketFile {
            path,
            id: (meta.dev(), meta.ino()),
            stale,
        };
        Ok((listener, file))
    }
}
