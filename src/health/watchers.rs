//! Who hears of health changes: the event hooks of the servers that serve
//! this state. A change of overall readiness or liveness is told once, and
//! a check's pass or fail once per flip; hooks run outside the lock.

use std::sync::MutexGuard;

use super::{Health, Kind};
use crate::event::{deliver, Event, Hook};
use crate::sync::lock;

/// The event hooks of the servers that serve this state, and what they were last told.
pub(super) struct Watchers {
    /// Per kind: the last overall state reported.
    reported: [bool; 2],
    next_id: u64,
    hooks: Vec<(u64, Hook)>,
}

impl Default for Watchers {
    /// Nobody told anything yet: as a new state is, not ready and alive.
    fn default() -> Watchers {
        Watchers {
            reported: [false, true],
            next_id: 0,
            hooks: Vec::new(),
        }
    }
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
    /// Reports one check's pass/fail transition, with its reason, to the hooks.
    pub(super) fn check_changed(&self, name: &str, outcome: Result<(), String>) {
        let event = match outcome {
            Ok(()) => Event::CheckPassed {
                name: name.to_string(),
            },
            Err(reason) => Event::CheckFailed {
                name: name.to_string(),
                reason,
            },
        };
        self.emit(&event);
    }

    /// Reports a change of overall readiness (or liveness) once, naming what
    /// fails. Serialised by the watchers' lock, so racing flips report the
    /// final state and never the same state twice.
    pub(super) fn changed(&self, kind: Kind) {
        let (event, hooks) = {
            let mut watchers = self.watchers();
            let failing = self.failing(kind);
            let healthy = failing.is_empty();
            if watchers.reported[kind as usize] == healthy {
                return;
            }
            watchers.reported[kind as usize] = healthy;
            let event = match kind {
                Kind::Readiness => Event::ReadinessChanged {
                    ready: healthy,
                    failing,
                },
                Kind::Liveness => Event::LivenessChanged {
                    alive: healthy,
                    failing,
                },
            };
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
