//! A raw HTTP/1.1 client for the tests: it writes exactly the bytes a test
//! gives it and reads responses one at a time, so tests see the wire.

#![allow(dead_code)] // each test file uses a different part of it

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long any client read may block before the test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// A client socket, over TCP or a Unix socket: the tests' helpers speak to both.
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

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

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        either!(self, s => s.shutdown(how))
    }

    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            #[cfg(unix)]
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(self, s => s.read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(self, s => s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a test's server is: an IP address, or a Unix socket's path.
pub trait Dial {
    fn dial(&self) -> io::Result<Stream>;
}

impl Dial for SocketAddr {
    fn dial(&self) -> io::Result<Stream> {
        TcpStream::connect(self).map(Stream::Tcp)
    }
}

#[cfg(unix)]
impl Dial for Path {
    fn dial(&self) -> io::Result<Stream> {
        UnixStream::connect(self).map(Stream::Unix)
    }
}

#[cfg(unix)]
impl Dial for PathBuf {
    fn dial(&self) -> io::Result<Stream> {
        self.as_path().dial()
    }
}

impl<T: Dial + ?Sized> Dial for &T {
    fn dial(&self) -> io::Result<Stream> {
        (**self).dial()
    }
}

impl<T: Dial + ?Sized> Dial for Arc<T> {
    fn dial(&self) -> io::Result<Stream> {
        (**self).dial()
    }
}

/// A fresh socket path in the temporary directory, unique to this process
/// and call (and short: a socket path has at most about 100 bytes).
pub fn socket_path(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("hz-{}-{n}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

pub struct Client {
    pub stream: Stream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: impl Dial) -> Client {
        let stream = addr.dial().expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// Sends a GET for `path` on this kept-alive connection and reads the answer.
    pub fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.response(false).expect("response")
    }

    /// Reads one response; `head_only` for answers to HEAD, which have no body.
    pub fn response(&mut self, head_only: bool) -> io::Result<Reply> {
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before a response",
                ));
            }
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(
            status_line.starts_with("HTTP/1.1 "),
            "status line: {status_line:?}"
        );
        let status = status_line[9..12].parse().expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("header line");
                (n.to_string(), v.to_string())
            })
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = match reply.header("Content-Length") {
            Some(len) if !head_only => len.parse().expect("Content-Length"),
            _ => 0,
        };
        while self.buf.len() < len {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed mid-body",
                ));
            }
        }
        reply.body = self.buf.drain(..len).collect();
        Ok(reply)
    }

    /// True once the server has closed the connection (after any buffered bytes).
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && matches!(self.fill(), Ok(0) | Err(_))
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A new connection, one request written as given, one response.
pub fn exchange(addr: impl Dial, request: &[u8]) -> Reply {
    let mut client = Client::connect(addr);
    client.send(request);
    let head_only = request.starts_with(b"HEAD ");
    client.response(head_only).expect("response")
}

/// `GET path` on a new connection that asks to close.
pub fn get(addr: impl Dial, path: &str) -> Reply {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Everything the server sends on a new connection after `request`, until it closes.
pub fn raw(addr: impl Dial, request: &[u8]) -> Vec<u8> {
    let mut stream = addr.dial().expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Collects every event a server emits, as display strings.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    pub fn hook(&self) -> impl Fn(&healthz::Event) + Send + Sync + 'static {
        let events = self.0.clone();
        move |event| events.lock().unwrap().push(event.to_string())
    }

    pub fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }
}

/// A server on 127.0.0.1 with an ephemeral port, ready or not.
pub fn start(ready: bool) -> (healthz::Health, healthz::Running) {
    let health = healthz::Health::new();
    health.set_ready(ready);
    let server = healthz::Server::new(health.clone())
        .bind("127.0.0.1:0")
        .expect("bind");
    (health, server)
}

/// A hook that sends every event, as text, to the returned receiver.
pub fn event_channel() -> (
    impl Fn(&healthz::Event) + Send + Sync + 'static,
    std::sync::mpsc::Receiver<String>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let hook = move |event: &healthz::Event| {
        let _ = tx.lock().unwrap().send(event.to_string());
    };
    (hook, rx)
}

/// Waits (at most [`PATIENCE`]) for an event containing `text`; returns it.
pub fn wait_for_event(rx: &std::sync::mpsc::Receiver<String>, text: &str) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) if event.contains(text) => return event,
            Ok(_) => {}
            Err(_) => panic!("no event containing {text:?} within {PATIENCE:?}"),
        }
    }
}

/// Opens `count` connections, has each answer one `GET /healthz` with
/// `status`, and returns them still open: idle, kept-alive connections.
pub fn kept_alive(addr: impl Dial, count: usize, status: u16) -> Vec<Client> {
    let mut clients: Vec<Client> = (0..count).map(|_| Client::connect(&addr)).collect();
    for client in &mut clients {
        assert_eq!(client.get("/healthz").status, status);
    }
    clients
}

/// `cargo test` builds the examples next to the test binaries' `deps` folder.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built; run `cargo test`",
        path.display()
    );
    path
}

pub fn serve_binary() -> std::path::PathBuf {
    example_binary("serve")
}

