//! No thread left behind. In a test binary of their own, and one at a time,
//! so that no other server runs while a test counts threads. Threads are
//! counted in `/proc`, so these run on Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{get, kept_alive, AnyServer, Client, Recorder, TRANSPORTS};
use healthz::{Health, Server};

/// Threads of this process whose name starts with `healthz-`.
fn server_threads() -> usize {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task (Linux)")
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("healthz-"))
        .count()
}

/// `count()` once it equals `want`, or after 5 s. A thread that has been
/// joined can still be listed in `/proc` for a moment, until the kernel has
/// finished its exit; no signal says when, so this polls, bounded in time.
fn settled(count: fn() -> usize, want: usize) -> usize {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = count();
        if now == want || std::time::Instant::now() > until {
            return now;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Held by each test here: they count the same threads.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_thread_the_server_started_is_gone_after_shutdown() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for &unix in TRANSPORTS {
        all_gone_after_shutdown(unix);
    }
}

fn all_gone_after_shutdown(unix: bool) {
    assert_eq!(settled(server_threads, 0), 0, "threads of an earlier test");
    let health = Health::new();
    health.ready();
    let server = Server::new(health).shutdown_timeout(Duration::from_millis(200));
    let server = AnyServer::bind(server, unix);
    let addr = server.target();
    let _idle = kept_alive(&addr, 20, 200); // held open until shutdown
    for _ in 0..20 {
        assert_eq!(get(&addr, "/healthz").status, 200);
    }
    // One connection stuck mid-request, cut at the deadline.
    let mut stuck = Client::connect(&addr);
    stuck.send(b"POST /healthz HTTP/1.1\r\nContent-Length: 9\r\n\r\n");
    assert_eq!(stuck.response(false).unwrap().status, 405);
    assert!(
        server_threads() >= 23,
        "the supervisor, 21 connection threads and one in accept"
    );

    let error = server.shutdown().unwrap_err();
    assert_eq!(error.connections_cut(), 1);
    assert_eq!(error.threads_left(), 0);
    assert_eq!(settled(server_threads, 0), 0, "threads left after shutdown");
}

#[test]
fn sequential_connections_are_served_by_the_few_threads_waiting_in_accept() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let health = Health::new();
    health.ready();
    let server = Server::new(health).bind("127.0.0.1:0").unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        assert_eq!(get(server.local_addr(), "/healthz").status, 200);
        seen.extend(conn_thread_ids());
    }
    println!("{} threads served 50 sequential connections", seen.len());
    // A thread starts only when a connection takes the last one waiting, which
    // happens only while the previous connection's thread is not back yet.
    assert!(
        seen.len() <= 10,
        "{} threads served 50 sequential connections",
        seen.len()
    );
    server.shutdown().unwrap();
}

#[test]
fn after_a_burst_only_the_spare_threads_stay_in_accept() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let health = Health::new();
    health.ready();
    let server = Server::new(health)
        .spare_threads(2)
        .spare_thread_timeout(Duration::from_secs(600))
        .bind("127.0.0.1:0")
        .unwrap();
    let held = kept_alive(server.local_addr(), 20, 200);
    assert!(
        conn_threads() >= 21,
        "a thread per connection, one in accept"
    );
    drop(held);
    assert_eq!(
        settled(conn_threads, 2),
        2,
        "the two spares stay in accept, the rest end"
    );
    server.shutdown().unwrap();
    assert_eq!(settled(conn_threads, 0), 0);
}

#[test]
fn after_a_burst_and_a_quiet_period_the_server_has_the_threads_it_started_with() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for &unix in TRANSPORTS {
        burst_then_quiet(unix);
    }
}

/// Over a Unix socket, the same promises hold.
fn burst_then_quiet(unix: bool) {
    assert_eq!(settled(server_threads, 0), 0, "threads of an earlier test");
    let health = Health::new();
    health.ready();
    let recorder = Recorder::default();
    let server = Server::new(health)
        .spare_thread_timeout(Duration::from_millis(300))
        .on_event(recorder.hook());
    let server = AnyServer::bind(server, unix);
    let addr = server.target();
    // A thread names itself once it runs: wait for both names.
    let at_start = settled(server_threads, 2);
    assert_eq!(at_start, 2, "the supervisor and one thread in accept");

    // 16 at once first, so that 16 threads are certainly left waiting in accept.
    drop(kept_alive(&*addr, 16, 200));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for _ in 0..125 {
                    assert_eq!(get(&*addr, "/healthz").status, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert!(
        conn_threads() > 1,
        "spare threads wait in accept right after the burst"
    );
    // Quiet from here: the extra threads go home.
    assert_eq!(settled(server_threads, at_start), at_start, "unix: {unix}");
    // And the one left still serves.
    assert_eq!(get(&*addr, "/healthz").status, 200);
    server.shutdown().unwrap();
    // Every connection was a client's, served and counted.
    let events = recorder.events();
    let last = events.last().map(String::as_str);
    assert_eq!(last, Some("stopped after 2017 connections"), "{events:?}");
    assert_eq!(recorder.count("connection from"), 0, "{events:?}");
    assert_eq!(recorder.count("rejected"), 0, "{events:?}");
}

fn conn_threads() -> usize {
    conn_thread_ids().len()
}

/// Thread ids of the connection threads alive now.
fn conn_thread_ids() -> Vec<String> {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = fs::read_to_string(path.join("comm")).ok()?;
            let id = path.file_name()?.to_string_lossy().into_owned();
            (name.trim_end() == "healthz-conn").then_some(id)
        })
        .collect()
}

