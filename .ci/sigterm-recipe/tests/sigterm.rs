//! Runs the recipe as Kubernetes and `systemctl stop` do: as a child with
//! `NOTIFY_SOCKET` pointing here, then SIGTERM. Each step of the promised
//! sequence is checked as it happens: ready, then readiness failing while
//! serving goes on, `STOPPING=1`, exit 0, and no socket file left behind.

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

#[test]
fn sigterm_drains_says_stopping_shuts_down_and_exits_0() {
    let notify = scratch("notify.sock");
    let systemd = UnixDatagram::bind(&notify).unwrap();
    systemd.set_read_timeout(Some(PATIENCE)).unwrap();
    let socket = scratch("health.sock");

    let child = Command::new(env!("CARGO_BIN_EXE_sigterm-recipe"))
        .arg(&socket)
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut recipe = Recipe(Some(child));
    // Perhaps not ready while it starts, then READY=1 once `health.ready()` runs.
    let mut first = next(&systemd);
    if first == "STATUS=not ready (failing: ready)" {
        first = next(&systemd);
    }
    assert_eq!(first, "READY=1\nSTATUS=ready");
    assert_eq!(status(&socket, "/readyz"), 200);

    let sent = Instant::now();
    // As Kubernetes and systemd do: SIGTERM to the PID of the child this test
    // started (the shell's own `kill`, so no crate is needed for it).
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -TERM {pid}: {killed}");
    println!("SIGTERM sent");

    // STOPPING=1 as the drain starts, then readiness fails with `shutdown`.
    assert_eq!(next(&systemd), "STOPPING=1");
    println!("STOPPING=1 after {:?}", sent.elapsed());
    assert_eq!(next(&systemd), "STATUS=not ready (failing: shutdown)");
    // Serving goes on through the drain: readiness fails, liveness holds.
    assert_eq!(status(&socket, "/readyz"), 503);
    assert_eq!(status(&socket, "/livez"), 200);
    println!("draining: /readyz 503, /livez 200 at {:?}", sent.elapsed());

    let mut child = recipe.0.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let exit = child.wait().unwrap();
        let _ = tx.send(exit);
        child
    });
    let Ok(exit) = rx.recv_timeout(Duration::from_secs(5) + PATIENCE) else {
        panic!("the recipe did not exit within the drain and {PATIENCE:?}");
    };
    drop(waiter.join());
    let took = sent.elapsed();
    println!("exited {exit} {took:?} after SIGTERM");
    assert_eq!(exit.code(), Some(0), "a clean stop");
    assert!(took >= Duration::from_secs(5), "the drain was served in full: {took:?}");
    assert!(!socket.exists(), "the socket file is removed");
    let _ = std::fs::remove_file(&notify);
}
