//! Runs the recipe as Kubernetes and `systemctl stop` do: as a child with
//! `NOTIFY_SOCKET` pointing here, then SIGTERM. Each step of the promised
//! sequence is checked as it happens: ready, then readiness failing while
//! serving goes on, `STOPPING=1`, exit 0, and no socket file left behind.
//! And as a person does: a second signal mid-drain exits at once, and a
//! worker stuck in a long job does not hold the stop past its bound.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use healthz::{Probe, ProbeErrorKind};

const PATIENCE: Duration = Duration::from_secs(15);

fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("sigterm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The status `path` answers with over `socket` (0 if none came).
fn status(socket: &Path, path: &str) -> u16 {
    let probe = Probe::unix(socket, path).unwrap();
    match probe.run() {
        Ok(response) => response.status(),
        Err(error) => match error.kind() {
            ProbeErrorKind::Unhealthy(status) => status,
            _ => 0,
        },
    }
}

/// The recipe, killed (by its PID) if the test fails before it exits.
struct Recipe(Option<Child>);

impl Drop for Recipe {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The next message systemd gets.
fn next(systemd: &UnixDatagram) -> String {
    let mut buf = [0; 512];
    let n = systemd.recv(&mut buf).expect("a message to systemd in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The recipe started as systemd starts a unit, and the receiver of its
/// notifications, once it has said `READY=1`.
struct Started {
    recipe: Recipe,
    pid: u32,
    systemd: UnixDatagram,
    notify: PathBuf,
    socket: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.notify);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn start(name: &str, args: &[&str]) -> Started {
    let notify = scratch(&format!("{name}-notify.sock"));
    let systemd = UnixDatagram::bind(&notify).unwrap();
    systemd.set_read_timeout(Some(PATIENCE)).unwrap();
    let socket = scratch(&format!("{name}-health.sock"));
    let child = Command::new(env!("CARGO_BIN_EXE_sigterm-recipe"))
        .arg(&socket)
        .args(args)
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let recipe = Recipe(Some(child));
    // Perhaps not ready while it starts, then READY=1 once `health.ready()` runs.
    let mut first = next(&systemd);
    if first == "STATUS=not ready (failing: ready)" {
        first = next(&systemd);
    }
    assert_eq!(first, "READY=1\nSTATUS=ready");
    assert_eq!(status(&socket, "/readyz"), 200);
    Started {
        recipe,
        pid,
        systemd,
        notify,
        socket,
    }
}

impl Started {
    /// As Kubernetes, systemd and a terminal do: a signal to the PID of the
    /// child this test started (the shell's own `kill`, so no crate is needed).
    fn signal(&self, name: &str) {
        let pid = self.pid;
        let killed = Command::new("sh")
            .args(["-c", &format!("kill -{name} {pid}")])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -{name} {pid}: {killed}");
        println!("SIG{name} sent");
    }

    /// Its exit status, waiting at most `within`.
    fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.recipe.0.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let exit = child.wait().unwrap();
            let _ = tx.send(exit);
            child
        });
        let Ok(exit) = rx.recv_timeout(within) else {
            let child = waiter.join().unwrap();
            self.recipe.0 = Some(child);
            panic!("the recipe did not exit within {within:?}");
        };
        drop(waiter.join());
        exit
    }

    /// Waits for `STOPPING=1`, then the drain's status.
    fn draining(&self, sent: Instant) {
        assert_eq!(next(&self.systemd), "STOPPING=1");
        println!("STOPPING=1 after {:?}", sent.elapsed());
        assert_eq!(next(&self.systemd), "STATUS=not ready (failing: shutdown)");
    }
}

const DRAIN: Duration = Duration::from_secs(5);
const WORKERS_STOP: Duration = Duration::from_secs(2);

#[test]
fn sigterm_drains_says_stopping_shuts_down_and_exits_0() {
    let mut recipe = start("once", &[]);
    let sent = Instant::now();
    recipe.signal("TERM");
    // STOPPING=1 as the drain starts, then readiness fails with `shutdown`.
    recipe.draining(sent);
    // Serving goes on through the drain: readiness fails, liveness holds.
    assert_eq!(status(&recipe.socket, "/readyz"), 503);
    assert_eq!(status(&recipe.socket, "/livez"), 200);
    println!("draining: /readyz 503, /livez 200 at {:?}", sent.elapsed());

    let exit = recipe.exit(DRAIN + PATIENCE);
    let took = sent.elapsed();
    println!("exited {exit} {took:?} after SIGTERM");
    assert_eq!(exit.code(), Some(0), "a clean stop");
    assert!(took >= DRAIN, "the drain was served in full: {took:?}");
    assert!(!recipe.socket.exists(), "the socket file is removed");
}

/// Ctrl-C twice: the second signal ends the process at once, mid-drain.
#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    let mut recipe = start("twice", &[]);
    let sent = Instant::now();
    recipe.signal("TERM");
    recipe.draining(sent);
    recipe.signal("INT");
    let exit = recipe.exit(PATIENCE);
    let took = sent.elapsed();
    println!("exited {exit} {took:?} after the first signal");
    assert_eq!(exit.code(), Some(128 + 2), "128 + SIGINT");
    assert!(took < DRAIN, "the drain was not waited for: {took:?}");
}

/// A worker whose job outlasts the bound: the stop does not wait for it.
#[test]
fn a_worker_that_does_not_stop_in_time_is_left_behind_and_the_process_exits_1() {
    // Each job of the recipe's worker takes a minute.
    let mut recipe = start("stuck", &["60000"]);
    let sent = Instant::now();
    recipe.signal("TERM");
    recipe.draining(sent);
    let exit = recipe.exit(DRAIN + WORKERS_STOP + PATIENCE);
    let took = sent.elapsed();
    println!("exited {exit} {took:?} after SIGTERM");
    assert_eq!(exit.code(), Some(1), "a stop that left a worker behind");
    assert!(took >= DRAIN + WORKERS_STOP, "the workers had their time: {took:?}");
    assert!(!recipe.socket.exists(), "the server stopped cleanly first");
}
