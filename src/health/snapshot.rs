//! Health at one instant, as `/metrics` shows it: both verdicts and every
//! item, with each check's last duration and failed runs, from one report of
//! each kind (so a scrape never contradicts itself or `/readyz`).

use super::{passes, Health, Item, Kind, PerKind};

/// Health as `/metrics` shows it: both verdicts and every item, from one
/// report of each kind.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Each family's verdict.
    pub verdicts: PerKind<bool>,
    pub draining: bool,
    /// Every item of every family.
    pub items: Vec<(Kind, Item)>,
}

impl Health {
    /// Both verdicts as a probe would give them now (on-request checks run,
    /// each within its timeout and one run at a time, as for a probe), with
    /// every item, each check's last duration and its failed runs: what
    /// `/metrics` shows. Readiness and liveness come from the same reports
    /// as the items, so a scrape never contradicts itself or `/readyz`.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            verdicts: PerKind::default(),
            draining: self.is_draining(),
            items: Vec::new(),
        };
        for kind in Kind::ALL {
            let items = self
                .report(kind, None, &[])
                .map_or_else(Vec::new, |r| r.items);
            snapshot.verdicts[kind] = passes(&items);
            snapshot.items.extend(items.into_iter().map(|i| (kind, i)));
        }
        snapshot
    }
}
