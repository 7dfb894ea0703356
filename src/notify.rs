//! systemd's notify protocol (sd_notify(3)), written from the protocol with
//! std alone: `READY=1` once readiness first holds, `STATUS=` on every
//! readiness change, `STOPPING=1` when shutdown starts, and `WATCHDOG=1`
//! only while liveness passes. Linux only; elsewhere there is never anything
//! to notify.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::event::{Event, Events};
use crate::health::{Health, Kind, Watch};
use crate::sync::Latch;

/// systemd's side of one server: the notifier, the watch that forwards
/// readiness changes to it, and the watchdog, if systemd asked for one.
pub(crate) struct Systemd {
    notifier: Arc<Notifier>,
    _watch: Watch,
    _watchdog: Option<Watchdog>,
}

impl Systemd {
    /// Starts notifying systemd about `health`, if the environment names a
    /// socket; `None` (and nothing opened or started) when it does not.
    pub fn start(health: &Health, events: &Events, stack_size: usize) -> Option<Systemd> {
        let env = Env::read();
        let notifier = Notifier::new(&env, events.clone())?;
        let forward = notifier.clone();
        let watch = health.watch(Arc::new(move |event: &Event| {
            if let Event::ReadinessChanged { ready, failing } = event {
                forward.readiness(*ready, failing);
            }
        }));
        // Where readiness stands now; changes from here on come through the watch.
        notifier.readiness(health.is_ready(), &health.failing(Kind::Readiness));
        let watchdog = env.ping_every().and_then(|every| {
            match notifier.watchdog(health.clone(), every, stack_size) {
                Ok(watchdog) => Some(watchdog),
                Err(error) => {
                    let socket = notifier.name.clone();
                    events.emit(Event::NotifyError { socket, error });
                    None
                }
            }
        });
        Some(Systemd {
            notifier,
            _watch: watch,
            _watchdog: watchdog,
        })
    }

    /// Shutdown (or a drain) has started.
    pub fn stopping(&self) {
        self.notifier.stopping();
    }

    /// Ends the watchdog; nothing is sent after this (dropping does the same).
    pub fn stop(self) {
        drop(self);
    }
}

/// Where systemd listens, and the socket messages leave from.
pub(crate) struct Notifier {
    #[cfg(target_os = "linux")]
    socket: std::os::unix::net::UnixDatagram,
    #[cfg(target_os = "linux")]
    addr: std::os::unix::net::SocketAddr,
    /// The value of `NOTIFY_SOCKET`, for error messages.
    name: String,
    events: Events,
    ready_sent: AtomicBool,
    /// A failed send is reported once; later ones are not, and none is retried.
    failed: AtomicBool,
}

/// The environment systemd sets, read once when a server starts.
#[derive(Debug, Default)]
pub(crate) struct Env {
    pub notify_socket: Option<String>,
    pub watchdog_usec: Option<String>,
    pub watchdog_pid: Option<String>,
}

impl Env {
    pub fn read() -> Env {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Env {
            notify_socket: var("NOTIFY_SOCKET"),
            watchdog_usec: var("WATCHDOG_USEC"),
            watchdog_pid: var("WATCHDOG_PID"),
        }
    }

    /// Half the watchdog interval systemd asked this process for, if it did:
    /// `WATCHDOG_USEC` is set, and `WATCHDOG_PID` is unset or names us.
    pub fn ping_every(&self) -> Option<Duration> {
        let usec: u64 = self.watchdog_usec.as_deref()?.parse().ok()?;
        if let Some(pid) = self.watchdog_pid.as_deref() {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec) / 2)
    }
}

impl Notifier {
    /// A notifier for the socket `env` names, or `None` when there is none,
    /// or not on Linux: then nothing is opened and nothing is sent.
    pub fn new(env: &Env, events: Events) -> Option<Arc<Notifier>> {
        let name = env.notify_socket.clone()?;
        if !cfg!(target_os = "linux") {
            return None;
        }
        match Notifier::open(name.clone(), events.clone()) {
            Ok(notifier) => Some(Arc::new(notifier)),
            Err(error) => {
                events.emit(Event::NotifyError {
                    socket: name,
                    error,
                });
                None
            }
        }
    }

