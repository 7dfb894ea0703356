//! No slow, broken or hostile client can take the probe down. Each limit is
//! configured short so each test takes well under a few seconds.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{event_channel, get, kept_alive, raw, serve_with, wait_for_event, Client, PATIENCE};
use healthz::{Health, Server};

/// A hook that sends the kind of each connection error (a timeout is
/// `TimedOut` or `WouldBlock` on every platform; its text is the system's own).
fn connection_errors() -> (
    impl Fn(&healthz::Event) + Send + Sync + 'static,
    std::sync::mpsc::Receiver<std::io::ErrorKind>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let hook = move |event: &healthz::Event| {
        if let healthz::Event::ConnectionError { error, .. } = event {
            let _ = tx.lock().unwrap().send(error.kind());
        }
    };
    (hook, rx)
}

fn ready() -> Health {
    let health = Health::new();
    health.ready();
    health
}

#[test]
fn a_trickling_client_is_cut_off_at_the_request_deadline_not_per_read() {
    let deadline = Duration::from_millis(400);
    let server = Server::new(ready())
        .request_timeout(deadline)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let started = Instant::now();
    let mut writer = stream.try_clone().unwrap();
    // One byte every 50 ms, far inside any per-read timeout, for up to 10 s.
    let trickler = thread::spawn(move || {
        let head = b"GET /healthz HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain([b'a'; 200].iter());
        for byte in head {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let took = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(took >= deadline, "cut before the deadline: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "the deadline was extended by trickling: {took:?}"
    );
    trickler.join().unwrap();
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_request_deadline() {
    let server = Server::new(ready())
        .request_timeout(Duration::from_millis(200))
        .bind("127.0.0.1:0")
        .unwrap();
    // The deadline counts from accept, which may come before connect returns here.
    let started = Instant::now();
    let mut silent = Client::connect(server.local_addr());
    assert!(silent.closed());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "closed after {took:?}");
}

#[test]
fn an_idle_keepalive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::new(ready())
        .idle_timeout(Duration::from_millis(200))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut client = Client::connect(server.local_addr());
    // The idle time counts from the answer, which is written before the
    // client reads it: time it from before the request (on a busy host the
    // read can come long after the write).
    let started = Instant::now();
    assert_eq!(client.get("/healthz").status, 200);
    assert!(client.closed());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "closed after {took:?}");
}

#[test]
fn requests_per_connection_are_capped() {
    let server = Server::new(ready())
        .max_requests_per_connection(3)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/healthz").header("Connection"), None);
    assert_eq!(client.get("/healthz").header("Connection"), None);
    assert_eq!(client.get("/healthz").header("Connection"), Some("close"));
    assert!(client.closed());
}

/// Writes pipelined requests on `stream` from another thread until the server
/// gives up on it (bounded: at most 64 MiB of requests).
fn flood(stream: &TcpStream) -> thread::JoinHandle<()> {
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    thread::spawn(move || {
        let batch = b"GET /healthz HTTP/1.1\r\n\r\n".repeat(2048);
        for _ in 0..(64 << 20) / batch.len() {
            if writer.write_all(&batch).is_err() {
                return;
            }
        }
    })
}

/// A client of a server with `write_timeout` and no cap on requests per
/// connection (so that answers can fill both socket buffers): the server,
/// the client's stream, and the server's connection errors.
fn slow_reader_setup(
    write_timeout: Duration,
) -> (
    healthz::Running,
    TcpStream,
    std::sync::mpsc::Receiver<std::io::ErrorKind>,
) {
    let (hook, errors) = connection_errors();
    let server = Server::new(ready())
        .write_timeout(write_timeout)
        .max_requests_per_connection(u64::MAX)
        .on_event(hook)
        .bind("127.0.0.1:0")
        .unwrap();
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    (server, stream, errors)
}

/// The server's first connection error is its write timeout's.
fn expect_write_timeout(errors: &std::sync::mpsc::Receiver<std::io::ErrorKind>) {
    let kind = errors.recv_timeout(PATIENCE).expect("a connection error");
    assert!(
        matches!(
            kind,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        "{kind:?}"
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_write_timeout() {
    let (server, stream, errors) = slow_reader_setup(Duration::from_millis(200));
    let flood = flood(&stream);
    expect_write_timeout(&errors);
    // Unblock our own writer in case it is blocked rather than failed.
    let _ = stream.shutdown(Shutdown::Both);
    flood.join().unwrap();
    assert_eq!(get(server.local_addr(), "/healthz").status, 200);
}

#[test]
fn a_client_reading_a_little_at_a_time_is_cut_at_the_write_timeout() {
    let (_server, stream, errors) = slow_reader_setup(Duration::from_millis(300));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let flood = flood(&stream);
    // It keeps reading, slowly: the server's answers back up and it gives up on
    // the connection. Bounded: at most 10 s of reading 1 KiB every 5 ms.
    let mut reader = stream.try_clone().unwrap();
    let slow = thread::spawn(move || {
        let mut chunk = [0u8; 1024];
        for _ in 0..2000 {
            match reader.read(&mut chunk) {
                Ok(n) if n > 0 => thread::sleep(Duration::from_millis(5)),
                _ => return,
            }
        }
    });
    expect_write_timeout(&errors);
    let _ = stream.shutdown(Shutdown::Both);
    flood.join().unwrap();
    slow.join().unwrap();
}

#[test]
fn a_half_closed_client_still_gets_its_answer() {
    let server = Server::new(ready()).bind("127.0.0.1:0").unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
}

#[test]
fn a_client_that_resets_mid_request_ends_its_connection_thread() {
    let (hook, events) = event_channel();
    let server = Server::new(ready())
        .request_timeout(Duration::from_secs(600))
        .on_event(hook)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut client = Client::connect(server.local_addr());
    // One full request and half of another; the first answer is left unread, so
    // closing the socket sends a reset instead of a FIN.
    client.send(b"GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost:");
    let mut first = [0u8; 1];
    client.stream.read_exact(&mut first).unwrap();
    drop(client);
    let event = wait_for_event(&events, "connection from");
    assert!(
        event.contains("reset") || event.contains("closed"),
        "{event}"
    );
    server.shutdown().expect("nothing left in flight");
}

#[test]
fn oversized_request_lines_and_heads_are_refused_early_with_414_and_431() {
    let server = Server::new(ready()).bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    // Megabytes on the way, refused at the limit: the answer comes before the input ends.
    let long_line = [b"GET /".as_slice(), &[b'a'; 1 << 20]].concat();
    let answer = raw(addr, &long_line);
    assert!(
        answer.starts_with(b"HTTP/1.1 414 URI Too Long\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let big_head = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'b'; 1 << 20]].concat();
    let answer = raw(addr, &big_head);
    assert!(
        answer.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let many = [
        b"GET / HTTP/1.1\r\n".as_slice(),
        &b"A: b\r\n".repeat(100),
        b"\r\n",
    ]
    .concat();
    assert!(raw(addr, &many).starts_with(b"HTTP/1.1 431 "));
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn hostile_inputs_get_a_400_or_a_plain_close_and_nothing_else() {
    let (hook, events) = event_channel();
    let server = Server::new(ready())
        .on_event(hook)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    let h2_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let client_hello = [
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ]
    .to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("HTTP/2 preface", h2_preface),
        ("TLS ClientHello", client_hello),
        ("NUL bytes", vec![0; 64]),
        ("binary garbage", (0..=255u8).rev().collect()),
        (
            "bare CR",
            b"GET /healthz HTTP/1.1\r\nA: 1\rB: 2\r\n\r\n".to_vec(),
        ),
        (
            "obs-fold",
            b"GET /healthz HTTP/1.1\r\nA: 1\r\n\t2\r\n\r\n".to_vec(),
        ),
        (
            "invalid header name",
            b"GET /healthz HTTP/1.1\r\nA@B: 1\r\n\r\n".to_vec(),
        ),
        (
            "duplicate Content-Length",
            b"GET /healthz HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        (
            "Content-Length overflow",
            b"GET /healthz HTTP/1.1\r\nContent-Length: 184467440737095516160\r\n\r\n".to_vec(),
        ),
        (
            "lower-case method",
            b"get /healthz HTTP/1.1\r\n\r\n".to_vec(),
        ),
    ];
    for (what, input) in &cases {
        let answer = raw(addr, input);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{what}: {text}"
        );
        assert!(text.matches("HTTP/1.1 ").count() <= 1, "{what}: {text}");
        wait_for_event(&events, "rejected");
    }
    // A huge but well-formed Content-Length is refused before any body is read.
    let huge = raw(
        addr,
        b"GET /healthz HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
    );
    assert!(
        huge.starts_with(b"HTTP/1.1 413 "),
        "{}",
        String::from_utf8_lossy(&huge)
    );
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn with_one_spare_thread_someone_still_accepts_while_every_thread_holds_a_client() {
    // Every thread that takes the last place in accept must start another
    // before it serves: here each of 100 clients, opened from 4 threads at
    // once, keeps its thread busy for the whole test.
    let server = Server::new(ready())
        .spare_threads(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    let openers: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || kept_alive(addr, 25, 200)))
        .collect();
    let held: Vec<Vec<Client>> = openers.into_iter().map(|o| o.join().unwrap()).collect();
    assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 100);
    for _ in 0..20 {
        assert_eq!(get(addr, "/healthz").status, 200);
    }
    server.shutdown().unwrap();
}

#[test]
fn a_fresh_probe_is_answered_correctly_under_a_flood_beyond_the_cap() {
    let health = ready();
    let cap = 32;
    let server = serve_with(&health, |s| {
        s.max_connections(cap)
            .request_timeout(Duration::from_secs(600))
            .idle_timeout(Duration::from_secs(600))
    });
    let addr = server.local_addr();
    // 300 idle keep-alive connections and 100 stuck in the middle of a head:
    // more than ten times the cap.
    let mut flood = Vec::new();
    for i in 0..400 {
        let mut stream = TcpStream::connect(addr).unwrap();
        let bytes: &[u8] = if i % 4 == 0 {
            b"GET /healthz HTTP/1.1\r\nX-Slow: tr"
        } else {
            b"GET /healthz HTTP/1.1\r\n\r\n"
        };
        stream.write_all(bytes).unwrap();
        flood.push(stream);
    }
    for ready_now in [true, false, true] {
        health.set_ready(ready_now);
        let started = Instant::now();
        let mut probe = TcpStream::connect(addr).unwrap();
        // The kubelet waits 1 s; the time is printed (and the bench measures
        // latency), while the bound here is generous so a busy machine cannot fail it.
        probe.set_read_timeout(Some(PATIENCE)).unwrap();
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        probe
            .read_to_string(&mut answer)
            .expect("answered, not starved by the flood");
        let want = if ready_now {
            "HTTP/1.1 200 "
        } else {
            "HTTP/1.1 503 "
        };
        assert!(answer.starts_with(want), "{answer}");
        println!(
            "fresh probe under a flood of 400 connections (cap {cap}): {:?}",
            started.elapsed()
        );
    }
    drop(flood);
}

#[test]
fn evictions_are_reported_and_the_oldest_waiting_connection_goes_first() {
    let (hook, events) = event_channel();
    let server = Server::new(ready())
        .max_connections(2)
        .on_event(hook)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    let mut oldest = Client::connect(addr);
    assert_eq!(oldest.get("/healthz").status, 200);
    let mut newer = Client::connect(addr);
    assert_eq!(newer.get("/healthz").status, 200);
    let mut newest = Client::connect(addr);
    assert_eq!(newest.get("/healthz").status, 200);
    wait_for_event(&events, "evicted: connection limit reached");
    assert!(oldest.closed(), "the longest-idle connection is evicted");
    assert_eq!(newer.get("/healthz").status, 200);
    assert_eq!(newest.get("/healthz").status, 200);
}

#[test]
fn at_the_cap_a_connection_whose_check_runs_outlasts_an_idle_one() {
    use std::sync::{mpsc, Mutex};
    let health = ready();
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let (started_tx, released) = (Mutex::new(started_tx), Mutex::new(released));
    let slow = healthz::Check::new("slow", move || {
        let _ = started_tx.lock().unwrap().send(());
        let wait = released.lock().unwrap().recv_timeout(PATIENCE);
        Ok(wait.map_err(|_| "never released")?)
    });
    health.add_check(slow.timeout(PATIENCE)).unwrap();
    let server = serve_with(&health, |s| s.max_connections(2));
    let addr = server.local_addr();
    // Its check starts first, so this connection has waited on the server longest.
    let mut checking = Client::connect(addr);
    checking.send(b"GET /readyz HTTP/1.1\r\n\r\n");
    started.recv_timeout(PATIENCE).expect("the check started");
    // Then one that is idle after its answer (`/livez` runs no readiness check).
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/livez").status, 200);
    // A new probe at the cap: the idle connection makes room, not the busy one.
    assert_eq!(get(addr, "/livez").status, 200);
    assert!(idle.closed(), "the idle connection is evicted");
    release.send(()).unwrap();
    assert_eq!(checking.response(false).unwrap().status, 200);
}

#[test]
fn small_stacks_survive_a_panicking_hook_with_backtraces_on() {
    // The smallest stack allowed, and a hook that panics on a connection thread:
    // the panic machinery (with RUST_BACKTRACE set, as on many machines) must fit.
    let server = Server::new(ready())
        .thread_stack_size(64 * 1024)
        .on_event(|event| {
            if matches!(event, healthz::Event::Rejected { .. }) {
                panic!("hook panics on purpose on a small stack");
            }
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let answer = raw(server.local_addr(), b"\x00garbage\r\n\r\n");
    assert!(answer.starts_with(b"HTTP/1.1 400 "));
    assert_eq!(get(server.local_addr(), "/healthz").status, 200);
    let too_small = Server::new(ready())
        .thread_stack_size(32 * 1024)
        .bind("127.0.0.1:0");
    assert_eq!(
        too_small.unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
}
