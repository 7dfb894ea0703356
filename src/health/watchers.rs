//! Who hears of health changes: the event hooks of the servers that serve
//! this state, and the threads that follow it (systemd's notifier). A change
//! of overall readiness or liveness is told to hooks once, and a check's pass
//! or fail once per flip; followers are woken by **every** change, whether or
//! not the verdict flips (tokio's `watch`: a waiter cannot sleep through a
//! change). Hooks run outside the lock.

use std::sync::{Arc, MutexGuard};

use super::{Health, Kind, PerKind};
use crate::event::{deliver, Event, Hook, ItemKind};
use crate::sync::{lock, Wake};

/// The event hooks of the servers that serve this state, what they were last
/// told, and the threads to wake on any change.
pub(super) struct Watchers {
    /// Per kind: the last overall state reported.
    reported: PerKind<bool>,
    next_id: u64,
    hooks: Vec<(u64, Hook)>,
    followers: Vec<(u64, Kind, Arc<Wake>)>,
}

impl Default for Watchers {
    /// Nobody told anything yet: as a new state is, not ready and alive.
    fn default() -> Watchers {
        Watchers {
            reported: PerKind::from_fn(|kind| kind.family().holds_at_first),
            next_id: 0,
            hooks: Vec::new(),
            followers: Vec::new(),
        }
    }
}

impl Watchers {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
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
        watchers.hooks.retain(|(id, _)| *id != self.id);
        watchers.followers.retain(|(id, ..)| *id != self.id);
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
        self.emit(&event);
    }

    /// Wakes every follower of `kind`, then reports a change of overall
    /// readiness (or liveness) to the hooks once, naming what fails.
    /// Serialised by the watchers' lock, so racing flips report the final
    /// state and never the same state twice.
    pub(super) fn changed(&self, kind: Kind) {
        let (event, hooks) = {
            let mut watchers = self.watchers();
            for (_, _, wake) in watchers.followers.iter().filter(|f| f.1 == kind) {
                wake.poke();
            }
            let failing = self.failing(kind);
            let healthy = failing.is_empty();
            if watchers.reported[kind] == healthy {
                return;
            }
            watchers.reported[kind] = healthy;
            let event = (kind.family().event)(healthy, failing);
            let hooks: Vec<Hook> = watchers
                .hooks
                .iter()
                .map(|(_, hook)| hook.clone())
                .collect();
            (event, hooks)
        };
        // Outside the lock, so a hook may itself flip readiness.
        for hook in &hooks {
            deliver(hook, &event);
        }
    }

    pub(super) fn emit(&self, event: &Event) {
        let hooks: Vec<Hook> = self
            .watchers()
            .hooks
            .iter()
            .map(|(_, hook)| hook.clone())
            .collect();
        for hook in &hooks {
            deliver(hook, event);
        }
    }

    /// Registers a server's hook for health events until the returned guard drops.
    pub(crate) fn watch(&self, hook: Hook) -> Watch {
        let mut watchers = self.watchers();
        let id = watchers.next_id();
        watchers.hooks.push((id, hook));
        Watch {
            health: self.clone(),
            id,
        }
    }

    /// Pokes `wake` on every change of `kind` (a registration, a flag, a
    /// target, a check's result, a removal), until the returned guard drops.
    pub(crate) fn follow(&self, kind: Kind, wake: Arc<Wake>) -> Watch {
        let mut watchers = self.watchers();
        let id = watchers.next_id();
        watchers.followers.push((id, kind, wake));
        Watch {
            health: self.clone(),
            id,
        }
    }

    fn watchers(&self) -> MutexGuard<'_, Watchers> {
        lock(&self.inner.watchers)
    }
}
