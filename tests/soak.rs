//! A bounded soak: three seconds of good, slow, idle and garbage clients on
//! several threads at once. Every good probe must be answered correctly, and
//! the server's threads and descriptors must come back to baseline. Alone in
//! its test binary so the counts are the server's.
//!
//! Threads and descriptors are counted in `/proc`, so this runs on Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{get, Client, PATIENCE};
use healthz::{Health, Server};

const SOAK: Duration = Duration::from_secs(3);

fn counts() -> (usize, usize) {
    let n = |dir| fs::read_dir(dir).unwrap().count();
    (n("/proc/self/task"), n("/proc/self/fd"))
}

/// Runs `client` in a loop on its own thread until `stop` is set; returns how
/// many rounds it ran. Each round is bounded by the server's own timeouts.
fn spawn_loop(
    stop: &Arc<AtomicBool>,
    mut client: impl FnMut(u64) -> bool + Send + 'static,
) -> thread::JoinHandle<(u64, u64)> {
    let stop = stop.clone();
    thread::spawn(move || {
        let (mut rounds, mut failures) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            if !client(rounds) {
                failures += 1;
            }
            rounds += 1;
        }
        (rounds, failures)
    })
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mixed_good_slow_idle_and_garbage_clients_for_three_seconds() {
    let health = Health::new();
    health.ready();
    let server = Server::new(health)
        .request_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_millis(500))
        .max_connections(256)
        .spare_threads(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr: SocketAddr = server.local_addr();
    let baseline = counts();
    let stop = Arc::new(AtomicBool::new(false));

    let good_new = spawn_loop(&stop, move |_| get(addr, "/healthz").status == 200);
    let good_kept = {
        let mut client = Client::connect(addr);
        spawn_loop(&stop, move |round| {
            // The idle timeout never fires here: requests follow each other at once.
            if round % 1000 == 999 {
                client = Client::connect(addr);
            }
            client.get("/healthz").status == 200
        })
    };
    let slow = spawn_loop(&stop, move |_| {
        // A head that trickles in, then stalls: cut with a 408 at the request deadline.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: a" {
            if stream.write_all(&[*byte]).is_err() {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer.starts_with(b"HTTP/1.1 408 ")
    });
    let garbage = spawn_loop(&stop, move |round| {
        let mut seed = 0x9e37_79b9_7f4a_7c15 ^ round;
        let len = 1 + (xorshift(&mut seed) % 4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(&bytes);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        // Garbage gets a 4xx or a plain close, never a success.
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 4")
    });
    let idle = spawn_loop(&stop, move |_| {
        // Silent connections: every one is taken, and the server never
        // sends a byte to a client that has not asked for anything.
        let held: Vec<TcpStream> = (0..100)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        thread::sleep(Duration::from_millis(200));
        let silent = held.iter().all(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            !matches!((&*stream).read(&mut byte), Ok(n) if n > 0)
        });
        held.len() == 100 && silent
    });

    let started = Instant::now();
    while started.elapsed() < SOAK {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(&str, (u64, u64))> = vec![
        ("good, new connection each", good_new.join().unwrap()),
        ("good, kept alive", good_kept.join().unwrap()),
        ("slow", slow.join().unwrap()),
        ("garbage", garbage.join().unwrap()),
        ("idle batches of 100", idle.join().unwrap()),
    ];
    for (what, (rounds, failures)) in &results {
        println!("{what}: {rounds} rounds, {failures} wrong answers");
        assert!(*rounds > 0, "{what} never ran");
        assert_eq!(*failures, 0, "{what}");
    }

    let until = Instant::now() + Duration::from_secs(10);
    while counts() != baseline && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(counts(), baseline, "threads and fds back to baseline");
    server.shutdown().unwrap();
}
