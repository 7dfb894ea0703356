//! The connection threads. A thread without a connection waits in `accept`
//! itself, so the kernel hands each new connection straight to a waiting
//! thread: no hand-off between threads, no second wake-up. The thread serves
//! that connection for its whole life, then goes back to `accept`, or ends if
//! enough threads wait there already. Whoever takes the last waiting place
//! starts another thread first, so someone is always accepting.
//!
//! The kernel sends extra threads home, and wakes them all at shutdown: on
//! Linux, `accept` gives up after the quiet period (a receive timeout on the
//! listening socket), and a thread that finds another one still waiting
//! ends; shutdown(2) on the listening socket wakes every thread at once.
//! Elsewhere spare threads wait until shutdown, which wakes each one by
//! connecting to the server (such a connection is closed unserved).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::conn::{self, Buffers, Service};
use crate::error::{client_went_away, invalid, is_timeout, positive};
use crate::event::Event;
use crate::socket::ListenSocket;
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
    /// How long a thread above [`FLOOR`] waits in `accept` for a connection
    /// before it ends (where the system can time `accept` out).
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
    /// Most threads waiting in `accept` at once.
    max_waiting: usize,
    /// The stack size of every thread of the server.
    stack_size: usize,
    /// Where shutdown's wake-up connections go, where shutdown(2) cannot wake
    /// `accept` (a relative socket path made absolute).
    wake_addr: Address,
    /// Threads in `accept`, or about to call it.
    waiting: AtomicUsize,
    /// The listening socket, shared by the threads in `accept`. Each holds a
    /// clone only while there, and `stop` takes this one away, so the socket
    /// closes (and new clients are refused) as soon as the last one is back.
    /// Read-locked per connection: no writer until the end, so readers never wait.
    listener: RwLock<Option<Arc<ListenSocket>>>,
    /// Every thread started and not yet joined.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// For `stop`: signalled, under its lock, when a thread comes back from
    /// `accept` after accepting ended.
    back: (Mutex<()>, Condvar),
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
        // Where it cannot be set, spare threads stay until shutdown.
        listener.set_accept_timeout(spares.quiet);
        let acceptors = Arc::new(Acceptors {
            service,
            max_waiting: spares.max,
            stack_size,
            wake_addr,
            waiting: AtomicUsize::new(0),
            listener: RwLock::new(Some(Arc::new(listener))),
            threads: Mutex::default(),
            back: (Mutex::new(()), Condvar::new()),
        });
        acceptors.spawn()?;
        Ok(acceptors)
    }

    /// Starts a connection thread. Does nothing once the server is stopping.
    fn spawn(self: &Arc<Self>) -> io::Result<()> {
        let mut threads = lock(&self.threads);
        if self.service.registry.is_stopping() {
            return Ok(());
        }
        // An ended thread's handle is let go: detaching it frees what it held.
        threads.retain(|thread| !thread.is_finished());
        let acceptors = self.clone();
        let thread = thread::Builder::new()
            .name("healthz-conn".into())
            .stack_size(self.stack_size)
            .spawn(move || acceptors.work())?;
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
                Ok((stream, peer)) => {
                    let at = Instant::now();
                    backoff = Duration::ZERO;
                    if waiting == 0 {
                        // This thread is about to be busy: someone must keep accepting.
                        if let Err(error) = self.spawn() {
                            // Out of threads: refuse this connection rather than stop accepting.
                            self.service.events.emit(Event::AcceptError { error });
                            continue;
                        }
                    }
                    conn::serve(&self.service, stream, peer, at, &mut buffers);
                }
                // No connection for the quiet period: an extra thread goes home.
                // (Winsock, as wine runs it, sometimes says `WouldBlock` for a
                // pending connection that went away: that thread may go too.)
                Err(e) if is_timeout(&e) => {
                    if waiting >= FLOOR {
                        return;
                    }
                }
                // A pending connection that went away before it was taken is no fault.
                Err(e) if e.kind() == io::ErrorKind::Interrupted || client_went_away(&e) => {}
                Err(error) => {
                    self.service.events.emit(Event::AcceptError { error });
                    // Out of descriptors or memory: retrying at once would spin. The
                    // pause ends early when the server stops.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_BACKOFF);
                    self.service.registry.wait_stopping(backoff);
                }
            }
        }
    }

    /// Takes a waiting place: the listener to accept on, or `None` if this
    /// thread should end instead (enough threads wait, or the server is
    /// stopping).
    ///
    /// The count only ever moves by one exact step, never up and back down
    /// when there are enough waiting threads: so a thread that ends here has
    /// seen another one really waiting, and whoever takes the last place sees
    /// zero and starts a thread. Someone is always accepting.
    fn enlist(&self) -> Option<Arc<ListenSocket>> {
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |waiting| {
                (waiting < self.max_waiting).then_some(waiting + 1)
            })
            .ok()?;
        // `None` once `stop` took it: it reads the count after, so a thread
        // that got the listener is counted, and woken.
        let listener = read(&self.listener).clone();
        if listener.is_none() {
            self.delist();
        }
        listener
    }

    /// Gives the place back after `accept` returned: how many threads still
    /// wait, or `None` if the server is stopping.
    fn delist(&self) -> Option<usize> {
        let waiting = self.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        if self.service.registry.is_stopping() {
            let _guard = lock(&self.back.0);
            self.back.1.notify_all();
            return None;
        }
        Some(waiting)
    }

    /// Once the server is stopping (`Registry::stop`): wakes every thread in
    /// `accept`, and lets the listening socket close as the last of them
    /// comes back.
    pub fn stop(&self) {
        let listener = write(&self.listener).take();
        if !listener.is_some_and(|listener| listener.shut_down()) {
            for _ in 0..self.waiting.load(Ordering::SeqCst) {
                // One that cannot be made (out of descriptors) leaves its thread in `accept`.
                let _ = self.wake_addr.connect(WAKE_TIMEOUT);
            }
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::net::SocketAddr;

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
}
