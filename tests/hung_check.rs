//! A check that never returns: probes are answered within the check's
//! timeout, and no thread piles up per probe. Alone in its test binary so the
//! thread count is this test's.
//!
//! Threads are counted in `/proc`, so this runs on Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Client;
use healthz::{Check, Health, Server};

fn check_threads() -> usize {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "healthz-check")
        .count()
}

#[test]
fn a_hung_check_bounds_every_probe_and_holds_one_thread() {
    let health = Health::new();
    health.ready();
    let server = Server::new(health.clone()).bind("127.0.0.1:0").unwrap();
    let (release, hang) = mpsc::channel::<()>();
    let hang = Mutex::new(hang);
    let timeout = Duration::from_millis(50);
    let check = Check::new("stuck", move || {
        let _ = hang.lock().unwrap().recv(); // until the test ends
        Ok(())
    })
    .timeout(timeout);
    health.add_check(check).unwrap();

    let mut client = Client::connect(server.local_addr());
    let mut slowest = Duration::ZERO;
    for probe in 0..50 {
        let started = Instant::now();
        let reply = client.get("/readyz");
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            reply.status, 503,
            "probe {probe}: a hung check counts as failed"
        );
        assert_eq!(
            check_threads(),
            1,
            "probe {probe}: one run in flight, never one per probe"
        );
    }
    assert!(
        slowest < Duration::from_secs(5),
        "a probe waited {slowest:?}"
    );
    println!(
        "50 probes against a hung check with a {timeout:?} timeout; slowest answer {slowest:?}"
    );
    assert_eq!(client.get("/livez").status, 200);
    drop(release);
}
