//! systemd's notify protocol (sd_notify(3)), written from the protocol with
//! std alone: `READY=1` once readiness first holds, `STATUS=` on every
//! readiness change, `STOPPING=1` when shutdown starts, and `WATCHDOG=1`
//! only while liveness passes. Linux only; elsewhere there is never anything
//! to notify.
//!
//! Every message says what a probe would answer at that moment: readiness and
//! liveness are full reports, on-request checks run, made on threads of this
//! module's own. The thread that flips health only wakes them, and a message
//! is sent without blocking: a receiver that stops reading loses messages
//! (reported once), never a thread.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::event::{Event, Events};
use crate::health::{Health, Kind, Watch};
use crate::shutdown::budget::NOTIFY_GRACE;
use crate::sync::{Latch, SetOnDrop, Wake};

/// Pings per watchdog interval. sd_watchdog_enabled(3) asks for at least two;
/// four leave room for three late or lost pings (a busy host, or on-request
/// liveness checks taking their time before a ping) before systemd acts, and
/// make the restart after liveness fails come between 3/4 of `WatchdogSec`
/// and all of it.
const PINGS_PER_INTERVAL: u32 = 4;
/// The shortest watchdog ping interval, whatever `WATCHDOG_USEC` says.
const MIN_PING: Duration = Duration::from_millis(10);

/// systemd's side of one server: the notifier, the thread that reports
/// readiness to it, the watchdog (if systemd asked for one), and the watch
/// that wakes both when health changes.
pub(crate) struct Systemd {
    notifier: Arc<Notifier>,
    /// What wakes the readiness thread (every change) and the watchdog (recovery).
    _watches: [Watch; 2],
    _readiness: NotifyThread,
    _watchdog: Option<NotifyThread>,
}

impl Systemd {
    /// Starts notifying systemd about `health`, if the environment names a
    /// socket; `None` (and nothing opened or started) when it does not.
    /// While on-request checks gate readiness, they run every `recheck`.
    pub fn start(
        health: &Health,
        events: &Events,
        recheck: Duration,
        stack_size: usize,
    ) -> Option<Systemd> {
        Systemd::start_with(&Env::read(), health, events, recheck, stack_size)
    }

    fn start_with(
        env: &Env,
        health: &Health,
        events: &Events,
        recheck: Duration,
        stack_size: usize,
    ) -> Option<Systemd> {
        let notifier = Notifier::new(env, events.clone())?;
        let watchdog_every = env.watchdog().unwrap_or_else(|reason| {
            notifier.report(io::Error::new(io::ErrorKind::InvalidInput, reason));
            None
        });
        // Follow first, then start: no change can fall between the two.
        let (readiness_wake, watchdog_wake) =
            (Arc::new(Wake::default()), Arc::new(Wake::default()));
        let follow = health.follow(Kind::Readiness, readiness_wake.clone());
        let watch = {
            let watchdog = watchdog_wake.clone();
            health.watch(Arc::new(move |event: &Event| {
                // Recovered: ping at once rather than at the next tick.
                if let Event::LivenessChanged { alive: true, .. } = event {
                    watchdog.poke();
                }
            }))
        };
        let start = |name: &str, wake: Arc<Wake>, body: Box<dyn FnOnce(&Wake) + Send>| {
            NotifyThread::start(name, stack_size, wake, body)
                .map_err(|error| notifier.report(error))
                .ok()
        };
        let (n, h) = (notifier.clone(), health.clone());
        let readiness = start(
            "healthz-notify",
            readiness_wake,
            Box::new(move |wake| n.follow_readiness(&h, wake, recheck)),
        )?;
        let watchdog = watchdog_every.and_then(|every| {
            let (n, h) = (notifier.clone(), health.clone());
            start(
                "healthz-watchdog",
                watchdog_wake,
                Box::new(move |wake| n.keep_watchdog(&h, wake, every)),
            )
        });
        Some(Systemd {
            notifier,
            _watches: [follow, watch],
            _readiness: readiness,
            _watchdog: watchdog,
        })
    }

