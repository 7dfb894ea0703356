//! Who hears of health changes: the event hooks of the servers that serve
//! this state, and the threads that follow it (systemd's notifier). A change
//! of overall readiness or liveness is told to hooks once, and a check's pass
//! or fail once per flip; followers are woken by **every** change, whether or
//! not the verdict flips (tokio's `watch`: a waiter cannot sleep through a
//! change). Hooks run outside the lock, and hear events in the order of the
//! changes they tell: whichever thread tells them tells them all, in turn.

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};

use super::{Health, Kind, PerKind};
use crate::event::{deliver, Event, Hook, ItemKind};
use crate::sync::{lock, Wake};

/// Who listens, and what the hooks were last told.
pub(super) struct Watchers {
    /// Per kind: the last overall state reported.
    reported: PerKind<bool>,
    next_id: u64,
    listeners: Vec<(u64, Listener)>,
    /// Events not told yet, in the order of the changes they tell.
    queue: VecDeque<Event>,
    /// Whether a thread is telling the queue to the hooks now.
    telling: bool,
}

/// A server's event hook, or a thread to wake on any change of a kind.
enum Listener {
    Hook(Hook),
    Follower(Kind, Arc<Wake>),
}

impl Default for Watchers {
    /// Nobody told anything yet: as a new state is, not ready and alive.
    fn default() -> Watchers {
        Watchers {
            reported: PerKind::from_fn(|kind| kind.family().holds_at_first),
            next_id: 0,
            listeners: Vec::new(),
            queue: VecDeque::new(),
            telling: false,
        }
    }
}

impl Watchers {
    fn hooks(&self) -> Vec<Hook> {
        let hook = |(_, listener): &(u64, Listener)| match listener {
            Listener::Hook(hook) => Some(hook.clone()),
            Listener::Follower(..) => None,
        };
        self.listeners.iter().filter_map(hook).collect()
    }
}

/// Removes a server's hook, or a follower, from a [`Health`] when it stops.
pub(crate) struct Watch {
    health: Health,
    id: u64,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = self.health.watchers();
        watchers.listeners.retain(|(id, _)| *id != self.id);
    }
}

impl Health {
    /// Reports one check's pass/fail transition, with its reason, to the hooks.
    pub(super) fn check_changed(&self, name: &str, item: ItemKind, outcome: Result<(), String>) {
        let name = name.to_string();
        let event = match outcome {
            Ok(()) => Event::CheckPassed { name, item },
            Err(reason) => Event::CheckFailed { name, item, reason },
        };
        self.tell(self.watchers(), event);
    }

    /// Something of `kind` changed: followers are woken, and if the overall
    /// verdict flipped, the hooks hear it once.
    pub(super) fn changed(&self, kind: Kind) {
        let mut watchers = self.watchers();
        for (_, listener) in &watchers.listeners {
            match listener {
                Listener::Follower(of, wake) if *of == kind => wake.poke(),
                _ => {}
            }
        }
        let failing = self.failing(kind);
        let healthy = failing.is_empty();
        if watchers.reported[kind] != healthy {
            watchers.reported[kind] = healthy;
            self.tell(watchers, (kind.family().event)(healthy, failing));
        }
    }

    /// Queues `event` behind the ones not told yet, and tells the queue to
    /// the hooks unless another thread is telling it now (that thread then
    /// tells this one too, after the ones before it). The lock is not held
    /// while a hook runs, so a hook may change the health state.
    fn tell<'a>(&'a self, mut watchers: MutexGuard<'a, Watchers>, event: Event) {
        watchers.queue.push_back(event);
        if watchers.telling {
            return;
        }
        watchers.telling = true;
        loop {
            let Some(event) = watchers.queue.pop_front() else {
                watchers.telling = false;
                return;
            };
            let hooks = watchers.hooks();
            drop(watchers);
            for hook in &hooks {
                deliver(hook, &event);
            }
            watchers = self.watchers();
        }
    }

    /// Adds a server's hook, until the returned [`Watch`] drops.
    pub(crate) fn watch(&self, hook: Hook) -> Watch {
        self.listen(Listener::Hook(hook))
    }

    /// Wakes `wake` on every change of `kind` (a registration, a flag, a
    /// result, a removal), whether or not the verdict flips, until the
    /// returned [`Watch`] drops.
    pub(crate) fn follow(&self, kind: Kind, wake: Arc<Wake>) -> Watch {
        self.listen(Listener::Follower(kind, wake))
    }

    fn listen(&self, listener: Listener) -> Watch {
        let mut watchers = self.watchers();
        watchers.next_id += 1;
        let id = watchers.next_id;
        watchers.listeners.push((id, listener));
        Watch {
            health: self.clone(),
            id,
        }
    }

    fn watchers(&self) -> MutexGuard<'_, Watchers> {
        lock(&self.inner.watchers)
    }
}
