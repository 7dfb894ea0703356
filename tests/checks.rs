//! The ready-made checks against the real thing: real listeners and a real
//! healthz server for TCP and HTTP, the system's resolver for DNS, a child
//! process with a lowered `ulimit -n` for descriptors, real directories for
//! writes. (Memory against a real cgroup: `tests/memory_cgroup.rs`.)

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use common::{closed_port, serve_with, PATIENCE};
use healthz::checks::{self, Free};
use healthz::{Check, Health};

/// A listener that accepts and then never answers, for as long as it lives.
fn silent() -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let _ = stream.read(&mut [0; 1024]);
            let _ = stream.read(&mut [0; 1]); // until the client gives up
        }
    });
    (addr, holder)
}

/// Runs `check` as a server would: within its timeout, on a `Health`.
fn verdict(check: Check) -> Result<(), String> {
    let health = Health::new();
    health.ready();
    health.add_check(check).unwrap();
    let server = serve_with(&health, |s| s.show_reasons(true));
    let reply = common::get(server.local_addr(), "/readyz?verbose");
    let line = reply
        .text()
        .lines()
        .find(|l| l.contains("dep"))
        .unwrap()
        .to_string();
    server.shutdown().unwrap();
    match line.strip_prefix("[-]dep failed: ") {
        Some(reason) => Err(reason.to_string()),
        None => Ok(()),
    }
}

#[test]
fn tcp_passes_when_a_listener_is_up_and_fails_when_none_is() {
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        verdict(checks::tcp("dep", &up.local_addr().unwrap().to_string())),
        Ok(())
    );
    let down = closed_port();
    let reason = verdict(checks::tcp("dep", &down.to_string())).unwrap_err();
    assert!(
        reason.starts_with(&format!("cannot connect to {down}: ")),
        "{reason}"
    );
    let reason = verdict(checks::tcp("dep", "no-port-here")).unwrap_err();
    assert!(
        reason.starts_with("cannot resolve no-port-here"),
        "{reason}"
    );
}

/// A listener whose accept queue is full: Linux drops new SYNs, so a
/// connect waits, and the check fails at its timeout, not later.
#[cfg(target_os = "linux")]
#[test]
fn tcp_fails_at_the_checks_timeout_when_the_listener_takes_no_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    let full = loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(stream) => queued.push(stream),
            Err(e) => break e,
        }
        assert!(queued.len() <= 20_000, "the accept queue never filled");
    };
    assert_eq!(full.kind(), std::io::ErrorKind::TimedOut, "{full}");
    let check = checks::tcp("dep", &addr.to_string()).timeout(Duration::from_millis(200));
    let started = Instant::now();
    let reason = check.run_now().unwrap_err();
    let took = started.elapsed();
    assert!(
        reason.starts_with(&format!("cannot connect to {addr}: ")),
        "{reason}"
    );
    assert!(took < PATIENCE, "bounded by its timeout: {took:?}");
    println!(
        "{} connections filled the queue; the check said `{reason}` after {took:?}",
        queued.len()
    );
}

#[test]
fn http_follows_a_real_healthz_servers_readiness() {
    let dependency = Health::new();
    let server = serve_with(&dependency, |s| s);
    let url = format!("http://{}/readyz", server.local_addr());
    let check = || checks::http("dep", &url, 200..=299).unwrap();
    let reason = verdict(check()).unwrap_err();
    assert_eq!(reason, format!("GET {url}: status 503 (not ready)"));
    dependency.ready();
    assert_eq!(verdict(check()), Ok(()));
    server.shutdown().unwrap();
    let reason = verdict(check()).unwrap_err();
    assert!(
        reason.starts_with(&format!("GET {url}: connection refused")),
        "{reason}"
    );
    assert!(
        checks::http("dep", "ftp://x", 200..=299).is_err(),
        "refused at once"
    );
}

#[test]
fn http_fails_at_the_checks_timeout_when_the_dependency_is_slow() {
    let (addr, holder) = silent();
    let url = format!("http://{addr}/healthz");
    let check = checks::http("dep", &url, 200..=399).unwrap();
    let started = Instant::now();
    let reason = check
        .timeout(Duration::from_millis(200))
        .run_now()
        .unwrap_err();
    assert!(
        reason.starts_with(&format!("GET {url}: timed out")),
        "{reason}"
    );
    assert!(started.elapsed() < PATIENCE, "bounded by its timeout");
    holder.join().unwrap();
}

#[cfg(unix)]
#[test]
fn http_over_a_unix_socket() {
    let path = common::socket_path("checks-http");
    let dependency = Health::new();
    let server = healthz::Server::new(dependency.clone())
        .bind_unix(&path)
        .unwrap();
    let check = || checks::http_unix("dep", &path, "/readyz", 200..=299).unwrap();
    assert!(check().run_now().unwrap_err().contains("status 503"));
    dependency.ready();
    assert_eq!(check().run_now(), Ok(()));
    server.shutdown().unwrap();
}

