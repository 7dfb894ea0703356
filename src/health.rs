//! Shared health state: the readiness flag and the drain switch here, and
//! around them the health wing, each file with one job. No I/O and no HTTP:
//! servers read it, the service flips it.
//!
//! - `kind`: the two families (readiness, liveness) and every word each says,
//!   a row each: adding a family is a row there;
//! - `entries`: each registered item as the state holds it (with its
//!   `failing` flag), and registration (names, limits, a name freed once its
//!   handles are gone);
//! - `targets`, `check`, `pulse`: the three kinds of item: targets a
//!   component flips; checks, their runner and their latest results;
//!   heartbeats and guards, what they share with the state and their
//!   registration;
//! - `verdict`: the one verdict, the reports made of it, and `mark`, the one
//!   place an item's flag and the fast path's counter change, together;
//! - `watchers`: who hears of changes (the servers' hooks, systemd's thread);
//! - `background`: the threads that keep it current with nobody asking;
//! - `snapshot`: one instant of all of it, for `/metrics`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

mod background;
mod check;
mod entries;
mod kind;
mod pulse;
mod snapshot;
mod targets;
mod verdict;
mod watchers;

pub(crate) use self::check::shorten;
pub use self::check::{Check, CheckResult};
pub(crate) use self::entries::Holder;
use self::entries::{Entry, EntryState};
pub(crate) use self::kind::{Kind, PerKind};
pub(crate) use self::pulse::Pulse;
pub(crate) use self::snapshot::Snapshot;
pub use self::targets::{LivenessTarget, Target};
pub(crate) use self::verdict::{passes, Item, Report, Status};
pub(crate) use self::watchers::Watch;
use self::watchers::Watchers;
use crate::sync::{lock, Latch, Wake};

/// Whether the service is alive and ready, shared by every clone.
///
/// Readiness (`/readyz`, and `/healthz` as Dapr means it) holds when all of
/// these do:
/// - the service's own flag, [`ready`](Health::ready) / [`not_ready`](Health::not_ready),
///   which starts **not ready**, as Dapr's health server does;
/// - every readiness [`Target`] a component registered is ready;
/// - every readiness [`Check`](crate::Check) passes;
/// - the service is not [draining](Health::drain).
///
/// Liveness (`/livez`) holds while every liveness target and check does; it
/// never depends on readiness.
///
/// Flipping the flag or a target is an atomic swap, and the very next request
/// sees it. The plain probe path reads a few atomics and takes no lock; only
/// `?verbose`, JSON, per-name probes and on-request checks take a read lock on
/// the list of targets and checks. A real change is reported once to the
/// servers' event hooks ([`Event::ReadinessChanged`](crate::Event::ReadinessChanged)).
///
/// ```
/// let health = healthz::Health::new();
/// assert!(!health.is_ready());
/// health.ready();
/// assert!(health.is_ready());
///
/// let queue = health.target("queue")?; // a component's own readiness, not ready yet
/// assert!(!health.is_ready());
/// queue.ready();
/// assert!(health.is_ready());
/// assert!(health.target("queue").is_err()); // names are unique
/// # Ok::<(), healthz::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

/// A new state is not ready (its flag is off), not draining, and holds
/// nothing.
#[derive(Default)]
struct Inner {
    ready: AtomicBool,
    draining: AtomicBool,
    /// Per kind: how many entries fail now, of those the fast path counts
    /// (targets not ready, background checks not passing, dead guards).
    failing_count: PerKind<AtomicUsize>,
    /// Per kind: entries a probe must evaluate, not read from atomics
    /// (checks that run on each probe, and heartbeats, which time fails).
    on_request: PerKind<AtomicUsize>,
    entries: RwLock<Vec<Arc<Entry>>>,
    watchers: Mutex<Watchers>,
    /// Set when the last clone drops: background checks end.
    stop: Arc<Latch>,
    /// Wakes the thread that watches heartbeats, once the first one exists.
    heartbeats: Mutex<Option<Arc<Wake>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(alarm) = lock(&self.heartbeats).as_ref() {
            alarm.stop();
        }
    }
}

impl Health {
    /// A new state: not ready, alive, no targets or checks.
    pub fn new() -> Health {
        Health::default()
    }

