//! Shared health state: the readiness flag, named targets, checks, and the
//! drain switch, and the verdicts and reports made of them. No I/O and no
//! HTTP: servers read it, the service flips it. Around it, each in a file of
//! its own: the threads that keep it current (`background`), who hears of
//! its changes (`watchers`), and one instant of it for `/metrics` (`snapshot`).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

mod background;
mod kind;
mod snapshot;
mod watchers;

pub(crate) use self::kind::{Kind, PerKind};
pub(crate) use self::snapshot::{Gauge, Snapshot};
pub(crate) use self::watchers::Watch;
use self::watchers::Watchers;
use crate::check::{Check, Runner, Schedule, Thresholds};
use crate::date::now;
use crate::error::{invalid, positive, refused, Error};
use crate::event::ItemKind;
use crate::pulse::{Fate, Pulse};
use crate::sync::{lock, read, write, Latch, Wake};

/// Most targets and checks one [`Health`] holds (so bodies stay small).
pub(crate) const MAX_ENTRIES: usize = 32;
/// Most heartbeats and thread guards one [`Health`] holds: a pool of workers
/// guards each of its threads.
pub(crate) const MAX_WORKERS: usize = 1024;
/// Longest target or check name, in bytes.
pub(crate) const MAX_NAME: usize = 64;

/// Why a readiness check that has not run yet fails.
const NOT_RUN: &str = "not checked yet";

/// Names the built-in entries use; no target or check may take them.
const RESERVED: [&str; 3] = ["ready", "shutdown", "ping"];

/// Whether the service is alive and ready, shared by every clone.
///
/// Readiness (`/readyz`, and `/healthz` as Dapr means it) holds when all of
/// these do:
/// - the service's own flag, [`ready`](Health::ready) / [`not_ready`](Health::not_ready),
///   which starts **not ready**, as Dapr's health server does;
/// - every readiness [`Target`] a component registered is ready;
/// - every readiness [`Check`] passes;
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
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    ready: AtomicBool,
    draining: AtomicBool,
    /// Per kind: targets not ready plus background checks not passing.
    failing: PerKind<AtomicUsize>,
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

struct Entry {
    name: String,
    kind: Kind,
    state: EntryState,
    /// Runs of a check that failed (timeouts and panics included).
    failures: AtomicU64,
    /// For an entry a user holds a handle to (a target, heartbeat or guard):
    /// alive while a handle is. Once every handle is gone, its name can be
    /// taken again (a restarted worker, a component started anew).
    holder: Option<Weak<()>>,
}

impl Entry {
    /// Whether it counts in the failing counters now: a target not ready, a
    /// background check not passing, a guard whose thread died.
    fn counts_failing(&self) -> bool {
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
    fn held_by(&self, holder: &Arc<()>) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|h| h.ptr_eq(&Arc::downgrade(holder)))
    }

    fn new(name: &str, kind: Kind, state: EntryState, holder: Option<Weak<()>>) -> Entry {
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
    fn item(&self, at: u64) -> Item {
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
                None => (Status::Fail, Some(NOT_RUN.to_string()), at),
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
    fn on_request(&self) -> bool {
        matches!(
            self,
            EntryState::OnRequest { .. } | EntryState::Heartbeat(_)
        )
    }
}

enum EntryState {
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
    fn fails(&self) -> bool {
        !self.excluded && self.status == Status::Fail
    }
}

/// The one verdict: a set of items passes when none of them fails it.
pub(crate) fn passes<'a>(items: impl IntoIterator<Item = &'a Item>) -> bool {
    !items.into_iter().any(Item::fails)
}

/// The names of the items that fail the verdict, in order.
fn failing(items: &[Item]) -> Vec<&str> {
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
        failing(&self.items)
    }
}