    /// Shutdown (or a drain) has started.
    pub fn stopping(&self) {
        self.notifier.stopping();
    }

    /// Ends its threads; nothing is sent after this (dropping does the same).
    pub fn stop(self) {
        drop(self);
    }
}

/// Where systemd listens, and the socket messages leave from. Off Linux
/// there is none: the type cannot be made there.
pub(crate) struct Notifier {
    #[cfg(target_os = "linux")]
    socket: std::os::unix::net::UnixDatagram,
    #[cfg(target_os = "linux")]
    addr: std::os::unix::net::SocketAddr,
    #[cfg(not(target_os = "linux"))]
    never: std::convert::Infallible,
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
    /// Read on Linux only: elsewhere there is no systemd to notify.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
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

    /// How often to ping the watchdog systemd asked this process for: a
    /// quarter of `WATCHDOG_USEC` ([`PINGS_PER_INTERVAL`]), never under
    /// [`MIN_PING`]. `None` when it asked for
    /// none (unset or 0), or for another process (`WATCHDOG_PID`); an error
    /// saying why when either variable cannot be read.
    pub fn watchdog(&self) -> Result<Option<Duration>, String> {
        let Some(usec) = self.watchdog_usec.as_deref() else {
            return Ok(None);
        };
        let usec: u64 = usec.parse().map_err(|_| {
            format!("WATCHDOG_USEC=`{usec}` is not a number of microseconds; no watchdog pings")
        })?;
        if let Some(pid) = self.watchdog_pid.as_deref() {
            let pid: u32 = pid.parse().map_err(|_| {
                format!("WATCHDOG_PID=`{pid}` is not a process id; no watchdog pings")
            })?;
            if pid != std::process::id() {
                return Ok(None);
            }
        }
        let every = Duration::from_micros(usec) / PINGS_PER_INTERVAL;
        Ok((usec > 0).then(|| every.max(MIN_PING)))
    }
}

impl Notifier {
    /// Off Linux, never a notifier: nothing is opened and nothing is sent.
    #[cfg(not(target_os = "linux"))]
    pub fn new(_env: &Env, _events: Events) -> Option<Arc<Notifier>> {
        None
    }

    /// A notifier for the socket `env` names, or `None` when there is none
    /// (or it cannot be opened: that is reported).
    #[cfg(target_os = "linux")]
    pub fn new(env: &Env, events: Events) -> Option<Arc<Notifier>> {
        let name = env.notify_socket.clone()?;
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
        let socket = UnixDatagram::unbound()?;
        // A receiver that stops reading must never hold a thread of ours.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            addr,
            name,
            events,
            ready_sent: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        })
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

    /// The readiness thread: tells systemd where readiness stands, then
    /// again after every change to it (woken by each one, whether or not
    /// the verdict flips), until stopped. What it says is a full report, as
    /// a probe of `/readyz` gives: on-request checks run for it at once when
    /// one has never run, and otherwise every `recheck`, since their results
    /// change with nobody flipping anything. Between runs it reads their last
    /// results, so a check that changes its answer on every run cannot keep
    /// this thread running it back to back.
    fn follow_readiness(&self, health: &Health, wake: &Wake, recheck: Duration) {
        let mut told: Option<Vec<String>> = None;
        let mut ran: Option<Instant> = None;
        loop {
            let due = ran.map_or(true, |at| at.elapsed() >= recheck);
            let failing = if due || health.unrun(Kind::Readiness) {
                ran = Some(Instant::now());
                health
                    .report(Kind::Readiness, None, &[])
                    .map(|report| report.failing().into_iter().map(String::from).collect())
            } else {
                Some(health.failing(Kind::Readiness))
            };
            if let Some(failing) = failing {
                if told.as_ref() != Some(&failing) {
                    self.readiness(failing.is_empty(), &failing);
                    told = Some(failing);
                }
            }
            let again = health.quick(Kind::Readiness).is_none().then(|| {
                let since = ran.map_or(Duration::ZERO, |at| at.elapsed());
                recheck.saturating_sub(since)
            });
            if !wake.wait(again) {
                return;
            }
        }
    }

    /// The watchdog thread: `WATCHDOG=1` every `every`, and at once when
    /// liveness recovers, each time only if a liveness probe (on-request
    /// checks included) passes; until stopped.
    fn keep_watchdog(&self, health: &Health, wake: &Wake, every: Duration) {
        while wake.wait(Some(every)) {
            let report = health.report(Kind::Liveness, None, &[]);
            if report.is_some_and(|r| r.passed()) {
                self.send("WATCHDOG=1");
            }
        }
    }

    fn send(&self, message: &str) {
        if let Err(error) = self.send_to(message.as_bytes()) {
            self.report(error);
        }
    }

    /// Reports a failure once; later ones are dropped, as is the message.
    fn report(&self, error: io::Error) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            self.events.emit(Event::NotifyError {
                socket: self.name.clone(),
                error,
            });
        }
    }

    #[cfg(target_os = "linux")]
    fn send_to(&self, message: &[u8]) -> io::Result<()> {
        self.socket.send_to_addr(message, &self.addr).map(drop)
    }

    #[cfg(not(target_os = "linux"))]
    fn send_to(&self, _message: &[u8]) -> io::Result<()> {
        match self.never {}
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("socket", &self.name)
            .finish()
    }
}

