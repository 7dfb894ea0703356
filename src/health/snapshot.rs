//! Health at one instant, as `/metrics` shows it: both verdicts and every
//! item, with each check's last duration and failed runs, from one report of
//! each kind (so a scrape never contradicts itself or `/readyz`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{passes, Entry, EntryState, Health, Kind, PerKind};
use crate::sync::read;

/// Health as `/metrics` shows it: both verdicts and every item, from one
/// report of each kind.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Each family's verdict.
    pub verdicts: PerKind<bool>,
    pub draining: bool,
    pub gauges: Vec<Gauge>,
}

/// What the metrics say of one target or check (or built-in item).
#[derive(Debug)]
pub(crate) struct Gauge {
    pub kind: Kind,
    pub name: String,
    pub passing: bool,
    /// For checks: the last run's duration (none before the first) and failed runs.
    pub check: Option<(Option<Duration>, u64)>,
}

impl Health {
    /// Both verdicts as a probe would give them now (on-request checks run,
    /// each within its timeout and one run at a time, as for a probe), with
    /// every item, each check's last duration and its failed runs: what
    /// `/metrics` shows. Readiness and liveness come from the same reports
    /// as the items, so a scrape never contradicts itself or `/readyz`.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let entries: Vec<Arc<Entry>> = read(&self.inner.entries).iter().cloned().collect();
        let mut snapshot = Snapshot {
            verdicts: PerKind::default(),
            draining: self.is_draining(),
            gauges: Vec::new(),
        };
        for kind in Kind::ALL {
            let items = self
                .report(kind, None, &[])
                .map_or_else(Vec::new, |r| r.items);
            snapshot.verdicts[kind] = passes(&items);
            for item in items {
                let entry = entries
                    .iter()
                    .find(|e| e.kind == kind && e.name == item.name);
                let check = entry.and_then(|entry| match &entry.state {
                    EntryState::Check { runner, .. } => Some((
                        runner.last_duration(),
                        entry.failures.load(Ordering::Relaxed),
                    )),
                    _ => None,
                });
                snapshot.gauges.push(Gauge {
                    kind,
                    passing: !item.fails(),
                    name: item.name,
                    check,
                });
            }
        }
        snapshot
    }
}
