//! Is my worker stuck or dead? Heartbeats and thread guards, seen by a
//! prober over real sockets: `/livez`, its verbose form, `/metrics`, and the
//! events, while readiness is left alone.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{event_channel, get, wait_for_event};
use healthz::{Health, Server};

/// A ready server with metrics, whose events go to the returned receiver.
fn serve(health: &Health, show_reasons: bool) -> (healthz::Running, mpsc::Receiver<String>) {
    let (hook, events) = event_channel();
    health.ready();
    let server = Server::new(health.clone())
        .metrics(true)
        .show_reasons(show_reasons)
        .on_event(hook)
        .bind("127.0.0.1:0")
        .unwrap();
    (server, events)
}

#[test]
fn an_overdue_heartbeat_fails_liveness_within_its_period_and_a_beat_passes_at_once() {
    let health = Health::new();
    let (server, events) = serve(&health, false);
    let addr = server.local_addr();
    let period = Duration::from_millis(300);
    let created = Instant::now();
    let consumer = health.heartbeat("consumer", period).unwrap();
    assert_eq!(get(addr, "/livez").status, 200, "the first period runs");

    let event = wait_for_event(&events, "liveness changed");
    let took = created.elapsed();
    assert_eq!(event, "liveness changed: not alive (failing: consumer)");
    assert!(took >= period, "overdue after {took:?}");
    assert!(
        took < period + Duration::from_secs(2),
        "overdue after {took:?}"
    );
    assert_eq!(get(addr, "/livez").status, 503);
    assert_eq!(
        get(addr, "/readyz").status,
        200,
        "readiness never hears of it"
    );
    // Named, and how overdue, even with reasons withheld: these are our words.
    let verbose = get(addr, "/livez?verbose");
    let text = verbose.text();
    assert!(text.contains("[-]consumer failed: no beat for "), "{text}");
    assert!(text.contains(" s (period 0.300 s)\n"), "{text}");
    let metrics = get(addr, "/metrics");
    assert!(metrics.text().contains("\nhealthz_alive 0\n"));
    assert!(metrics
        .text()
        .contains("healthz_check{name=\"consumer\",type=\"livez\"} 0\n"));

    consumer.beat();
    assert_eq!(get(addr, "/livez").status, 200, "a beat passes at once");
    assert_eq!(
        wait_for_event(&events, "liveness changed"),
        "liveness changed: alive"
    );
    assert!(get(addr, "/metrics").text().contains("\nhealthz_alive 1\n"));
    consumer.retire();
    assert_eq!(
        get(addr, "/livez/consumer").status,
        404,
        "retired: no longer there"
    );
}

