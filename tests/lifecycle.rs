//! Binding, the two ways to run, shutdown, and the event hook.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{event_channel, get, kept_alive, start, wait_for_event, Client, Recorder};
use healthz::{Health, Server, ShutdownToken};

#[test]
fn port_zero_binds_a_real_port_that_serves() {
    let (_health, server) = start(true);
    assert_ne!(server.local_addr().port(), 0);
    assert_eq!(get(server.local_addr(), "/healthz").status, 200);
}

#[test]
fn a_second_bind_on_the_same_port_is_an_err() {
    let (_health, server) = start(true);
    let error = Server::new(Health::new())
        .bind(server.local_addr())
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    // It names the address; the cause is its source, said once in a chain.
    let addr = server.local_addr();
    assert_eq!(error.to_string(), format!("cannot listen on {addr}"));
    let cause = std::error::Error::source(&error).expect("the OS error");
    assert_eq!(cause.to_string(), error.io_error().unwrap().to_string());
    assert!(std::error::Error::source(cause).is_none());
    // What `fn main() -> Result<(), healthz::Error>` prints: the chain, once.
    let chain = format!("cannot listen on {addr}: {cause}");
    assert_eq!(format!("{error:?}"), chain);
    let io: std::io::Error = error.into();
    assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(io.to_string(), chain);
}

/// An error that says it all keeps its own words, with nothing under it.
#[test]
fn an_invalid_name_says_why_once() {
    let error = Health::new().target("has space").unwrap_err();
    assert!(std::error::Error::source(&error).is_none());
    assert_eq!(format!("{error:?}"), error.to_string());
    assert!(
        error.to_string().contains("invalid name `has space`"),
        "{error}"
    );
}

#[test]
fn sizes_and_durations_out_of_bounds_are_an_err_not_a_panic() {
    let huge = Duration::MAX;
    for server in [
        Server::new(Health::new()).request_timeout(huge),
        Server::new(Health::new()).shutdown_timeout(huge),
        Server::new(Health::new()).drain_delay(huge),
    ] {
        let error = server.bind("127.0.0.1:0").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
    }
    let buffer = Server::new(Health::new()).max_request_head(usize::MAX);
    assert!(
        buffer.bind("127.0.0.1:0").is_err(),
        "each connection's buffer"
    );
    let server = Server::new(Health::new()).bind("127.0.0.1:0").unwrap();
    assert!(server.drain(huge).is_err());
    let check = healthz::Check::new("slow", || Ok(())).timeout(huge);
    assert!(Health::new().add_check(check).is_err());
    let probe = healthz::Probe::new("127.0.0.1:1").unwrap().timeout(huge);
    assert_eq!(
        probe.run().unwrap_err().kind(),
        healthz::ProbeErrorKind::InvalidSettings,
        "the target is fine; the timeout is not"
    );
}

#[test]
fn invalid_configuration_is_an_err_not_a_panic() {
    let error = Server::new(Health::new())
        .request_timeout(Duration::ZERO)
        .bind("127.0.0.1:0")
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("request_timeout"), "{error}");
    let error = Server::new(Health::new())
        .max_connections(0)
        .bind("127.0.0.1:0")
        .unwrap_err();
    assert!(error.to_string().contains("max_connections"), "{error}");
    let error = Server::new(Health::new())
        .spare_threads(0)
        .bind("127.0.0.1:0")
        .unwrap_err();
    assert!(error.to_string().contains("spare_threads"), "{error}");
}

#[test]
fn bind_and_run_report_an_invalid_configuration_the_same_way_before_any_socket() {
    let invalid = || Server::new(Health::new()).idle_timeout(Duration::ZERO);
    // The port is taken: bind must refuse the configuration before it tries it.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let from_bind = invalid().bind(taken.local_addr().unwrap()).unwrap_err();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let from_run = invalid()
        .run(listener, &healthz::ShutdownToken::new())
        .unwrap_err();
    for error in [&from_bind, &from_run] {
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
        assert!(!error.is_deadline());
    }
    assert_eq!(from_bind.to_string(), from_run.to_string());
    assert_eq!(
        from_bind.to_string(),
        "healthz: idle_timeout must be greater than zero"
    );
}

