//! Targets: a component's own readiness or liveness, flipped from its thread
//! with one atomic swap.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Entry, EntryState, Health, Holder, Kind};
use crate::error::Error;

impl Health {
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
        Ok(Target(self.flag(name, Kind::Readiness)?))
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
        Ok(LivenessTarget(self.flag(name, Kind::Liveness)?))
    }

    /// Registers a target of `kind`, starting as its family does.
    fn flag(&self, name: &str, kind: Kind) -> io::Result<Flag> {
        let (entry, holder) = self.register_held(name, kind, EntryState::Target)?;
        Ok(Flag {
            health: self.clone(),
            entry,
            _holder: holder,
        })
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
pub struct Target(pub(super) Flag);

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
        self.0.debug("Target", "ready", f)
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
pub struct LivenessTarget(pub(super) Flag);

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
        self.0.debug("LivenessTarget", "alive", f)
    }
}

/// The flag behind a target of either kind.
#[derive(Clone)]
pub(super) struct Flag {
    health: Health,
    pub(super) entry: Arc<Entry>,
    _holder: Holder,
}

impl Flag {
    pub(super) fn set(&self, on: bool) {
        if self.health.mark(&self.entry, !on) {
            self.health.changed(self.entry.kind);
        }
    }

    fn get(&self) -> bool {
        !self.entry.failing.load(Ordering::SeqCst)
    }

    fn debug(&self, ty: &str, word: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, on) = (&self.entry.name, self.get());
        f.debug_struct(ty)
            .field("name", name)
            .field(word, &on)
            .finish()
    }
}
