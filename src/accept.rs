//! The connection threads. A thread without a connection waits in `accept`
//! itself, so the kernel hands each new connection straight to a waiting
//! thread: no hand-off between threads, no second wake-up. The thread then
//! serves that connection for its whole life, and goes back to `accept`, or
//! ends if enough threads wait there already. Whoever takes the last waiting
//! place makes sure another thread starts, so someone is always accepting.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::conn::Buffers;
use crate::event::Event;
use crate::server::{self, Shared};
use crate::sync::{lock, wait_until, Latch};

/// Longest pause after an `accept` error that a retry cannot fix at once.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// The threads of one server and the listener they accept on.
pub(crate) struct Acceptors {
    stack_size: usize,
    /// Most threads waiting in `accept` at once (at least 1).
    max_waiting: usize,
    /// Threads in `accept`, or about to call it. A thread counts itself
    /// before it takes the listener, and `close` removes the listener before
    /// it reads the count: a thread that got the listener is counted, and woken.
    waiting: AtomicUsize,
    /// Set when accepting ends, before the listener is removed; also cuts
    /// short a pause after an `accept` error.
    closed: Latch,
    /// `None` once accepting has ended. A thread holds a clone only while in
    /// `accept`, so the socket closes (and new clients are refused) as soon
    /// as the last thread is back. Read-locked per connection: no writer
    /// until the end, so readers never wait.
    listener: RwLock<Option<Arc<TcpListener>>>,
    /// Every thread started and not yet joined.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// For `wait_all_back`: signalled, under its lock, when a thread comes
    /// back from `accept` after accepting ended.
    back: (Mutex<()>, Condvar),
}

impl Acceptors {
    pub fn new(listener: TcpListener, stack_size: usize, max_waiting: usize) -> Acceptors {
        Acceptors {
            stack_size,
            max_waiting,
            waiting: AtomicUsize::new(0),
            closed: Latch::default(),
            listener: RwLock::new(Some(Arc::new(listener))),
            threads: Mutex::default(),
            back: (Mutex::new(()), Condvar::new()),
        }
    }

    /// Starts a thread that accepts connections and serves them. Does nothing
    /// once accepting has ended.
    pub fn spawn(&self, shared: &Arc<Shared>) -> io::Result<()> {
        let mut threads = lock(&self.threads);
        if self.closed.is_set() {
            return Ok(());
        }
        reap(&mut threads);
        let shared = shared.clone();
        let thread = thread::Builder::new()
            .name("healthz-conn".into())
            .stack_size(self.stack_size)
            .spawn(move || work(&shared))?;
        threads.push(thread);
        Ok(())
    }

    /// Takes a waiting place: the listener to accept on, or `None` if this
    /// thread should end instead (enough threads wait, or accepting is over).
    ///
    /// The count only ever moves by one exact step, never up and back down
    /// when there are enough waiting threads: so a thread that ends here has
    /// seen another one really waiting, and whoever takes the last place sees
    /// zero and starts a thread. Someone is always accepting.
    fn enlist(&self) -> Option<Arc<TcpListener>> {
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |waiting| {
                (waiting < self.max_waiting).then_some(waiting + 1)
            })
            .ok()?;
        let listener = self
            .listener
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if listener.is_none() {
            self.delist();
        }
        listener
    }

    /// Gives the place back after `accept` returned: how many threads still
    /// wait, or `None` if accepting has ended.
    fn delist(&self) -> Option<usize> {
        let waiting = self.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        if self.closed.is_set() {
            let _guard = lock(&self.back.0);
            self.back.1.notify_all();
            return None;
        }
        Some(waiting)
    }

    /// Ends accepting. Returns how many threads may be in `accept`: each needs
    /// a connection to wake it, and will close that connection unserved.
    pub fn close(&self) -> usize {
        self.closed.set();
        *self
            .listener
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.waiting.load(Ordering::SeqCst)
    }

    /// Waits until no thread is in `accept` or `deadline` passes; returns how
    /// many still are.
    pub fn wait_all_back(&self, deadline: Instant) -> usize {
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

    /// Every thread started and not yet joined, for the caller to join.
    pub fn threads(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut lock(&self.threads))
    }
}

/// A thread's life: accept a connection, serve it, and again, while wanted.
fn work(shared: &Arc<Shared>) {
    let acceptors = &shared.acceptors;
    let mut backoff = Duration::ZERO;
    let mut buffers = None;
    while let Some(listener) = acceptors.enlist() {
        let accepted = listener.accept();
        drop(listener);
        let Some(waiting) = acceptors.delist() else {
            return; // woken to stop, or a client too late: closed unserved
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::ZERO;
                if waiting == 0 {
                    // This thread is about to be busy: someone must keep accepting.
                    if let Err(error) = acceptors.spawn(shared) {
                        // Out of threads: refuse this connection rather than stop accepting.
                        shared.events.emit(Event::AcceptError { error });
                        continue;
                    }
                }
                let max_head = shared.config.limits.max_head;
                let buffers = buffers.get_or_insert_with(|| Buffers::new(max_head));
                server::serve_connection(shared, stream, peer, buffers);
            }
            Err(e) if is_client_side(&e) => {}
            Err(error) => {
                shared.events.emit(Event::AcceptError { error });
                // Out of descriptors or memory: retrying at once would spin. The
                // pause ends early when accepting ends.
                backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_BACKOFF);
                acceptors.closed.wait_timeout(backoff);
            }
        }
    }
}

/// Errors about one connection that the client gave up on; the next accept is fine.
fn is_client_side(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
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