    /// Marks the service ready (its own flag; targets and checks must agree).
    pub fn ready(&self) {
        self.set_ready(true);
    }

    /// Marks the service not ready: readiness endpoints answer 503.
    pub fn not_ready(&self) {
        self.set_ready(false);
    }

    /// Sets the service's own readiness flag from a condition.
    ///
    /// ```
    /// let health = healthz::Health::new();
    /// let connected_to_database = true;
    /// health.set_ready(connected_to_database);
    /// assert!(health.is_ready());
    /// ```
    pub fn set_ready(&self, ready: bool) {
        if self.inner.ready.swap(ready, Ordering::SeqCst) != ready {
            self.changed(Kind::Readiness);
        }
    }

    /// Whether the service is ready by what is known now: the flag, every
    /// target, every background check's last verdict and every on-request
    /// check's last result, and not draining. No check runs for this, and a
    /// readiness check that has not produced a result yet counts as failing
    /// (a probe of `/readyz` runs on-request checks first, as do systemd's
    /// notifications and `/metrics`).
    ///
    /// ```
    /// let health = healthz::Health::new();
    /// health.add_check(healthz::Check::new("config-file", || Ok(())))?;
    /// health.ready();
    /// assert!(!health.is_ready(), "the check has not run: not known to pass");
    /// # Ok::<(), healthz::Error>(())
    /// ```
    pub fn is_ready(&self) -> bool {
        self.failing(Kind::Readiness).is_empty()
    }

    /// Whether every liveness target and check holds, by their last results;
    /// a liveness check that has not run yet counts as passing, as a
    /// Kubernetes liveness probe starts out successful.
    pub fn is_alive(&self) -> bool {
        self.failing(Kind::Liveness).is_empty()
    }

    /// Starts draining: readiness fails from now on, whatever the flag, targets
    /// and checks say, while liveness is unaffected. There is no way back: a
    /// draining process is on its way out (see
    /// [`Server::drain_delay`](crate::Server::drain_delay), which calls this).
    pub fn drain(&self) {
        if !self.inner.draining.swap(true, Ordering::SeqCst) {
            self.changed(Kind::Readiness);
        }
    }

