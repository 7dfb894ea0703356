//! The connection threads. A thread without a connection waits in `accept`
//! itself, so the kernel hands each new connection straight to a waiting
//! thread: no hand-off between threads, no second wake-up. The thread serves
//! that connection for its whole life, then goes back to `accept`, or ends if
//! enough threads wait there already. Whoever takes the last waiting place
//! starts another thread first, so someone is always accepting.
//!
//! A thread in `accept` cannot time out without polling, so threads are sent
//! home by connecting to the server: after a burst, once no connection has
//! come for the quiet period, a timer (which exists only while more than one
//! thread waits) opens one wake-up connection per extra thread. The thread
//! that takes one closes it unserved and ends. Shutdown wakes every thread
//! the same way (or, for a Unix socket on Linux, by shutting the listening
//! socket down, which wakes them all at once).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::conn::{self, Buffers, Service};
use crate::error::{client_went_away, invalid, positive};
use crate::event::Event;
use crate::socket::{Address, ListenSocket, Stream};
use crate::sync::{lock, read, wait_until, write};

/// Longest pause after an `accept` error that a retry cannot fix at once.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How long a wake-up connection may take to be queued.
const WAKE_TIMEOUT: Duration = Duration::from_millis(500);
/// Threads kept waiting in `accept` once the server is quiet.
const FLOOR: usize = 1;

/// How many threads wait in `accept`, and for how long the extra ones stay.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spares {
    /// Most threads waiting in `accept` at once (at least 1).
    pub max: usize,
    /// How long threads above [`FLOOR`] stay once no connection comes.
    pub quiet: Duration,
}

impl Default for Spares {
    fn default() -> Spares {
        Spares {
            max: 16,
            quiet: Duration::from_secs(5),
        }
    }
}

impl Spares {
    /// Refuses no spare at all, and a quiet period of zero or over a year.
    pub fn validate(&self) -> io::Result<()> {
        if self.max == 0 {
            return Err(invalid("spare_threads must be at least 1"));
        }
        positive("spare_thread_timeout", self.quiet)
    }
}

/// The threads of one server and the listener they accept on.
pub(crate) struct Acceptors {
    service: Arc<Service>,
    spares: Spares,
    /// The stack size of every thread of the server.
    stack_size: usize,
    /// Where wake-up connections go (a relative socket path made absolute).
    wake_addr: Address,
    /// The retire timer's own clock: when the last connection was accepted,
    /// in ms since `epoch`.
    epoch: Instant,
    last_accept: AtomicU64,
    /// Threads in `accept`, or about to call it. A thread counts itself
    /// before it takes the listener, and `stop` removes the listener before
    /// it reads the count: a thread that got the listener is counted, and woken.
    waiting: AtomicUsize,
    /// `None` once accepting has ended. A thread holds a clone only while in
    /// `accept`, so the socket closes (and new clients are refused) as soon
    /// as the last thread is back. Read-locked per connection: no writer
    /// until the end, so readers never wait.
    listener: RwLock<Option<Arc<ListenSocket>>>,
    /// Every thread started and not yet joined.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// For `stop`: signalled, under its lock, when a thread comes back from
    /// `accept` after accepting ended.
    back: (Mutex<()>, Condvar),
    wakes: Wakes,
    /// Whether the timer that sends extra threads home is running.
    retiring: AtomicBool,
}

impl Acceptors {
    /// Starts serving `listener` with one thread waiting in `accept`; every
    /// thread has a stack of `stack_size` bytes.
    pub fn start(
        service: Arc<Service>,
        listener: ListenSocket,
        spares: Spares,
        stack_size: usize,
    ) -> io::Result<Arc<Acceptors>> {
        let wake_addr = absolute(listener.local_addr()?);
        let acceptors = Arc::new(Acceptors {
            service,
            spares,
            stack_size,
            wake_addr,
            epoch: Instant::now(),
            last_accept: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            listener: RwLock::new(Some(Arc::new(listener))),
            threads: Mutex::default(),
            back: (Mutex::new(()), Condvar::new()),
            wakes: Wakes::new(),
            retiring: AtomicBool::new(false),
        });
        acceptors.spawn("healthz-conn", Acceptors::work)?;
        Ok(acceptors)
    }

