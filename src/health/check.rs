//! Health checks: user closures run with a time bound, either when probed or
//! periodically in the background, and never more than one run at a time;
//! their results and the verdict the thresholds make of them (one `Results`
//! for both kinds of check); how the health state adds them and records a
//! result.

use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Entry, EntryState, Health, Kind, Status};
use crate::date::now;
use crate::error::{at_most_a_year, chain, invalid, positive, Error};
use crate::event::ItemKind;
use crate::sync::{lock, read, wait_until};

/// Why a check that has no result yet fails (a readiness one: not known to pass).
pub(crate) const NOT_CHECKED: &str = "not checked yet";

/// Longest failure reason kept, in bytes; longer ones are cut (bodies stay small).
pub(crate) const MAX_REASON: usize = 128;

/// A check's body: given the time it may take, `Ok` or why not.
type CheckFn = dyn Fn(Duration) -> Result<(), String> + Send + Sync;

/// What a check returns: `Ok(())` when healthy, or any error saying why not.
///
/// One concrete type, so that a closure's `Ok(())` needs no annotation, `?`
/// works on any error inside a check (`std::io::Error` and the like), and a
/// plain message is `Err("disk full".into())`. Only the error's text is kept,
/// with its causes (`source()`) joined into one line (`connecting to the
/// database: Connection refused (os error 111)`) and cut to 128 bytes: as the
/// failure reason in events and, when shown, in bodies.
///
/// ```
/// fn database_up() -> healthz::CheckResult {
///     let _config = std::env::var("HOME")?; // any error converts with `?`
///     Ok(())
/// }
/// let check = healthz::Check::new("database", database_up);
/// let disk = healthz::Check::new("disk", || Err("disk full".into()));
/// let fine = healthz::Check::new("fine", || Ok(()));
/// # let _ = (check, disk, fine);
/// ```
pub type CheckResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A named health check: a closure that returns `Ok(())` when healthy or an
/// error saying why not (a [`CheckResult`]).
///
/// By default it runs when probed, bounded by its [`timeout`](Check::timeout):
/// a slow or hung check counts as failed once the timeout passes, and while
/// one run is still going, later probes wait for that run instead of starting
/// another, so a check that never returns holds one thread, not one per probe.
///
/// With [`every`](Check::every) it runs periodically on a background thread
/// instead, with Kubernetes' probe knobs (initial delay, failure and success
/// thresholds), and probes read its last result without waiting.
///
/// A check that panics counts as failed.
///
/// ```
/// use std::time::Duration;
///
/// let health = healthz::Health::new();
/// let database_up = || -> std::io::Result<()> { Ok(()) };
/// health.add_check(
///     healthz::Check::new("database", move || Ok(database_up()?))
///         .timeout(Duration::from_millis(500)),
/// )?;
/// health.add_check(
///     healthz::Check::new("disk", || if true { Ok(()) } else { Err("disk full".into()) })
///         .every(Duration::from_secs(10))
///         .failure_threshold(3),
/// )?;
/// # Ok::<(), healthz::Error>(())
/// ```
///
/// A builder method's result dropped is a compile-time warning:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// let check = healthz::Check::new("db", || Ok(()));
/// check.timeout(std::time::Duration::from_secs(2)); // a new check, dropped
///
/// ```
#[must_use = "a check does nothing until added: pass it to add_check or add_liveness_check"]
pub struct Check {
    pub(crate) name: String,
    pub(crate) func: Arc<CheckFn>,
    pub(crate) timeout: Duration,
    pub(crate) schedule: Option<Schedule>,
}

