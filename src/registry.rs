//! The open connections and what each one is doing: what the connection cap
//! and shutdown look at. It also holds the server's one stop signal: once
//! [`Registry::stop`] is called, accepting is over, no connection registers,
//! and every connection closes after the answer it is writing.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::socket::Stream;
use crate::sync::{lock, wait_until, Latch};

/// What a connection's thread is doing, as the rest of the server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Waiting for the first byte of a request, or lingering after the last
    /// answer: closed at once by shutdown, evicted first at the cap.
    Idle = 0,
    /// Receiving a request head or body: in flight for shutdown, but evicted
    /// with the idle ones at the cap (a half-sent request is no probe yet).
    Reading = 1,
    /// Answering a request (its checks run here) or writing the answer: in
    /// flight for shutdown, evicted only when every connection is busy.
    Busy = 2,
    /// Closed by the server; the thread ends at its next read or write.
    Closed = 3,
    /// Closed by force at the shutdown deadline while in flight: what shutdown
    /// reports as cut, unless the thread finds its answers had all been
    /// written (it was only on its way back to idle) and makes it `Closed`.
    Cut = 4,
}

impl State {
    fn from_u8(value: u8) -> State {
        match value {
            0 => State::Idle,
            1 => State::Reading,
            2 => State::Busy,
            3 => State::Closed,
            _ => State::Cut,
        }
    }

    fn is_closed(self) -> bool {
        matches!(self, State::Closed | State::Cut)
    }
}

/// One connection as the server sees it from outside its thread: the socket
/// (to close it) and what the thread is doing (to decide whether it may be).
pub(crate) struct Slot {
    pub stream: Stream,
    pub peer: Address,
    state: AtomicU8,
    /// When it entered its state, in ms since the registry was made.
    since: AtomicU64,
}

impl Slot {
    /// Which connection to evict first at the cap: the smallest key. Those
    /// waiting on their client (idle or reading) go first, longest waiting
    /// first; a busy one only when all are busy, the one stuck longest first.
    fn eviction_key(&self) -> Option<(bool, u64)> {
        let since = self.since.load(Ordering::Relaxed);
        match self.state() {
            State::Idle | State::Reading => Some((false, since)),
            State::Busy => Some((true, since)),
            State::Closed | State::Cut => None,
        }
    }

    fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::SeqCst))
    }

    pub fn is_closed(&self) -> bool {
        self.state().is_closed()
    }

    /// Moves to the state `to` gives for the state now (`None`: stays);
    /// true if it moved.
    fn change(&self, to: impl Fn(State) -> Option<State>) -> bool {
        self.state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                to(State::from_u8(s)).map(|to| to as u8)
            })
            .is_ok()
    }

    /// Closes the socket, marked as `to(state)` says, unless it says `None`
    /// (or the socket is closed already); the thread then ends.
    fn close(&self, to: impl Fn(State) -> Option<State>) -> bool {
        let closed = self.change(|s| if s.is_closed() { None } else { to(s) });
        if closed {
            // Wakes the thread from a blocked read or write.
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        closed
    }
}

/// A connection's place in the registry, held by its thread; leaving it
/// (however the thread ends) removes the connection.
pub(crate) struct Registered<'a> {
    registry: &'a Registry,
    id: u64,
    slot: Arc<Slot>,
}

impl Registered<'_> {
    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    /// Moves the connection to `state`, unless the server has closed it (then
    /// false: the thread ends).
    ///
    /// `SeqCst`, paired with the stop signal: a thread that publishes `Idle`
    /// and then finds the registry open is sure to be seen idle, and closed,
    /// by shutdown.
    pub fn enter(&self, state: State) -> bool {
        let moved = self.slot.change(|s| (!s.is_closed()).then_some(state));
        if moved {
            let now = self.registry.millis();
            self.slot.since.store(now, Ordering::Relaxed);
        }
        moved
    }

    /// Every answer so far is written in full: idle from here, unless the
    /// server has closed the connection (then false). One cut at the
    /// shutdown deadline in the meantime was not cut after all: its answers
    /// got out, and the client saw nothing interrupted.
    pub fn answered(&self) -> bool {
        if self.enter(State::Idle) {
            return true;
        }
        self.slot
            .change(|s| (s == State::Cut).then_some(State::Closed));
        false
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut slots = self.registry.slots();
        if self.slot.state() == State::Cut {
            slots.cut += 1;
        }
        slots.live.remove(&self.id);
        // Only shutdown waits for the registry to empty, and only once it is closed.
        if slots.live.is_empty() && self.registry.is_stopping() {
            self.registry.emptied.notify_all();
        }
    }
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    live: HashMap<u64, Arc<Slot>>,
    /// Connections that left cut at the shutdown deadline.
    cut: usize,
}