    /// Starts a thread of this server. Does nothing once accepting has ended.
    fn spawn(self: &Arc<Self>, name: &str, body: fn(&Arc<Acceptors>)) -> io::Result<()> {
        let mut threads = lock(&self.threads);
        if self.service.registry.is_stopping() {
            return Ok(());
        }
        reap(&mut threads);
        let acceptors = self.clone();
        let thread = thread::Builder::new()
            .name(name.into())
            .stack_size(self.stack_size)
            .spawn(move || body(&acceptors))?;
        threads.push(thread);
        Ok(())
    }

    /// A connection thread's life: accept a connection, serve it, and again,
    /// while wanted.
    fn work(self: &Arc<Self>) {
        let mut backoff = Duration::ZERO;
        let mut buffers = Buffers::default();
        let mut early = Early::default();
        while let Some(listener) = self.enlist() {
            let accepted = listener.accept();
            drop(listener);
            let Some(waiting) = self.delist() else {
                return; // woken to stop, or a client too late: closed unserved
            };
            match accepted {
                Ok((stream, peer)) if self.wakes.take(&stream, &peer, &mut early) => {
                    drop(stream);
                    // Sent home; the last thread waiting stays, whatever came meanwhile.
                    if waiting >= FLOOR {
                        return;
                    }
                }
                Ok((stream, peer)) => {
                    let at = Instant::now();
                    let since = at.saturating_duration_since(self.epoch).as_millis() as u64;
                    self.last_accept.store(since, Ordering::Relaxed);
                    backoff = Duration::ZERO;
                    if waiting == 0 {
                        // This thread is about to be busy: someone must keep accepting.
                        if let Err(error) = self.spawn("healthz-conn", Acceptors::work) {
                            // Out of threads: refuse this connection rather than stop accepting.
                            self.service.events.emit(Event::AcceptError { error });
                            continue;
                        }
                    }
                    conn::serve(&self.service, stream, peer, at, early.take(), &mut buffers);
                }
                // A pending connection that went away before it was taken is
                // no fault: most systems say `ConnectionAborted`, Winsock (as
                // wine runs it) sometimes `WouldBlock`, though the socket blocks.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) || client_went_away(&e) => {}
                Err(error) => {
                    self.service.events.emit(Event::AcceptError { error });
                    // Out of descriptors or memory: retrying at once would spin. The
                    // pause ends early when accepting ends.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_BACKOFF);
                    self.service.registry.wait_stopping(backoff);
                }
            }
        }
    }