/// How a background check runs: the knobs of a Kubernetes probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    pub interval: Duration,
    pub initial_delay: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl Check {
    /// A check called `name` (letters, digits, `.`, `_`, `-`; at most 64
    /// bytes) that runs `check` on each probe with a 1 s timeout.
    pub fn new(name: &str, check: impl Fn() -> CheckResult + Send + Sync + 'static) -> Check {
        Check::within(name, move |_| check())
    }

    /// A check whose body is told the time it may take (its
    /// [`timeout`](Check::timeout)), for one that waits on something it can
    /// bound itself, as a connect does (the ready-made checks are made this way).
    pub(crate) fn within(
        name: &str,
        check: impl Fn(Duration) -> CheckResult + Send + Sync + 'static,
    ) -> Check {
        Check {
            name: name.to_string(),
            func: Arc::new(move |budget| check(budget).map_err(|e| chain(&*e))),
            timeout: Duration::from_secs(1),
            schedule: None,
        }
    }

    /// Runs the check once, now, on the calling thread, and returns its
    /// verdict with the reason as events and bodies show it (causes joined,
    /// cut to 128 bytes; a panic is a failure). The timeout is not enforced
    /// here: this waits for the check however long it takes. For trying a
    /// check out (in a test, or once at start-up); a [`Health`](crate::Health)
    /// runs the checks added to it by itself.
    ///
    /// ```
    /// let disk = healthz::Check::new("disk", || Err("full".into()));
    /// assert_eq!(disk.run_now(), Err("full".to_string()));
    /// ```
    ///
    /// # Errors
    ///
    /// The check's reason when it fails.
    pub fn run_now(&self) -> Result<(), String> {
        run(&*self.func, self.timeout)
    }

    /// How long one run may take before it counts as failed. Default 1 s.
    #[must_use = "the builder returns the configured check: pass it to add_check"]
    pub fn timeout(mut self, timeout: Duration) -> Check {
        self.timeout = timeout;
        self
    }

    /// Runs the check in the background every `interval` instead of on each
    /// probe; probes read the last result.
    #[must_use = "the builder returns the configured check: pass it to add_check"]
    pub fn every(mut self, interval: Duration) -> Check {
        self.schedule_mut().interval = interval;
        self
    }

    /// For a background check: the wait before its first run. Default 0.
    #[must_use = "the builder returns the configured check: pass it to add_check"]
    pub fn initial_delay(mut self, delay: Duration) -> Check {
        self.schedule_mut().initial_delay = delay;
        self
    }

    /// For a background check: consecutive failures before it counts as
    /// failing. Default 3 (Kubernetes' default).
    #[must_use = "the builder returns the configured check: pass it to add_check"]
    pub fn failure_threshold(mut self, runs: u32) -> Check {
        self.schedule_mut().failure_threshold = runs;
        self
    }

    /// For a background check: consecutive successes before a failing check
    /// counts as passing again. Default 1.
    #[must_use = "the builder returns the configured check: pass it to add_check"]
    pub fn success_threshold(mut self, runs: u32) -> Check {
        self.schedule_mut().success_threshold = runs;
        self
    }

    fn schedule_mut(&mut self) -> &mut Schedule {
        self.schedule.get_or_insert(Schedule {
            interval: Duration::from_secs(10),
            initial_delay: Duration::ZERO,
            failure_threshold: 3,
            success_threshold: 1,
        })
    }

    pub(crate) fn validate(&self) -> io::Result<()> {
        let what = |setting: &str| format!("check `{}`: {setting}", self.name);
        positive(&what("timeout"), self.timeout)?;
        if let Some(s) = &self.schedule {
            positive(&what("interval"), s.interval)?;
            at_most_a_year(&what("initial delay"), s.initial_delay)?;
            if s.failure_threshold == 0 || s.success_threshold == 0 {
                return Err(invalid(what("thresholds must be at least 1")));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// Runs a check at most once at a time, with a time bound for each caller.
pub(crate) struct Runner {
    func: Arc<CheckFn>,
    timeout: Duration,
    state: Mutex<RunState>,
    finished: Condvar,
}

/// A run to wait for, and until when.
pub(crate) struct Ticket {
    run: u64,
    deadline: Instant,
}

#[derive(Default)]
struct RunState {
    started: u64,
    finished: u64,
    last: Option<Result<(), String>>,
    /// How long the last finished run took.
    took: Option<Duration>,
}

impl Runner {
    pub fn new(check: &Check) -> Arc<Runner> {
        Arc::new(Runner {
            func: check.func.clone(),
            timeout: check.timeout,
            state: Mutex::default(),
            finished: Condvar::new(),
        })
    }

    /// The result of a run that starts now, or of the one already going if a
    /// previous caller started it; a failure once the timeout passes.
    pub fn run(self: &Arc<Runner>) -> Result<(), String> {
        let ticket = self.start()?;
        self.wait(ticket)
    }

    /// Starts a run unless one is going; either way, returns what to wait for.
    pub fn start(self: &Arc<Runner>) -> Result<Ticket, String> {
        let deadline = Instant::now() + self.timeout;
        let mut state = lock(&self.state);
        if state.started == state.finished {
            let runner = self.clone();
            thread::Builder::new()
                .name("healthz-check".into())
                .spawn(move || runner.run_once())
                .map_err(|e| format!("cannot start the check: {e}"))?;
            state.started += 1;
        }
        Ok(Ticket {
            run: state.started,
            deadline,
        })
    }

    /// Waits for the run behind `ticket` until its deadline.
    pub fn wait(&self, ticket: Ticket) -> Result<(), String> {
        let state = lock(&self.state);
        let (state, finished) = wait_until(&self.finished, state, ticket.deadline, |s| {
            s.finished >= ticket.run
        });
        if !finished {
            return Err(format!("timed out after {:?}", self.timeout));
        }
        state.last.clone().unwrap_or(Ok(()))
    }

    /// How long the last finished run took; `None` before the first.
    pub fn last_duration(&self) -> Option<Duration> {
        lock(&self.state).took
    }

    fn run_once(&self) {
        let started = Instant::now();
        let outcome = run(&*self.func, self.timeout);
        let mut state = lock(&self.state);
        state.finished += 1;
        state.last = Some(outcome);
        state.took = Some(started.elapsed());
        self.finished.notify_all();
    }
}

/// One run of a check's body: its verdict, a panic being a failure.
fn run(func: &CheckFn, budget: Duration) -> Result<(), String> {
    match panic::catch_unwind(AssertUnwindSafe(|| func(budget))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(shorten(reason)),
        Err(_) => Err("the check panicked".to_string()),
    }
}

/// Keeps a reason short and on one line.
pub(crate) fn shorten(reason: String) -> String {
    let mut reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

/// A check's results so far and the verdict they make: `failure_threshold`
/// failures in a row fail it, `success_threshold` successes in a row pass it
/// again (one of either for a check run by each probe).
#[derive(Debug)]
pub(crate) struct Results {
    pub passing: bool,
    /// Consecutive failures, and consecutive successes.
    failures: u32,
    successes: u32,
    /// Runs that failed (timeouts and panics included), for `/metrics`.
    pub failed_runs: u64,
    /// The latest result (`None` before the first), and when it came (or,
    /// before it, when the check was added).
    pub last: Option<Result<(), String>>,
    at: u64,
}

impl Results {
    /// No result yet: `passing` as its family takes a check not known to fail.
    pub fn new(passing: bool) -> Results {
        Results {
            passing,
            failures: 0,
            successes: 0,
            failed_runs: 0,
            last: None,
            at: now(),
        }
    }

    /// Takes one result; whether it is news: the verdict flipped, or a first
    /// result tells why a check not known to pass fails.
    pub fn record(&mut self, outcome: Result<(), String>, schedule: Option<&Schedule>) -> bool {
        let (fail_after, pass_after) =
            schedule.map_or((1, 1), |s| (s.failure_threshold, s.success_threshold));
        let (was, first, failed) = (self.passing, self.last.is_none(), outcome.is_err());
        if !failed {
            self.successes += 1;
            self.failures = 0;
            self.passing |= self.successes >= pass_after;
        } else {
            self.failures += 1;
            self.failed_runs += 1;
            self.successes = 0;
            self.passing &= self.failures < fail_after;
        }
        self.last = Some(outcome);
        self.at = now();
        self.passing != was || (first && failed && !self.passing)
    }

    /// Its line in a report: a pass, a pass with failures under the
    /// threshold (a warning), or a failure; why; and when it was known.
    pub fn line(&self) -> (Status, Option<String>, u64) {
        let status = match (self.passing, self.failures) {
            (false, _) => Status::Fail,
            (true, 0) => Status::Pass,
            (true, _) => Status::Warn,
        };
        let reason = match &self.last {
            Some(last) => last.clone().err(),
            None => (!self.passing).then(|| NOT_CHECKED.to_string()),
        };
        (status, reason, self.at)
    }
}

impl Health {
    /// Adds a check that gates readiness: on each probe, or in the
    /// background with [`every`](Check::every).
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

    fn add_check_of(&self, check: Check, kind: Kind) -> io::Result<()> {
        check.validate()?;
        let state = EntryState::Check {
            runner: Runner::new(&check),
            schedule: check.schedule,
            results: Mutex::new(Results::new(kind.family().unknown_passes)),
        };
        let entry = self.register(&check.name, kind, state, None)?;
        if check.schedule.is_some() {
            self.spawn_background(entry)?;
        }
        Ok(())
    }

    /// Takes a check's result: its verdict and the counter move together,
    /// and news is reported once.
    pub(super) fn record(&self, entry: &Entry, outcome: Result<(), String>) {
        let EntryState::Check {
            schedule, results, ..
        } = &entry.state
        else {
            return;
        };
        let news = {
            let mut results = lock(results);
            let news = results.record(outcome.clone(), schedule.as_ref());
            self.mark(entry, !results.passing);
            news
        };
        if news {
            self.check_changed(&entry.name, ItemKind::Check, outcome);
            self.changed(entry.kind);
        }
    }

    /// Whether an on-request check of `kind` has never run: what is known
    /// of it says nothing yet.
    pub(crate) fn unrun(&self, kind: Kind) -> bool {
        read(&self.inner.entries).iter().any(|e| {
            e.kind == kind
                && e.on_request()
                && matches!(&e.state, EntryState::Check { results, .. } if lock(results).last.is_none())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Schedule = Schedule {
        interval: Duration::from_secs(1),
        initial_delay: Duration::ZERO,
        failure_threshold: 3,
        success_threshold: 2,
    };

    #[test]
    fn failing_needs_failure_threshold_consecutive_failures() {
        let mut t = Results::new(true);
        let s = Some(&SCHEDULE);
        assert!(!t.record(Err("a".into()), s));
        assert_eq!(t.line(), (Status::Warn, Some("a".into()), t.at));
        assert!(!t.record(Err("b".into()), s));
        assert!(!t.record(Ok(()), s), "a success resets the count");
        assert!(!t.record(Err("c".into()), s));
        assert!(!t.record(Err("d".into()), s));
        assert!(t.passing);
        assert!(t.record(Err("e".into()), s));
        assert!(!t.passing);
        assert_eq!(t.line().1, Some("e".into()));
    }

    #[test]
    fn passing_again_needs_success_threshold_consecutive_successes() {
        let mut t = Results::new(false);
        let s = Some(&SCHEDULE);
        assert_eq!(t.line().1.as_deref(), Some(NOT_CHECKED));
        assert!(!t.record(Ok(()), s));
        assert!(!t.record(Err("x".into()), s), "a failure resets the count");
        assert!(!t.record(Ok(()), s));
        assert!(t.record(Ok(()), s));
        assert!(t.passing);
    }

    #[test]
    fn a_check_run_by_each_probe_follows_its_last_result_and_a_first_failure_is_news() {
        let mut t = Results::new(false);
        assert!(t.record(Err("down".into()), None), "why it fails is news");
        assert!(!t.record(Err("down".into()), None));
        assert!(t.record(Ok(()), None));
        let mut alive = Results::new(true);
        assert!(!alive.record(Ok(()), None), "passing, as assumed");
        assert!(alive.record(Err("stuck".into()), None));
    }

    #[test]
    fn settings_out_of_range_are_refused_with_the_checks_name() {
        let check = || Check::new("db", || Ok(()));
        let year = Duration::from_secs(366 * 24 * 3600);
        let refused = [
            (
                check().timeout(Duration::ZERO),
                "check `db`: timeout must be greater than zero",
            ),
            (
                check().timeout(year),
                "check `db`: timeout must be at most a year",
            ),
            (
                check().every(Duration::ZERO),
                "check `db`: interval must be greater than zero",
            ),
            (
                check().initial_delay(year),
                "check `db`: initial delay must be at most a year",
            ),
            (
                check().failure_threshold(0),
                "check `db`: thresholds must be at least 1",
            ),
            (
                check().success_threshold(0),
                "check `db`: thresholds must be at least 1",
            ),
        ];
        for (check, message) in refused {
            let error = check.validate().unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(error.to_string(), format!("healthz: {message}"));
        }
        assert!(check().every(Duration::from_secs(1)).validate().is_ok());
    }

    #[test]
    fn reasons_are_cut_and_kept_on_one_line() {
        assert_eq!(shorten("a\nb".into()), "a b");
        let long = "é".repeat(200);
        let cut = shorten(long);
        assert!(cut.len() <= MAX_REASON && cut.chars().all(|c| c == 'é'));
    }
}
