//! The threads that keep health current with nobody asking: one per
//! background check, running it on its schedule, and one that watches every
//! heartbeat and fails liveness for each that falls overdue. None holds a
//! strong reference to the state: they end when its last clone drops.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::{Entry, EntryState, Health, Inner};
use crate::event::ItemKind;
use crate::sync::{lock, read, Wake};

impl Health {
    /// The alarm of the thread that watches heartbeats, started on first use.
    pub(super) fn heartbeat_alarm(&self) -> io::Result<Arc<Wake>> {
        let mut slot = lock(&self.inner.heartbeats);
        if let Some(alarm) = slot.as_ref() {
            return Ok(alarm.clone());
        }
        let alarm = Arc::new(Wake::default());
        let (weak, woken) = (Arc::downgrade(&self.inner), alarm.clone());
        thread::Builder::new()
            .name("healthz-heartbeats".into())
            .spawn(move || loop {
                let next = match weak.upgrade() {
                    Some(inner) => Health { inner }.check_heartbeats(),
                    None => return,
                };
                let wait = next.map(|at| at.saturating_duration_since(Instant::now()));
                if !woken.wait(wait) {
                    return;
                }
            })?;
        *slot = Some(alarm.clone());
        Ok(alarm)
    }

    /// Reports every heartbeat that fell overdue or recovered since the last
    /// look; returns when the next one falls due unless it beats.
    fn check_heartbeats(&self) -> Option<Instant> {
        let entries: Vec<Arc<Entry>> = read(&self.inner.entries).iter().cloned().collect();
        let mut next: Option<Instant> = None;
        let mut flipped = None;
        for entry in &entries {
            let EntryState::Heartbeat(pulse) = &entry.state else {
                continue;
            };
            let reason = pulse.overdue_reason();
            let overdue = reason.is_some();
            if pulse.overdue.swap(overdue, Ordering::SeqCst) != overdue {
                self.check_changed(&entry.name, ItemKind::Heartbeat, reason.map_or(Ok(()), Err));
                flipped = Some(entry.kind);
            }
            let due = if !overdue {
                pulse.deadline() + Duration::from_millis(1)
            } else if pulse.overdue_reason().is_none() {
                // A beat came as it was marked overdue, unseen by it: look again.
                Instant::now()
            } else {
                continue; // nothing to wait for until it beats
            };
            next = Some(next.map_or(due, |next| next.min(due)));
        }
        if let Some(kind) = flipped {
            self.changed(kind);
        }
        next
    }

    /// Runs a background check on its own thread until the last clone of this
    /// `Health` drops. The thread holds no strong reference, so it never keeps
    /// the state alive.
    pub(super) fn spawn_background(&self, entry: Arc<Entry>) -> io::Result<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        thread::Builder::new()
            .name("healthz-checker".into())
            .spawn(move || {
                let EntryState::Check {
                    runner,
                    schedule: Some(schedule),
                    ..
                } = &entry.state
                else {
                    return;
                };
                let mut wait = schedule.initial_delay;
                while !stop.wait_timeout(wait) {
                    let outcome = runner.run();
                    let Some(inner) = weak.upgrade() else { return };
                    Health { inner }.record(&entry, outcome);
                    wait = schedule.interval;
                }
            })
            .map(drop)
    }
}