    /// Takes a waiting place: the listener to accept on, or `None` if this
    /// thread should end instead (enough threads wait, or accepting is over).
    ///
    /// The count only ever moves by one exact step, never up and back down
    /// when there are enough waiting threads: so a thread that ends here has
    /// seen another one really waiting, and whoever takes the last place sees
    /// zero and starts a thread. Someone is always accepting.
    fn enlist(self: &Arc<Self>) -> Option<Arc<ListenSocket>> {
        if self.service.registry.is_stopping() {
            return None;
        }
        let before = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |waiting| {
                (waiting < self.spares.max).then_some(waiting + 1)
            })
            .ok()?;
        let listener = read(&self.listener).clone();
        if listener.is_none() {
            self.delist();
        } else if before >= FLOOR {
            self.retire_extra_later();
        }
        listener
    }

    /// Gives the place back after `accept` returned: how many threads still
    /// wait, or `None` if accepting has ended.
    fn delist(&self) -> Option<usize> {
        let waiting = self.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        if self.service.registry.is_stopping() {
            let _guard = lock(&self.back.0);
            self.back.1.notify_all();
            return None;
        }
        Some(waiting)
    }

    /// Makes sure the timer that sends extra threads home is running.
    fn retire_extra_later(self: &Arc<Self>) {
        if self.retiring.load(Ordering::SeqCst) || self.retiring.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.spawn("healthz-retire", Acceptors::retire).is_err() {
            // No thread to spare for it: the extra threads stay until the next try.
            self.retiring.store(false, Ordering::SeqCst);
        }
    }

    /// The timer: once no connection has come for the quiet period, counted
    /// from the last one, wakes every thread above the floor, which ends;
    /// then it ends too. It also ends when it finds no extra thread to send home.
    fn retire(self: &Arc<Self>) {
        let registry = &self.service.registry;
        loop {
            let last = Duration::from_millis(self.last_accept.load(Ordering::Relaxed));
            let quiet_for = self.epoch.elapsed().saturating_sub(last);
            if let Some(left) = self.spares.quiet.checked_sub(quiet_for) {
                if !left.is_zero() && self.extra() > 0 {
                    if registry.wait_stopping(left) {
                        return; // shutdown wakes everyone
                    }
                    continue;
                }
            }
            self.wake(self.extra());
            // Done, unless a thread came back to `accept` before it could
            // see this timer gone (it starts a new one after).
            self.retiring.store(false, Ordering::SeqCst);
            if self.extra() == 0 || self.retiring.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Threads waiting in `accept` above the floor and not yet woken to leave.
    fn extra(&self) -> usize {
        let waiting = self.waiting.load(Ordering::SeqCst);
        waiting.saturating_sub(FLOOR + self.wakes.pending.load(Ordering::SeqCst))
    }

    /// Wakes `count` threads blocked in `accept` by connecting to the
    /// server; each closes its connection unserved. A connection that cannot
    /// be made (out of descriptors) leaves its thread in `accept`.
    fn wake(&self, count: usize) {
        for _ in 0..count {
            self.wakes.make(&self.wake_addr);
        }
    }

    /// Once the server is stopping (`Registry::stop`): closes the listener
    /// and wakes every thread in `accept`. The listening socket closes as the
    /// last of them comes back.
    pub fn stop(&self) {
        let listener = write(&self.listener).take();
        if !listener.is_some_and(|listener| listener.shut_down()) {
            self.wake(self.waiting.load(Ordering::SeqCst));
        }
    }

    /// Waits until no thread is in `accept` or `deadline` passes; returns
    /// how many still are (their wake-up could not be made).
    pub fn wait_stopped(&self, deadline: Instant) -> usize {
        let mut waiting = 0;
        let guard = lock(&self.back.0);
        let _ = wait_until(&self.back.1, guard, deadline, |_| {
            // Read once: a thread that counts itself now only to find accepting
            // over (and leave) must not be taken for one still in `accept`.
            waiting = self.waiting.load(Ordering::SeqCst);
            waiting == 0
        });
        waiting
    }

    /// Joins every thread that has ended; with `all`, waits for every one.
    pub fn join(&self, all: bool) {
        for thread in std::mem::take(&mut *lock(&self.threads)) {
            if all || thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// `addr`, with a relative Unix socket path made absolute now: wake-ups must
/// reach this socket, whatever directory the process moves to later.
fn absolute(addr: Address) -> Address {
    #[cfg(unix)]
    if let Address::Unix(unix) = &addr {
        if let (Some(path), Ok(dir)) = (unix.as_pathname(), std::env::current_dir()) {
            if path.is_relative() {
                if let Ok(whole) = std::os::unix::net::SocketAddr::from_pathname(dir.join(path)) {
                    return Address::Unix(whole);
                }
            }
        }
    }
    addr
}

/// How long a Unix wake-up's token is.
const TOKEN: usize = 16;

/// The wake-up connections not yet accepted. A TCP one is known by its
/// address, which the accepting thread sees as the peer's. A Unix client
/// has no address: a Unix one sends this server's secret token first, and
/// a connection taken while wake-ups are pending is read (without waiting)
/// for it.
struct Wakes {
    pending: AtomicUsize,
    /// Locked while each wake-up connects (and sends its token), so it is
    /// listed (and its token there) before it can be accepted.
    peers: Mutex<Vec<SocketAddr>>,
    token: [u8; TOKEN],
}

/// What was read from a connection to tell whether it is a wake-up: the
/// start of a real client's request, when it is not.
#[derive(Default)]
struct Early {
    bytes: [u8; TOKEN],
    len: usize,
}

impl Early {
    fn take(&mut self) -> &[u8] {
        let len = std::mem::take(&mut self.len);
        &self.bytes[..len]
    }
}

impl Wakes {
    fn new() -> Wakes {
        // RandomState's keys are random per process: two hashes of them make
        // a token no client can guess.
        let random = RandomState::new();
        let hash = |n: u8| {
            let mut hasher = random.build_hasher();
            hasher.write_u8(n);
            hasher.finish()
        };
        let mut token = [0; TOKEN];
        token[..8].copy_from_slice(&hash(1).to_le_bytes());
        token[8..].copy_from_slice(&hash(2).to_le_bytes());
        Wakes {
            pending: AtomicUsize::new(0),
            peers: Mutex::default(),
            token,
        }
    }

    /// Makes one wake-up connection to `addr` (and closes this end).
    fn make(&self, addr: &Address) {
        let mut peers = lock(&self.peers);
        self.pending.fetch_add(1, Ordering::SeqCst);
        let made = addr.connect(WAKE_TIMEOUT).and_then(|stream| {
            match stream.tcp_local_addr() {
                Some(addr) => peers.push(addr),
                None => (&stream).write_all(&self.token)?,
            }
            Ok(())
        });
        if made.is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether the connection from `peer` is a wake-up (it is then
    /// forgotten). Bytes read from a client to tell go to `early`.
    #[cfg_attr(not(unix), allow(unused_variables))]
    fn take(&self, stream: &Stream, peer: &Address, early: &mut Early) -> bool {
        if self.pending.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let mut peers = lock(&self.peers);
        let woken = match peer {
            Address::Tcp(peer) => match peers.iter().position(|p| p == peer) {
                Some(at) => {
                    peers.swap_remove(at);
                    true
                }
                None => false,
            },
            #[cfg(unix)]
            Address::Unix(_) => *read_now(stream, early) == self.token[..],
        };
        if woken {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            early.len = 0;
        }
        woken
    }
}

/// Reads what has already arrived on `stream`, up to `early`'s size, without waiting.
#[cfg(unix)]
fn read_now<'e>(stream: &Stream, early: &'e mut Early) -> &'e [u8] {
    early.len = 0;
    if stream.set_nonblocking(true).is_ok() {
        let mut reader = stream;
        use std::io::Read;
        while early.len < TOKEN {
            match reader.read(&mut early.bytes[early.len..]) {
                Ok(0) => break,
                Ok(n) => early.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = stream.set_nonblocking(false);
    }
    &early.bytes[..early.len]
}

/// Joins threads that have ended, so their resources go back at once.
fn reap(threads: &mut Vec<JoinHandle<()>>) {
    let mut at = 0;
    while at < threads.len() {
        if threads[at].is_finished() {
            let _ = threads.swap_remove(at).join();
        } else {
            at += 1;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};

    fn unix_peer() -> Address {
        Address::Unix(UnixAddr::from_pathname("/run/test.sock").unwrap())
    }

    #[test]
    fn wake_ups_go_to_a_relative_socket_path_made_absolute() {
        let relative =
            std::path::PathBuf::from(format!("target/hz-wake-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&relative);
        let listener = std::os::unix::net::UnixListener::bind(&relative).unwrap();
        let bound = Address::Unix(listener.local_addr().unwrap());
        let Address::Unix(woken) = absolute(bound) else {
            panic!("still a Unix address")
        };
        let expected = std::env::current_dir().unwrap().join(&relative);
        assert_eq!(woken.as_pathname(), Some(expected.as_path()));
        // A TCP address is left as it is.
        let tcp: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(matches!(absolute(Address::Tcp(tcp)), Address::Tcp(a) if a == tcp));
        std::fs::remove_file(&relative).unwrap();
    }

    #[test]
    fn a_unix_wake_up_is_known_by_its_token_and_a_client_keeps_what_was_read() {
        let wakes = Wakes::new();
        let mut early = Early::default();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let ours = Stream::Unix(ours);

        // No wake-up pending: nothing is read.
        theirs.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        assert!(!wakes.take(&ours, &unix_peer(), &mut early));
        assert_eq!(early.take(), b"");

        // One pending: a client's first bytes are read, kept, and handed on.
        wakes.pending.store(1, Ordering::SeqCst);
        assert!(!wakes.take(&ours, &unix_peer(), &mut early));
        assert_eq!(early.take(), b"GET /healthz HTT");
        assert_eq!(wakes.pending.load(Ordering::SeqCst), 1);

        // A client that has sent nothing yet is not waited for.
        let (quiet, _client) = UnixStream::pair().unwrap();
        let quiet = Stream::Unix(quiet);
        assert!(!wakes.take(&quiet, &unix_peer(), &mut early));
        assert_eq!(early.take(), b"");

        // A token that is not this server's is a client's bytes.
        let (forged, mut forger) = UnixStream::pair().unwrap();
        forger.write_all(&[0; TOKEN]).unwrap();
        assert!(!wakes.take(&Stream::Unix(forged), &unix_peer(), &mut early));
        assert_eq!(early.take(), [0; TOKEN]);

        // The token: a wake-up, forgotten once taken.
        let (woken, mut waker) = UnixStream::pair().unwrap();
        waker.write_all(&wakes.token).unwrap();
        assert!(wakes.take(&Stream::Unix(woken), &unix_peer(), &mut early));
        assert_eq!(early.take(), b"");
        assert_eq!(wakes.pending.load(Ordering::SeqCst), 0);
    }
}
