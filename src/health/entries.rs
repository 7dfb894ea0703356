//! Each registered item (a target, a check, a heartbeat, a guard) as the state
//! holds it, and registration: names checked and unique, limits per kind of
//! item, a name freed once every handle to its entry is gone, and the counters
//! kept in step with every entry added, replaced or removed.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::check::{Results, Runner, Schedule};
use super::kind::Builtin;
use super::pulse::Pulse;
use super::{Health, Item, Kind, Status};
use crate::error::{invalid, refused};
use crate::sync::{lock, read, write};

/// Most targets and checks one [`Health`] holds (so bodies stay small).
const MAX_ENTRIES: usize = 32;

/// Most heartbeats and thread guards one [`Health`] holds: a pool of workers
/// guards each of its threads.
const MAX_WORKERS: usize = 1024;

/// Longest target or check name, in bytes.
const MAX_NAME: usize = 64;

pub(super) struct Entry {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) state: EntryState,
    /// Whether it fails now, as the fast path counts it: a target not
    /// ready, a check not passing, a guard whose thread died. Written only
    /// by [`Health::mark`], which moves the counter with it.
    pub(super) failing: AtomicBool,
    /// For an entry a user holds a handle to (a target, heartbeat or guard):
    /// alive while a handle is. Once every handle is gone, its name can be
    /// taken again (a restarted worker, a component started anew).
    holder: Option<Weak<()>>,
}

pub(super) enum EntryState {
    /// A flag a component flips: its truth is the entry's `failing`.
    Target,
    Heartbeat(Arc<Pulse>),
    /// Why the guarded thread died, once it has.
    Guard(Mutex<Option<String>>),
    /// A check: run by each probe (`schedule` is `None`) or in the
    /// background, and its results so far.
    Check {
        runner: Arc<Runner>,
        schedule: Option<Schedule>,
        results: Mutex<Results>,
    },
}

impl Entry {
    /// A new entry; `holder` is its handles' (see [`Holder`]).
    pub(super) fn new(name: &str, kind: Kind, state: EntryState, holder: Option<&Holder>) -> Entry {
        // A target starts as its family does; a check as its results say.
        let failing = match &state {
            EntryState::Target => !kind.family().holds_at_first,
            EntryState::Check { results, .. } => !lock(results).passing,
            EntryState::Heartbeat(_) | EntryState::Guard(_) => false,
        };
        Entry {
            name: name.to_string(),
            kind,
            state,
            failing: AtomicBool::new(failing),
            holder: holder.map(Arc::downgrade),
        }
    }

    /// Whether every handle to it is gone, so another may take its name.
    fn abandoned(&self) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|holder| holder.strong_count() == 0)
    }

    /// Whether it is the entry `holder` holds.
    fn held_by(&self, holder: &Holder) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|h| std::ptr::eq(h.as_ptr(), Arc::as_ptr(holder)))
    }

    /// Whether it is a worker's (a heartbeat or a guard), limited apart.
    fn is_worker(&self) -> bool {
        matches!(self.state, EntryState::Heartbeat(_) | EntryState::Guard(_))
    }

    /// Whether a probe must evaluate it rather than read the counters: a
    /// check run by each probe, and a heartbeat, which time fails.
    pub(super) fn on_request(&self) -> bool {
        matches!(
            self.state,
            EntryState::Check { schedule: None, .. } | EntryState::Heartbeat(_)
        )
    }

    /// This entry's line in a report, from its latest known result.
    pub(super) fn item(&self, at: u64) -> Item {
        let failed = |reason: Option<String>| match reason {
            Some(reason) => (Status::Fail, Some(reason), at, None),
            None => (Status::Pass, None, at, None),
        };
        let (status, reason, at, runs) = match &self.state {
            EntryState::Target => failed(
                self.failing
                    .load(Ordering::SeqCst)
                    .then(|| "not ready".into()),
            ),
            EntryState::Check {
                runner, results, ..
            } => {
                let results = lock(results);
                let (status, reason, at) = results.line();
                let runs = (runner.last_duration(), results.failed_runs);
                (status, reason, at, Some(runs))
            }
            EntryState::Heartbeat(pulse) => failed(pulse.overdue_reason()),
            EntryState::Guard(died) => failed(lock(died).clone()),
        };
        Item {
            name: self.name.clone(),
            status,
            reason,
            // How overdue a heartbeat is says nothing private: always shown.
            shown: matches!(self.state, EntryState::Heartbeat(_)),
            excluded: false,
            at,
            runs,
        }
    }
}