/// A spare thread that has waited `spare_thread_timeout` in `accept` without
/// a connection ends (the kernel times `accept` out); one always stays.
#[test]
fn a_spare_thread_goes_home_once_it_has_waited_the_timeout_for_a_connection() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(settled(server_threads, 0), 0, "threads of an earlier test");
    let quiet = Duration::from_millis(1000);
    let health = Health::new();
    health.ready();
    let server = Server::new(health)
        .spare_thread_timeout(quiet)
        .bind("127.0.0.1:0")
        .unwrap();
    // 16 connections at once; once they close, their threads wait in accept.
    drop(kept_alive(server.local_addr(), 16, 200));
    let released = Instant::now();
    // Nothing signals that nothing happened: look just before the timeout.
    std::thread::sleep(quiet - Duration::from_millis(300));
    assert_eq!(conn_threads(), 16, "no spare leaves before its timeout");
    assert_eq!(settled(conn_threads, 1), 1, "back to the one in accept");
    let took = released.elapsed();
    assert!(took < quiet + Duration::from_millis(500), "{took:?}");
    server.shutdown().unwrap();
}

/// Nothing that sends threads home or stops them goes through the socket's
/// path: with the socket file deleted while serving, spare threads still go
/// home and shutdown still joins every thread.
#[test]
fn a_deleted_socket_file_leaves_no_thread_behind() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let path = common::socket_path("deleted");
    let (_, threads, stopped) = spares_after_a_burst(&path, || fs::remove_file(&path).unwrap());
    assert_eq!(threads, 2, "spares went home");
    stopped.expect("no thread stuck in accept");
    assert_eq!(settled(server_threads, 0), 0);
}

/// The same after the process moves to another directory, with the server
/// bound at a relative path (and a decoy socket of that name where the
/// process moved to, which must hear nothing).
#[test]
fn a_change_of_directory_leaves_no_thread_behind() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let home = std::env::current_dir().unwrap();
    let elsewhere = std::env::temp_dir().join(format!("hz-chdir-{}", std::process::id()));
    let name = format!("target/hz-chdir-{}.sock", std::process::id());
    let _ = fs::remove_file(&name);
    let (decoy, threads, stopped) = spares_after_a_burst(std::path::Path::new(&name), || {
        fs::create_dir_all(elsewhere.join("target")).unwrap();
        let decoy = std::os::unix::net::UnixListener::bind(elsewhere.join(&name)).unwrap();
        decoy.set_nonblocking(true).unwrap();
        std::env::set_current_dir(&elsewhere).unwrap();
        decoy
    });
    std::env::set_current_dir(&home).unwrap();
    assert_eq!(threads, 2, "spares went home");
    stopped.expect("no thread stuck in accept");
    assert_eq!(settled(server_threads, 0), 0);
    assert!(decoy.accept().is_err(), "the decoy heard from the server");
    fs::remove_dir_all(&elsewhere).unwrap();
}

/// Serves on a Unix socket bound at `path` (spares go home after 300 ms),
/// holds 8 clients, runs `meanwhile` (which does something to the path),
/// lets the clients go, then shuts down: what `meanwhile` returned, the
/// server's threads once settled (2 at the start), and what shutdown said.
fn spares_after_a_burst<T>(
    path: &std::path::Path,
    meanwhile: impl FnOnce() -> T,
) -> (T, usize, Result<(), healthz::Error>) {
    assert_eq!(settled(server_threads, 0), 0, "threads of an earlier test");
    let health = Health::new();
    health.ready();
    let server = Server::new(health)
        .spare_thread_timeout(Duration::from_millis(300))
        .bind_unix(path)
        .unwrap();
    assert_eq!(settled(server_threads, 2), 2);
    let clients = kept_alive(std::env::current_dir().unwrap().join(path), 8, 200);
    let made = meanwhile();
    drop(clients);
    let threads = settled(server_threads, 2);
    (made, threads, server.shutdown())
}
