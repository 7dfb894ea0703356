//! Resource hygiene: after bursts of clients, the server's threads and file
//! descriptors return to where they were. Alone in its test binary, so that
//! nothing else in the process opens threads or files meanwhile.
//!
//! Threads, descriptors and memory are read from `/proc`, so this runs on Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{get, AnyServer, Dial, Stream, TRANSPORTS};
use healthz::{Health, Server};

fn threads() -> usize {
    fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits for the server's connection threads to end after their clients left.
/// No event says "this thread is gone", so this watches `/proc`, bounded in time.
fn settle(want_threads: usize, want_fds: usize) -> (usize, usize) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = (threads(), fds());
        if now == (want_threads, want_fds) || Instant::now() > until {
            return now;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn hold(addr: &dyn Dial, count: usize, bytes: &[u8]) -> Vec<Stream> {
    (0..count)
        .map(|_| {
            let mut stream = addr.dial().unwrap();
            stream.write_all(bytes).unwrap();
            stream
        })
        .collect()
}

#[test]
fn threads_and_fds_return_to_baseline_after_every_burst() {
    for &unix in TRANSPORTS {
        bursts(unix);
    }
}

fn bursts(unix: bool) {
    let health = Health::new();
    health.ready();
    let server = Server::new(health)
        .request_timeout(Duration::from_secs(60))
        .idle_timeout(Duration::from_secs(60))
        // One thread waits in accept; the others end with their connections.
        .spare_threads(1);
    let server = AnyServer::bind(server, unix);
    let addr = server.target();
    let (base_threads, base_fds, base_rss) = (threads(), fds(), rss_kib());
    let mut peak_threads = base_threads;
    let mut peak_rss = base_rss;

    // 2000 connection-per-request probes, from 4 threads.
    let probers: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || (0..500).all(|_| get(&addr, "/healthz").status == 200))
        })
        .collect();
    for prober in probers {
        assert!(prober.join().unwrap(), "every probe answered 200");
    }
    assert_eq!(
        settle(base_threads, base_fds),
        (base_threads, base_fds),
        "after 2000 probes"
    );

    // 300 idle keep-alive connections, then 200 trickling ones, held together.
    let idle = hold(&*addr, 300, b"GET /healthz HTTP/1.1\r\n\r\n");
    let trickling = hold(&*addr, 200, b"GET /healthz HTTP/1.1\r\nX-Slow: a");
    // The server must still answer while they are open.
    assert_eq!(get(&addr, "/healthz").status, 200);
    peak_threads = peak_threads.max(threads());
    peak_rss = peak_rss.max(rss_kib());
    drop(idle);
    drop(trickling);
    assert_eq!(
        settle(base_threads, base_fds),
        (base_threads, base_fds),
        "after 500 held connections"
    );

    println!(
        "unix: {unix}: baseline {base_threads} threads, {base_fds} fds, {base_rss} KiB RSS; \
         peak with 500 held connections {peak_threads} threads, {peak_rss} KiB RSS \
         (test process, client sockets included)"
    );
    server.shutdown().unwrap();
}