/// What a user's handle holds while it lives: once every clone is gone, the
/// entry is abandoned and its name free to take again.
pub(crate) type Holder = Arc<()>;

impl Health {
    /// Adds `entry`, or puts it in the place of an abandoned entry of the
    /// same name (a restarted worker's), keeping the counters in step.
    pub(super) fn register(
        &self,
        name: &str,
        kind: Kind,
        state: EntryState,
        holder: Option<&Holder>,
    ) -> io::Result<Arc<Entry>> {
        check_name(name)?;
        let entry = Arc::new(Entry::new(name, kind, state, holder));
        let replaced = {
            let mut entries = write(&self.inner.entries);
            let at = entries.iter().position(|e| e.name == entry.name);
            if at.is_some_and(|at| !entries[at].abandoned()) {
                return Err(refused(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "a target, check, heartbeat or guard named `{}` already exists",
                        entry.name
                    ),
                ));
            }
            let worker = entry.is_worker();
            let (limit, what) = match worker {
                true => (MAX_WORKERS, "heartbeats and thread guards"),
                false => (MAX_ENTRIES, "targets and checks"),
            };
            let alike = entries.iter().filter(|e| e.is_worker() == worker).count();
            let freed = at.is_some_and(|at| entries[at].is_worker() == worker);
            if alike - usize::from(freed) >= limit {
                return Err(invalid(format!("at most {limit} {what}")));
            }
            self.count(&entry, true);
            match at {
                Some(at) => {
                    let old = std::mem::replace(&mut entries[at], entry.clone());
                    self.count(&old, false);
                    Some(old)
                }
                None => {
                    entries.push(entry.clone());
                    None
                }
            }
        };
        self.changed(entry.kind);
        if let Some(old) = replaced.filter(|old| old.kind != entry.kind) {
            self.changed(old.kind);
        }
        Ok(entry)
    }

    /// Registers an entry a user's handle holds, and gives that holder.
    pub(super) fn register_held(
        &self,
        name: &str,
        kind: Kind,
        state: EntryState,
    ) -> io::Result<(Arc<Entry>, Holder)> {
        let holder = Holder::default();
        let entry = self.register(name, kind, state, Some(&holder))?;
        Ok((entry, holder))
    }

    /// The entry `holder` holds, while it is registered.
    pub(super) fn held_by(&self, holder: &Holder) -> Option<Arc<Entry>> {
        read(&self.inner.entries)
            .iter()
            .find(|e| e.held_by(holder))
            .cloned()
    }

    /// Unregisters the heartbeat or guard `holder` holds, which ended on purpose.
    pub(crate) fn remove(&self, holder: &Holder) {
        let removed = {
            let mut entries = write(&self.inner.entries);
            let Some(at) = entries.iter().position(|e| e.held_by(holder)) else {
                return;
            };
            let removed = entries.remove(at);
            self.count(&removed, false);
            removed
        };
        self.changed(removed.kind);
    }
}

fn check_name(name: &str) -> io::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err(invalid(format!(
            "invalid name `{name}`: use 1 to {MAX_NAME} letters, digits, `.`, `_` or `-`"
        )));
    }
    if Builtin::ALL.iter().any(|b| b.words().0 == name) {
        return Err(refused(
            io::ErrorKind::AlreadyExists,
            format!("`{name}` is a built-in name"),
        ));
    }
    Ok(())
}
