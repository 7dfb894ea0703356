//! What a heartbeat and a thread guard share with the health state: when
//! the last beat came, and why a guarded thread died. The handles that
//! write them are in `worker.rs`; `health.rs` reads them for its verdicts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::{lock, Wake};

/// What a heartbeat shares with the health state.
pub(crate) struct Pulse {
    epoch: Instant,
    /// The last beat, in nanoseconds since `epoch` (0: none yet, so the
    /// first period counts from registration).
    last: AtomicU64,
    pub period: Duration,
    /// Set while the health state counts it overdue: the next beat wakes
    /// the watcher, which says it recovered.
    pub overdue: AtomicBool,
    alarm: Arc<Wake>,
}

impl Pulse {
    pub fn new(period: Duration, alarm: Arc<Wake>) -> Pulse {
        Pulse {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            period,
            overdue: AtomicBool::new(false),
            alarm,
        }
    }

    pub fn beat(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::SeqCst);
        if self.overdue.load(Ordering::SeqCst) {
            self.alarm.poke();
        }
    }

    pub fn since_last(&self) -> Duration {
        let last = Duration::from_nanos(self.last.load(Ordering::SeqCst));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// When it becomes overdue unless it beats first.
    pub fn deadline(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last.load(Ordering::SeqCst)) + self.period
    }

    /// Why it fails, if it is overdue now: how long since the last beat.
    pub fn overdue_reason(&self) -> Option<String> {
        let since = self.since_last();
        (since > self.period).then(|| {
            format!(
                "no beat for {:.3} s (period {:.3} s)",
                since.as_secs_f64(),
                self.period.as_secs_f64()
            )
        })
    }
}

/// What a thread guard shares with the health state: why its thread died,
/// once it has.
#[derive(Debug, Default)]
pub(crate) struct Fate {
    pub died: Mutex<Option<String>>,
}

impl Fate {
    pub fn reason(&self) -> Option<String> {
        lock(&self.died).clone()
    }
}
