//! The one verdict and the reports made of it: a set of items passes when
//! none of them fails. `report` runs the on-request checks and reads every
//! item; `failing` reads what is known without running anything; `quick`
//! answers from counters when nothing has to run. `mark` is the one place an
//! entry's `failing` flag changes, and the counter with it; `count` adds or
//! takes away a whole entry's part.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::kind::Builtin;
use super::{Entry, EntryState, Health, Kind};
use crate::date::now;
use crate::sync::read;

/// One line of a health report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub name: String,
    pub status: Status,
    /// Why it fails (or warns); shown only when the server is configured to,
    /// unless `shown`.
    pub reason: Option<String>,
    /// The reason is the crate's own words, with nothing to withhold.
    pub shown: bool,
    pub excluded: bool,
    /// When the result was observed, in seconds since the Unix epoch.
    pub at: u64,
    /// For a check: its last run's duration (none before the first), and
    /// its failed runs.
    pub runs: Option<(Option<Duration>, u64)>,
}

/// The state of one item, as the IETF health-check draft names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Pass,
    /// Passing, but a background check failed recently (under its threshold).
    Warn,
    Fail,
}

/// A readiness or liveness verdict with its reasons.
#[derive(Debug)]
pub(crate) struct Report {
    pub items: Vec<Item>,
    /// Names given to `?exclude=` that matched nothing.
    pub unmatched: Vec<String>,
}

impl Item {
    /// Whether this item fails the verdict: it fails and is not excluded.
    pub fn fails(&self) -> bool {
        !self.excluded && self.status == Status::Fail
    }
}

/// The one verdict: a set of items passes when none of them fails it.
pub(crate) fn passes<'a>(items: impl IntoIterator<Item = &'a Item>) -> bool {
    !items.into_iter().any(Item::fails)
}

/// The names of the items that fail the verdict, in order.
fn names_failing(items: &[Item]) -> Vec<&str> {
    items
        .iter()
        .filter(|i| i.fails())
        .map(|i| i.name.as_str())
        .collect()
}

impl Report {
    pub fn passed(&self) -> bool {
        passes(&self.items)
    }

    pub fn failing(&self) -> Vec<&str> {
        names_failing(&self.items)
    }
}

impl Health {
    /// Decides readiness (or liveness) for a probe, reading only atomics, when
    /// no check has to run for it: `None` means "call [`report`](Self::report)".
    pub(crate) fn quick(&self, kind: Kind) -> Option<bool> {
        let inner = &self.inner;
        if inner.on_request[kind].load(Ordering::SeqCst) > 0 {
            return None;
        }
        let own = kind.family().builtins.iter().all(|b| self.holds(*b));
        Some(own && inner.failing_count[kind].load(Ordering::SeqCst) == 0)
    }

    /// The one place an entry's verdict changes: its `failing` flag and the
    /// fast path's counter move together. Whether it flipped.
    pub(super) fn mark(&self, entry: &Entry, failing: bool) -> bool {
        let flipped = entry.failing.swap(failing, Ordering::SeqCst) != failing;
        if flipped {
            add(&self.inner.failing_count[entry.kind], failing);
        }
        flipped
    }

    /// Keeps the counters in step with `entry` being added or taken away.
    pub(super) fn count(&self, entry: &Entry, added: bool) {
        if entry.failing.load(Ordering::SeqCst) {
            add(&self.inner.failing_count[entry.kind], added);
        }
        if entry.on_request() {
            add(&self.inner.on_request[entry.kind], added);
        }
    }

    /// The full report for a probe: runs on-request checks (all at once, each
    /// within its timeout) and records their results, then reads every item.
    /// With `only`, just that name (`None` if it names nothing of this kind);
    /// `exclude` skips names.
    pub(crate) fn report(
        &self,
        kind: Kind,
        only: Option<&str>,
        exclude: &[&str],
    ) -> Option<Report> {
        let wanted = |name: &str| only.map_or(true, |only| only == name);
        let entries = self.entries(kind, wanted);
        // Start every on-request check first, so they run side by side.
        let started: Vec<_> = entries
            .iter()
            .filter(|e| !exclude.contains(&e.name.as_str()))
            .filter_map(|e| match &e.state {
                EntryState::Check {
                    runner,
                    schedule: None,
                    ..
                } => Some((e, runner, runner.start())),
                _ => None,
            })
            .collect();
        for (entry, runner, ticket) in started {
            let outcome = ticket.and_then(|ticket| runner.wait(ticket));
            self.record(entry, outcome);
        }
        let mut items = self.items(kind, &entries);
        items.retain(|i| wanted(&i.name));
        if items.is_empty() {
            return None;
        }
        for item in &mut items {
            item.excluded = exclude.contains(&item.name.as_str());
        }
        let unmatched = exclude
            .iter()
            .filter(|name| !items.iter().any(|i| i.name == **name))
            .map(|name| name.to_string())
            .collect();
        Some(Report { items, unmatched })
    }

    /// Every item of `kind` as known now: the built-in ones, then `entries`.
    /// Reads only; runs nothing and reports nothing.
    fn items(&self, kind: Kind, entries: &[Arc<Entry>]) -> Vec<Item> {
        let at = now();
        let mut items = self.builtin_items(kind, at);
        items.extend(entries.iter().map(|entry| entry.item(at)));
        items
    }

    fn builtin_items(&self, kind: Kind, at: u64) -> Vec<Item> {
        let item = |builtin: &Builtin| {
            let ((name, why), ok) = (builtin.words(), self.holds(*builtin));
            Item {
                name: name.to_string(),
                status: if ok { Status::Pass } else { Status::Fail },
                reason: (!ok).then(|| why.to_string()),
                shown: false,
                excluded: false,
                at,
                runs: None,
            }
        };
        kind.family().builtins.iter().map(item).collect()
    }