#[test]
fn dns_resolves_localhost_and_not_an_invalid_name() {
    assert_eq!(verdict(checks::dns("dep", "localhost")), Ok(()));
    // RFC 6761: `.invalid` never resolves.
    let reason = verdict(checks::dns("dep", "healthz-test.invalid")).unwrap_err();
    assert!(
        reason.starts_with("cannot resolve healthz-test.invalid")
            || reason.starts_with("timed out"),
        "{reason}"
    );
}

#[test]
fn threads_counts_this_processs_threads() {
    let holding = thread::spawn(|| thread::sleep(Duration::from_millis(200)));
    let reason = checks::threads("dep", 1).run_now();
    holding.join().unwrap();
    if cfg!(target_os = "linux") {
        let reason = reason.unwrap_err();
        assert!(reason.ends_with(" threads is over 1"), "{reason}");
        let count: u64 = reason.split(' ').next().unwrap().parse().unwrap();
        assert!(count >= 2, "{reason}");
    } else {
        assert_eq!(reason, Ok(()), "nothing to measure off Linux");
    }
    assert_eq!(checks::threads("dep", 1 << 20).run_now(), Ok(()));
}

#[test]
fn writable_writes_syncs_and_removes_its_file_and_leaves_nothing_on_failure() {
    let dir = std::env::temp_dir().join(format!("healthz-writable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(verdict(checks::writable("dep", &dir)), Ok(()));
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing left behind"
    );
    let missing = dir.join("missing");
    let reason = verdict(checks::writable("dep", &missing)).unwrap_err();
    assert!(
        reason.starts_with(&format!("cannot write to {}: ", missing.display())),
        "{reason}"
    );
    std::fs::remove_dir(&dir).unwrap();
}

/// A directory nobody may create files in, root included: `/proc/self`
/// on Linux (a bind mount made read-only would do the same).
#[cfg(target_os = "linux")]
#[test]
fn writable_fails_where_no_file_can_be_created() {
    let before: Vec<_> = std::fs::read_dir("/proc/self")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let reason = checks::writable("dep", "/proc/self").run_now().unwrap_err();
    assert!(
        reason.starts_with("cannot write to /proc/self: "),
        "{reason}"
    );
    let after: Vec<_> = std::fs::read_dir("/proc/self")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before.len(), after.len());
}

/// As another user, a directory without write permission fails it too.
#[cfg(unix)]
#[test]
fn writable_fails_in_a_read_only_directory_unless_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("healthz-readonly-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let root = std::fs::File::create(dir.join("probe")).is_ok();
    let _ = std::fs::remove_file(dir.join("probe"));
    let verdict = checks::writable("dep", &dir).run_now();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing left behind"
    );
    std::fs::remove_dir(&dir).unwrap();
    if root {
        println!("root writes anywhere: only the pass is checked here");
        assert_eq!(verdict, Ok(()));
    } else {
        assert!(verdict.unwrap_err().contains("ermission denied"));
    }
}

#[test]
fn descriptors_measures_against_the_limit() {
    let none_needed = checks::descriptors("dep", Free::Count(0)).run_now();
    assert_eq!(none_needed, Ok(()));
    if cfg!(target_os = "linux") {
        let reason = checks::descriptors("dep", Free::Count(u64::MAX))
            .run_now()
            .unwrap_err();
        assert!(
            reason.contains(" file descriptors free is under "),
            "{reason}"
        );
    }
}

/// A child with `ulimit -n 64` and `--check fds:fds=50%`: connections held
/// open to it use its descriptors until the check fails readiness, and
/// closing them makes it pass again.
#[cfg(target_os = "linux")]
#[test]
fn descriptors_fails_a_child_whose_limit_runs_low_and_passes_once_freed() {
    let serve = common::Serve::start_with_nofile(64, &["--check", "fds:fds=50%"]);
    let addr = serve.addr.clone();
    let readyz = || common::get(&*addr, "/readyz?verbose");
    assert_eq!(readyz().status, 200, "{}", readyz().text());
    // Each kept-alive connection holds one of the child's descriptors.
    let mut held: Vec<common::Client> = (0..30)
        .map(|_| {
            let mut client = common::Client::connect(&*addr);
            assert_eq!(client.get("/livez").status, 200, "liveness has no check");
            client
        })
        .collect();
    let failing = readyz();
    assert_eq!(failing.status, 503, "{}", failing.text());
    assert!(
        failing.text().contains("[-]fds failed: "),
        "{}",
        failing.text()
    );
    held.truncate(5);
    // The child closes each connection as it sees its client go.
    let deadline = Instant::now() + PATIENCE;
    while readyz().status != 200 {
        assert!(
            Instant::now() < deadline,
            "still failing: {}",
            readyz().text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    drop(held);
    drop(serve);
}
