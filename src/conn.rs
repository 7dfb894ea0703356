//! One client connection on its own thread: read a request head within its
//! deadline, parse it, route it, write the answer, and keep the connection
//! alive or close it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::event::Event;
use crate::http::{self, Parsed, Persist, Response};
use crate::route;
use crate::server::Shared;

/// Waiting for the first byte of a request: closed at once on shutdown.
const IDLE: u8 = 0;
/// Receiving a request (head or body): in flight for shutdown.
const READING: u8 = 1;
/// Answering a request: in flight for shutdown, evicted only after every waiting connection.
const BUSY: u8 = 2;
/// Closed by the server (shutdown or eviction); the thread ends at its next read or write.
const CLOSED: u8 = 3;

/// How long a closing connection keeps reading what the client still sends, so that
/// the kernel does not reset the connection and destroy the response before it is read.
const LINGER: Duration = Duration::from_millis(250);
/// How much it reads while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// A connection as the server sees it from outside its thread: the socket (to close it)
/// and what the thread is doing (to decide whether it may be closed).
pub(crate) struct Slot {
    stream: TcpStream,
    peer: SocketAddr,
    state: AtomicU8,
    /// When it entered its state, in ms since the server started (for eviction order).
    since: AtomicU64,
}

impl Slot {
    pub fn new(stream: TcpStream, peer: SocketAddr, now_ms: u64) -> Slot {
        Slot {
            stream,
            peer,
            state: AtomicU8::new(IDLE),
            since: AtomicU64::new(now_ms),
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Moves to `state`, unless the server has closed the connection (then false).
    ///
    /// `SeqCst`, paired with the shutdown flag: a thread that publishes `IDLE` and
    /// then finds the flag clear is sure to be seen idle, and closed, by shutdown.
    fn enter(&self, state: u8, now_ms: u64) -> bool {
        let moved = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s != CLOSED).then_some(state)
            })
            .is_ok();
        if moved {
            self.since.store(now_ms, Ordering::Relaxed);
        }
        moved
    }

    fn is_closed(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CLOSED
    }

    /// Which connection to evict first at the connection cap: the smallest key.
    ///
    /// Connections waiting for their client (idle, or receiving a request) go
    /// first, longest-waiting first; one being answered goes only when all
    /// are being answered, and then the one stuck longest (its client does not
    /// read). `None` once closed.
    pub fn eviction_key(&self) -> Option<(bool, u64)> {
        let since = self.since.load(Ordering::Relaxed);
        match self.state.load(Ordering::SeqCst) {
            IDLE | READING => Some((false, since)),
            BUSY => Some((true, since)),
            _ => None,
        }
    }

    /// Closes the socket if the connection is idle; the thread then ends.
    pub fn close_if_idle(&self) -> bool {
        self.close_if(|s| s == IDLE)
    }

    /// Closes the socket whatever the thread is doing (the shutdown deadline).
    pub fn close(&self) -> bool {
        self.close_if(|s| s != CLOSED)
    }

    fn close_if(&self, allowed: impl Fn(u8) -> bool) -> bool {
        let closed = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                allowed(s).then_some(CLOSED)
            })
            .is_ok();
        if closed {
            // Wakes the thread from a blocked read or write.
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        closed
    }
}

/// A connection thread's buffers, kept from one connection to the next so
/// that a new connection allocates nothing here.
pub(crate) struct Buffers {
    /// Received bytes: exactly one request head long at most.
    head: Box<[u8]>,
    /// Answers not yet written: pipelined answers leave in one write.
    out: Vec<u8>,
    date: DateCache,
}

/// What `out` keeps between connections; a burst of pipelined answers may
/// have grown it far beyond.
const OUT_KEPT: usize = 4096;

impl Buffers {
    pub fn new(max_head: usize) -> Buffers {
        Buffers {
            head: vec![0; max_head].into_boxed_slice(),
            out: Vec::with_capacity(256),
            date: DateCache::default(),
        }
    }
}

