//! The synchronisation helpers the crate shares: poison-proof locking, a
//! one-shot flag that threads can wait on, and a wait with a deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::{Duration, Instant};

/// Locks a mutex, recovering it if a panicking thread poisoned it: every mutex
/// in this crate guards data that is consistent at every step, and user code
/// (the event hook) never runs while one is held.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks, recovering from poison as [`lock`] does.
pub(crate) fn read<T>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks, recovering from poison as [`lock`] does.
pub(crate) fn write<T>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock.write().unwrap_or_else(PoisonError::into_inner)
}

/// A flag that is set once and can be waited for.
#[derive(Default, Debug)]
pub(crate) struct Latch {
    set: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Latch {
    /// Sets the flag and wakes every waiter; false if it was already set.
    pub fn set(&self) -> bool {
        let _guard = lock(&self.lock);
        let first = !self.set.swap(true, Ordering::SeqCst);
        self.changed.notify_all();
        first
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    pub fn wait(&self) {
        let mut guard = lock(&self.lock);
        while !self.is_set() {
            guard = self
                .changed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// True if the flag was set before `timeout` passed.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let guard = lock(&self.lock);
        wait_until(&self.changed, guard, Instant::now() + timeout, |_| {
            self.is_set()
        })
        .1
    }
}

/// Waits on `condvar` until `done` holds for the guarded value or `deadline`
/// passes. Returns the guard and whether `done` held.
pub(crate) fn wait_until<'a, T>(
    condvar: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Instant,
    mut done: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    loop {
        if done(&mut guard) {
            return (guard, true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (guard, false);
        }
        guard = condvar
            .wait_timeout(guard, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// What wakes a thread that sleeps until something changes, a time comes,
/// or it is told to stop: a poke, or stop.
#[derive(Default)]
pub(crate) struct Wake {
    state: Mutex<Woken>,
    changed: Condvar,
}

#[derive(Default)]
struct Woken {
    poked: bool,
    stopped: bool,
}

impl Wake {
    pub fn poke(&self) {
        lock(&self.state).poked = true;
        self.changed.notify_all();
    }

    pub fn stop(&self) {
        lock(&self.state).stopped = true;
        self.changed.notify_all();
    }

    /// Waits for a poke, for `timeout` (forever without one), or for stop;
    /// false once stopped.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut woken = lock(&self.state);
        let done = |w: &mut Woken| w.poked || w.stopped;
        woken = match deadline {
            Some(deadline) => wait_until(&self.changed, woken, deadline, done).0,
            None => {
                while !done(&mut woken) {
                    woken = self
                        .changed
                        .wait(woken)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                woken
            }
        };
        woken.poked = false;
        !woken.stopped
    }
}

/// Sets a latch when dropped, however the scope ends (a panic included):
/// how a thread says it has finished.
pub(crate) struct SetOnDrop<'a>(pub &'a Latch);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set();
    }
}
