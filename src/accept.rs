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
//! the same way.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::conn::{self, Buffers, Service};
use crate::error::client_went_away;
use crate::event::Event;
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
    pub stack_size: usize,
}

/// The threads of one server and the listener they accept on.
pub(crate) struct Acceptors {
    service: Arc<Service>,
    spares: Spares,
    /// Where wake-up connections go.
    wake_addr: SocketAddr,
    /// Threads in `accept`, or about to call it. A thread counts itself
    /// before it takes the listener, and `stop` removes the listener before
    /// it reads the count: a thread that got the listener is counted, and woken.
    waiting: AtomicUsize,
    /// `None` once accepting has ended. A thread holds a clone only while in
    /// `accept`, so the socket closes (and new clients are refused) as soon
    /// as the last thread is back. Read-locked per connection: no writer
    /// until the end, so readers never wait.
    listener: RwLock<Option<Arc<TcpListener>>>,
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
    /// Starts serving `listener` with one thread waiting in `accept`.
    pub fn start(
        service: Arc<Service>,
        listener: TcpListener,
        spares: Spares,
    ) -> io::Result<Arc<Acceptors>> {
        let wake_addr = loopback(listener.local_addr()?);
        let acceptors = Arc::new(Acceptors {
            service,
            spares,
            wake_addr,
            waiting: AtomicUsize::new(0),
            listener: RwLock::new(Some(Arc::new(listener))),
            threads: Mutex::default(),
            back: (Mutex::new(()), Condvar::new()),
            wakes: Wakes::default(),
            retiring: AtomicBool::new(false),
        });
        acceptors.spawn("healthz-conn", Acceptors::work)?;
        Ok(acceptors)
    }

    /// Starts a thread of this server. Does nothing once accepting has ended.
    fn spawn(self: &Arc<Self>, name: &str, body: fn(&Arc<Acceptors>)) -> io::Result<()> {
        let mut threads = lock(&self.threads);
        if self.service.registry.is_closed() {
            return Ok(());
        }
        reap(&mut threads);
        let acceptors = self.clone();
        let thread = thread::Builder::new()
            .name(name.into())
            .stack_size(self.spares.stack_size)
            .spawn(move || body(&acceptors))?;
        threads.push(thread);
        Ok(())
    }

    /// A connection thread's life: accept a connection, serve it, and again,
    /// while wanted.
    fn work(self: &Arc<Self>) {
        let mut backoff = Duration::ZERO;
        let mut buffers = Buffers::default();
        while let Some(listener) = self.enlist() {
            let accepted = listener.accept();
            drop(listener);
            let Some(waiting) = self.delist() else {
                return; // woken to stop, or a client too late: closed unserved
            };
            match accepted {
                Ok((stream, peer)) if self.wakes.take(peer) => {
                    drop(stream);
                    // Sent home; the last thread waiting stays, whatever came meanwhile.
                    if waiting >= FLOOR {
                        return;
                    }
                }
                Ok((stream, peer)) => {
                    let at = Instant::now();
                    backoff = Duration::ZERO;
                    if waiting == 0 {
                        // This thread is about to be busy: someone must keep accepting.
                        if let Err(error) = self.spawn("healthz-conn", Acceptors::work) {
                            // Out of threads: refuse this connection rather than stop accepting.
                            self.service.events.emit(Event::AcceptError { error });
                            continue;
                        }
                    }
                    conn::serve(&self.service, stream, peer, at, &mut buffers);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted || client_went_away(&e) => {}
                Err(error) => {
                    self.service.events.emit(Event::AcceptError { error });
                    // Out of descriptors or memory: retrying at once would spin. The
                    // pause ends early when accepting ends.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_BACKOFF);
                    self.service.registry.wait_closed(backoff);
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
    fn enlist(self: &Arc<Self>) -> Option<Arc<TcpListener>> {
        if self.service.registry.is_closed() {
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
        if self.service.registry.is_closed() {
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

    /// The timer: once no connection has come for the quiet period, wakes
    /// every thread above the floor, which ends; then it ends too. It also
    /// ends when it finds no extra thread to send home.
    fn retire(self: &Arc<Self>) {
        let (registry, counters) = (&self.service.registry, &self.service.counters);
        let mut seen = counters.connections();
        loop {
            if registry.wait_closed(self.spares.quiet) {
                return; // shutdown wakes everyone
            }
            let accepted = counters.connections();
            if accepted != seen && self.extra() > 0 {
                seen = accepted;
                continue;
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
            let mut peers = lock(&self.wakes.peers);
            self.wakes.pending.fetch_add(1, Ordering::SeqCst);
            match TcpStream::connect_timeout(&self.wake_addr, WAKE_TIMEOUT)
                .and_then(|stream| stream.local_addr())
            {
                Ok(addr) => peers.push(addr),
                Err(_) => {
                    self.wakes.pending.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Ends accepting: sets the server's stop signal, closes the listener,
    /// and wakes every thread in `accept`. The listening socket closes as the
    /// last of them comes back.
    pub fn stop(&self) {
        self.service.registry.close();
        *write(&self.listener) = None;
        self.wake(self.waiting.load(Ordering::SeqCst));
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

/// The wake-up connections not yet accepted, by their local address, which
/// the accepting thread sees as the peer's.
#[derive(Default)]
struct Wakes {
    pending: AtomicUsize,
    /// Locked while each wake-up connects, so it is listed before it can be accepted.
    peers: Mutex<Vec<SocketAddr>>,
}

impl Wakes {
    /// Whether `peer` is a wake-up connection (it is then forgotten).
    fn take(&self, peer: SocketAddr) -> bool {
        if self.pending.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let mut peers = lock(&self.peers);
        let Some(at) = peers.iter().position(|p| *p == peer) else {
            return false;
        };
        peers.swap_remove(at);
        self.pending.fetch_sub(1, Ordering::SeqCst);
        true
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