/// A thread of this module; dropping it stops it, and joins it if it ends
/// within [`NOTIFY_GRACE`] (it may be running a check that takes longer).
struct NotifyThread {
    wake: Arc<Wake>,
    ended: Arc<Latch>,
    thread: Option<JoinHandle<()>>,
}

impl NotifyThread {
    fn start(
        name: &str,
        stack_size: usize,
        wake: Arc<Wake>,
        body: Box<dyn FnOnce(&Wake) + Send>,
    ) -> io::Result<NotifyThread> {
        let ended = Arc::new(Latch::default());
        let (its_wake, its_end) = (wake.clone(), ended.clone());
        let thread = thread::Builder::new()
            .name(name.into())
            .stack_size(stack_size)
            .spawn(move || {
                let _ended = SetOnDrop(&its_end);
                body(&its_wake);
            })?;
        Ok(NotifyThread {
            wake,
            ended,
            thread: Some(thread),
        })
    }
}

impl Drop for NotifyThread {
    fn drop(&mut self) {
        self.wake.stop();
        if self.ended.wait_timeout(NOTIFY_GRACE) {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
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
    fn the_watchdog_pings_four_times_in_the_interval_systemd_asks_for() {
        let every = env(Some("2000000"), None).watchdog();
        assert_eq!(every, Ok(Some(Duration::from_millis(500))));
    }

    #[test]
    fn the_watchdog_never_pings_more_often_than_the_floor() {
        assert_eq!(env(Some("1"), None).watchdog(), Ok(Some(MIN_PING)));
    }

    #[test]
    fn the_watchdog_is_for_the_process_watchdog_pid_names() {
        let me = std::process::id().to_string();
        assert!(env(Some("1000"), Some(&me)).watchdog().unwrap().is_some());
        let other = (std::process::id() + 1).to_string();
        assert_eq!(env(Some("1000"), Some(&other)).watchdog(), Ok(None));
    }

    #[test]
    fn no_watchdog_without_a_positive_interval_and_an_unreadable_one_says_why() {
        assert_eq!(env(None, None).watchdog(), Ok(None));
        assert_eq!(env(Some("0"), None).watchdog(), Ok(None));
        let soon = env(Some("soon"), None).watchdog().unwrap_err();
        assert!(soon.contains("WATCHDOG_USEC=`soon`"), "{soon}");
        let pid = env(Some("1000"), Some("x")).watchdog().unwrap_err();
        assert!(pid.contains("WATCHDOG_PID=`x`"), "{pid}");
    }

    #[cfg(target_os = "linux")]
    mod linux {
        use super::super::*;
        use crate::health::Check;
        use crate::sync::lock;
        use std::os::unix::net::UnixDatagram;
        use std::path::PathBuf;
        use std::sync::atomic::AtomicBool;
        use std::sync::{mpsc, Mutex};

        const PATIENCE: Duration = Duration::from_secs(10);

        /// A datagram socket standing in for systemd's, on a fresh path.
        struct Receiver {
            socket: UnixDatagram,
            path: PathBuf,
        }

        impl Receiver {
            fn new(name: &str) -> Receiver {
                let path = std::env::temp_dir()
                    .join(format!("healthz-notify-{}-{name}.sock", std::process::id()));
                let _ = std::fs::remove_file(&path);
                let socket = UnixDatagram::bind(&path).unwrap();
                Receiver { socket, path }
            }

            fn env(&self, usec: Option<&str>) -> Env {
                Env {
                    notify_socket: Some(self.path.to_str().unwrap().into()),
                    watchdog_usec: usec.map(Into::into),
                    watchdog_pid: None,
                }
            }

            /// The next message, or `None` if none comes within `within`.
            fn within(&self, within: Duration) -> Option<String> {
                self.socket.set_read_timeout(Some(within)).unwrap();
                let mut buf = [0; 512];
                let n = self.socket.recv(&mut buf).ok()?;
                Some(String::from_utf8_lossy(&buf[..n]).into_owned())
            }

            fn next(&self) -> String {
                self.within(PATIENCE)
                    .expect("a message within the patience")
            }
        }

        impl Drop for Receiver {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.path);
            }
        }

        fn recorded() -> (Events, mpsc::Receiver<String>) {
            let (tx, rx) = mpsc::channel();
            let tx = Mutex::new(tx);
            let hook: crate::event::Hook = Arc::new(move |e: &Event| {
                let _ = lock(&tx).send(e.to_string());
            });
            (Events::new(Some(hook)), rx)
        }

        #[test]
        fn a_failing_on_request_check_holds_ready_back_until_it_passes() {
            let systemd = Receiver::new("on-request");
            let health = Health::new();
            let present = Arc::new(AtomicBool::new(false));
            let file = present.clone();
            let check = Check::new("config-file", move || {
                if file.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("missing".into())
                }
            });
            health.add_check(check).unwrap();
            health.ready();
            let recheck = Duration::from_millis(20);
            let (events, _) = recorded();
            let env = systemd.env(None);
            let running = Systemd::start_with(&env, &health, &events, recheck, 128 * 1024);
            assert_eq!(systemd.next(), "STATUS=not ready (failing: config-file)");
            // Many rechecks, and nothing new to say: no READY=1, no repeats.
            assert_eq!(systemd.within(Duration::from_millis(200)), None);
            present.store(true, Ordering::SeqCst);
            assert_eq!(systemd.next(), "READY=1\nSTATUS=ready");
            drop(running);
        }

