//! Connection threads: each connection gets a thread of its own for its whole
//! life, but the thread may be a spare one that served an earlier connection,
//! so most accepts pay no thread creation. Spares wait without polling and
//! leave after a while unused.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::sync::{lock, wait_until};

/// A connection's work, run once on a thread of its own.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Threads that run one job at a time and wait as spares in between.
pub(crate) struct Pool {
    name: String,
    stack_size: usize,
    max_spare: usize,
    spare_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Threads waiting for a job, the most recently parked last.
    spare: Vec<Arc<Handoff>>,
    /// Every thread started and not yet joined.
    threads: Vec<JoinHandle<()>>,
    closed: bool,
}

/// Where a spare thread waits for its next job.
#[derive(Default)]
struct Handoff {
    next: Mutex<Option<Message>>,
    arrived: Condvar,
}

enum Message {
    Run(Job),
    Exit,
}

impl Handoff {
    fn give(&self, message: Message) {
        *lock(&self.next) = Some(message);
        self.arrived.notify_one();
    }

    /// The next message, or `None` if none came before `deadline`.
    fn wait_until(&self, deadline: Instant) -> Option<Message> {
        let next = lock(&self.next);
        wait_until(&self.arrived, next, deadline, |next| next.is_some())
            .0
            .take()
    }
}

impl Pool {
    pub fn new(
        name: &str,
        stack_size: usize,
        max_spare: usize,
        spare_timeout: Duration,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            name: name.to_string(),
            stack_size,
            max_spare,
            spare_timeout,
            state: Mutex::default(),
        })
    }

    /// Runs `job` on a spare thread, or on a new one if none is waiting.
    pub fn execute(self: &Arc<Pool>, job: Job) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(io::Error::other("healthz: the server is shutting down"));
        }
        if let Some(spare) = state.spare.pop() {
            spare.give(Message::Run(job));
            return Ok(());
        }
        reap(&mut state.threads);
        let pool = self.clone();
        let thread = thread::Builder::new()
            .name(self.name.clone())
            .stack_size(self.stack_size)
            .spawn(move || pool.work(job))?;
        state.threads.push(thread);
        Ok(())
    }

    /// A thread's life: its first job, then more while it is wanted as a spare.
    fn work(&self, first: Job) {
        let handoff = Arc::new(Handoff::default());
        let mut job = first;
        loop {
            job();
            {
                let mut state = lock(&self.state);
                if state.closed || state.spare.len() >= self.max_spare {
                    return;
                }
                state.spare.push(handoff.clone());
            }
            let message = match handoff.wait_until(Instant::now() + self.spare_timeout) {
                Some(message) => message,
                None => {
                    let mut state = lock(&self.state);
                    match state.spare.iter().position(|h| Arc::ptr_eq(h, &handoff)) {
                        Some(at) => {
                            // Unused for a while: leave. Nothing was handed to it.
                            state.spare.remove(at);
                            return;
                        }
                        // Taken off the list under this lock, so its job is already there.
                        None => {
                            drop(state);
                            match handoff.wait_until(Instant::now() + Duration::from_secs(3600)) {
                                Some(message) => message,
                                None => return,
                            }
                        }
                    }
                }
            };
            match message {
                Message::Run(next) => job = next,
                Message::Exit => return,
            }
        }
    }

    /// Stops taking jobs, tells the spares to leave, and hands over every
    /// thread for the caller to join.
    pub fn close(&self) -> Vec<JoinHandle<()>> {
        let mut state = lock(&self.state);
        state.closed = true;
        for spare in state.spare.drain(..) {
            spare.give(Message::Exit);
        }
        std::mem::take(&mut state.threads)
    }
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
