//! Checks as the state holds them: added on request or on a schedule, and
//! an on-request check's latest result, kept and reported once per change.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{Entry, EntryState, Health, Kind};
use crate::check::{Check, Runner, Thresholds};
use crate::date::now;
use crate::error::{invalid, Error};
use crate::event::ItemKind;
use crate::sync::{lock, read};

impl Health {
    /// Adds a check that gates readiness. Errors as for
    /// [`target`](Health::target), and `InvalidInput` for a timeout or
    /// interval out of bounds.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid name, one too many, or a timeout or
    /// interval out of bounds; `AlreadyExists` for a name taken; the operating
    /// system's kind if a background check's thread cannot start.
    pub fn add_check(&self, check: Check) -> Result<(), Error> {
        Ok(self.add_check_of(check, Kind::Readiness)?)
    }

    /// Adds a check that gates liveness. Keep these to the process itself
    /// (a stuck loop, a full disk), never a downstream dependency: a failing
    /// liveness probe gets the process restarted.
    ///
    /// # Errors
    ///
    /// As for [`add_check`](Health::add_check).
    pub fn add_liveness_check(&self, check: Check) -> Result<(), Error> {
        Ok(self.add_check_of(check, Kind::Liveness)?)
    }

    pub(super) fn add_check_of(&self, check: Check, kind: Kind) -> io::Result<()> {
        check.validate().map_err(invalid)?;
        let runner = Runner::new(&check);
        let state = match check.schedule {
            None => EntryState::OnRequest {
                runner,
                last: Mutex::new(None),
            },
            // Before its first verdict, a readiness check is not passing; a liveness check is.
            Some(schedule) => EntryState::Background {
                runner,
                schedule,
                state: Mutex::new((Thresholds::new(kind.family().unknown_passes), now())),
            },
        };
        let entry = Arc::new(Entry::new(&check.name, kind, state, None));
        self.register(entry.clone())?;
        if matches!(entry.state, EntryState::Background { .. }) {
            self.spawn_background(entry)?;
        }
        Ok(())
    }

    /// Keeps an on-request check's latest result, and reports a change.
    pub(super) fn record_on_request(&self, entry: &Entry, outcome: Result<(), String>) {
        let EntryState::OnRequest { last, .. } = &entry.state else {
            return;
        };
        if outcome.is_err() {
            entry.failures.fetch_add(1, Ordering::Relaxed);
        }
        let changed = {
            let mut last = lock(last);
            let passed = last.as_ref().map(Result::is_ok);
            // A first result is news, except a liveness check passing as it was taken to.
            let alive_as_assumed = passed.is_none() && entry.kind.family().unknown_passes;
            let changed = passed != Some(outcome.is_ok()) && !(alive_as_assumed && outcome.is_ok());
            *last = Some(outcome.clone());
            changed
        };
        if changed {
            self.check_changed(&entry.name, ItemKind::Check, outcome);
            self.changed(entry.kind);
        }
    }

    /// Whether an on-request check of `kind` has never run: what is known
    /// of it says nothing yet.
    pub(crate) fn unrun(&self, kind: Kind) -> bool {
        read(&self.inner.entries).iter().any(|e| {
            e.kind == kind
                && matches!(&e.state, EntryState::OnRequest { last, .. } if lock(last).is_none())
        })
    }
}
