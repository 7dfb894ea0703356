//! One client connection, on the thread that accepted it. Its life reads
//! like the protocol: wait for a request (idle) → read its head (I/O only)
//! → parse → mark the connection busy → route (checks run here) → write →
//! keep alive or close.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::counters::Counters;
use crate::date;
use crate::error::{client_went_away, invalid, is_timeout, positive};
use crate::event::{Event, Events};
use crate::health::Health;
use crate::http::{self, Method, Parsed, Persist, Request, Response};
use crate::registry::{Registered, Registry, Slot, State};
use crate::route::{self, Refusal, Routes};
use crate::socket::Stream;

/// How long a closing connection keeps reading what the client still sends, so that
/// the kernel does not reset the connection and destroy the response before it is read.
const LINGER: Duration = Duration::from_millis(250);
/// How much it reads while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// A connection's receive buffer to start with; it grows, up to the request
/// head limit, only for a head that needs it.
const HEAD_START: usize = 1024;
/// Windows only: the longest a read waits before it looks whether the server
/// closed the connection (Winsock's shutdown does not wake a blocked read).
#[cfg(windows)]
const WAKE_SLICE: Duration = Duration::from_millis(100);
/// What the answer buffer keeps between connections; a burst of pipelined
/// answers may have grown it far beyond.
const OUT_KEPT: usize = 4096;

/// The limits and timeouts of one connection.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// For a whole request head: from accept for a connection's first
    /// request, from its first byte for later ones.
    pub request_timeout: Duration,
    /// Between requests on a kept-alive connection.
    pub idle_timeout: Duration,
    /// For writing one batch of answers.
    pub write_timeout: Duration,
    pub max_requests: u64,
    pub max_body: u64,
    pub head: http::Limits,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_requests: 10_000,
            max_body: 64 * 1024,
            head: http::Limits::default(),
        }
    }
}

impl Settings {
    /// Refuses a timeout of zero or over a year, and a request limit of zero.
    pub fn validate(&self) -> io::Result<()> {
        let timeouts = [
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
        ];
        for (name, timeout) in timeouts {
            positive(name, timeout)?;
        }
        if self.max_requests == 0 {
            return Err(invalid("max_requests_per_connection must be at least 1"));
        }
        self.head.validate().map_err(invalid)
    }
}

/// What every connection of one server shares: how to treat it, what to
/// answer from, where to report, and the registry it joins.
pub(crate) struct Service {
    pub settings: Settings,
    pub routes: Routes,
    pub health: Health,
    pub events: Events,
    pub registry: Registry,
    pub counters: Counters,
}

/// A connection thread's buffers, kept from one connection to the next so
/// that a new connection allocates nothing here.
#[derive(Default)]
pub(crate) struct Buffers {
    /// Received bytes: at most one request head long.
    head: Vec<u8>,
    /// Answers not yet written: pipelined answers leave in one write.
    out: Vec<u8>,
    date: date::Cache,
}

/// Serves a connection accepted at `accepted`, on this thread, until it ends:
/// registers it (making room at the connection cap), serves it, and
/// unregisters it. A connection that comes once the server is stopping is
/// closed unserved.
pub(crate) fn serve(
    service: &Service,
    stream: Stream,
    peer: Address,
    accepted: Instant,
    buffers: &mut Buffers,
) {
    let (events, counters) = (&service.events, &service.counters);
    let evicted = |peer: &Address| {
        let peer = peer.clone();
        counters.evicted();
        let reason = "evicted: connection limit reached";
        events.emit(Event::Rejected { peer, reason });
    };
    let Some(registered) = service.registry.register(stream, peer, evicted) else {
        return;
    };
    counters.accepted();
    buffers.head.resize(HEAD_START, 0);
    buffers.head.shrink_to(HEAD_START);
    buffers.out.clear();
    buffers.out.shrink_to(OUT_KEPT);
    let stream = &registered.slot().stream;
    let mut conn = Conn {
        service,
        registered: &registered,
        input: Input {
            slot: registered.slot(),
            buf: &mut buffers.head,
            filled: 0,
            max: service.settings.head.max_head,
            read_timeout: None,
        },
        output: Output {
            stream,
            out: &mut buffers.out,
            date: &mut buffers.date,
            write_timeout: service.settings.write_timeout,
            sent: false,
            nodelay: false,
        },
    };
    if let Err(error) = conn.run(accepted) {
        if !registered.slot().is_closed() {
            let peer = registered.slot().peer.clone();
            events.emit(Event::ConnectionError { peer, error });
        }
    }
}

struct Conn<'a> {
    service: &'a Service,
    registered: &'a Registered<'a>,
    input: Input<'a>,
    output: Output<'a>,
}

/// What came in where a request head was expected.
enum Head<'b> {
    /// A whole head, and how many bytes it took.
    Complete(Request<'b>, usize),
    /// Malformed, oversized or late: refused (with the method it started
    /// with), then closed.
    Refused(Method, Refusal),
}