#[test]
fn serves_a_listener_bound_by_the_caller() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Health::new();
    health.ready();
    let server = Server::new(health).listen(listener).unwrap();
    assert_eq!(server.local_addr(), addr);
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn run_serves_on_the_calling_thread_until_the_token_is_triggered() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let token = ShutdownToken::new();
    let health = Health::new();
    let (done_tx, done_rx) = mpsc::channel();
    let runner = {
        let token = token.clone();
        let health = health.clone();
        thread::spawn(move || {
            let result = Server::new(health).run(listener, &token);
            done_tx.send(()).unwrap();
            result
        })
    };
    assert_eq!(get(addr, "/healthz").status, 503);
    health.ready();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(
        done_rx.try_recv().is_err(),
        "run returned before the trigger"
    );
    token.trigger();
    runner.join().unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after run returned"
    );
}

#[test]
fn run_returns_at_once_when_the_token_was_triggered_before() {
    let token = ShutdownToken::new();
    token.trigger();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Server::new(Health::new()).run(listener, &token).unwrap();
}

#[test]
fn one_token_stops_several_servers() {
    let token = ShutdownToken::new();
    let runners: Vec<_> = (0..3)
        .map(|_| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let token = token.clone();
            thread::spawn(move || Server::new(Health::new()).run(listener, &token))
        })
        .collect();
    token.trigger();
    for runner in runners {
        runner.join().unwrap().unwrap();
    }
}

#[test]
fn the_port_can_be_bound_again_right_after_shutdown() {
    let (_health, server) = start(true);
    let addr = server.local_addr();
    // Leave a connection in TIME_WAIT on the server side too, and a few
    // threads back in accept, each holding the listener until it is woken.
    assert_eq!(get(addr, "/healthz").status, 200);
    let held = kept_alive(addr, 4, 200);
    drop(held);
    server.shutdown().unwrap();
    let again = Server::new(Health::new())
        .bind(addr)
        .expect("rebind right after shutdown");
    assert_eq!(get(again.local_addr(), "/healthz").status, 503);
}

#[test]
fn dropping_the_running_server_shuts_it_down() {
    let (_health, server) = start(true);
    let addr = server.local_addr();
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/healthz").status, 200);
    drop(server);
    assert!(idle.closed(), "idle connection left open after drop");
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after drop"
    );
}

/// An error after bind, returned with `?`, drops the server: it stops
/// without the drain delay (the drain is for a planned stop), so the error
/// surfaces at once rather than a drain later.
#[test]
fn an_error_after_bind_drops_the_server_without_its_drain() {
    let recorder = Recorder::default();
    let health = Health::new();
    let drain = Duration::from_secs(5);
    let started = Instant::now();
    let mut addr = None;
    let mut service = || -> Result<(), healthz::Error> {
        let server = Server::new(health.clone())
            .drain_delay(drain)
            .on_event(recorder.hook())
            .bind("127.0.0.1:0")?;
        addr = Some(server.local_addr());
        let _db = health.target("db")?;
        let _again = health.target("db")?; // a name taken: the error ends the service
        Ok(())
    };
    let error = service().unwrap_err();
    let took = started.elapsed();
    assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
    let events = recorder.events();
    assert!(
        !events.iter().any(|e| e.starts_with("draining")),
        "{events:?}"
    );
    assert!(!health.is_draining(), "readiness was not drained");
    assert!(
        events.iter().any(|e| e.starts_with("stopped")),
        "{events:?}"
    );
    assert!(TcpStream::connect(addr.unwrap()).is_err(), "stopped");
    // Far under the drain it skipped (a few milliseconds when idle).
    assert!(took < drain / 5, "the error surfaced after {took:?}");
}

/// A planned stop (the token triggered) drains as configured even when the
/// server is then dropped rather than shut down.
#[test]
fn a_drop_after_a_planned_stop_keeps_its_drain() {
    let recorder = Recorder::default();
    let health = Health::new();
    let server = Server::new(health.clone())
        .drain_delay(Duration::from_millis(50))
        .on_event(recorder.hook())
        .bind("127.0.0.1:0")
        .unwrap();
    server.shutdown_token().trigger();
    drop(server);
    assert!(health.is_draining());
    assert!(recorder.count("draining") == 1, "{:?}", recorder.events());
}

