//! The server's counters: one relaxed atomic add per connection and per
//! answer on the hot path, read back as plain numbers by `/metrics` and by
//! shutdown's last event.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::http::STATUSES;

/// What one server counts over its life.
#[derive(Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    evicted: AtomicU64,
    malformed: AtomicU64,
    /// Answers by status, indexed as http's `STATUSES` (the last slot: any other).
    answered: [AtomicU64; STATUSES.len() + 1],
}

impl Counters {
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn answered(&self, status: u16) {
        let at = STATUSES.iter().position(|(code, _)| *code == status);
        let at = at.unwrap_or(STATUSES.len());
        self.answered[at].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Every counter as it stands now.
    pub fn counts(&self) -> Counts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counts {
            accepted: load(&self.accepted),
            evicted: load(&self.evicted),
            malformed: load(&self.malformed),
            answered: STATUSES
                .iter()
                .map(|(code, _)| *code)
                .chain([0])
                .zip(&self.answered)
                .map(|(status, counter)| (status, load(counter)))
                .collect(),
        }
    }
}

/// The counters as plain numbers, read once for a scrape.
pub(crate) struct Counts {
    pub accepted: u64,
    pub evicted: u64,
    pub malformed: u64,
    /// Answers by status, as http's `STATUSES` (0: any other).
    pub answered: Vec<(u16, u64)>,
}
