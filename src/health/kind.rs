//! The two families of health, readiness and liveness, and every word each
//! says, in one table: the paths it answers on, its label and gauge in
//! `/metrics`, the body of a failing probe, how it starts, its built-in
//! items and the event its flips make. Adding a family is a row here (and
//! a `match` arm wherever the compiler asks for one). [`PerKind`] is the
//! only place a kind is used as a number.

use std::ops::{Index, IndexMut};

use crate::event::Event;

/// Readiness or liveness: which family an item gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Readiness,
    Liveness,
}

/// What a family says, and how it starts.
#[derive(Debug)]
pub(crate) struct Family {
    /// The paths it answers on; the first is its name, in `?verbose`
    /// (`readyz check passed`) and as `type` in `/metrics`.
    pub paths: &'static [&'static str],
    /// The body of a failing plain probe.
    pub failing_body: &'static [u8],
    /// Its verdict's gauge in `/metrics`, and the gauge's help.
    pub gauge: &'static str,
    pub gauge_help: &'static str,
    /// Whether it holds before anything is known: a new `Health` is not
    /// ready (as Dapr's starts) and alive (as a Kubernetes liveness probe
    /// starts out successful).
    pub holds_at_first: bool,
    /// Whether a check that has no result yet counts as passing (for
    /// readiness, not known to pass is failing).
    pub unknown_passes: bool,
    /// Its built-in items, first in its reports.
    pub builtins: &'static [Builtin],
    /// The event that tells its verdict flipped, and what fails.
    pub event: fn(bool, Vec<String>) -> Event,
}

/// An item every report of a family lists before the registered ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    /// `ready`: the service's own flag.
    Flag,
    /// `shutdown`: not draining.
    Drain,
    /// `ping`: the process answers, so it passes.
    Ping,
}

impl Builtin {
    /// Every built-in item: their names are taken.
    pub const ALL: [Builtin; 3] = [Builtin::Flag, Builtin::Drain, Builtin::Ping];

    /// Its name, and why it fails when it does.
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            Builtin::Flag => ("ready", "the service has not said it is ready"),
            Builtin::Drain => ("shutdown", "draining before shutdown"),
            Builtin::Ping => ("ping", ""),
        }
    }
}

static FAMILIES: PerKind<Family> = PerKind([
    Family {
        paths: &["readyz", "healthz"],
        failing_body: b"not ready\n",
        gauge: "healthz_ready",
        gauge_help: "Whether the service is ready (1) or not (0), as /readyz would answer now.",
        holds_at_first: false,
        unknown_passes: false,
        builtins: &[Builtin::Flag, Builtin::Drain],
        event: |ready, failing| Event::ReadinessChanged { ready, failing },
    },
    Family {
        paths: &["livez"],
        failing_body: b"not alive\n",
        gauge: "healthz_alive",
        gauge_help: "Whether the service is alive (1) or not (0), as /livez would answer now.",
        holds_at_first: true,
        unknown_passes: true,
        builtins: &[Builtin::Ping],
        event: |alive, failing| Event::LivenessChanged { alive, failing },
    },
]);

impl Kind {
    /// Every family, in the order they are listed.
    pub const ALL: [Kind; 2] = [Kind::Readiness, Kind::Liveness];

    fn index(self) -> usize {
        match self {
            Kind::Readiness => 0,
            Kind::Liveness => 1,
        }
    }

    /// Its words.
    pub fn family(self) -> &'static Family {
        &FAMILIES[self]
    }

    /// Its name: `readyz` or `livez`.
    pub fn name(self) -> &'static str {
        self.family().paths[0]
    }

    /// The family that answers on `path` (a path segment: `healthz`), and
    /// the word it was asked by.
    pub fn of_path(path: &str) -> Option<(Kind, &'static str)> {
        Kind::ALL.into_iter().find_map(|kind| {
            let word = kind.family().paths.iter().find(|p| **p == path)?;
            Some((kind, *word))
        })
    }
}

/// One value per family.
#[derive(Debug, Default)]
pub(crate) struct PerKind<T>([T; Kind::ALL.len()]);

impl<T> PerKind<T> {
    /// One value per family, made from each kind.
    pub fn from_fn(make: impl Fn(Kind) -> T) -> PerKind<T> {
        PerKind(Kind::ALL.map(make))
    }
}

impl<T> Index<Kind> for PerKind<T> {
    type Output = T;

    fn index(&self, kind: Kind) -> &T {
        &self.0[kind.index()]
    }
}

impl<T> IndexMut<Kind> for PerKind<T> {
    fn index_mut(&mut self, kind: Kind) -> &mut T {
        &mut self.0[kind.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_names_one_family_and_every_family_is_listed_once() {
        assert_eq!(Kind::of_path("readyz"), Some((Kind::Readiness, "readyz")));
        assert_eq!(Kind::of_path("healthz"), Some((Kind::Readiness, "healthz")));
        assert_eq!(Kind::of_path("livez"), Some((Kind::Liveness, "livez")));
        assert_eq!(Kind::of_path("startupz"), None);
        for (n, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), n, "ALL is in table order");
        }
    }
}
