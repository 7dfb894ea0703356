//! Who is at either end of a connection, as events and the API name it: an
//! IP socket address or a Unix socket's. Ground floor: no socket calls here.

use std::fmt;
use std::net::SocketAddr;

/// Where a server listens, or where a connection comes from, as events
/// report it: an IP socket address, or a Unix socket.
///
/// `Display` writes an IP address as `127.0.0.1:8080`, a Unix socket as
/// `unix:/run/app/health.sock`, or `unix:@name` for a Linux abstract name.
///
/// ```
/// let tcp = healthz::Address::Tcp("127.0.0.1:8080".parse().unwrap());
/// assert_eq!(tcp.to_string(), "127.0.0.1:8080");
/// # #[cfg(unix)] {
/// let path = std::os::unix::net::SocketAddr::from_pathname("/run/app/health.sock").unwrap();
/// assert_eq!(healthz::Address::Unix(path).to_string(), "unix:/run/app/health.sock");
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Address {
    /// A TCP socket's address.
    Tcp(SocketAddr),
    /// A Unix socket's address.
    #[cfg(unix)]
    Unix(std::os::unix::net::SocketAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            #[cfg(unix)]
            Address::Unix(addr) => fmt_unix(addr, f),
        }
    }
}

/// `unix:PATH`, `unix:@NAME` for a Linux abstract name, or `unix:(unnamed)`.
#[cfg(unix)]
fn fmt_unix(addr: &std::os::unix::net::SocketAddr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if let Some(path) = addr.as_pathname() {
        return write!(f, "unix:{}", path.display());
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        if let Some(name) = addr.as_abstract_name() {
            return write!(f, "unix:@{}", String::from_utf8_lossy(name));
        }
    }
    f.write_str("unix:(unnamed)")
}
