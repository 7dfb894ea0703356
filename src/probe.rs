//! A std-only HTTP client for one health probe, for images that have no curl:
//! connect, send one GET, read one bounded response, judge its status.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::socket::Stream;

/// The first pause between two tries of [`Probe::wait_healthy`]; it doubles.
const WAIT_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two tries.
const WAIT_LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// One health check against an HTTP endpoint, the way the kubelet does it:
/// over TCP ([`Probe::new`]) or a Unix domain socket ([`Probe::unix`]).
///
/// Sends `GET` with `Host`, `User-Agent: healthz-probe/<version>` and
/// `Connection: close`; reads at most [`max_response`](Probe::max_response)
/// bytes (10 KiB by default, as the kubelet); healthy means a status in
/// [`expect`](Probe::expect) (200 to 399 by default, as the kubelet). Connecting,
/// writing and reading all share one overall [`timeout`](Probe::timeout).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let health = healthz::Health::new();
/// let server = healthz::Server::new(health.clone()).bind("127.0.0.1:0")?;
/// let url = format!("http://{}/healthz", server.local_addr());
///
/// let error = healthz::Probe::new(&url)?.run().unwrap_err();
/// assert_eq!(error.kind(), healthz::ProbeErrorKind::Unhealthy(503));
///
/// health.ready();
/// let answer = healthz::Probe::new(&url)?.run()?;
/// assert_eq!((answer.status(), answer.body()), (200, &b"ok\n"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Probe {
    to: Endpoint,
    path: String,
    timeout: Duration,
    expect: RangeInclusive<u16>,
    max_response: usize,
}

/// Where a probe connects.
#[derive(Clone, Debug)]
enum Endpoint {
    Tcp {
        host: String,
        port: u16,
    },
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

/// A healthy answer: its status and (up to the size limit) its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResponse {
    status: u16,
    body: Vec<u8>,
}

impl ProbeResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body, cut at the probe's size limit.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// What kind of failure a probe met. Every failure means "unhealthy"; the
/// kind says why, for the one line a `HEALTHCHECK` log shows.
///
/// New kinds may come in a minor release, so a `match` needs a wildcard arm
/// (as for [`Event`](crate::Event) and [`Address`](crate::Address)):
///
/// ```compile_fail
/// fn retry(kind: healthz::ProbeErrorKind) -> bool {
///     use healthz::ProbeErrorKind::*;
///     match kind {
///         InvalidTarget | InvalidSettings | Resolve | Malformed | Unhealthy(_) => false,
///         Refused | TimedOut | Io => true,
///         // no `_ =>` arm: does not compile
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeErrorKind {
    /// The target is not `http://HOST[:PORT][/PATH]` or `HOST:PORT[/PATH]`
    /// (or, for [`Probe::unix`], the path does not start with `/`).
    InvalidTarget,
    /// The probe's own settings are out of bounds (a zero or over-long
    /// timeout): nothing was sent.
    InvalidSettings,
    /// The host name did not resolve.
    Resolve,
    /// Nothing listens there (for a Unix socket: no socket file, or a
    /// stale one).
    Refused,
    /// The overall timeout passed.
    TimedOut,
    /// Another I/O error (reset, unreachable, ...).
    Io,
    /// The peer answered something that is not an HTTP/1.x response, or cut it short.
    Malformed,
    /// A well-formed answer with a status outside the expected range.
    Unhealthy(u16),
}

/// Why a probe failed; `Display` says what happened in one line, and an
/// I/O error under it (`Connection refused (os error 111)`) comes from
/// `source()`, never from both.
///
/// ```
/// use std::error::Error;
///
/// let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
/// let error = healthz::Probe::new(&closed.to_string())?.run().unwrap_err();
/// assert_eq!(error.to_string(), "connection refused");
/// let cause = error.source().expect("the I/O error");
/// assert!(cause.to_string().starts_with("Connection refused"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ProbeError {
    kind: ProbeErrorKind,
    detail: String,
    source: Option<io::Error>,
}

impl ProbeError {
    fn new(kind: ProbeErrorKind, detail: impl Into<String>) -> ProbeError {
        ProbeError {
            kind,
            detail: detail.into(),
            source: None,
        }
    }

