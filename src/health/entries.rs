//! Each registered item (a target, a check, a heartbeat, a guard) as the state
//! holds it, and registration: names checked and unique, limits per kind of
//! item, a name freed once every handle to its entry is gone, and the counters
//! kept in step with every entry added, replaced or removed.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::check::{Runner, Schedule, Thresholds, NOT_CHECKED};
use super::pulse::{Fate, Pulse};
use super::{Health, Item, Kind, Status};
use crate::error::{invalid, refused};
use crate::sync::{lock, write};

/// Most targets and checks one [`Health`] holds (so bodies stay small).
const MAX_ENTRIES: usize = 32;

/// Most heartbeats and thread guards one [`Health`] holds: a pool of workers
/// guards each of its threads.
const MAX_WORKERS: usize = 1024;

/// Longest target or check name, in bytes.
const MAX_NAME: usize = 64;

/// Names the built-in entries use; no target or check may take them.
const RESERVED: [&str; 3] = ["ready", "shutdown", "ping"];

pub(super) struct Entry {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) state: EntryState,
    /// Runs of a check that failed (timeouts and panics included).
    pub(super) failures: AtomicU64,
    /// For an entry a user holds a handle to (a target, heartbeat or guard):
    /// alive while a handle is. Once every handle is gone, its name can be
    /// taken again (a restarted worker, a component started anew).
    pub(super) holder: Option<Weak<()>>,
}

impl Entry {
    /// Whether it counts in the failing counters now: a target not ready, a
    /// background check not passing, a guard whose thread died.
    pub(super) fn counts_failing(&self) -> bool {
        match &self.state {
            EntryState::Target(ready) => !ready.load(Ordering::SeqCst),
            EntryState::Background { state, .. } => !lock(state).0.passing,
            EntryState::Guard(fate) => fate.reason().is_some(),
            EntryState::OnRequest { .. } | EntryState::Heartbeat(_) => false,
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

    pub(super) fn new(
        name: &str,
        kind: Kind,
        state: EntryState,
        holder: Option<Weak<()>>,
    ) -> Entry {
        Entry {
            name: name.to_string(),
            kind,
            state,
            failures: AtomicU64::new(0),
            holder,
        }
    }

    /// Whether it is a worker's (a heartbeat or a guard), limited apart.
    fn is_worker(&self) -> bool {
        matches!(self.state, EntryState::Heartbeat(_) | EntryState::Guard(_))
    }

    /// This entry's line in a report, from its latest known result.
    pub(super) fn item(&self, at: u64) -> Item {
        let (status, reason, at) = match &self.state {
            EntryState::Target(ready) => {
                let ok = ready.load(Ordering::SeqCst);
                let status = if ok { Status::Pass } else { Status::Fail };
                (status, (!ok).then(|| "not ready".to_string()), at)
            }
            EntryState::OnRequest { last, .. } => match lock(last).clone() {
                Some(Ok(())) => (Status::Pass, None, at),
                Some(Err(reason)) => (Status::Fail, Some(reason), at),
                // Not run yet, so not known: failing unless the family says otherwise.
                None if self.kind.family().unknown_passes => (Status::Pass, None, at),
                None => (Status::Fail, Some(NOT_CHECKED.to_string()), at),
            },
            EntryState::Background { state, .. } => {
                let (verdict, ran_at) = lock(state).clone();
                let status = match (verdict.passing, verdict.failures) {
                    (false, _) => Status::Fail,
                    (true, 0) => Status::Pass,
                    (true, _) => Status::Warn,
                };
                (status, verdict.last.err(), ran_at)
            }
            EntryState::Heartbeat(pulse) => match pulse.overdue_reason() {
                Some(reason) => (Status::Fail, Some(reason), at),
                None => (Status::Pass, None, at),
            },
            EntryState::Guard(fate) => match fate.reason() {
                Some(reason) => (Status::Fail, Some(reason), at),
                None => (Status::Pass, None, at),
            },
        };
        Item {
            name: self.name.clone(),
            status,
            reason,
            // How overdue a heartbeat is says nothing private: always shown.
            shown: matches!(self.state, EntryState::Heartbeat(_)),
            excluded: false,
            at,
        }
    }
}

impl EntryState {
    /// Whether a probe must evaluate it rather than read the failing counters.
    pub(super) fn on_request(&self) -> bool {
        matches!(
            self,
            EntryState::OnRequest { .. } | EntryState::Heartbeat(_)
        )
    }
}

pub(super) enum EntryState {
    Target(AtomicBool),
    Heartbeat(Arc<Pulse>),
    Guard(Arc<Fate>),
    OnRequest {
        runner: Arc<Runner>,
        /// The last result (`None` before the first run), for `is_ready`
        /// and for reporting changes once.
        last: Mutex<Option<Result<(), String>>>,
    },
    Background {
        runner: Arc<Runner>,
        schedule: Schedule,
        /// The verdict so far, and when the last run ended.
        state: Mutex<(Thresholds, u64)>,
    },
}

/// What a user's handle holds while it lives: once every clone is gone, the
/// entry is abandoned and its name free to take again.
pub(crate) type Holder = Arc<()>;

impl Health {
    /// Adds `entry`, or puts it in the place of an abandoned entry of the
    /// same name (a restarted worker's), keeping the counters in step.
    pub(super) fn register(&self, entry: Arc<Entry>) -> io::Result<()> {
        check_name(&entry.name)?;
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
        Ok(())
    }

    /// An entry a user's handle holds, and that handle's holder.
    pub(super) fn held(&self, name: &str, kind: Kind, state: EntryState) -> (Arc<Entry>, Holder) {
        let holder = Holder::default();
        let entry = Entry::new(name, kind, state, Some(Arc::downgrade(&holder)));
        (Arc::new(entry), holder)
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
    if RESERVED.contains(&name) {
        return Err(refused(
            io::ErrorKind::AlreadyExists,
            format!("`{name}` is a built-in name"),
        ));
    }
    Ok(())
}
