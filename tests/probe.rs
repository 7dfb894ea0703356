//! The probe client against our server in every state and against tiny fake
//! servers that misbehave on purpose; then the `probe` example's exit codes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use healthz::{Probe, ProbeErrorKind};

/// A one-connection server: reads the request head, then runs `answer` on the socket.
fn fake(answer: impl FnOnce(&mut TcpStream) + Send + 'static) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        answer(&mut stream);
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, handle)
}

fn replying(bytes: &'static [u8]) -> impl FnOnce(&mut TcpStream) + Send + 'static {
    move |stream| {
        let _ = stream.write_all(bytes);
    }
}

fn probe(addr: SocketAddr) -> Probe {
    Probe::new(&format!("http://{addr}/healthz")).unwrap()
}

#[test]
fn healthy_and_unhealthy_states_of_our_server() {
    let (health, server) = common::start(false);
    let addr = server.local_addr();
    assert_eq!(
        probe(addr).run().unwrap_err().kind(),
        ProbeErrorKind::Unhealthy(503)
    );
    health.ready();
    let answer = probe(addr).run().unwrap();
    assert_eq!((answer.status(), answer.body()), (200, &b"ok\n"[..]));
    let missing = Probe::new(&format!("{addr}/nope"))
        .unwrap()
        .run()
        .unwrap_err();
    assert_eq!(missing.kind(), ProbeErrorKind::Unhealthy(404));
    assert_eq!(missing.to_string(), "status 404 (not found)");
    // A bare HOST:PORT probes /healthz.
    assert_eq!(
        Probe::new(&addr.to_string())
            .unwrap()
            .run()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn the_request_is_a_polite_get() {
    let (addr, request) = fake(replying(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    probe(addr).run().unwrap();
    let request = request.join().unwrap();
    assert!(
        request.starts_with("GET /healthz HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nHost: {addr}\r\n")),
        "{request}"
    );
    let agent = format!(
        "\r\nUser-Agent: healthz-probe/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(request.contains(&agent), "{request}");
    assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
}

#[test]
fn expected_statuses_are_configurable() {
    let (addr, _) = fake(replying(b"HTTP/1.1 204 No Content\r\n\r\n"));
    assert_eq!(probe(addr).run().unwrap().status(), 204);
    let (addr, _) = fake(replying(b"HTTP/1.1 204 No Content\r\n\r\n"));
    let strict = probe(addr).expect(200..=200).run().unwrap_err();
    assert_eq!(strict.kind(), ProbeErrorKind::Unhealthy(204));
}

#[test]
fn a_closed_port_is_refused() {
    let error = probe(common::closed_port()).run().unwrap_err();
    assert_eq!(error.kind(), ProbeErrorKind::Refused, "{error}");
}

/// A probe with a 300 ms timeout against `addr` fails as timed out, well within bounds.
fn assert_times_out_within_bound(addr: SocketAddr) {
    let started = Instant::now();
    let error = probe(addr)
        .timeout(Duration::from_millis(300))
        .run()
        .unwrap_err();
    assert_eq!(error.kind(), ProbeErrorKind::TimedOut, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_listener_that_never_answers_times_out_within_the_bound() {
    let (addr, _server) = fake(|stream| {
        // Hold the connection open without a word until the client leaves.
        let _ = stream.read(&mut [0u8; 1]);
    });
    assert_times_out_within_bound(addr);
}

#[test]
fn a_slow_trickle_still_respects_the_overall_deadline() {
    let (addr, _server) = fake(|stream| {
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            .iter()
            .cycle()
            .take(400)
        {
            if stream.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    assert_times_out_within_bound(addr);
}

#[test]
fn garbage_and_truncated_answers_are_malformed() {
    let answers: [&'static [u8]; 7] = [
        b"\x16\x03\x01\x00\x02\x02\x28",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"HTTP/1.1 200",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"",
    ];
    for answer in answers {
        let (addr, _) = fake(replying(answer));
        let error = probe(addr).run().unwrap_err();
        assert_eq!(
            error.kind(),
            ProbeErrorKind::Malformed,
            "{:?}: {error}",
            String::from_utf8_lossy(answer)
        );
    }
}

#[test]
fn an_oversized_body_is_cut_at_the_limit_without_failing() {
    let (addr, _) = fake(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
        let _ = stream.write_all(&vec![b'x'; 1 << 20]);
    });
    let answer = probe(addr).run().unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.body().len() < 10 * 1024 && answer.body().len() > 9 * 1024,
        "{}",
        answer.body().len()
    );
}

#[test]
fn an_oversized_head_is_malformed() {
    let (addr, _) = fake(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Big: ");
        let _ = stream.write_all(&vec![b'x'; 64 * 1024]);
    });
    assert_eq!(
        probe(addr).run().unwrap_err().kind(),
        ProbeErrorKind::Malformed
    );
}

#[test]
fn chunked_close_delimited_and_http10_bodies_are_read() {
    let (addr, _) = fake(replying(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ));
    assert_eq!(probe(addr).run().unwrap().body(), b"abcde");
    let (addr, _) = fake(replying(b"HTTP/1.0 200 OK\r\n\r\nuntil close"));
    assert_eq!(probe(addr).run().unwrap().body(), b"until close");
    let (addr, _) = fake(replying(
        b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
    ));
    let error = probe(addr).run().unwrap_err();
    assert_eq!(
        (error.kind(), error.to_string()),
        (ProbeErrorKind::Unhealthy(503), "status 503 (down)".into())
    );
}

#[test]
fn targets_are_checked_before_any_connection() {
    for bad in [
        "ftp://h:1/",
        "http://:80/",
        "h",
        "h:port",
        "[::1",
        "http://h:99999/",
        "http://h/a b",
    ] {
        let error = Probe::new(bad).unwrap_err();
        assert_eq!(error.kind(), ProbeErrorKind::InvalidTarget, "{bad}");
    }
    for good in [
        "http://h",
        "HTTP://h:8080/readyz?verbose",
        "h:1",
        "[::1]:8080/livez",
        "localhost:1?x",
    ] {
        Probe::new(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

fn probe_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_healthz-probe"))
}

/// A health not ready yet, with a readiness check that says each time it
/// runs: the sign that a probe's try has reached the server.
fn not_ready_counting_tries_health() -> (healthz::Health, Receiver<()>) {
    let health = healthz::Health::new();
    let (tried, tries) = std::sync::mpsc::channel();
    let tried = std::sync::Mutex::new(tried);
    let check = healthz::Check::new("tries", move || {
        let _ = tried.lock().unwrap().send(());
        Ok(())
    });
    health.add_check(check).unwrap();
    (health, tries)
}

/// The same, served on 127.0.0.1.
fn not_ready_counting_tries() -> (healthz::Health, healthz::Running, Receiver<()>) {
    let (health, tries) = not_ready_counting_tries_health();
    let server = healthz::Server::new(health.clone())
        .bind("127.0.0.1:0")
        .unwrap();
    (health, server, tries)
}

/// Runs the probe binary with `args` (a `--wait`), turns `health` ready
/// once its first try has come, and returns its exit code and its line.
fn binary_waits_until_ready(
    args: &[&str],
    health: &healthz::Health,
    tries: &Receiver<()>,
) -> (Option<i32>, String) {
    while tries.try_recv().is_ok() {}
    let waiting = Command::new(probe_binary())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tries.recv_timeout(common::PATIENCE).expect("a first try");
    health.ready();
    let out = waiting.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), line)
}

#[test]
fn waiting_returns_the_first_healthy_answer_after_failed_tries() {
    let (health, server, tries) = not_ready_counting_tries();
    let turn_ready = thread::spawn(move || {
        tries.recv_timeout(common::PATIENCE).expect("a first try");
        health.ready();
    });
    let answer = probe(server.local_addr())
        .wait_healthy(common::PATIENCE)
        .expect("healthy once ready");
    assert_eq!(answer.status(), 200);
    turn_ready.join().unwrap();
}

#[test]
fn waiting_ends_with_the_last_reason_when_never_healthy() {
    let (_health, server, _tries) = not_ready_counting_tries();
    let within = Duration::from_millis(300);
    let started = Instant::now();
    let error = probe(server.local_addr())
        .timeout(Duration::from_millis(200))
        .wait_healthy(within)
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(error.kind(), ProbeErrorKind::Unhealthy(503));
    assert!(took >= within, "gave up after {took:?}");
    assert!(took < common::PATIENCE, "bounded: {took:?}");

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = probe(closed).wait_healthy(within).unwrap_err();
    assert_eq!(error.kind(), ProbeErrorKind::Refused);
    let bad = probe(closed).timeout(Duration::ZERO).wait_healthy(within);
    assert_eq!(bad.unwrap_err().kind(), ProbeErrorKind::InvalidSettings);
}

#[test]
fn the_probe_binary_waits_with_wait() {
    let (health, server, tries) = not_ready_counting_tries();
    let url = format!("http://{}/readyz", server.local_addr());
    let never = Command::new(probe_binary())
        .args(["--wait", "300ms", "--timeout", "200ms", &url])
        .output()
        .unwrap();
    assert_eq!(never.status.code(), Some(1));
    let line = String::from_utf8_lossy(&never.stdout);
    assert_eq!(line, format!("unhealthy: status 503 (not ready) ({url})\n"));

    let waited = binary_waits_until_ready(&["--wait", "10s", &url], &health, &tries);
    let healthy = format!("healthy: status 200 from {url}\n");
    assert_eq!(waited, (Some(0), healthy));
}

#[test]
fn the_probe_binary_exits_0_healthy_1_unhealthy_2_usage() {
    let (health, server) = common::start(true);
    let url = format!("http://{}/healthz", server.local_addr());
    let run = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(probe_binary());
        command.args(args).env_remove("HEALTHZ_PROBE_URL");
        if let Some(url) = env {
            command.env("HEALTHZ_PROBE_URL", url);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, line) = run(&[&url], None);
    assert_eq!(code, Some(0), "{line}");
    assert_eq!(line, format!("healthy: status 200 from {url}\n"));
    assert_eq!(run(&[], Some(&url)).0, Some(0), "URL from the environment");
    health.not_ready();
    let (code, line) = run(&["--timeout", "500ms", &url], None);
    assert_eq!(code, Some(1));
    assert_eq!(line, format!("unhealthy: status 503 (not ready) ({url})\n"));
    assert_eq!(run(&["--expect", "200-599", &url], None).0, Some(0));
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, line) = run(&[&closed.to_string()], None);
    assert_eq!(code, Some(1));
    assert!(line.starts_with("unhealthy: connection refused"), "{line}");
    // A listener that never answers, and one that answers garbage.
    let (silent, _server) = fake(|stream| {
        let _ = stream.read(&mut [0u8; 1]);
    });
    let (code, line) = run(&["--timeout", "200ms", &silent.to_string()], None);
    assert_eq!(code, Some(1));
    assert!(line.starts_with("unhealthy: timed out"), "{line}");
    let (garbage, _) = fake(replying(b"SSH-2.0-OpenSSH_9.2\r\n"));
    let (code, line) = run(&[&garbage.to_string()], None);
    assert_eq!(code, Some(1));
    assert!(line.starts_with("unhealthy: malformed response"), "{line}");
    for usage in [
        &["--timeout", "soon", &url][..],
        &["--expect", "abc", &url],
        &["--wait", "soon", &url],
        &[],
        &["ftp://x/"],
        &["--bogus"],
    ] {
        assert_eq!(run(usage, None).0, Some(2), "{usage:?}");
    }
}

#[test]
fn random_answers_never_make_the_probe_panic_or_hang() {
    let mut seed: u64 = 0x00c0_ffee_d00d_f00d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let prefixes: [&[u8]; 5] = [
        b"",
        b"HTTP/1.1 ",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: ",
    ];
    for round in 0..300 {
        let mut answer = prefixes[(next() % 5) as usize].to_vec();
        let len = (next() % 300) as usize;
        answer.extend((0..len).map(|_| match next() % 4 {
            0 => b"\r\n: 0123456789abcdefHTTP/"[(next() % 24) as usize],
            _ => next() as u8,
        }));
        let (addr, _) = fake(move |stream| {
            let _ = stream.write_all(&answer);
        });
        let started = Instant::now();
        let _ = probe(addr).timeout(Duration::from_millis(500)).run();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "round {round} hung"
        );
    }
}

// Over a Unix domain socket: the same probe, the same verdicts.

#[cfg(unix)]
#[test]
fn the_probe_reaches_a_server_on_a_unix_socket() {
    let path = common::socket_path("probe");
    let health = healthz::Health::new();
    let server = healthz::Server::new(health.clone())
        .bind_unix(&path)
        .unwrap();
    let probe = Probe::unix(&path, "/readyz").unwrap();
    assert_eq!(
        probe.run().unwrap_err().kind(),
        ProbeErrorKind::Unhealthy(503)
    );
    health.ready();
    let answer = probe.run().unwrap();
    assert_eq!((answer.status(), answer.body()), (200, &b"ok\n"[..]));
    let default = Probe::unix(&path, "").unwrap().run().unwrap();
    assert_eq!(default.body(), b"ok\n", "the path defaults to /healthz");
    let missing = Probe::unix(&path, "/nope").unwrap().run().unwrap_err();
    assert_eq!(missing.to_string(), "status 404 (not found)");
    let bad = Probe::unix(&path, "healthz").unwrap_err();
    assert_eq!(bad.kind(), ProbeErrorKind::InvalidTarget);
    server.shutdown().unwrap();

    // Gone: no file is refused, as a closed port is.
    let gone = probe.run().unwrap_err();
    assert_eq!(gone.kind(), ProbeErrorKind::Refused, "{gone}");
    // A stale socket file: nothing listens on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let stale = probe.run().unwrap_err();
    assert_eq!(stale.kind(), ProbeErrorKind::Refused, "{stale}");
    std::fs::remove_file(&path).unwrap();
}

#[cfg(unix)]
#[test]
fn over_a_unix_socket_the_request_says_localhost_and_silence_times_out() {
    use std::os::unix::net::UnixListener;
    let path = common::socket_path("fake");
    let listener = UnixListener::bind(&path).unwrap();
    let fake = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(common::PATIENCE)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap();
        // The next one hears nothing until the client gives up.
        let (mut silent, _) = listener.accept().unwrap();
        silent.set_read_timeout(Some(common::PATIENCE)).unwrap();
        while silent.read(&mut [0u8; 64]).is_ok_and(|n| n > 0) {}
        String::from_utf8(head).unwrap()
    });
    let probe = Probe::unix(&path, "/livez").unwrap();
    assert_eq!(probe.run().unwrap().status(), 204);
    let started = Instant::now();
    let error = probe.timeout(Duration::from_millis(300)).run().unwrap_err();
    assert_eq!(error.kind(), ProbeErrorKind::TimedOut, "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let head = fake.join().unwrap();
    assert!(
        head.starts_with("GET /livez HTTP/1.1\r\nHost: localhost\r\n"),
        "{head}"
    );
    std::fs::remove_file(&path).unwrap();
}

#[cfg(unix)]
#[test]
fn the_probe_binary_takes_a_unix_socket_and_waits_on_it() {
    let path = common::socket_path("binary");
    let socket = path.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(probe_binary()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // Nothing there yet, and not within the wait.
    let (code, line) = run(&["--wait", "200ms", "--unix", socket]);
    assert_eq!(code, Some(1));
    assert!(line.starts_with("unhealthy: connection refused"), "{line}");
    assert!(
        line.ends_with(&format!("(unix:{socket} /healthz)\n")),
        "{line}"
    );

    let (health, tries) = not_ready_counting_tries_health();
    let server = healthz::Server::new(health.clone())
        .bind_unix(&path)
        .unwrap();
    let (code, line) = run(&["--unix", socket, "/readyz"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        line,
        format!("unhealthy: status 503 (not ready) (unix:{socket} /readyz)\n")
    );
    let args = ["--wait", "10s", "--unix", socket, "/readyz"];
    let waited = binary_waits_until_ready(&args, &health, &tries);
    let healthy = format!("healthy: status 200 from unix:{socket} /readyz\n");
    assert_eq!(waited, (Some(0), healthy));
    assert_eq!(run(&["--unix"]).0, Some(2), "--unix needs a socket");
    let (code, help) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for word in [
        "--unix SOCKET [PATH]",
        "--wait DURATION",
        "--timeout",
        "--expect",
    ] {
        assert!(help.contains(word), "--help does not mention {word}");
    }
    server.shutdown().unwrap();
}