/// Serves one connection until it closes, reporting what went wrong, if anything.
pub(crate) fn serve(shared: &Shared, slot: &Slot, buffers: &mut Buffers) {
    buffers.out.clear();
    buffers.out.shrink_to(OUT_KEPT);
    let mut conn = Conn {
        shared,
        slot,
        stream: &slot.stream,
        buf: &mut buffers.head,
        filled: 0,
        out: &mut buffers.out,
        read_timeout: None,
        date: &mut buffers.date,
    };
    let result = conn.run();
    if let Err(error) = result {
        if !slot.is_closed() {
            shared.events.emit(Event::ConnectionError {
                peer: slot.peer,
                error,
            });
        }
    }
}

struct Conn<'a> {
    shared: &'a Shared,
    slot: &'a Slot,
    stream: &'a TcpStream,
    /// Received bytes; the first `filled` are not yet consumed.
    buf: &'a mut [u8],
    filled: usize,
    /// Answers not yet written.
    out: &'a mut Vec<u8>,
    /// The read timeout set on the socket, to skip a system call when it is unchanged.
    read_timeout: Option<Duration>,
    date: &'a mut DateCache,
}

/// How a request head arrived, or why it did not.
enum Head {
    Request {
        response: Response<'static>,
        len: usize,
        keep_alive: bool,
        http11: bool,
        content_length: u64,
    },
    /// The client closed or the server closed the connection: nothing to answer.
    Gone,
}