/// Every open connection of one server, and whether the server is stopping.
pub(crate) struct Registry {
    max: usize,
    epoch: Instant,
    /// Set once, when accepting ends: the server's stop signal.
    stopping: Latch,
    slots: Mutex<Slots>,
    /// Signalled when the last connection leaves a closed registry.
    emptied: Condvar,
}

impl Registry {
    /// A registry that holds at most `max` connections (at least 1).
    pub fn new(max: usize) -> Registry {
        Registry {
            max,
            epoch: Instant::now(),
            stopping: Latch::default(),
            slots: Mutex::default(),
            emptied: Condvar::new(),
        }
    }

    /// Registers a new connection, idle. At the cap, the connection that has
    /// waited longest on its client is closed to make room (`evicted` hears
    /// its peer). `None` once the server is stopping: the stream is dropped
    /// unserved.
    pub fn register(
        &self,
        stream: Stream,
        peer: Address,
        mut evicted: impl FnMut(&Address),
    ) -> Option<Registered<'_>> {
        let mut slots = self.slots();
        // Checked under the lock that `close_idle` takes: a connection is
        // either refused here or seen there.
        if self.is_stopping() {
            return None;
        }
        while slots.live.len() >= self.max {
            let Some(slot) = eviction_candidate(&slots.live).and_then(|id| slots.live.remove(&id))
            else {
                break;
            };
            slot.close(|_| Some(State::Closed));
            drop(slots);
            evicted(&slot.peer);
            slots = self.slots();
        }
        let slot = Arc::new(Slot {
            stream,
            peer,
            state: AtomicU8::new(State::Idle as u8),
            since: AtomicU64::new(self.millis()),
        });
        let id = slots.next_id;
        slots.next_id += 1;
        slots.live.insert(id, slot.clone());
        Some(Registered {
            registry: self,
            id,
            slot,
        })
    }

    /// The server's one stop signal: accepting ends, no connection
    /// registers from now on, and each closes after the answer it is writing.
    /// Set under the lock that `register` checks it under.
    pub fn stop(&self) {
        let _slots = self.slots();
        self.stopping.set();
    }

    /// Whether the server is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_set()
    }

    /// Waits until the server is stopping or `timeout` passes; true if it is.
    pub fn wait_stopping(&self, timeout: Duration) -> bool {
        self.stopping.wait_timeout(timeout)
    }

    /// Closes every idle connection; the busy ones finish their answer first.
    pub fn close_idle(&self) {
        // Closed outside the lock, which each closed connection's thread takes as it leaves.
        let live: Vec<Arc<Slot>> = self.slots().live.values().cloned().collect();
        for slot in &live {
            slot.close(|s| (s == State::Idle).then_some(State::Closed));
        }
    }

    /// Closes every connection, whatever it is doing: those in flight are
    /// cut (see [`cut`](Registry::cut)).
    pub fn close_all(&self) {
        let live: Vec<Arc<Slot>> = self.slots().live.values().cloned().collect();
        for slot in &live {
            slot.close(|s| match s {
                State::Idle => Some(State::Closed),
                _ => Some(State::Cut),
            });
        }
    }

    /// Connections cut in flight by [`close_all`](Registry::close_all): those
    /// that left cut, and those that have not left yet.
    pub fn cut(&self) -> usize {
        let slots = self.slots();
        let staying = slots.live.values().filter(|s| s.state() == State::Cut);
        slots.cut + staying.count()
    }

    /// Waits until no connection is left or `deadline` passes; returns how
    /// many are left.
    pub fn wait_empty(&self, deadline: Instant) -> usize {
        let slots = self.slots();
        let (slots, _) = wait_until(&self.emptied, slots, deadline, |s| s.live.is_empty());
        slots.live.len()
    }

    /// Milliseconds since the registry was made: a cheap clock for eviction order.
    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        lock(&self.slots)
    }
}

/// The connection to evict at the cap (see [`Slot::eviction_key`]).
fn eviction_candidate(live: &HashMap<u64, Arc<Slot>>) -> Option<u64> {
    live.iter()
        .filter_map(|(id, slot)| slot.eviction_key().map(|key| (key, *id)))
        .min()
        .map(|(_, id)| id)
}