#[test]
fn a_heartbeat_that_keeps_beating_keeps_liveness() {
    let health = Health::new();
    let (server, _events) = serve(&health, false);
    let loop_beat = health
        .heartbeat("loop", Duration::from_millis(500))
        .unwrap();
    // A loop beating every 20 ms for 1.2 s: more than two periods.
    let beater = std::thread::spawn(move || {
        for _ in 0..60 {
            loop_beat.beat();
            std::thread::sleep(Duration::from_millis(20));
        }
        loop_beat
    });
    for _ in 0..12 {
        assert_eq!(get(server.local_addr(), "/livez").status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    beater.join().unwrap().retire();
}

#[test]
fn a_guarded_thread_that_panics_fails_liveness_with_its_name_and_message() {
    for show_reasons in [false, true] {
        let health = Health::new();
        let (server, events) = serve(&health, show_reasons);
        let addr = server.local_addr();
        let guard = health.thread_guard("indexer").unwrap();
        let worker = std::thread::spawn(move || {
            let _guard = guard;
            panic!("index corrupt at 42");
        });
        assert!(worker.join().is_err());
        assert_eq!(
            wait_for_event(&events, "thread guard indexer"),
            "thread guard indexer failed: panicked: index corrupt at 42"
        );
        assert_eq!(get(addr, "/livez").status, 503);
        assert_eq!(get(addr, "/readyz").status, 200);
        let verbose = get(addr, "/livez?verbose");
        let expected = if show_reasons {
            "[-]indexer failed: panicked: index corrupt at 42\n"
        } else {
            "[-]indexer failed: reason withheld\n"
        };
        assert!(verbose.text().contains(expected), "{}", verbose.text());
        assert!(get(addr, "/metrics")
            .text()
            .contains("healthz_check{name=\"indexer\",type=\"livez\"} 0\n"));
        assert_eq!(get(addr, "/healthz").status, 200, "still serving");
    }
}

#[test]
fn a_guard_in_a_scoped_thread_finished_on_purpose_leaves_liveness_alone() {
    let health = Health::new();
    let (server, _events) = serve(&health, true);
    let guard = health.thread_guard("batch").unwrap();
    std::thread::scope(|s| {
        s.spawn(move || guard.finish());
    });
    assert_eq!(get(server.local_addr(), "/livez").status, 200);
    assert_eq!(get(server.local_addr(), "/livez/batch").status, 404);
}

#[test]
fn a_guard_dropped_without_finish_fails_liveness() {
    let health = Health::new();
    let (server, _events) = serve(&health, true);
    let guard = health.thread_guard("poller").unwrap();
    std::thread::spawn(move || drop(guard)).join().unwrap();
    let verbose = get(server.local_addr(), "/livez?verbose");
    assert_eq!(verbose.status, 503);
    assert!(
        verbose
            .text()
            .contains("[-]poller failed: the thread ended without finish()\n"),
        "{}",
        verbose.text()
    );
}

#[test]
fn a_zero_or_huge_heartbeat_period_is_an_error() {
    let health = Health::new();
    for period in [Duration::ZERO, Duration::MAX] {
        let error = health.heartbeat("x", period).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }
    let _held = health.heartbeat("x", Duration::from_secs(1)).unwrap();
    let taken = health.thread_guard("x").unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AlreadyExists);
}

/// A supervisor restarts its worker each time it panics, under the same
/// name: each restart takes the dead guard's name again, and liveness
/// recovers once the new worker is up.
#[test]
fn a_supervisor_restarts_a_panicking_worker_under_its_name_and_liveness_recovers() {
    let health = Health::new();
    let (server, _events) = serve(&health, true);
    let addr = server.local_addr();
    let (stop, stopped) = mpsc::channel::<()>();
    let mut stopped = Some(stopped);
    let mut restarts = 0;
    let worker = loop {
        let guard = health
            .thread_guard("worker")
            .expect("the name is free again");
        assert!(
            health.is_alive(),
            "restart {restarts}: the new guard is alive"
        );
        // Three workers panic; the fourth keeps running until told to stop.
        let panics = restarts < 3;
        let stopped = (!panics).then(|| stopped.take().unwrap());
        let thread = std::thread::spawn(move || {
            let _guard = guard;
            if panics {
                panic!("bad message");
            }
            let _ = stopped.unwrap().recv();
            _guard.finish();
        });
        if !panics {
            break thread;
        }
        assert!(thread.join().is_err(), "it panicked");
        let livez = get(addr, "/livez?verbose");
        assert_eq!(livez.status, 503, "dead until restarted");
        assert!(
            livez
                .text()
                .contains("[-]worker failed: panicked: bad message"),
            "{}",
            livez.text()
        );
        restarts += 1;
    };
    // The running worker holds the name: nobody else may take it.
    let taken = health.thread_guard("worker").unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AlreadyExists);
    let livez = get(addr, "/livez?verbose");
    assert_eq!(livez.status, 200, "recovered: {}", livez.text());
    assert!(livez.text().contains("[+]worker ok"), "{}", livez.text());
    stop.send(()).unwrap();
    worker.join().unwrap();
    assert_eq!(get(addr, "/livez").status, 200);
    server.shutdown().unwrap();
}

/// A heartbeat whose every clone is dropped (its loop's thread ended) frees
/// its name: the restarted loop registers it again and liveness follows the
/// new heartbeat.
#[test]
fn a_dropped_heartbeats_name_can_be_taken_again_by_the_restarted_loop() {
    let health = Health::new();
    let period = Duration::from_secs(3600);
    let first = health.heartbeat("loop", period).unwrap();
    let clone = first.clone();
    drop(first);
    let taken = health.heartbeat("loop", period).unwrap_err();
    assert_eq!(
        taken.kind(),
        std::io::ErrorKind::AlreadyExists,
        "a clone still beats"
    );
    drop(clone);
    let again = health
        .heartbeat("loop", period)
        .expect("every handle is gone");
    again.beat();
    assert!(health.is_alive());
    again.retire();
    assert!(health.is_alive());
    assert!(
        health.heartbeat("loop", period).is_ok(),
        "retired: free too"
    );
}

/// A pool guards each of its threads: 256 register, and the limit for
/// heartbeats and guards (1024) is apart from the one for targets and
/// checks (32).
#[test]
fn a_pool_of_256_guarded_threads_registers() {
    let health = Health::new();
    let (server, _events) = serve(&health, false);
    let guards: Vec<_> = (0..256)
        .map(|n| health.thread_guard(&format!("pool-{n}")).unwrap())
        .collect();
    let more: Vec<_> = (256..1024)
        .map(|n| health.thread_guard(&format!("pool-{n}")).unwrap())
        .collect();
    let over = health.thread_guard("pool-1024").unwrap_err();
    assert_eq!(over.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        over.to_string()
            .contains("at most 1024 heartbeats and thread guards"),
        "{over}"
    );
    // Targets and checks keep their own room.
    let targets: Vec<_> = (0..32)
        .map(|n| health.liveness_target(&format!("t{n}")).unwrap())
        .collect();
    let over = health.liveness_target("t32").unwrap_err();
    assert!(
        over.to_string().contains("at most 32 targets and checks"),
        "{over}"
    );
    assert_eq!(get(server.local_addr(), "/livez").status, 200);
    for guard in guards.into_iter().chain(more) {
        guard.finish();
    }
    drop(targets);
    server.shutdown().unwrap();
}