        #[test]
        fn a_receiver_that_never_reads_blocks_nothing_and_is_reported_once() {
            let systemd = Receiver::new("never-reads");
            let health = Health::new();
            let alive = health.liveness_target("loop").unwrap();
            let (events, reports) = recorded();
            // A ping every 10 ms: the receiver's queue is full within moments.
            let env = systemd.env(Some("20000"));
            let running =
                Systemd::start_with(&env, &health, &events, Duration::from_secs(1), 128 * 1024);
            let failure = reports
                .recv_timeout(PATIENCE)
                .expect("the full queue is reported");
            assert!(failure.contains("systemd notification"), "{failure}");
            // Now every send would block: flips, pings and stopping go on.
            let (done, finished) = mpsc::channel();
            let flipper = thread::spawn(move || {
                for i in 0..500 {
                    health.set_ready(i % 2 == 0);
                    alive.set_alive(i % 3 != 0);
                }
                let running = running.unwrap();
                running.stopping();
                running.stop();
                done.send(()).unwrap();
            });
            finished
                .recv_timeout(PATIENCE)
                .expect("flips, STOPPING=1 and stop never wait on systemd");
            flipper.join().unwrap();
            let told: Vec<String> = reports.try_iter().collect();
            let failures = told
                .iter()
                .filter(|e| e.contains("systemd notification"))
                .count();
            assert_eq!(failures, 0, "reported once only: {told:?}");
        }
    }
}