/// The `serve` example running as a child, driven through its stdin.
pub struct Serve {
    pub child: std::process::Child,
    /// Where it listens, from its first line.
    pub addr: Arc<dyn Dial + Send + Sync>,
    /// The child's stderr, a line at a time, read on a thread so waits are bounded.
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Serve {
    /// Starts `serve --addr 127.0.0.1:0 ARGS` and waits for its first line.
    pub fn start(args: &[&str]) -> Serve {
        Serve::start_with_env(args, &[])
    }

    /// The same, with `env` added to the child's environment (never this process's).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Serve {
        Serve::spawn(None, args, env, None)
    }

    /// Starts `serve --unix PATH ARGS` and waits for its first line.
    #[cfg(unix)]
    pub fn start_unix(path: &Path, args: &[&str]) -> Serve {
        Serve::spawn(Some(path), args, &[], None)
    }

    /// Starts `serve --addr 127.0.0.1:0 ARGS` with its soft limit on open
    /// files lowered to `nofile` (the shell's `ulimit -n`, then `exec`).
    #[cfg(unix)]
    pub fn start_with_nofile(nofile: u32, args: &[&str]) -> Serve {
        Serve::spawn(None, args, &[], Some(nofile))
    }

    fn spawn(
        unix: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u32>,
    ) -> Serve {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let listen: [&std::ffi::OsStr; 2] = match unix {
            Some(path) => ["--unix".as_ref(), path.as_os_str()],
            None => ["--addr".as_ref(), "127.0.0.1:0".as_ref()],
        };
        let mut command = match nofile {
            None => Command::new(serve_binary()),
            Some(n) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""));
                shell.arg(serve_binary());
                shell
            }
        };
        let mut child = command
            .args(listen)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let at = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .trim();
        let addr: Arc<dyn Dial + Send + Sync> = match unix {
            #[cfg(unix)]
            Some(path) => {
                assert_eq!(at, format!("unix:{}", path.display()), "first line");
                Arc::new(path.to_path_buf())
            }
            _ => Arc::new(at.parse::<SocketAddr>().unwrap()),
        };
        let stderr = lines(child.stderr.take().unwrap());
        Serve {
            child,
            addr,
            stderr,
        }
    }

    pub fn command(&mut self, line: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    /// Reads stderr until a line containing `text`: the server's own signal.
    pub fn expect_stderr(&mut self, text: &str) {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no stderr line with {text:?} within {PATIENCE:?}; saw {seen:?}"),
            }
        }
    }
}

/// Forwards each line of `stderr` to the returned receiver until it ends.
fn lines(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A running server of either kind, and where to reach it.
pub enum AnyServer {
    Tcp(healthz::Running),
    #[cfg(unix)]
    Unix(healthz::Running<std::os::unix::net::SocketAddr>, PathBuf),
}

impl AnyServer {
    /// Binds `server` on 127.0.0.1 with an ephemeral port, or (`unix`) on a fresh socket path.
    pub fn bind(server: healthz::Server, unix: bool) -> AnyServer {
        #[cfg(unix)]
        if unix {
            let path = socket_path("server");
            return AnyServer::Unix(server.bind_unix(&path).expect("bind_unix"), path);
        }
        assert!(!unix, "Unix sockets exist on Unix only");
        AnyServer::Tcp(server.bind("127.0.0.1:0").expect("bind"))
    }

    /// Where to dial it; cheap to clone into threads.
    pub fn target(&self) -> Arc<dyn Dial + Send + Sync> {
        match self {
            AnyServer::Tcp(server) => Arc::new(server.local_addr()),
            #[cfg(unix)]
            AnyServer::Unix(_, path) => Arc::new(path.clone()),
        }
    }

    pub fn shutdown(&self) -> Result<(), healthz::Error> {
        match self {
            AnyServer::Tcp(server) => server.shutdown(),
            #[cfg(unix)]
            AnyServer::Unix(server, _) => server.shutdown(),
        }
    }
}

/// The transports a scenario runs on: TCP, and a Unix socket where there are some.
pub const TRANSPORTS: &[bool] = if cfg!(unix) { &[false, true] } else { &[false] };

/// `health` served on 127.0.0.1 with an ephemeral port, as `configure` sets
/// the server up: the set-up most tests share.
pub fn serve_with(
    health: &healthz::Health,
    configure: impl FnOnce(healthz::Server) -> healthz::Server,
) -> healthz::Running {
    configure(healthz::Server::new(health.clone()))
        .bind("127.0.0.1:0")
        .expect("bind")
}

/// A loopback address nothing listens on, and nothing will while the test
/// runs: its port lies below every system's ephemeral range (Linux's starts
/// at 32768, Windows' at 49152), where the tests' port-0 binds never land,
/// and nothing answers there when tried. (A port freed by dropping a
/// listener is not: a parallel test's port-0 bind may take it at once.)
pub fn closed_port() -> SocketAddr {
    (20_000..21_000)
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .find(|addr| TcpStream::connect_timeout(addr, Duration::from_secs(3)).is_err())
        .expect("a closed port between 20000 and 21000")
}