    /// Opens a socket to send to what `NOTIFY_SOCKET` names: a path, or
    /// `@name` in Linux's abstract namespace.
    #[cfg(target_os = "linux")]
    fn open(name: String, events: Events) -> io::Result<Notifier> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};

        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
            None if name.starts_with('/') => SocketAddr::from_pathname(&name)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an absolute path or an @abstract name",
                ))
            }
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            name,
            events,
            ready_sent: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn open(_name: String, _events: Events) -> io::Result<Notifier> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Tells systemd about readiness: `READY=1` with the first `ready`, and a
    /// `STATUS=` line naming what fails on every change.
    pub fn readiness(&self, ready: bool, failing: &[String]) {
        if !ready {
            self.send(&format!(
                "STATUS=not ready (failing: {})",
                failing.join(", ")
            ));
        } else if self.ready_sent.swap(true, Ordering::SeqCst) {
            self.send("STATUS=ready");
        } else {
            self.send("READY=1\nSTATUS=ready");
        }
    }

    /// Tells systemd the service is stopping.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Starts the watchdog: `WATCHDOG=1` every `every` while a liveness probe
    /// (on-request checks included) passes, until the returned handle stops.
    pub fn watchdog(
        self: &Arc<Self>,
        health: Health,
        every: Duration,
        stack_size: usize,
    ) -> io::Result<Watchdog> {
        let stop = Arc::new(Latch::default());
        let (notifier, stopped) = (self.clone(), stop.clone());
        let thread = thread::Builder::new()
            .name("healthz-watchdog".into())
            .stack_size(stack_size)
            .spawn(move || {
                while !stopped.wait_timeout(every) {
                    let report = health.report(Kind::Liveness, None, &[]);
                    if report.is_some_and(|r| r.passed()) {
                        notifier.send("WATCHDOG=1");
                    }
                }
            })?;
        Ok(Watchdog {
            stop,
            thread: Some(thread),
        })
    }

    fn send(&self, message: &str) {
        if let Err(error) = self.send_to(message.as_bytes()) {
            if !self.failed.swap(true, Ordering::SeqCst) {
                self.events.emit(Event::NotifyError {
                    socket: self.name.clone(),
                    error,
                });
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn send_to(&self, message: &[u8]) -> io::Result<()> {
        self.socket.send_to_addr(message, &self.addr).map(drop)
    }

    #[cfg(not(target_os = "linux"))]
    fn send_to(&self, _message: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("socket", &self.name)
            .finish()
    }
}

/// The running watchdog; dropping it ends and joins its thread.
pub(crate) struct Watchdog {
    stop: Arc<Latch>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(usec: Option<&str>, pid: Option<&str>) -> Env {
        Env {
            notify_socket: Some("/run/x".into()),
            watchdog_usec: usec.map(Into::into),
            watchdog_pid: pid.map(Into::into),
        }
    }

    #[test]
    fn the_watchdog_pings_at_half_the_interval_systemd_asks_for() {
        let every = env(Some("2000000"), None).ping_every();
        assert_eq!(every, Some(Duration::from_secs(1)));
    }

    #[test]
    fn the_watchdog_is_for_the_process_watchdog_pid_names() {
        let me = std::process::id().to_string();
        assert!(env(Some("1000"), Some(&me)).ping_every().is_some());
        let other = (std::process::id() + 1).to_string();
        assert_eq!(env(Some("1000"), Some(&other)).ping_every(), None);
        assert_eq!(env(Some("1000"), Some("x")).ping_every(), None);
    }

    #[test]
    fn no_watchdog_without_a_positive_interval() {
        assert_eq!(env(None, None).ping_every(), None);
        assert_eq!(env(Some("0"), None).ping_every(), None);
        assert_eq!(env(Some("soon"), None).ping_every(), None);
    }
}
