//! `examples/serve.rs` through its contract: arguments, the first stdout
//! line, stdin commands, events on stderr, and exit codes.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::{get, serve_binary, Serve};

#[test]
fn serve_follows_its_stdin_contract() {
    let mut serve = Serve::start(&[]);
    serve.expect_stderr("listening on");
    assert_eq!(get(&serve.addr, "/healthz").status, 200, "starts ready");
    serve.command("not-ready");
    serve.expect_stderr("readiness changed: not ready (failing: ready)");
    assert_eq!(get(&serve.addr, "/healthz").status, 503);
    serve.command("frobnicate");
    serve.expect_stderr("unknown command `frobnicate`");
    serve.command("ready");
    serve.expect_stderr("readiness changed: ready");
    assert_eq!(get(&serve.addr, "/healthz").status, 200);
    serve.command("shutdown");
    serve.expect_stderr("shutting down");
    assert!(serve.child.wait().unwrap().success());
}

#[test]
fn serve_exits_0_when_shutdown_cuts_a_slow_client_and_says_so() {
    let mut serve = Serve::start(&["--shutdown-timeout", "300ms"]);
    // A request whose head is answered while its body is still to come: in
    // flight, so shutdown waits for it, then cuts it at the deadline.
    let mut slow = common::Client::connect(&serve.addr);
    slow.send(b"POST /healthz HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
    assert_eq!(slow.response(false).unwrap().status, 405);
    serve.command("shutdown");
    serve.expect_stderr("1 cut at the shutdown deadline");
    serve.expect_stderr("serve: shutdown deadline of 300ms passed");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
    assert!(slow.closed());
}

#[test]
fn serve_starts_not_ready_when_asked_and_stops_on_eof() {
    let mut serve = Serve::start(&["--not-ready"]);
    assert_eq!(get(&serve.addr, "/healthz").status, 503);
    drop(serve.child.stdin.take());
    assert!(serve.child.wait().unwrap().success());
}

#[test]
fn serve_reports_a_port_in_use_in_one_line_and_exits_non_zero() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(serve_binary())
        .args(["--addr", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    // One line, in the system's own words: these are Linux's.
    let start = format!("error: cannot listen on {addr}: ");
    assert!(stderr.starts_with(&start), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    if cfg!(target_os = "linux") {
        assert_eq!(stderr, format!("{start}Address already in use\n"));
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn serve_metrics_and_liveness_targets_from_the_command_line() {
    let mut serve = Serve::start(&["--metrics", "--liveness-target", "loop"]);
    let metrics = get(&serve.addr, "/metrics");
    assert!(metrics
        .text()
        .contains("healthz_check{name=\"loop\",type=\"livez\"} 1\n"));
    serve.command("not-alive loop");
    serve.expect_stderr("liveness changed: not alive (failing: loop)");
    assert_eq!(get(&serve.addr, "/livez").status, 503);
    serve.command("alive loop");
    serve.expect_stderr("liveness changed: alive");
    assert_eq!(get(&serve.addr, "/livez").status, 200);
    serve.command("shutdown");
    assert!(serve.child.wait().unwrap().success());
}

#[test]
fn serve_help_and_usage_errors() {
    let help = Command::new(serve_binary()).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for word in [
        "--addr",
        "--not-ready",
        "ready",
        "not-ready",
        "shutdown",
        "listening on",
        "--shutdown-timeout",
        "--liveness-target",
        "not-alive NAME",
        "--systemd",
        "--metrics",
        "--unix PATH",
        "listening on unix:PATH",
        "--heartbeat NAME=DURATION",
        "beat NAME",
        "--thread NAME",
        "panic NAME",
    ] {
        assert!(text.contains(word), "--help does not mention {word}");
    }
    let bad = Command::new(serve_binary())
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let both = Command::new(serve_binary())
        .args(["--unix", "/tmp/never-bound.sock", "--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "--unix with --addr");
    let stderr = String::from_utf8_lossy(&both.stderr);
    // Off Unix, --unix is a usage error by itself.
    let why = if cfg!(unix) {
        "--unix and --addr"
    } else {
        "--unix"
    };
    assert!(stderr.contains(why), "{stderr}");
    assert!(!std::path::Path::new("/tmp/never-bound.sock").exists());
}

#[test]
fn serve_targets_flip_by_name_and_drain_keeps_liveness() {
    let mut serve = Serve::start(&[
        "--target",
        "queue",
        "--target",
        "cache",
        "--drain-delay",
        "300ms",
    ]);
    assert_eq!(
        get(&serve.addr, "/readyz").status,
        200,
        "targets start ready"
    );
    serve.command("not-ready cache");
    serve.expect_stderr("readiness changed: not ready (failing: cache)");
    assert_eq!(get(&serve.addr, "/readyz/cache").status, 503);
    assert_eq!(get(&serve.addr, "/readyz/queue").status, 200);
    serve.command("not-ready nope");
    serve.expect_stderr("unknown target `nope`");
    serve.command("ready cache");
    serve.expect_stderr("readiness changed: ready");
    serve.command("drain");
    serve.expect_stderr("draining");
    assert_eq!(get(&serve.addr, "/readyz").status, 503);
    assert_eq!(get(&serve.addr, "/livez").status, 200);
    serve.expect_stderr("shutting down");
    assert!(serve.child.wait().unwrap().success());
}

#[cfg(unix)]
#[test]
fn serve_listens_on_a_unix_socket_says_so_first_and_removes_it_on_exit() {
    let path = common::socket_path("serve");
    // The first line is checked as it starts: `listening on unix:PATH`.
    let mut serve = Serve::start_unix(&path, &["--not-ready"]);
    assert_eq!(get(&path, "/healthz").status, 503);
    serve.command("ready");
    serve.expect_stderr("readiness changed: ready");
    assert_eq!(get(&path, "/healthz").status, 200);
    serve.command("shutdown");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
    assert!(!path.exists(), "the socket file goes with the server");

    // A stale file (its server was killed with SIGKILL) is replaced, aloud.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let mut serve = Serve::start_unix(&path, &[]);
    serve.expect_stderr(&format!("stale socket file at {}", path.display()));
    serve.command("shutdown");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));

    // A regular file in the way: one line, exit 1, the file untouched.
    std::fs::write(&path, "mine\n").unwrap();
    let out = Command::new(serve_binary())
        .arg("--unix")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(": a file there is not a socket; not replaced"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine\n");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn serve_heartbeats_and_worker_threads_from_the_command_line() {
    let mut serve = Serve::start(&["--heartbeat", "consumer=300ms", "--thread", "indexer"]);
    // Nobody beats: the heartbeat falls overdue after its period.
    serve.expect_stderr("liveness changed: not alive (failing: consumer)");
    assert_eq!(get(&serve.addr, "/livez").status, 503);
    assert_eq!(get(&serve.addr, "/readyz").status, 200);
    serve.command("beat consumer");
    serve.expect_stderr("heartbeat consumer passes");
    serve.command("panic indexer");
    serve.expect_stderr("thread guard indexer failed: panicked: worker indexer was told to panic");
    let verbose = get(&serve.addr, "/livez/indexer");
    assert_eq!(verbose.status, 503);
    assert_eq!(get(&serve.addr, "/healthz").status, 200, "still serving");
    serve.command("shutdown");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
}