    /// Whether a built-in item holds now.
    fn holds(&self, builtin: Builtin) -> bool {
        match builtin {
            Builtin::Flag => self.inner.ready.load(Ordering::SeqCst),
            Builtin::Drain => !self.is_draining(),
            Builtin::Ping => true,
        }
    }

    /// The entries of `kind` whose names are `wanted`, as they are now.
    fn entries(&self, kind: Kind, wanted: impl Fn(&str) -> bool) -> Vec<Arc<Entry>> {
        let entries = read(&self.inner.entries);
        let ours = entries.iter().filter(|e| e.kind == kind && wanted(&e.name));
        ours.cloned().collect()
    }

    /// What fails now by the latest known results, without running any check.
    pub(crate) fn failing(&self, kind: Kind) -> Vec<String> {
        let items = self.items(kind, &self.entries(kind, |_| true));
        names_failing(&items)
            .into_iter()
            .map(String::from)
            .collect()
    }
}

/// Counts one more, or one fewer.
fn add(counter: &AtomicUsize, one_more: bool) {
    match one_more {
        true => counter.fetch_add(1, Ordering::SeqCst),
        false => counter.fetch_sub(1, Ordering::SeqCst),
    };
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::health::Check;
    use crate::rng::Rng;

    /// The counters `quick` reads against the entries they mirror, and
    /// `quick`'s verdict against the one read from every item.
    fn counters_agree(health: &Health, history: &[String]) {
        for kind in Kind::ALL {
            let entries = read(&health.inner.entries);
            let ours = entries.iter().filter(|e| e.kind == kind);
            for entry in ours.clone() {
                let fails = entry.item(0).status == Status::Fail;
                let worker = matches!(entry.state, EntryState::Heartbeat(_));
                let marked = entry.failing.load(Ordering::SeqCst);
                assert!(
                    worker || marked == fails,
                    "{} after {history:?}",
                    entry.name
                );
            }
            let failing = ours
                .clone()
                .filter(|e| e.failing.load(Ordering::SeqCst))
                .count();
            let on_request = ours.filter(|e| e.on_request()).count();
            drop(entries);
            let inner = &health.inner;
            let counted = inner.failing_count[kind].load(Ordering::SeqCst);
            assert_eq!(counted, failing, "{kind:?} failing after {history:?}");
            let counted = inner.on_request[kind].load(Ordering::SeqCst);
            assert_eq!(counted, on_request, "{kind:?} on request after {history:?}");
            if let Some(quick) = health.quick(kind) {
                let known = health.failing(kind).is_empty();
                assert_eq!(quick, known, "{kind:?} verdict after {history:?}");
            }
        }
    }

    /// A background check that never runs by itself here: the test records
    /// its results.
    /// A check that never runs by itself: in the background an hour from
    /// now, or (`on_request`) when a probe asks, which this test never does.
    fn check(name: &str, on_request: bool) -> Check {
        let hour = Duration::from_secs(3600);
        let check = Check::new(name, || Ok(()));
        match on_request {
            true => check,
            false => check.every(hour).initial_delay(hour),
        }
    }

    #[test]
    fn the_fast_paths_counters_follow_the_entries_through_any_changes() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let health = Health::new();
            let (mut targets, mut guards, mut dead, mut history) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for step in 0..40 {
                let kind = *rng.pick(&Kind::ALL);
                let name = format!("n{step}");
                let op = rng.below(9);
                history.push(format!("{op}:{kind:?}"));
                match op {
                    0 => health.set_ready(rng.coin()),
                    1 => targets.push(match kind {
                        Kind::Readiness => health.target(&name).unwrap().0,
                        Kind::Liveness => health.liveness_target(&name).unwrap().0,
                    }),
                    2 if !targets.is_empty() => {
                        let at = rng.below(targets.len());
                        targets[at].set(rng.coin());
                    }
                    3 => match kind {
                        Kind::Readiness => health.add_check(check(&name, rng.coin())).unwrap(),
                        Kind::Liveness => {
                            health.add_liveness_check(check(&name, rng.coin())).unwrap()
                        }
                    },
                    4 => {
                        let entries = read(&health.inner.entries).clone();
                        let checks: Vec<_> = entries
                            .iter()
                            .filter(|e| matches!(e.state, EntryState::Check { .. }))
                            .collect();
                        if !checks.is_empty() {
                            let outcome = if rng.coin() { Ok(()) } else { Err("no".into()) };
                            health.record(checks[rng.below(checks.len())], outcome);
                        }
                    }
                    5 => guards.push((name.clone(), health.thread_guard(&name).unwrap())),
                    6 if !guards.is_empty() => {
                        let (name, guard) = guards.remove(rng.below(guards.len()));
                        match rng.coin() {
                            true => drop(guard), // its thread died
                            false => guard.finish(),
                        }
                        dead.push(name);
                    }
                    7 if !dead.is_empty() => {
                        // A restart takes a dead guard's name (a finished one is free anyway).
                        let name = dead.remove(rng.below(dead.len()));
                        guards.push((name.clone(), health.thread_guard(&name).unwrap()));
                    }
                    8 if !targets.is_empty() => {
                        // Every handle gone, then the name taken again.
                        let flag = targets.remove(rng.below(targets.len()));
                        let (name, kind) = (flag.entry.name.clone(), flag.entry.kind);
                        drop(flag);
                        targets.push(match kind {
                            Kind::Readiness => health.target(&name).unwrap().0,
                            Kind::Liveness => health.liveness_target(&name).unwrap().0,
                        });
                    }
                    _ => {}
                }
                counters_agree(&health, &history);
            }
            for (_, guard) in guards {
                guard.finish();
            }
        }
    }
}