    fn io(error: io::Error) -> ProbeError {
        let kind = match error.kind() {
            io::ErrorKind::ConnectionRefused => ProbeErrorKind::Refused,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProbeErrorKind::TimedOut,
            _ => ProbeErrorKind::Io,
        };
        ProbeError {
            source: Some(error),
            ..ProbeError::new(kind, "")
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ProbeErrorKind {
        self.kind
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ProbeErrorKind::InvalidTarget => "invalid target",
            ProbeErrorKind::InvalidSettings => "invalid probe settings",
            ProbeErrorKind::Resolve => "cannot resolve host",
            ProbeErrorKind::Refused => "connection refused",
            ProbeErrorKind::TimedOut => "timed out",
            ProbeErrorKind::Io => "connection failed",
            ProbeErrorKind::Malformed => "malformed response",
            ProbeErrorKind::Unhealthy(status) => {
                return write!(f, "status {status}{}", self.detail)
            }
        };
        match self.detail.as_str() {
            "" => f.write_str(what),
            detail => write!(f, "{what}: {detail}"),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl Probe {
    /// A probe of `target`: `http://HOST[:PORT][/PATH]` or `HOST:PORT[/PATH]`;
    /// the path defaults to `/healthz` and the port of a URL to 80. HOST may be
    /// an IPv4 address, a bracketed IPv6 address, `localhost` (always loopback,
    /// without a resolver) or a name to resolve.
    ///
    /// # Errors
    ///
    /// [`ProbeErrorKind::InvalidTarget`] for a target that is not a URL or
    /// `HOST:PORT` (another scheme, a bad host or port); nothing is sent.
    pub fn new(target: &str) -> Result<Probe, ProbeError> {
        let invalid = |why: &str| {
            ProbeError::new(
                ProbeErrorKind::InvalidTarget,
                format!("{why} in `{target}`"),
            )
        };
        let (rest, default_port) = match target.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, Some(80)),
            Some((scheme, _)) => {
                return Err(invalid(&format!(
                    "unsupported scheme `{scheme}` (only http)"
                )))
            }
            None => (target, None),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], &rest[at..]),
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority).ok_or_else(|| invalid("bad HOST:PORT"))?;
        let port = match (port, default_port) {
            (Some(port), _) => port.parse().map_err(|_| invalid("bad port"))?,
            (None, Some(port)) => port,
            (None, None) => return Err(invalid("no port")),
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let to = Endpoint::Tcp {
            host: host.to_string(),
            port,
        };
        Probe::to(to, path).map_err(invalid)
    }

    /// A probe of `path` (default `/healthz`) on the Unix domain socket at
    /// `socket`, as `curl --unix-socket SOCKET http://localhost/PATH`: the
    /// same request (with `Host: localhost`), timeouts, bounded read and
    /// verdict. A socket that is not there, or that nothing listens on, is
    /// [`ProbeErrorKind::Refused`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let socket = std::env::temp_dir().join(format!("healthz-doc-{}.sock", std::process::id()));
    /// let health = healthz::Health::new();
    /// health.ready();
    /// let server = healthz::Server::new(health).bind_unix(&socket)?;
    ///
    /// let answer = healthz::Probe::unix(&socket, "/readyz")?.run()?;
    /// assert_eq!(answer.status(), 200);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProbeErrorKind::InvalidTarget`] for a `path` that does not start with
    /// `/`; nothing is sent.
    #[cfg(unix)]
    pub fn unix(socket: impl AsRef<std::path::Path>, path: &str) -> Result<Probe, ProbeError> {
        let socket = socket.as_ref();
        Probe::to(Endpoint::Unix(socket.to_path_buf()), path).map_err(|why| {
            ProbeError::new(
                ProbeErrorKind::InvalidTarget,
                format!("{why} in `{path}` (socket {})", socket.display()),
            )
        })
    }

    /// A probe of `path` at `to`, with the kubelet's defaults; or why the path is bad.
    fn to(to: Endpoint, path: &str) -> Result<Probe, &'static str> {
        let path = match path {
            "" => "/healthz".to_string(),
            p if p.starts_with('?') => format!("/healthz{p}"),
            p if p.starts_with('/') => p.to_string(),
            _ => return Err("a path that does not start with `/`"),
        };
        if !path.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err("spaces or control characters in the path");
        }
        Ok(Probe {
            to,
            path,
            timeout: Duration::from_secs(1),
            expect: 200..=399,
            max_response: 10 * 1024,
        })
    }

    /// The overall time for connecting, sending and reading. Default 1 s, the kubelet's.
    #[must_use = "the builder returns the configured probe: use it to probe"]
    pub fn timeout(mut self, timeout: Duration) -> Probe {
        self.timeout = timeout;
        self
    }

    /// The statuses that count as healthy. Default `200..=399`.
    #[must_use = "the builder returns the configured probe: use it to probe"]
    pub fn expect(mut self, statuses: RangeInclusive<u16>) -> Probe {
        self.expect = statuses;
        self
    }

    /// Most bytes read of the response, head and body together; a longer body
    /// is cut there (not an error), a longer head is malformed. Default 10 KiB.
    #[must_use = "the builder returns the configured probe: use it to probe"]
    pub fn max_response(mut self, bytes: usize) -> Probe {
        self.max_response = bytes;
        self
    }

    /// Tries until an answer is healthy or `within` has passed: for init
    /// containers, `docker compose`'s `depends_on` and start-up scripts that
    /// must wait for a service. Returns the first healthy answer, or the last
    /// try's error.
    ///
    /// Each try has the whole [`timeout`](Probe::timeout). Between tries it
    /// waits 50 ms, doubling up to 1 s, never past `within`; so it ends at
    /// most one try's timeout after `within`. An invalid setting fails at once.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let health = healthz::Health::new();
    /// let server = healthz::Server::new(health.clone()).bind("127.0.0.1:0")?;
    /// let probe = healthz::Probe::new(&format!("{}/healthz", server.local_addr()))?;
    ///
    /// let never = probe.wait_healthy(Duration::from_millis(200)).unwrap_err();
    /// assert_eq!(never.kind(), healthz::ProbeErrorKind::Unhealthy(503));
    ///
    /// let later = std::thread::spawn(move || health.ready());
    /// assert_eq!(probe.wait_healthy(Duration::from_secs(10))?.status(), 200);
    /// later.join().unwrap();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidSettings` at once; otherwise the last attempt's error (as for
    /// [`run`](Probe::run)) once `within` has passed with no healthy answer.
    pub fn wait_healthy(&self, within: Duration) -> Result<ProbeResponse, ProbeError> {
        if within > crate::error::LONGEST {
            return Err(ProbeError::new(
                ProbeErrorKind::InvalidSettings,
                "the wait must be at most a year",
            ));
        }
        let until = Instant::now() + within;
        let mut pause = WAIT_FIRST_PAUSE;
        loop {
            let error = match self.run() {
                Ok(answer) => return Ok(answer),
                Err(error) if error.kind() == ProbeErrorKind::InvalidSettings => return Err(error),
                Err(error) => error,
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(error);
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(WAIT_LONGEST_PAUSE);
        }
    }

    /// Runs the probe once.
    ///
    /// # Errors
    ///
    /// Its [`kind`](ProbeError::kind): `InvalidSettings` before anything is
    /// sent; `Resolve`, `Refused`, `TimedOut` or `Io` on the way; `Malformed`
    /// for an answer that is not HTTP/1.x; `Unhealthy(status)` for a status
    /// outside the expected range.
    pub fn run(&self) -> Result<ProbeResponse, ProbeError> {
        if self.timeout.is_zero() || self.timeout > crate::error::LONGEST {
            return Err(ProbeError::new(
                ProbeErrorKind::InvalidSettings,
                "the timeout must be above zero and at most a year",
            ));
        }
        let deadline = Instant::now() + self.timeout;
        let stream = self.connect(deadline)?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: healthz-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path,
            self.host_header(),
            env!("CARGO_PKG_VERSION")
        );
        stream
            .set_write_timeout(Some(left(deadline)?))
            .map_err(ProbeError::io)?;
        (&stream)
            .write_all(request.as_bytes())
            .map_err(ProbeError::io)?;
        let response = read_response(&stream, deadline, self.max_response)?;
        if self.expect.contains(&response.status) {
            Ok(response)
        } else {
            // The body, if short, on one line: it often says why.
            let body = String::from_utf8_lossy(&response.body);
            let body: String = body
                .trim()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let detail = if body.is_empty() || body.len() > 200 {
                String::new()
            } else {
                format!(" ({body})")
            };
            Err(ProbeError::new(
                ProbeErrorKind::Unhealthy(response.status),
                detail,
            ))
        }
    }

    fn host_header(&self) -> String {
        match &self.to {
            Endpoint::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Endpoint::Tcp { host, port } => format!("{host}:{port}"),
            #[cfg(unix)]
            Endpoint::Unix(_) => "localhost".to_string(),
        }
    }

    fn connect(&self, deadline: Instant) -> Result<Stream, ProbeError> {
        let (host, port) = match &self.to {
            Endpoint::Tcp { host, port } => (host, *port),
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                let addr = std::os::unix::net::SocketAddr::from_pathname(path)
                    .map_err(|e| ProbeError::new(ProbeErrorKind::InvalidTarget, e.to_string()))?;
                return crate::socket::connect_unix(&addr, left(deadline)?)
                    .map(Stream::Unix)
                    .map_err(|e| match e.kind() {
                        // No socket file: nothing listens there.
                        io::ErrorKind::NotFound => ProbeError::new(
                            ProbeErrorKind::Refused,
                            format!("{}: {e}", path.display()),
                        ),
                        _ => ProbeError::io(e),
                    });
            }
        };
        let addrs: Vec<SocketAddr> = if host.eq_ignore_ascii_case("localhost") {
            // No resolver needed, so this works in an empty container.
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)]
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| ProbeError::new(ProbeErrorKind::Resolve, format!("{host}: {e}")))?
                .collect()
        };
        let mut last = ProbeError::new(ProbeErrorKind::Resolve, format!("{host}: no addresses"));
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, left(deadline)?) {
                Ok(stream) => return Ok(Stream::Tcp(stream)),
                Err(e) => last = ProbeError::io(e),
            }
        }
        Err(last)
    }
}

