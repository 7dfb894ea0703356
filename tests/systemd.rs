//! systemd's notify protocol as systemd sees it: the `serve` example runs as
//! a child with `NOTIFY_SOCKET` (and `WATCHDOG_USEC`, `WATCHDOG_PID`) in its
//! own environment, and a datagram socket bound here receives what it sends.
//! Unix datagram sockets and `/proc` are used as on Linux, so this runs there only.
#![cfg(target_os = "linux")]

mod common;

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use common::{Serve, PATIENCE};

/// A socket standing in for systemd's, on a fresh path or abstract name.
struct Systemd {
    socket: UnixDatagram,
    /// What goes into `NOTIFY_SOCKET`.
    name: String,
    path: Option<PathBuf>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn unique() -> String {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("healthz-test-{}-{n}", std::process::id())
}

impl Systemd {
    fn on_path() -> Systemd {
        let path = std::env::temp_dir().join(format!("{}.sock", unique()));
        let socket = UnixDatagram::bind(&path).unwrap();
        let name = path.to_str().unwrap().to_string();
        Systemd::ready(socket, name, Some(path))
    }

    fn on_abstract_name() -> Systemd {
        let name = unique();
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        Systemd::ready(socket, format!("@{name}"), None)
    }

    fn ready(socket: UnixDatagram, name: String, path: Option<PathBuf>) -> Systemd {
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        Systemd { socket, name, path }
    }

