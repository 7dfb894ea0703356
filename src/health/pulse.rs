//! A worker's entries: what a heartbeat shares with the health state (when
//! the last beat came), the registration of heartbeats and guards, and a
//! guarded thread's death. The handles that write
//! them are in `worker.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{EntryState, Health, Holder, Kind};
use crate::error::{positive, Error};
use crate::event::ItemKind;
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

impl Health {
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
        let state = EntryState::Heartbeat(pulse.clone());
        let (_, holder) = self.register_held(name, Kind::Liveness, state)?;
        alarm.poke(); // a new deadline to wait for
        Ok((pulse, holder))
    }

    /// Registers a thread guard, alive.
    pub(crate) fn add_guard(&self, name: &str) -> Result<Holder, Error> {
        let state = EntryState::Guard(Mutex::default());
        Ok(self.register_held(name, Kind::Liveness, state)?.1)
    }

    /// The thread `holder`'s guard guards died: liveness fails, with
    /// `reason`, once.
    pub(crate) fn guard_failed(&self, holder: &Holder, reason: String) {
        let Some(entry) = self.held_by(holder) else {
            return;
        };
        let EntryState::Guard(died) = &entry.state else {
            return;
        };
        if lock(died).replace(reason.clone()).is_some() {
            return;
        }
        self.mark(&entry, true);
        self.check_changed(&entry.name, ItemKind::Guard, Err(reason));
        self.changed(Kind::Liveness);
    }
}