impl Conn<'_> {
    fn run(&mut self) -> io::Result<()> {
        let config = &self.shared.config;
        self.stream.set_write_timeout(Some(config.write_timeout))?;
        self.stream.set_nodelay(true)?;
        // A new connection has one request timeout to start its request; after
        // that, a kept-alive connection may wait the idle timeout between requests.
        let mut wait = config.request_timeout;
        let mut served: u64 = 0;
        loop {
            if self.filled == 0 && !self.await_request(wait)? {
                return Ok(());
            }
            if !self.slot.enter(READING, self.shared.millis()) {
                return Ok(());
            }
            let deadline = Instant::now() + config.request_timeout;
            let (mut response, len, keep_alive, http11, content_length) =
                match self.read_head(deadline)? {
                    Head::Request {
                        response,
                        len,
                        keep_alive,
                        http11,
                        content_length,
                    } => (response, len, keep_alive, http11, content_length),
                    Head::Gone => return Ok(()),
                };
            if !self.slot.enter(BUSY, self.shared.millis()) {
                return Ok(());
            }
            served += 1;
            let mut keep = keep_alive && served < config.max_requests_per_connection;
            if content_length > config.max_body {
                response = route::answer(http::Method::Get, 413, b"request body too large\n");
                keep = false;
            }
            // Checked after the request is complete: during shutdown, say so and close.
            keep &= !self.shared.stopping();
            let persist = match (keep, http11) {
                (false, _) => Persist::Close,
                (true, true) => Persist::KeepAlive,
                (true, false) => Persist::KeepAlive10,
            };
            http::write_response(self.out, &response, persist, self.date.now());
            self.consume(len);
            if !keep {
                self.flush()?;
                if self.filled > 0 || content_length > 0 {
                    self.linger();
                }
                return Ok(());
            }
            if content_length > 0 {
                if !self.slot.enter(READING, self.shared.millis()) {
                    return Ok(());
                }
                if !self.skip_body(content_length, deadline)? {
                    return Ok(());
                }
            }
            wait = config.idle_timeout;
        }
    }

    /// Waits, idle, for the first byte of the next request. False when the
    /// connection ends quietly: the client closed it, the idle time ran out, or the
    /// server is shutting down.
    fn await_request(&mut self, wait: Duration) -> io::Result<bool> {
        self.flush()?;
        if !self.slot.enter(IDLE, self.shared.millis()) || self.shared.stopping() {
            return Ok(false);
        }
        match self.read(wait) {
            Ok(n) => Ok(n > 0),
            // Between requests, silence and resets are how clients say goodbye.
            Err(e) if is_timeout(&e) || is_disconnect(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads until a whole request head is buffered, answering and closing on
    /// malformed input or when the deadline passes first.
    fn read_head(&mut self, deadline: Instant) -> io::Result<Head> {
        let limits = self.shared.config.limits;
        loop {
            match http::parse(&self.buf[..self.filled], &limits) {
                Ok(Parsed::Complete(request, len)) => {
                    return Ok(Head::Request {
                        response: route::route(
                            &request,
                            &self.shared.health,
                            &self.shared.config.routes,
                        ),
                        len,
                        keep_alive: request.keep_alive,
                        http11: request.http11,
                        content_length: request.content_length,
                    })
                }
                Ok(Parsed::Partial) => {}
                Err(error) => {
                    self.reject(route::refuse(error), "malformed or oversized request")?;
                    return Ok(Head::Gone);
                }
            }
            // Answers to earlier pipelined requests leave before this thread blocks.
            self.flush()?;
            match self.read_until(deadline) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "client closed the connection mid-request",
                    ))
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    let timeout = route::answer(http::Method::Get, 408, b"request timeout\n");
                    self.reject(timeout, "request head not received in time")?;
                    return Ok(Head::Gone);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Discards a request body of `len` bytes that must arrive by `deadline`.
    /// False when it does not: the connection is closed, as the stream is lost.
    fn skip_body(&mut self, mut len: u64, deadline: Instant) -> io::Result<bool> {
        loop {
            let take = self.filled.min(usize::try_from(len).unwrap_or(usize::MAX));
            self.consume(take);
            len -= take as u64;
            if len == 0 {
                return Ok(true);
            }
            self.flush()?;
            match self.read_until(deadline) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Answers with an error, closes, and reports why.
    fn reject(&mut self, response: Response<'_>, reason: &'static str) -> io::Result<()> {
        http::write_response(self.out, &response, Persist::Close, self.date.now());
        self.shared.events.emit(Event::Rejected {
            peer: self.slot.peer,
            reason,
        });
        self.flush()?;
        self.linger();
        Ok(())
    }

    /// Closes our side, then reads (and drops) what the client still sends for a
    /// moment. Closing with unread input would make the kernel send a reset that
    /// can destroy the answer before the client reads it.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        // The server may close it at once from here on.
        if !self.slot.enter(IDLE, self.shared.millis()) {
            return;
        }
        let until = Instant::now() + LINGER;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.filled = 0;
            match self.read_until(until) {
                Ok(n) if n > 0 => drained += n,
                _ => return,
            }
        }
    }

    fn read_until(&mut self, deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.read(left)
    }

    fn read(&mut self, timeout: Duration) -> io::Result<usize> {
        if self.read_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        loop {
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn consume(&mut self, len: usize) {
        self.buf.copy_within(len..self.filled, 0);
        self.filled -= len;
    }

    /// Writes the pending answers within one write timeout for the whole batch,
    /// so a client reading a byte at a time cannot hold the thread for long.
    fn flush(&mut self) -> io::Result<()> {
        let result = self.write_out();
        self.out.clear();
        result
    }

    fn write_out(&mut self) -> io::Result<()> {
        let timeout = self.shared.config.write_timeout;
        let mut written = 0;
        let mut deadline = None;
        let result = loop {
            if written == self.out.len() {
                break Ok(());
            }
            match self.stream.write(&self.out[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
            if written < self.out.len() {
                // A partial write: the client is slow. Shrink the timeout to what is left.
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Err(io::ErrorKind::TimedOut.into());
                }
                self.stream.set_write_timeout(Some(left))?;
            }
        };
        if deadline.is_some() {
            self.stream.set_write_timeout(Some(timeout))?;
        }
        result
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The `Date` header, formatted once per second per thread.
#[derive(Default)]
struct DateCache {
    secs: u64,
    text: [u8; http::DATE_LEN],
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.secs || self.text[0] == 0 {
            self.secs = secs;
            self.text = http::imf_fixdate(secs);
        }
        &self.text
    }
}