/// `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

fn left(deadline: Instant) -> Result<Duration, ProbeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ProbeError::new(ProbeErrorKind::TimedOut, "no time left"))
    } else {
        Ok(left)
    }
}

/// Reads one response of at most `limit` bytes, head and body, within the
/// deadline: reads until [`parse_response`] has it whole (or as much of it
/// as the limit holds).
fn read_response(
    stream: &Stream,
    deadline: Instant,
    limit: usize,
) -> Result<ProbeResponse, ProbeError> {
    let (mut buf, mut eof, mut reader) = (Vec::with_capacity(1024), false, stream);
    loop {
        if let Some(response) = parse_response(&buf, eof, buf.len() >= limit)? {
            return Ok(response);
        }
        stream
            .set_read_timeout(Some(left(deadline)?))
            .map_err(ProbeError::io)?;
        let start = buf.len();
        buf.resize(start + (limit - start).min(4096), 0);
        let read = loop {
            match reader.read(&mut buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        eof = read.map_err(ProbeError::io)? == 0;
    }
}

/// The response in `buf`, if it is whole; `None` while more may come.
/// Once the peer has closed (`eof`) or the buffer is at the size limit
/// (`full`) there is an answer: the response (at the limit, with the body
/// read so far), or why it is malformed. Pure: bytes in, verdict out.
fn parse_response(buf: &[u8], eof: bool, full: bool) -> Result<Option<ProbeResponse>, ProbeError> {
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|at| at + 4) else {
        return match (eof || full, buf.is_empty()) {
            (false, _) => Ok(None),
            (true, true) => Err(malformed("the connection closed without a response")),
            (true, false) => Err(malformed("the response head is cut short or too large")),
        };
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| malformed("non-UTF-8 response head"))?;
    let mut lines = head.split("\r\n");
    let status = parse_status_line(lines.next().unwrap_or(""))?;
    let (length, chunked) = framing(lines)?;
    let rest = &buf[head_end..];
    let (body, whole) = if status == 204 || status == 304 || (100..200).contains(&status) {
        (Vec::new(), true)
    } else if chunked {
        dechunk(rest)?
    } else if let Some(len) = length {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        (rest[..len.min(rest.len())].to_vec(), rest.len() >= len)
    } else {
        (rest.to_vec(), eof) // the peer's close ends it
    };
    match (whole || full, eof) {
        (true, _) => Ok(Some(ProbeResponse { status, body })),
        (false, false) => Ok(None),
        (false, true) if chunked => Err(malformed("the chunked body is cut short")),
        (false, true) => Err(malformed("the body is shorter than its Content-Length")),
    }
}

/// The chunks at the start of `data`, joined, and whether the last one
/// (of size zero) was reached; a chunk cut short gives what it has.
fn dechunk(data: &[u8]) -> Result<(Vec<u8>, bool), ProbeError> {
    let (mut body, mut pos) = (Vec::new(), 0);
    while let Some(line) = find(&data[pos..], b"\r\n") {
        let size_text = std::str::from_utf8(&data[pos..pos + line]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| malformed("a bad chunk size"))?;
        if size == 0 {
            return Ok((body, true));
        }
        let start = pos + line + 2;
        let end = start.saturating_add(size);
        body.extend_from_slice(&data[start..end.min(data.len())]);
        pos = end.saturating_add(2);
        if pos > data.len() {
            break;
        }
    }
    Ok((body, false))
}

/// How the body is framed, from the header lines: its `Content-Length`, if
/// any (conflicting ones are malformed), and whether it is chunked.
fn framing<'a>(lines: impl Iterator<Item = &'a str>) -> Result<(Option<u64>, bool), ProbeError> {
    let (mut length, mut chunked) = (None, false);
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("a header line without a colon"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| malformed("a bad Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(malformed("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        }
    }
    Ok((length, chunked))
}

