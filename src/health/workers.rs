//! A worker's entries: heartbeats and thread guards, registered here for the
//! handles in `worker.rs`, and a guarded thread's death.

use std::sync::Arc;
use std::time::Duration;

use super::{EntryState, Health, Holder, Kind};
use crate::error::{positive, Error};
use crate::event::ItemKind;
use crate::pulse::{Fate, Pulse};
use crate::sync::lock;

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
}
