//! No thread left behind. Alone in its own test binary, so that no other
//! test's server runs while it counts threads.

mod common;

use std::fs;
use std::time::Duration;

use common::{get, Client};
use healthz::{Health, Server};

/// Threads of this process whose name starts with `healthz-`.
fn server_threads() -> usize {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task (Linux)")
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("healthz-"))
        .count()
}

#[test]
fn every_thread_the_server_started_is_gone_after_shutdown() {
    assert_eq!(server_threads(), 0);
    let health = Health::new();
    health.ready();
    let server = Server::new(health)
        .shutdown_timeout(Duration::from_millis(200))
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    let mut idle: Vec<Client> = (0..20).map(|_| Client::connect(addr)).collect();
    for client in &mut idle {
        assert_eq!(client.get("/healthz").status, 200);
    }
    for _ in 0..20 {
        assert_eq!(get(addr, "/healthz").status, 200);
    }
    // One connection stuck mid-request, cut at the deadline.
    let mut stuck = Client::connect(addr);
    stuck.send(b"POST /healthz HTTP/1.1\r\nContent-Length: 9\r\n\r\n");
    assert_eq!(stuck.response(false).unwrap().status, 405);
    assert!(
        server_threads() >= 22,
        "accept thread plus 21 connection threads"
    );

    let error = server.shutdown().unwrap_err();
    assert_eq!(error.connections_cut(), 1);
    assert_eq!(error.threads_left(), 0);
    assert_eq!(server_threads(), 0, "threads left after shutdown");
}
