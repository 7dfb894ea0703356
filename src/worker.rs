//! Worker liveness: a [`Heartbeat`] for a loop that must keep making
//! progress, and a [`ThreadGuard`] for a thread that must not die. Both are
//! liveness entries of a [`Health`]; this file holds their handles and the
//! panic hook that gives a guard its thread's panic message (the state each
//! shares with the health state is in `health/pulse.rs`).

use std::cell::RefCell;
use std::fmt;
use std::panic;
use std::sync::{Arc, Once};
use std::thread;
use std::time::Duration;

use crate::error::Error;
use crate::health::{shorten, Health, Holder, Pulse};

/// A loop's promise to make progress: [`beat`](Heartbeat::beat) at least once
/// every period, or liveness fails (`/livez` answers 503, naming it and how
/// overdue it is, and systemd's watchdog stops being pinged). The first
/// period counts from [`Health::heartbeat`].
///
/// `beat` is one read of the monotonic clock and one atomic store (plus one
/// atomic load): cheap enough for a hot loop. A server without heartbeats
/// pays nothing for them.
///
/// Clones beat the same heartbeat. **Dropping it does not unregister it**:
/// a worker whose thread died with its heartbeat stops beating, and
/// liveness fails, which is the point. A worker that ends on purpose says so
/// with [`retire`](Heartbeat::retire). Once every clone is gone, the name
/// is free again: a restarted worker registers it anew, replacing the old one.
///
/// ```
/// use std::time::Duration;
///
/// let health = healthz::Health::new();
/// let consumer = health.heartbeat("consumer", Duration::from_secs(30))?;
/// let worker = std::thread::spawn(move || {
///     for _message in 0..3 {
///         // ... handle one message ...
///         consumer.beat();
///     }
///     consumer.retire(); // done on purpose: no longer part of liveness
/// });
/// worker.join().unwrap();
/// assert!(health.is_alive());
/// # Ok::<(), healthz::Error>(())
/// ```
///
/// Dropped at once, it would fail liveness a period later; the compiler says so:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), healthz::Error> {
/// let health = healthz::Health::new();
/// health.heartbeat("loop", std::time::Duration::from_secs(2))?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a heartbeat nobody beats fails liveness one period from now: keep it in the loop and call beat()"]
pub struct Heartbeat {
    health: Health,
    name: Arc<str>,
    pulse: Arc<Pulse>,
    holder: Holder,
}

impl Heartbeat {
    fn new(health: Health, name: &str, (pulse, holder): (Arc<Pulse>, Holder)) -> Heartbeat {
        Heartbeat {
            health,
            name: name.into(),
            pulse,
            holder,
        }
    }

    /// Says the loop made progress: the period starts again from now. A beat
    /// that ends an overdue spell makes liveness pass at once.
    pub fn beat(&self) {
        self.pulse.beat();
    }

    /// The name it was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Unregisters it: the worker ended on purpose, and liveness no longer
    /// waits for its beats. Other clones stop counting too.
    pub fn retire(self) {
        self.health.remove(&self.holder);
    }
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat")
            .field("name", &self.name)
            .field("period", &self.pulse.period)
            .field("since_last_beat", &self.pulse.since_last())
            .finish()
    }
}

/// A worker thread's promise not to end unannounced: held by the thread, it
/// fails liveness when the thread unwinds from a panic (the reason is the
/// panic's message, shown as [`Server::show_reasons`](crate::Server::show_reasons)
/// allows) or when it is dropped without [`finish`](ThreadGuard::finish).
/// The rest of the process goes on serving, and `/livez` answers 503 until
/// a restart. It costs nothing while the thread runs; works in spawned and
/// scoped threads alike.
///
/// The panic message comes from a panic hook that healthz adds, once, in
/// front of the one in place (which still runs); a hook set later in its
/// place leaves the reason as `panicked`.
///
/// ```
/// let health = healthz::Health::new();
/// let guard = health.thread_guard("indexer")?;
/// std::thread::scope(|s| {
///     s.spawn(move || {
///         // ... the worker's loop; a panic here fails liveness ...
///         guard.finish(); // ended on purpose
///     });
/// });
/// assert!(health.is_alive());
/// # Ok::<(), healthz::Error>(())
/// ```
///
/// Dropped at once, it would fail liveness for good; the compiler says so:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), healthz::Error> {
/// let health = healthz::Health::new();
/// health.thread_guard("worker")?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a guard dropped at once fails liveness for good: move it into the thread it guards"]
pub struct ThreadGuard {
    health: Health,
    name: String,
    holder: Holder,
    finished: bool,
}

impl ThreadGuard {
    fn new(health: Health, name: &str, holder: Holder) -> ThreadGuard {
        record_panics();
        ThreadGuard {
            health,
            name: name.to_string(),
            holder,
            finished: false,
        }
    }

    /// The thread ends on purpose: the guard is unregistered, and liveness
    /// no longer counts it.
    pub fn finish(mut self) {
        self.finished = true;
        self.health.remove(&self.holder);
    }

    /// The name it was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let reason = if thread::panicking() {
            let message = LAST_PANIC.with(|last| last.borrow_mut().take());
            shorten(format!(
                "panicked: {}",
                message.as_deref().unwrap_or("no message")
            ))
        } else {
            "the thread ended without finish()".to_string()
        };
        self.health.guard_failed(&self.holder, reason);
    }
}

impl fmt::Debug for ThreadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadGuard")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The message of the panic this thread is unwinding from, if any.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Puts a hook in front of the panic hook in place, once per process, that
/// keeps each panic's message for the panicking thread's guard.
fn record_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned());
            // A thread being torn down may have no thread-locals left.
            let _ = LAST_PANIC.try_with(|last| *last.borrow_mut() = message);
            previous(info);
        }));
    });
}

impl Health {
    /// Registers a liveness heartbeat called `name`: liveness fails when no
    /// [`beat`](Heartbeat::beat) has come for `period` (the first period counts
    /// from now), and passes again at the next beat. Names and errors as for
    /// [`target`](Health::target); a zero period or one over a year is
    /// `InvalidInput`.
    ///
    /// # Errors
    ///
    /// As for [`target`](Health::target); `InvalidInput` for a zero period or
    /// one over a year; the operating system's kind if the thread that watches
    /// heartbeats cannot start.
    pub fn heartbeat(&self, name: &str, period: Duration) -> Result<Heartbeat, Error> {
        let held = self.add_heartbeat(name, period)?;
        Ok(Heartbeat::new(self.clone(), name, held))
    }

    /// Registers a thread guard called `name`, alive until the thread that
    /// holds it panics or drops it without [`finish`](ThreadGuard::finish).
    /// Names and errors as for [`target`](Health::target): a dead guard's
    /// name is free again, so a supervisor that restarts the thread guards
    /// the new one under the same name, and liveness passes again.
    ///
    /// ```
    /// let health = healthz::Health::new();
    /// let first = health.thread_guard("worker")?;
    /// drop(first); // its thread died
    /// assert!(!health.is_alive());
    /// let restarted = health.thread_guard("worker")?;
    /// assert!(health.is_alive());
    /// restarted.finish();
    /// # Ok::<(), healthz::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`target`](Health::target): `InvalidInput` for an invalid name or
    /// one too many, `AlreadyExists` for a name another live handle holds.
    pub fn thread_guard(&self, name: &str) -> Result<ThreadGuard, Error> {
        let held = self.add_guard(name)?;
        Ok(ThreadGuard::new(self.clone(), name, held))
    }
}