#[test]
fn shutdown_closes_idle_keepalive_connections_at_once() {
    let health = Health::new();
    health.ready();
    // Timeouts far beyond the test: only closing idle connections lets shutdown
    // return cleanly; waiting for them would hit the deadline and report cuts.
    let server = Server::new(health)
        .idle_timeout(Duration::from_secs(600))
        .shutdown_timeout(Duration::from_secs(60))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut clients = kept_alive(server.local_addr(), 50, 200);
    let started = Instant::now();
    server
        .shutdown()
        .expect("no connection in flight, nothing cut");
    let took = started.elapsed();
    for client in &mut clients {
        assert!(client.closed());
    }
    // The figure itself is measured by the bench (a few ms). Waiting for the
    // idle connections would take their 600 s idle timeout, or the 60 s
    // deadline and an error: anything near a second means they were not
    // closed at once.
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    println!("shutdown with 50 idle keep-alive connections took {took:?}");
}

#[test]
fn shutdown_also_closes_connections_that_never_sent_a_byte() {
    let server = Server::new(Health::new())
        .request_timeout(Duration::from_secs(600))
        .shutdown_timeout(Duration::from_secs(60))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut silent = Client::connect(server.local_addr());
    // Make sure the server has accepted it before shutting down.
    let mut probe = Client::connect(server.local_addr());
    assert_eq!(probe.get("/healthz").status, 503);
    server
        .shutdown()
        .expect("a silent connection is idle, not in flight");
    assert!(silent.closed());
}