impl Conn<'_> {
    /// A connection's life as HTTP/1.1 has it: wait for a request, read its
    /// head, answer it, and again while the connection is kept alive.
    fn run(&mut self, accepted: Instant) -> io::Result<()> {
        let service = self.service;
        self.output
            .stream
            .set_write_timeout(Some(service.settings.write_timeout))?;
        let mut served: u64 = 0;
        // The first request's head is due a request timeout after accept.
        let mut deadline = accepted + service.settings.request_timeout;
        loop {
            if !self.await_next(served, &mut deadline)? {
                return Ok(());
            }
            // Read a head until it parses, or never can.
            let limits = &service.settings.head;
            let head = loop {
                match http::parse(&self.input.buf[..self.input.filled], limits) {
                    Ok(Parsed::Complete(request, len)) => break Head::Complete(request, len),
                    Ok(Parsed::Partial) => {}
                    Err(error) => {
                        break Head::Refused(self.input.method(), Refusal::Malformed(error))
                    }
                }
                if !receive(&mut self.input, &mut self.output, deadline)? {
                    break Head::Refused(self.input.method(), Refusal::TimedOut);
                }
            };
            let (request, len) = match head {
                Head::Complete(request, len) => (request, len),
                Head::Refused(method, why) => return self.refuse(method, why),
            };
            // Busy from here: checks run while routing, and at the connection
            // cap a busy connection is the last to go.
            if !self.registered.enter(State::Busy) {
                return Ok(());
            }
            served += 1;
            let (response, persist) = answer(service, &request, served);
            let body = request.content_length;
            self.queue(&response, persist);
            self.input.consume(len);
            if persist == Persist::Close {
                let unread = self.input.filled > 0 || body > 0;
                return self.finish(unread);
            }
            if body > 0
                && !(self.registered.enter(State::Reading) && self.skip_body(body, deadline)?)
            {
                return Ok(());
            }
        }
    }

    /// Waits, idle, for the first byte of the next request (unless it is here
    /// already, pipelined), then marks the connection reading, its head due
    /// by `deadline`. False when the connection ends instead: the client
    /// closed it, the wait ran out, or the server is stopping.
    fn await_next(&mut self, served: u64, deadline: &mut Instant) -> io::Result<bool> {
        let settings = &self.service.settings;
        if self.input.filled == 0 {
            self.output.flush()?;
            if !self.registered.answered() || self.service.registry.is_stopping() {
                return Ok(false);
            }
            let arrived = match served {
                0 => self.input.read_until(*deadline),
                _ => self.input.read(settings.idle_timeout),
            };
            match arrived {
                Ok(n) if n > 0 => {}
                // Between requests, silence and resets are how clients say goodbye.
                Ok(_) => return Ok(false),
                Err(e) if is_timeout(&e) || client_went_away(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        if served > 0 {
            *deadline = Instant::now() + settings.request_timeout;
        }
        Ok(self.registered.enter(State::Reading))
    }

    /// Queues an answer to be written, and counts it.
    fn queue(&mut self, response: &Response<'_>, persist: Persist) {
        self.service.counters.answered(response.status);
        self.output.push(response, persist);
    }

    /// Discards a request body of `len` bytes that must arrive by `deadline`.
    /// False when it does not: the connection is closed, as the stream is lost.
    fn skip_body(&mut self, mut len: u64, deadline: Instant) -> io::Result<bool> {
        loop {
            let take = self
                .input
                .filled
                .min(usize::try_from(len).unwrap_or(usize::MAX));
            self.input.consume(take);
            len -= take as u64;
            if len == 0 {
                return Ok(true);
            }
            self.output.flush()?;
            match self.input.read_until(deadline) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Refuses a request, closes, and reports why.
    fn refuse(&mut self, method: Method, why: Refusal) -> io::Result<()> {
        if let Refusal::Malformed(_) = why {
            self.service.counters.malformed();
        }
        self.queue(&route::refuse(method, why), Persist::Close);
        let peer = self.registered.slot().peer.clone();
        let reason = why.reason();
        self.service.events.emit(Event::Rejected { peer, reason });
        self.finish(true)
    }

    /// Writes the answers still pending, then ends the connection: nothing
    /// is in flight any more, so shutdown need not wait for it. With `unread`
    /// input from the client, lingers first.
    fn finish(&mut self, unread: bool) -> io::Result<()> {
        self.output.flush()?;
        self.registered.answered();
        if unread {
            self.linger();
        }
        Ok(())
    }

    /// Closes our side, then reads (and drops) what the client still sends for a
    /// moment. Closing with unread input would make the kernel send a reset that
    /// can destroy the answer before the client reads it.
    fn linger(&mut self) {
        let _ = self.input.slot.stream.shutdown(Shutdown::Write);
        // The server may close it at once from here on.
        if !self.registered.enter(State::Idle) {
            return;
        }
        let until = Instant::now() + LINGER;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.input.filled = 0;
            match self.input.read_until(until) {
                Ok(n) if n > 0 => discarded += n,
                _ => return,
            }
        }
    }
}

/// Receives more of a request head by `deadline`; false if the deadline
/// passed first. Answers to earlier pipelined requests leave first.
fn receive(input: &mut Input<'_>, output: &mut Output<'_>, deadline: Instant) -> io::Result<bool> {
    output.flush()?;
    match input.read_until(deadline) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client closed the connection mid-request",
        )),
        Ok(_) => Ok(true),
        Err(e) if is_timeout(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The answer to one request (checks run here), and whether the connection
/// stays open after it: not after a body too large to read past, the last
/// request allowed, or once the server is shutting down.
fn answer(service: &Service, request: &Request<'_>, served: u64) -> (Response<'static>, Persist) {
    let settings = &service.settings;
    let too_large = request.content_length > settings.max_body;
    let response = if too_large {
        route::refuse(request.method, Refusal::TooLarge)
    } else {
        route::answer(request, &service.health, &service.routes, &service.counters)
    };
    let keep = request.keep_alive
        && !too_large
        && served < settings.max_requests
        && !service.registry.is_stopping();
    let persist = match (keep, request.http11) {
        (false, _) => Persist::Close,
        (true, true) => Persist::KeepAlive,
        (true, false) => Persist::KeepAlive10,
    };
    (response, persist)
}

/// The receiving side: the socket (with its place in the registry, which
/// says whether the server closed it) and the bytes received but not consumed.
struct Input<'a> {
    slot: &'a Slot,
    buf: &'a mut Vec<u8>,
    filled: usize,
    /// The most the buffer grows to: the request head limit.
    max: usize,
    /// The read timeout set on the socket, to skip a system call when it is unchanged.
    read_timeout: Option<Duration>,
}

impl Input<'_> {
    /// The method of the request being received, for an answer that refuses it.
    fn method(&self) -> Method {
        http::method_of(&self.buf[..self.filled])
    }

    fn read_until(&mut self, deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.read(left)
    }

    fn read(&mut self, timeout: Duration) -> io::Result<usize> {
        if self.filled == self.buf.len() && self.buf.len() < self.max {
            let grown = (self.buf.len() * 4).clamp(HEAD_START, self.max);
            self.buf.resize(grown, 0);
        }
        #[cfg(windows)]
        return self.read_in_slices(timeout);
        #[cfg(not(windows))]
        self.read_once(timeout)
    }

    /// Windows: shutdown(2) on a socket does not wake a thread blocked reading
    /// it, so the server's closing an idle connection (at shutdown, or to make
    /// room at the cap) would wait for its timeout. There a read waits in
    /// slices of [`WAKE_SLICE`], and ends as soon as the server has closed the
    /// connection. Elsewhere the shutdown wakes the read itself, and an idle
    /// connection costs no wake-up at all.
    #[cfg(windows)]
    fn read_in_slices(&mut self, timeout: Duration) -> io::Result<usize> {
        let until = Instant::now() + timeout;
        loop {
            if self.slot.is_closed() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "closed by the server",
                ));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match self.read_once(left.min(WAKE_SLICE)) {
                Err(e) if is_timeout(&e) => {}
                done => return done,
            }
        }
    }

    fn read_once(&mut self, timeout: Duration) -> io::Result<usize> {
        let mut stream = &self.slot.stream;
        if self.read_timeout != Some(timeout) {
            stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        loop {
            match stream.read(&mut self.buf[self.filled..]) {
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
}

/// The sending side: answers gathered, then written in one go.
struct Output<'a> {
    stream: &'a Stream,
    out: &'a mut Vec<u8>,
    date: &'a mut date::Cache,
    write_timeout: Duration,
    /// Whether anything was written on this connection yet.
    sent: bool,
    /// Whether Nagle's algorithm is off. The first write of a connection has
    /// nothing unacknowledged before it, so it leaves at once anyway; the
    /// option is set (one system call) only before a second one.
    nodelay: bool,
}

impl Output<'_> {
    fn push(&mut self, response: &Response<'_>, persist: Persist) {
        http::write_response(self.out, response, persist, self.date.now());
    }

    /// Writes the pending answers within one write timeout for the whole batch,
    /// so a client reading a byte at a time cannot hold the thread for long.
    fn flush(&mut self) -> io::Result<()> {
        let result = self.write_out();
        self.out.clear();
        result
    }

    /// An error ends the connection: the write timeout is left as it is.
    fn write_out(&mut self) -> io::Result<()> {
        let mut stream = self.stream;
        let (mut written, mut deadline) = (0, None);
        while written < self.out.len() {
            if self.sent && !self.nodelay {
                stream.set_nodelay()?;
                self.nodelay = true;
            }
            self.sent = true;
            match stream.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if written < self.out.len() {
                // A partial write: the client is slow. Shrink the timeout to what is left.
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.write_timeout);
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                stream.set_write_timeout(Some(left))?;
            }
        }
        if deadline.is_some() {
            stream.set_write_timeout(Some(self.write_timeout))?;
        }
        Ok(())
    }
}