    /// Whether [`drain`](Health::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("ready", &self.is_ready())
            .field("alive", &self.is_alive())
            .field("draining", &self.is_draining())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Hook};
    use std::sync::mpsc;
    use std::time::Duration;

    /// Both verdicts, as a probe that runs no check reads them and as the
    /// full report does: they must always agree.
    fn verdicts(health: &Health, kind: Kind) -> bool {
        let report = health.report(kind, None, &[]).unwrap().passed();
        if let Some(quick) = health.quick(kind) {
            assert_eq!(quick, report, "the quick verdict agrees with the report");
        }
        report
    }

    fn names(report: &Report) -> Vec<&str> {
        report.items.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn a_new_health_is_alive_but_not_ready() {
        let health = Health::new();
        assert!(!verdicts(&health, Kind::Readiness));
        assert!(verdicts(&health, Kind::Liveness));
        let report = health.report(Kind::Readiness, None, &[]).unwrap();
        assert_eq!(report.failing(), ["ready"]);
    }

    #[test]
    fn readiness_needs_the_flag_and_every_readiness_target() {
        let health = Health::new();
        health.ready();
        assert!(verdicts(&health, Kind::Readiness));
        let db = health.target("db").unwrap();
        assert!(
            !verdicts(&health, Kind::Readiness),
            "a new target is not ready"
        );
        db.ready();
        assert!(verdicts(&health, Kind::Readiness));
        health.not_ready();
        assert!(!verdicts(&health, Kind::Readiness));
        assert!(!health.is_ready());
    }

    #[test]
    fn liveness_targets_gate_liveness_only() {
        let health = Health::new();
        health.ready();
        let lp = health.liveness_target("loop").unwrap();
        assert!(
            verdicts(&health, Kind::Liveness),
            "a liveness target starts alive"
        );
        lp.not_alive();
        assert!(!verdicts(&health, Kind::Liveness));
        assert!(
            verdicts(&health, Kind::Readiness),
            "readiness never hears of it"
        );
        let report = health.report(Kind::Liveness, None, &[]).unwrap();
        assert_eq!(names(&report), ["ping", "loop"]);
        assert_eq!(report.failing(), ["loop"]);
    }

    #[test]
    fn draining_fails_readiness_for_good_and_leaves_liveness() {
        let health = Health::new();
        health.ready();
        health.drain();
        health.ready();
        assert!(!verdicts(&health, Kind::Readiness));
        assert!(verdicts(&health, Kind::Liveness));
        let report = health.report(Kind::Readiness, None, &[]).unwrap();
        assert_eq!(report.failing(), ["shutdown"]);
    }

    #[test]
    fn flipping_a_target_twice_the_same_way_counts_once() {
        let health = Health::new();
        health.ready();
        let db = health.target("db").unwrap();
        db.not_ready();
        db.ready();
        db.ready();
        assert!(verdicts(&health, Kind::Readiness));
        db.not_ready();
        db.not_ready();
        db.ready();
        assert!(
            verdicts(&health, Kind::Readiness),
            "one flip back undoes two flips down"
        );
    }

    #[test]
    fn an_excluded_item_does_not_count_and_an_unknown_exclusion_is_listed() {
        let health = Health::new();
        health.ready();
        let _db = health.target("db").unwrap();
        let report = health
            .report(Kind::Readiness, None, &["db", "nope"])
            .unwrap();
        assert!(report.passed());
        assert!(report.items.iter().any(|i| i.name == "db" && i.excluded));
        assert_eq!(report.unmatched, ["nope"]);
    }

    #[test]
    fn a_report_for_one_name_has_that_item_alone_or_is_none() {
        let health = Health::new();
        let _db = health.target("db").unwrap();
        let one = health.report(Kind::Readiness, Some("db"), &[]).unwrap();
        assert_eq!(names(&one), ["db"]);
        assert!(!one.passed());
        let builtin = health.report(Kind::Readiness, Some("ready"), &[]).unwrap();
        assert_eq!(names(&builtin), ["ready"]);
        assert!(health.report(Kind::Readiness, Some("nope"), &[]).is_none());
        assert!(health.report(Kind::Liveness, Some("db"), &[]).is_none());
    }

    #[test]
    fn an_on_request_check_runs_for_each_report_and_is_read_from_its_last_run() {
        let health = Health::new();
        health.ready();
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let rx = Mutex::new(rx);
        let check = Check::new("db", move || {
            let next = rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
            Ok(next.unwrap_or_else(|_| Err("no answer".into()))?)
        });
        health.add_check(check).unwrap();
        assert_eq!(health.quick(Kind::Readiness), None, "a check must run");
        assert!(!health.is_ready(), "never run: not known to pass");
        assert_eq!(health.failing(Kind::Readiness), ["db"]);
        tx.send(Err("down".into())).unwrap();
        let report = health.report(Kind::Readiness, None, &[]).unwrap();
        assert_eq!(report.failing(), ["db"]);
        assert!(!health.is_ready(), "the last run failed");
        tx.send(Ok(())).unwrap();
        assert!(health.report(Kind::Readiness, None, &[]).unwrap().passed());
        assert!(health.is_ready());
    }

    #[test]
    fn reading_health_reports_nothing_and_a_check_change_is_reported_once() {
        let health = Health::new();
        health.ready();
        let (hook, events) = {
            let (tx, rx) = mpsc::channel();
            let tx = Mutex::new(tx);
            let hook: Hook = Arc::new(move |e: &Event| {
                let _ = tx.lock().unwrap().send(e.to_string());
            });
            (hook, rx)
        };
        let _watch = health.watch(hook);
        health
            .add_check(Check::new("disk", || Err("full".into())))
            .unwrap();
        for _ in 0..3 {
            assert!(!health.report(Kind::Readiness, None, &[]).unwrap().passed());
        }
        assert!(!health.is_ready());
        let _ = health.report(Kind::Readiness, Some("disk"), &["disk"]);
        let seen: Vec<String> = events.try_iter().collect();
        // Readiness fails as the check is added (not known to pass yet); its
        // first result is reported with its reason, once.
        assert_eq!(
            seen,
            [
                "readiness changed: not ready (failing: disk)",
                "check disk failed: full",
            ]
        );
    }
}