    /// The next datagram, waiting at most `within`.
    fn within(&self, within: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 1024];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("recv: {e}"),
        }
    }

    /// The next datagram; the test fails if none comes.
    fn next(&self) -> String {
        self.within(PATIENCE)
            .unwrap_or_else(|| panic!("no datagram within {PATIENCE:?}"))
    }

    /// The next datagram that is not a watchdog ping.
    fn next_not_ping(&self) -> String {
        loop {
            let message = self.next();
            if message != "WATCHDOG=1" {
                return message;
            }
        }
    }

    /// Every datagram that comes within `window`.
    fn during(&self, window: Duration) -> Vec<String> {
        let until = Instant::now() + window;
        let mut got = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return got;
            }
            match self.within(left) {
                Some(message) => got.push(message),
                None => return got,
            }
        }
    }

    fn env(&self) -> (&'static str, &str) {
        ("NOTIFY_SOCKET", &self.name)
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn exits_0(serve: &mut Serve) {
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
}

#[test]
fn ready_once_then_a_status_on_each_change_and_stopping_at_shutdown() {
    let systemd = Systemd::on_path();
    let mut serve = Serve::start_with_env(&["--not-ready", "--systemd"], &[systemd.env()]);
    assert_eq!(systemd.next(), "STATUS=not ready (failing: ready)");
    serve.command("ready");
    assert_eq!(systemd.next(), "READY=1\nSTATUS=ready");
    serve.command("not-ready");
    assert_eq!(systemd.next(), "STATUS=not ready (failing: ready)");
    serve.command("ready");
    assert_eq!(systemd.next(), "STATUS=ready", "READY=1 is sent once");
    serve.command("shutdown");
    assert_eq!(systemd.next(), "STOPPING=1");
    exits_0(&mut serve);
    assert_eq!(systemd.within(Duration::from_millis(100)), None);
}

#[test]
fn an_abstract_socket_name_is_reached_too() {
    let systemd = Systemd::on_abstract_name();
    let args = ["--systemd", "--target", "db", "--drain-delay", "50ms"];
    let mut serve = Serve::start_with_env(&args, &[systemd.env()]);
    assert_eq!(systemd.next(), "READY=1\nSTATUS=ready");
    serve.command("not-ready db");
    assert_eq!(systemd.next(), "STATUS=not ready (failing: db)");
    serve.command("drain");
    assert_eq!(
        systemd.next(),
        "STOPPING=1",
        "a drain is the start of stopping"
    );
    exits_0(&mut serve);
}

#[test]
fn the_watchdog_pings_four_times_an_interval_only_while_liveness_passes() {
    let systemd = Systemd::on_path();
    let env = [systemd.env(), ("WATCHDOG_USEC", "400000")];
    let args = ["--systemd", "--liveness-target", "loop"];
    let mut serve = Serve::start_with_env(&args, &env);
    assert_eq!(systemd.next(), "READY=1\nSTATUS=ready");
    // Every 100 ms: five pings span at least four intervals.
    assert_eq!(systemd.next(), "WATCHDOG=1");
    let first = Instant::now();
    for _ in 0..4 {
        assert_eq!(systemd.next(), "WATCHDOG=1");
    }
    let four = first.elapsed();
    assert!(
        four >= Duration::from_millis(350),
        "4 intervals in {four:?}"
    );
    assert!(four < Duration::from_secs(5), "4 intervals in {four:?}");

    serve.command("not-alive loop");
    serve.expect_stderr("liveness changed: not alive (failing: loop)");
    // One ping may have been decided before the flip; then none for six intervals.
    let after = systemd.during(Duration::from_millis(600));
    assert!(
        after.iter().filter(|m| *m == "WATCHDOG=1").count() <= 1,
        "{after:?}"
    );
    let late = systemd.during(Duration::from_millis(600));
    assert!(late.is_empty(), "pings while not alive: {late:?}");

    serve.command("alive loop");
    serve.expect_stderr("liveness changed: alive");
    assert_eq!(systemd.next(), "WATCHDOG=1", "pings resume");
    serve.command("shutdown");
    assert_eq!(systemd.next_not_ping(), "STOPPING=1");
    exits_0(&mut serve);
}

#[test]
fn the_watchdog_pings_at_once_when_liveness_recovers() {
    // A 20 s interval: the timer's pings come every 5 s, none in this test's
    // first seconds, so a ping now can only be the one for the recovery.
    let systemd = Systemd::on_path();
    let env = [systemd.env(), ("WATCHDOG_USEC", "20000000")];
    let args = ["--systemd", "--liveness-target", "loop"];
    let mut serve = Serve::start_with_env(&args, &env);
    assert_eq!(systemd.next(), "READY=1\nSTATUS=ready");
    serve.command("not-alive loop");
    serve.expect_stderr("liveness changed: not alive (failing: loop)");
    let started = Instant::now();
    serve.command("alive loop");
    assert_eq!(
        systemd.within(Duration::from_millis(2500)).as_deref(),
        Some("WATCHDOG=1"),
        "a ping at once, not at the next tick"
    );
    println!("recovery ping {:?} after `alive`", started.elapsed());
    serve.command("shutdown");
    assert_eq!(systemd.next_not_ping(), "STOPPING=1");
    exits_0(&mut serve);
}

#[test]
fn no_watchdog_when_watchdog_pid_names_another_process() {
    let systemd = Systemd::on_path();
    // PID 1 is never this test's child.
    let env = [
        systemd.env(),
        ("WATCHDOG_USEC", "100000"),
        ("WATCHDOG_PID", "1"),
    ];
    let mut serve = Serve::start_with_env(&["--systemd"], &env);
    assert_eq!(systemd.next(), "READY=1\nSTATUS=ready");
    let pings = systemd.during(Duration::from_millis(500));
    assert!(pings.is_empty(), "{pings:?}");
    serve.command("shutdown");
    assert_eq!(systemd.next(), "STOPPING=1");
    exits_0(&mut serve);
}

/// Threads and open descriptors of a child process.
fn footprint(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).unwrap().count();
    (
        count(format!("/proc/{pid}/task")),
        count(format!("/proc/{pid}/fd")),
    )
}

