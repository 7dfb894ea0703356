//! Shared health state. No I/O and no HTTP: a flag that servers read and
//! the service flips.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::{deliver, Event, Hook};
use crate::lock;

/// Whether the service is ready to take traffic, shared by every clone.
///
/// It starts **not ready**, as Dapr's health server does: a process is not
/// ready until it says so. Clone it freely; all clones are one state.
///
/// Flipping it is a single atomic swap, and the very next request a server
/// answers sees the new state: there is no caching anywhere. Only an actual
/// change (not a repeated `ready()`) takes a lock, to report
/// [`Event::ReadinessChanged`] once to the servers' event hooks.
///
/// ```
/// let health = healthz::Health::new();
/// assert!(!health.is_ready());
/// health.ready();
/// assert!(health.is_ready());
/// health.not_ready();
/// assert!(!health.is_ready());
/// ```
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    ready: AtomicBool,
    watchers: Mutex<Watchers>,
}

/// The event hooks of the servers that serve this state, and the last state they were told.
#[derive(Default)]
struct Watchers {
    reported: bool,
    next_id: u64,
    hooks: Vec<(u64, Hook)>,
}

/// Removes a server's hook from a [`Health`] when the server stops.
pub(crate) struct Watch {
    health: Health,
    id: u64,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.health
            .watchers()
            .hooks
            .retain(|(id, _)| *id != self.id);
    }
}

impl Health {
    /// A new state, not ready.
    pub fn new() -> Health {
        Health::default()
    }

    /// Marks the service ready: health endpoints answer 200.
    pub fn ready(&self) {
        self.set_ready(true);
    }

    /// Marks the service not ready: health endpoints answer 503.
    pub fn not_ready(&self) {
        self.set_ready(false);
    }

    /// Sets readiness from a condition.
    ///
    /// ```
    /// let health = healthz::Health::new();
    /// let connected_to_database = true;
    /// health.set_ready(connected_to_database);
    /// assert!(health.is_ready());
    /// ```
    pub fn set_ready(&self, ready: bool) {
        if self.inner.ready.swap(ready, Ordering::SeqCst) != ready {
            self.report();
        }
    }

    /// Whether the service is ready now.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// Tells the hooks about a change, once per real change even when flips race:
    /// under the lock, the current state is compared with the last one reported.
    fn report(&self) {
        let (ready, hooks) = {
            let mut watchers = self.watchers();
            let ready = self.is_ready();
            if ready == watchers.reported {
                return;
            }
            watchers.reported = ready;
            let hooks: Vec<Hook> = watchers
                .hooks
                .iter()
                .map(|(_, hook)| hook.clone())
                .collect();
            (ready, hooks)
        };
        // Outside the lock, so a hook may itself flip readiness.
        let event = Event::ReadinessChanged { ready };
        for hook in &hooks {
            deliver(hook, &event);
        }
    }

    /// Registers a server's hook for readiness changes until the returned guard drops.
    pub(crate) fn watch(&self, hook: Hook) -> Watch {
        let mut watchers = self.watchers();
        let id = watchers.next_id;
        watchers.next_id += 1;
        watchers.hooks.push((id, hook));
        Watch {
            health: self.clone(),
            id,
        }
    }

    fn watchers(&self) -> MutexGuard<'_, Watchers> {
        lock(&self.inner.watchers)
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("ready", &self.is_ready())
            .finish()
    }
}