impl Default for Health {
    fn default() -> Health {
        Health {
            inner: Arc::new(Inner {
                ready: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                failing: Default::default(),
                on_request: Default::default(),
                entries: RwLock::default(),
                heartbeats: Mutex::new(None),
                watchers: Mutex::default(),
                stop: Arc::default(),
            }),
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

    /// Registers a readiness target called `name`, **not ready** until the
    /// component flips it: readiness holds only when every target is ready.
    ///
    /// Names are 1 to 64 bytes of letters, digits, `.`, `_` and `-`, unique
    /// across targets, checks, heartbeats and guards; `ready`, `shutdown` and
    /// `ping` are built in. A duplicate or invalid name is an error, never a
    /// silent merge. A target's, heartbeat's or guard's name is free again
    /// once every handle to it is gone: registering it then replaces the old
    /// entry, in its place (a restarted component). A `Health` holds at most
    /// 32 targets and checks, and apart from them 1024 heartbeats and guards.
    ///
    /// # Errors
    ///
    /// The error's [`kind`](Error::kind) is `InvalidInput` for an invalid
    /// name or one too many, `AlreadyExists` for a name taken.
    pub fn target(&self, name: &str) -> Result<Target, Error> {
        let (entry, holder) = self.add_target(name, Kind::Readiness, false)?;
        Ok(Target(Flag {
            health: self.clone(),
            entry,
            _holder: holder,
        }))
    }

    /// Registers a liveness target called `name`, **alive** until the
    /// component says otherwise (say, a watchdog seeing its loop stall).
    /// Names and errors as for [`target`](Health::target).
    ///
    /// ```
    /// let health = healthz::Health::new();
    /// let main_loop = health.liveness_target("main-loop")?;
    /// assert!(health.is_alive());
    /// main_loop.not_alive(); // the loop saw itself stall
    /// assert!(!health.is_alive());
    /// main_loop.alive();
    /// assert!(health.is_alive());
    /// # Ok::<(), healthz::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`target`](Health::target): `InvalidInput` for an invalid name or
    /// one too many, `AlreadyExists` for a name taken.
    pub fn liveness_target(&self, name: &str) -> Result<LivenessTarget, Error> {
        let (entry, holder) = self.add_target(name, Kind::Liveness, true)?;
        Ok(LivenessTarget(Flag {
            health: self.clone(),
            entry,
            _holder: holder,
        }))
    }

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

    fn add_target(&self, name: &str, kind: Kind, ready: bool) -> io::Result<(Arc<Entry>, Holder)> {
        let state = EntryState::Target(AtomicBool::new(ready));
        let (entry, holder) = self.held(name, kind, state);
        self.register(entry.clone())?;
        Ok((entry, holder))
    }

    fn add_check_of(&self, check: Check, kind: Kind) -> io::Result<()> {
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

    /// Adds `entry`, or puts it in the place of an abandoned entry of the
    /// same name (a restarted worker's), keeping the counters in step.
    fn register(&self, entry: Arc<Entry>) -> io::Result<()> {
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
            let old = match at {
                Some(at) => Some(std::mem::replace(&mut entries[at], entry.clone())),
                None => {
                    entries.push(entry.clone());
                    None
                }
            };
            if let Some(old) = &old {
                self.count(old, false);
            }
            old
        };
        self.changed(entry.kind);
        if let Some(old) = replaced.filter(|old| old.kind != entry.kind) {
            self.changed(old.kind);
        }
        Ok(())
    }

    /// Adds (or takes away) what `entry` contributes to the counters that
    /// [`quick`](Self::quick) reads.
    fn count(&self, entry: &Entry, add: bool) {
        if entry.counts_failing() {
            self.count_failing(entry.kind, add);
        }
        if entry.state.on_request() {
            let counter = &self.inner.on_request[entry.kind];
            match add {
                true => counter.fetch_add(1, Ordering::SeqCst),
                false => counter.fetch_sub(1, Ordering::SeqCst),
            };
        }
    }

    /// Registers a heartbeat, starting the thread that watches heartbeats if
    /// it is the first.
    pub(crate) fn add_heartbeat(
        &self,
        name: &str,
        period: Duration,
    ) -> Result<(Arc<Pulse>, Holder), Error> {
        positive("a heartbeat's period", period)?;
        let alarm = self.heartbeat_alarm()?;
        let pulse = Arc::new(Pulse::new(period, alarm.clone()));
        let (entry, holder) = self.held(name, Kind::Liveness, EntryState::Heartbeat(pulse.clone()));
        self.register(entry)?;
        alarm.poke(); // a new deadline to wait for
        Ok((pulse, holder))
    }

    /// Registers a thread guard, alive.
    pub(crate) fn add_guard(&self, name: &str) -> Result<(Arc<Fate>, Holder), Error> {
        let fate = Arc::new(Fate::default());
        let (entry, holder) = self.held(name, Kind::Liveness, EntryState::Guard(fate.clone()));
        self.register(entry)?;
        Ok((fate, holder))
    }

    /// An entry a user's handle holds, and that handle's holder.
    fn held(&self, name: &str, kind: Kind, state: EntryState) -> (Arc<Entry>, Holder) {
        let holder = Holder::default();
        let entry = Entry::new(name, kind, state, Some(Arc::downgrade(&holder)));
        (Arc::new(entry), holder)
    }

    /// A guarded thread died: liveness fails, with `reason`, once.
    pub(crate) fn guard_failed(&self, name: &str, fate: &Fate, reason: String) {
        {
            let mut died = lock(&fate.died);
            if died.is_some() {
                return;
            }
            *died = Some(reason.clone());
        }
        self.count_failing(Kind::Liveness, true);
        self.check_changed(name, ItemKind::Guard, Err(reason));
        self.changed(Kind::Liveness);
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

    /// Decides readiness (or liveness) for a probe, reading only atomics, when
    /// no check has to run for it: `None` means "call [`report`](Self::report)".
    pub(crate) fn quick(&self, kind: Kind) -> Option<bool> {
        let inner = &self.inner;
        if inner.on_request[kind].load(Ordering::SeqCst) > 0 {
            return None;
        }
        let own = match kind {
            Kind::Readiness => {
                inner.ready.load(Ordering::SeqCst) && !inner.draining.load(Ordering::SeqCst)
            }
            Kind::Liveness => true,
        };
        Some(own && inner.failing[kind].load(Ordering::SeqCst) == 0)
    }

    /// The one place the failing counters change: an entry of `kind` that
    /// counts in them (a target, or a background check) started failing, or
    /// stopped. They let [`quick`](Self::quick) answer from atomics alone.
    fn count_failing(&self, kind: Kind, failing: bool) {
        let counter = &self.inner.failing[kind];
        if failing {
            counter.fetch_add(1, Ordering::SeqCst);
        } else {
            counter.fetch_sub(1, Ordering::SeqCst);
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
        let entries: Vec<Arc<Entry>> = read(&self.inner.entries)
            .iter()
            .filter(|e| e.kind == kind && wanted(&e.name))
            .cloned()
            .collect();
        // Start every on-request check first, so they run side by side.
        let started: Vec<_> = entries
            .iter()
            .filter(|e| !exclude.contains(&e.name.as_str()))
            .filter_map(|e| match &e.state {
                EntryState::OnRequest { runner, .. } => Some((e, runner, runner.start())),
                _ => None,
            })
            .collect();
        for (entry, runner, ticket) in started {
            let outcome = ticket.and_then(|ticket| runner.wait(ticket));
            self.record_on_request(entry, outcome);
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

    /// Keeps an on-request check's latest result, and reports a change.
    fn record_on_request(&self, entry: &Entry, outcome: Result<(), String>) {
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

    /// Every item of `kind` as known now: the built-in ones, then `entries`.
    /// Reads only; runs nothing and reports nothing.
    fn items(&self, kind: Kind, entries: &[Arc<Entry>]) -> Vec<Item> {
        let at = now();
        let mut items = self.builtin_items(kind, at);
        items.extend(entries.iter().map(|entry| entry.item(at)));
        items
    }

    fn builtin_items(&self, kind: Kind, at: u64) -> Vec<Item> {
        let item = |name: &str, ok: bool, reason: &str| Item {
            name: name.to_string(),
            status: if ok { Status::Pass } else { Status::Fail },
            reason: (!ok).then(|| reason.to_string()),
            shown: false,
            excluded: false,
            at,
        };
        match kind {
            Kind::Readiness => vec![
                item(
                    "ready",
                    self.inner.ready.load(Ordering::SeqCst),
                    "the service has not said it is ready",
                ),
                item("shutdown", !self.is_draining(), "draining before shutdown"),
            ],
            Kind::Liveness => vec![item("ping", true, "")],
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

    /// What fails now by the latest known results, without running any check.
    pub(crate) fn failing(&self, kind: Kind) -> Vec<String> {
        let entries: Vec<Arc<Entry>> = read(&self.inner.entries)
            .iter()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect();
        let items = self.items(kind, &entries);
        failing(&items).into_iter().map(String::from).collect()
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

/// A component's own readiness, registered by name on a [`Health`] with
/// [`Health::target`] and flipped from the component's thread. Clones flip
/// the same target. Dropping it does not unregister it: a component that
/// went away without saying it is ready keeps readiness failing. Once every
/// clone is dropped, its name is free again: the component, started anew,
/// registers it again and the new target (not ready) takes the old one's place.
///
/// ```
/// let health = healthz::Health::new();
/// health.ready();
/// let cache = health.target("cache-warmer")?;
/// assert!(!health.is_ready());
/// std::thread::spawn(move || {
///     // ... warm the cache ...
///     cache.ready();
/// })
/// .join()
/// .unwrap();
/// assert!(health.is_ready());
/// # Ok::<(), healthz::Error>(())
/// ```
///
/// Dropped at once, it would hold readiness back for good; the compiler says so:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), healthz::Error> {
/// let health = healthz::Health::new();
/// health.target("cache")?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a target nobody holds can never be made ready, and readiness fails: keep it and call ready()"]
pub struct Target(Flag);

impl Target {
    /// The name it was registered under.
    pub fn name(&self) -> &str {
        &self.0.entry.name
    }

    /// Marks it ready.
    pub fn ready(&self) {
        self.0.set(true);
    }

    /// Marks it not ready: readiness fails until it is ready again.
    pub fn not_ready(&self) {
        self.0.set(false);
    }

    /// Sets it from a condition.
    pub fn set_ready(&self, ready: bool) {
        self.0.set(ready);
    }

    /// Whether it is ready now.
    pub fn is_ready(&self) -> bool {
        self.0.get()
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name())
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// A component's own liveness, registered by name on a [`Health`] with
/// [`Health::liveness_target`]: alive until the component says otherwise,
/// and then `/livez` fails (and systemd's watchdog stops) until it is alive
/// again. Clones flip the same target; dropping it does not unregister it,
/// and once every clone is dropped its name is free to register again.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), healthz::Error> {
/// let health = healthz::Health::new();
/// health.liveness_target("main-loop")?; // nobody can say it stalled
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a liveness target nobody holds can never say the component stalled: keep it"]
pub struct LivenessTarget(Flag);

impl LivenessTarget {
    /// The name it was registered under.
    pub fn name(&self) -> &str {
        &self.0.entry.name
    }

    /// Marks it alive.
    pub fn alive(&self) {
        self.0.set(true);
    }

    /// Marks it not alive: liveness fails until it is alive again.
    pub fn not_alive(&self) {
        self.0.set(false);
    }

    /// Sets it from a condition.
    pub fn set_alive(&self, alive: bool) {
        self.0.set(alive);
    }

    /// Whether it is alive now.
    pub fn is_alive(&self) -> bool {
        self.0.get()
    }
}

impl fmt::Debug for LivenessTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LivenessTarget")
            .field("name", &self.name())
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// The flag behind a target of either kind.
#[derive(Clone)]
struct Flag {
    health: Health,
    entry: Arc<Entry>,
    _holder: Holder,
}

/// What a user's handle holds while it lives: once every clone is gone, the
/// entry is abandoned and its name free to take again.
pub(crate) type Holder = Arc<()>;

impl Flag {
    fn set(&self, on: bool) {
        let EntryState::Target(flag) = &self.entry.state else {
            return;
        };
        if flag.swap(on, Ordering::SeqCst) == on {
            return;
        }
        self.health.count_failing(self.entry.kind, !on);
        self.health.changed(self.entry.kind);
    }

    fn get(&self) -> bool {
        matches!(&self.entry.state, EntryState::Target(flag) if flag.load(Ordering::SeqCst))
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