#[test]
fn without_notify_socket_nothing_is_opened_and_nothing_runs() {
    let watchdog = [("WATCHDOG_USEC", "100000")];
    let mut plain = Serve::start(&[]);
    let mut asked = Serve::start_with_env(&["--systemd"], &watchdog);
    plain.expect_stderr("listening on");
    asked.expect_stderr("listening on");
    assert_eq!(
        footprint(asked.child.id()),
        footprint(plain.child.id()),
        "(threads, descriptors) with --systemd and no NOTIFY_SOCKET"
    );
    for serve in [&mut plain, &mut asked] {
        serve.command("shutdown");
        exits_0(serve);
    }
}

#[test]
fn a_socket_that_is_gone_is_reported_once_and_never_retried() {
    let gone = std::env::temp_dir().join(format!("{}.gone", unique()));
    let env = [("NOTIFY_SOCKET", gone.to_str().unwrap())];
    let mut serve = Serve::start_with_env(&["--systemd"], &env);
    for command in ["not-ready", "ready", "not-ready", "shutdown"] {
        serve.command(command);
    }
    exits_0(&mut serve);
    let mut reports = 0;
    loop {
        match serve.stderr.recv_timeout(PATIENCE) {
            Ok(line) if line.contains("systemd notification to") => reports += 1,
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("stderr did not end"),
        }
    }
    assert_eq!(reports, 1);
}

#[test]
fn a_receiver_that_never_reads_hangs_nothing() {
    // Bound, and never read: its queue fills with the first few messages.
    let systemd = Systemd::on_path();
    let env = [systemd.env(), ("WATCHDOG_USEC", "20000")];
    let mut serve = Serve::start_with_env(&["--systemd"], &env);
    serve.expect_stderr("systemd notification to");
    for command in ["not-ready", "ready", "not-ready", "shutdown"] {
        serve.command(command);
    }
    // Each of these would wait forever on a blocking send.
    serve.expect_stderr("readiness changed: not ready");
    serve.expect_stderr("stopped after");
    exits_0(&mut serve);
}

#[test]
fn an_unreadable_watchdog_interval_is_reported_once() {
    let systemd = Systemd::on_path();
    let env = [systemd.env(), ("WATCHDOG_USEC", "soon")];
    let mut serve = Serve::start_with_env(&["--systemd"], &env);
    serve.expect_stderr("WATCHDOG_USEC=`soon` is not a number of microseconds");
    assert_eq!(systemd.next(), "READY=1\nSTATUS=ready");
    let pings = systemd.during(Duration::from_millis(300));
    assert!(pings.is_empty(), "{pings:?}");
    serve.command("shutdown");
    assert_eq!(systemd.next(), "STOPPING=1");
    exits_0(&mut serve);
}

#[test]
fn an_overdue_heartbeat_stops_the_watchdog_and_a_beat_resumes_it_at_once() {
    let systemd = Systemd::on_path();
    // Pings every 100 ms; the heartbeat falls overdue 400 ms after start.
    let env = [systemd.env(), ("WATCHDOG_USEC", "400000")];
    let args = ["--systemd", "--heartbeat", "consumer=400ms"];
    let mut serve = Serve::start_with_env(&args, &env);
    assert_eq!(systemd.next(), "READY=1\nSTATUS=ready");
    assert_eq!(
        systemd.next(),
        "WATCHDOG=1",
        "pings within the first period"
    );
    serve.expect_stderr("liveness changed: not alive (failing: consumer)");
    // The pings sent before it fell overdue (and one decided as it did) wait
    // in the socket; once they are read, none comes.
    let _before = systemd.during(Duration::from_millis(200));
    let late = systemd.during(Duration::from_millis(400));
    assert!(late.is_empty(), "pings while overdue: {late:?}");
    serve.command("beat consumer");
    assert_eq!(systemd.next(), "WATCHDOG=1", "pings resume with the beat");
    serve.command("shutdown");
    assert_eq!(systemd.next_not_ping(), "STOPPING=1");
    exits_0(&mut serve);
}