/// `HTTP/1.x SSS[ reason]`.
fn parse_status_line(line: &str) -> Result<u16, ProbeError> {
    // Bytes, not `str` slices: a peer's non-ASCII must not split a character.
    let line = line.as_bytes();
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .filter(|r| r.len() >= 5 && r[0].is_ascii_digit() && r[1] == b' ')
        .ok_or_else(|| malformed("not an HTTP/1.x status line"))?;
    let code = &rest[2..5];
    if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(5), None | Some(b' ')) {
        return Err(malformed("a bad status code"));
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return Err(malformed("a bad status code"));
    }
    Ok(status)
}

fn malformed(why: &str) -> ProbeError {
    ProbeError::new(ProbeErrorKind::Malformed, why)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_whole_only_once_its_framing_says_so() {
        // Each whole once its last byte that matters is in (a chunked body's
        // trailer section is not waited for), never before.
        let whole: [(&[u8], usize, &[u8]); 3] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, b"ok"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1;x\r\n!\r\n0\r\n\r\n",
                2,
                b"ok!",
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", 0, b""),
        ];
        for (bytes, unneeded, body) in whole {
            let needed = bytes.len() - unneeded;
            for cut in 0..needed {
                let part = parse_response(&bytes[..cut], false, false);
                assert!(matches!(part, Ok(None)), "{cut} bytes of {bytes:?}");
            }
            let response = parse_response(&bytes[..needed], false, false);
            assert_eq!(response.unwrap().unwrap().body, body);
        }
        let close_ends_it = b"HTTP/1.0 200 OK\r\n\r\nuntil close";
        assert!(parse_response(close_ends_it, false, false)
            .unwrap()
            .is_none());
        let response = parse_response(close_ends_it, true, false).unwrap().unwrap();
        assert_eq!(response.body, b"until close");
        let at_the_limit = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc";
        let response = parse_response(at_the_limit, false, true).unwrap().unwrap();
        assert_eq!(response.body, b"abc", "cut at the limit, kept");
        let error = parse_response(at_the_limit, true, false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed response: the chunked body is cut short"
        );
    }

    #[test]
    fn status_lines_are_read_by_bytes_whatever_the_peer_sends() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK").unwrap(), 200);
        assert_eq!(parse_status_line("HTTP/1.0 503").unwrap(), 503);
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content").unwrap(), 204);
        for bad in [
            "HTTP/1.1 20\u{e9} OK",
            "HTTP/1.1 \u{e9}\u{e9}",
            "HTTP/1.1 099 Low",
            "HTTP/1.1 2000 Long",
            "HTTP/1.1 +20 Sign",
            "HTTP/2 200",
            "HTTP/1.1",
            "",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
        // Every short string of interesting characters: an answer, never a panic.
        let alphabet = [
            'H',
            'T',
            'P',
            '/',
            '1',
            '.',
            ' ',
            '2',
            '0',
            '\u{e9}',
            '\u{1f600}',
        ];
        let mut line = String::new();
        for n in 0..alphabet.len().pow(4) {
            line.clear();
            line.push_str("HTTP/1.1 ");
            let mut k = n;
            for _ in 0..4 {
                line.push(alphabet[k % alphabet.len()]);
                k /= alphabet.len();
            }
            let _ = parse_status_line(&line);
        }
    }
}