/// A connection whose request head was answered but whose body is still
/// arriving: in flight, as far as shutdown is concerned. Reading the answer
/// first proves the server has the head, with no sleep and no race.
fn request_in_flight(addr: std::net::SocketAddr) -> Client {
    let mut client = Client::connect(addr);
    client.send(b"POST /healthz HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
    assert_eq!(client.response(false).unwrap().status, 405);
    client
}

#[test]
fn shutdown_waits_for_a_request_in_flight() {
    let server = Server::new(Health::new())
        .shutdown_timeout(Duration::from_secs(30))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut client = request_in_flight(server.local_addr());
    let token = server.shutdown_token();
    let (tx, rx) = mpsc::channel();
    let stopper = thread::spawn(move || {
        let result = server.shutdown();
        tx.send(()).unwrap();
        result
    });
    while !token.is_triggered() {
        thread::yield_now();
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "shutdown did not wait"
    );
    client.send(b"cd");
    assert!(client.closed(), "closed once its request is complete");
    stopper
        .join()
        .unwrap()
        .expect("the request finished before the deadline");
}

#[test]
fn new_connections_are_refused_while_shutdown_waits_for_a_request() {
    let (hook, events) = event_channel();
    let server = Server::new(Health::new())
        .on_event(hook)
        .shutdown_timeout(Duration::from_secs(30))
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    // Threads back in accept, and one serving: none may keep the port open.
    drop(kept_alive(addr, 4, 503));
    let mut client = request_in_flight(addr);
    let stopper = thread::spawn(move || server.shutdown());
    wait_for_event(&events, "shutting down");
    let refused = TcpStream::connect(addr).expect_err("the listening socket is closed");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    client.send(b"cd");
    assert!(client.closed(), "closed once its request is complete");
    stopper.join().unwrap().unwrap();
}

#[test]
fn shutdown_with_a_client_stuck_mid_request_returns_at_the_deadline_with_an_error() {
    let deadline = Duration::from_millis(300);
    let server = Server::new(Health::new())
        .request_timeout(Duration::from_secs(600))
        .shutdown_timeout(deadline)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut stuck = request_in_flight(server.local_addr());
    let started = Instant::now();
    let error = server
        .shutdown()
        .expect_err("a stuck request must be reported");
    let took = started.elapsed();
    assert!(error.is_deadline(), "{error}");
    assert_eq!(error.connections_cut(), 1, "{error}");
    assert!(error.to_string().contains("1 busy connection"), "{error}");
    assert!(took >= deadline, "returned before the deadline: {took:?}");
    assert!(
        took < deadline + Duration::from_secs(5),
        "hung past the deadline: {took:?}"
    );
    assert!(stuck.closed());
    let as_io: std::io::Error = error.into();
    assert_eq!(as_io.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn shutdown_is_idempotent_and_callable_from_many_threads() {
    let (_health, server) = start(true);
    let server = std::sync::Arc::new(server);
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let server = server.clone();
            thread::spawn(move || server.shutdown())
        })
        .collect();
    for caller in callers {
        caller.join().unwrap().unwrap();
    }
    server.shutdown().unwrap();
}

#[test]
fn wake_up_connections_are_never_served() {
    let recorder = Recorder::default();
    let server = Server::new(Health::new())
        .on_event(recorder.hook())
        .bind("127.0.0.1:0")
        .unwrap();
    for _ in 0..3 {
        assert_eq!(get(server.local_addr(), "/healthz").status, 503);
    }
    // Four at once: their threads go back to accept, so several wait there at shutdown.
    let held = kept_alive(server.local_addr(), 4, 503);
    drop(held);
    server.shutdown().unwrap();
    let events = recorder.events();
    // Seven clients; wake-up connections are not counted, and nothing failed or was rejected.
    assert_eq!(
        events.last().map(String::as_str),
        Some("stopped after 7 connections"),
        "{events:?}"
    );
    assert_eq!(recorder.count("connection from"), 0, "{events:?}");
    assert_eq!(recorder.count("rejected"), 0, "{events:?}");
}

#[test]
fn events_report_listening_shutdown_and_each_readiness_change_once() {
    let recorder = Recorder::default();
    let health = Health::new();
    let server = Server::new(health.clone())
        .on_event(recorder.hook())
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    for _ in 0..3 {
        health.ready();
        assert_eq!(get(addr, "/healthz").status, 200);
        assert_eq!(get(addr, "/healthz").status, 200);
        health.not_ready();
        health.not_ready();
        assert_eq!(get(addr, "/healthz").status, 503);
    }
    server.shutdown().unwrap();
    // After stopping, changes are no longer reported by that server.
    health.ready();
    let want = [
        format!("listening on {addr}"),
        "readiness changed: ready".into(),
        "readiness changed: not ready (failing: ready)".into(),
        "readiness changed: ready".into(),
        "readiness changed: not ready (failing: ready)".into(),
        "readiness changed: ready".into(),
        "readiness changed: not ready (failing: ready)".into(),
        "shutting down".into(),
        "stopped after 9 connections".into(),
    ];
    assert_eq!(recorder.events(), want);
}

#[test]
fn a_panicking_event_hook_loses_its_event_and_nothing_else() {
    let health = Health::new();
    let server = Server::new(health.clone())
        .on_event(|event| {
            if !matches!(event, healthz::Event::Listening { .. }) {
                panic!("hook panics on purpose: {event}");
            }
        })
        .bind("127.0.0.1:0")
        .unwrap();
    health.ready(); // the hook panics on this thread; contained
    assert!(health.is_ready());
    // A malformed request makes the hook panic on a connection thread.
    let mut bad = TcpStream::connect(server.local_addr()).unwrap();
    bad.write_all(b"BAD\x01\r\n\r\n").unwrap();
    let mut answer = String::new();
    bad.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(get(server.local_addr(), "/healthz").status, 200);
    server.shutdown().unwrap();
}

#[test]
fn a_zero_shutdown_timeout_with_nothing_in_flight_is_ok_every_time() {
    for round in 0..50 {
        let health = Health::new();
        health.ready();
        let server = Server::new(health)
            .shutdown_timeout(Duration::ZERO)
            .bind("127.0.0.1:0")
            .unwrap();
        // One probe that closes, and one connection left idle after its answer.
        assert_eq!(get(server.local_addr(), "/healthz").status, 200);
        let mut idle = kept_alive(server.local_addr(), 1, 200);
        let result = server.shutdown();
        assert!(result.is_ok(), "round {round}: {result:?}");
        assert!(idle[0].closed(), "round {round}");
    }
}

#[test]
fn a_zero_shutdown_timeout_cuts_a_request_in_flight_at_once() {
    let server = Server::new(Health::new())
        .request_timeout(Duration::from_secs(600))
        .shutdown_timeout(Duration::ZERO)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut stuck = request_in_flight(server.local_addr());
    let error = server.shutdown().expect_err("the request was cut");
    assert_eq!(error.connections_cut(), 1, "{error}");
    assert!(stuck.closed());
}
