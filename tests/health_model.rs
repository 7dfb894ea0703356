//! Liveness and readiness, named targets and checks, reports, flavours and
//! drain, over real sockets.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{event_channel, exchange, get, serve_with, wait_for_event, Client};
use healthz::{Check, FailureBody, Health, Server};

fn serve(health: &Health) -> healthz::Running {
    serve_with(health, |s| s)
}

/// A ready health, served with reasons shown and every event sent to the receiver.
fn serve_with_events() -> (Health, healthz::Running, std::sync::mpsc::Receiver<String>) {
    let (hook, events) = event_channel();
    let health = Health::new();
    health.ready();
    let server = serve_with(&health, |s| s.show_reasons(true).on_event(hook));
    (health, server, events)
}

/// Replaces every `"time":"…"` value with `T`, so bodies compare byte for byte.
fn without_times(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(at) = rest.find("\"time\":\"") {
        let (head, tail) = rest.split_at(at + 8);
        out.push_str(head);
        let end = tail.find('"').unwrap();
        let time = &tail[..end];
        assert_eq!(time.len(), 20, "RFC 3339 UTC: {time}");
        assert!(time.ends_with('Z') && &time[10..11] == "T", "{time}");
        out.push('T');
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn livez_passes_while_readiness_fails_and_healthz_follows_readiness() {
    let health = Health::new();
    let server = serve(&health);
    let addr = server.local_addr();
    assert_eq!(get(addr, "/livez").status, 200);
    assert_eq!(get(addr, "/readyz").status, 503);
    assert_eq!(get(addr, "/healthz").status, 503);
    health.ready();
    assert_eq!(get(addr, "/readyz").status, 200);
    assert_eq!(get(addr, "/healthz").status, 200);
    let alive = health.liveness_target("main-loop").unwrap();
    alive.not_alive();
    let reply = get(addr, "/livez");
    assert_eq!((reply.status, reply.text()), (503, "not alive\n"));
    assert_eq!(
        get(addr, "/readyz").status,
        200,
        "liveness never gates readiness"
    );
}

#[test]
fn readiness_holds_only_when_every_target_is_ready() {
    let health = Health::new();
    health.ready();
    let server = serve(&health);
    let queue = health.target("queue").unwrap();
    let cache = health.target("cache").unwrap();
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/readyz").status, 503, "targets start not ready");
    queue.ready();
    assert_eq!(client.get("/readyz").status, 503);
    // Flipped from another thread, seen by the very next request.
    thread::spawn(move || cache.ready()).join().unwrap();
    assert_eq!(client.get("/readyz").status, 200);
    queue.not_ready();
    assert_eq!(client.get("/readyz").status, 503);
}

#[test]
fn target_names_are_unique_valid_and_not_built_in() {
    let health = Health::new();
    let _db = health.target("db").unwrap();
    let duplicate = health.target("db").unwrap_err();
    assert_eq!(duplicate.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(
        duplicate.to_string().contains("`db` already exists"),
        "{duplicate}"
    );
    assert_eq!(
        health.liveness_target("db").unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    assert!(health.add_check(Check::new("db", || Ok(()))).is_err());
    for bad in ["", "has space", "slash/y", &"x".repeat(65)] {
        assert_eq!(
            health.target(bad).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput,
            "{bad:?}"
        );
    }
    for builtin in ["ready", "shutdown", "ping"] {
        assert!(health.target(builtin).is_err(), "{builtin}");
    }
}

#[test]
fn the_path_prefix_moves_every_endpoint() {
    let health = Health::new();
    health.ready();
    let server = serve_with(&health, |s| s.path_prefix("/v1.0"));
    let addr = server.local_addr();
    for path in ["/v1.0/healthz", "/v1.0/readyz", "/v1.0/livez"] {
        assert_eq!(get(addr, path).status, 200, "{path}");
    }
    for path in [
        "/healthz",
        "/v1.0",
        "/v1.0/",
        "/v1.0healthz",
        "/v2.0/healthz",
    ] {
        assert_eq!(get(addr, path).status, 404, "{path}");
    }
    let bad = Server::new(Health::new())
        .path_prefix("v1/")
        .bind("127.0.0.1:0")
        .unwrap_err();
    assert_eq!(bad.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn per_name_endpoints_answer_for_one_target_or_check() {
    let health = Health::new();
    let server = serve(&health);
    let addr = server.local_addr();
    health.target("queue").unwrap().ready();
    let _cache = health.target("cache").unwrap();
    let _loop = health.liveness_target("loop").unwrap();
    assert_eq!(get(addr, "/readyz/queue").status, 200);
    assert_eq!(get(addr, "/readyz/cache").status, 503);
    assert_eq!(
        get(addr, "/readyz/ready").status,
        503,
        "the service's own flag"
    );
    assert_eq!(get(addr, "/readyz/shutdown").status, 200);
    assert_eq!(get(addr, "/livez/loop").status, 200);
    assert_eq!(get(addr, "/livez/ping").status, 200);
    for missing in [
        "/readyz/nope",
        "/livez/queue",
        "/readyz/loop",
        "/readyz/",
        "/readyz/queue/x",
    ] {
        assert_eq!(get(addr, missing).status, 404, "{missing}");
    }
}

#[test]
fn verbose_output_is_kubernetes_shaped_and_withholds_reasons() {
    let health = Health::new();
    health.ready();
    let server = serve(&health);
    health.target("queue").unwrap().ready();
    let _cache = health.target("cache").unwrap();
    health
        .add_check(Check::new("db", || Err("connection refused".into())))
        .unwrap();
    let reply = get(server.local_addr(), "/readyz?verbose");
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.text(),
        "[+]ready ok\n[+]shutdown ok\n[+]queue ok\n[-]cache failed: reason withheld\n\
         [-]db failed: reason withheld\nreadyz check failed\n"
    );
    let reply = get(server.local_addr(), "/healthz?verbose=1");
    assert!(
        reply.text().ends_with("healthz check failed\n"),
        "{}",
        reply.text()
    );
    let reply = get(server.local_addr(), "/livez?verbose");
    assert_eq!(
        (reply.status, reply.text()),
        (200, "[+]ping ok\nlivez check passed\n")
    );
}

#[test]
fn reasons_appear_in_bodies_only_when_configured_and_always_in_events() {
    let (health, server, events) = serve_with_events();
    health
        .add_check(Check::new("db", || Err("connection refused".into())))
        .unwrap();
    let reply = get(server.local_addr(), "/readyz?verbose");
    assert!(
        reply.text().contains("[-]db failed: connection refused\n"),
        "{}",
        reply.text()
    );
    // Not ready as the check is added (it has not run), then its reason.
    assert_eq!(
        wait_for_event(&events, "readiness changed"),
        "readiness changed: not ready (failing: db)"
    );
    assert_eq!(
        wait_for_event(&events, "check db"),
        "check db failed: connection refused"
    );
}

/// An error that says what it was doing, with the cause as its `source()`.
#[derive(Debug)]
struct Connecting(std::io::Error);

impl std::fmt::Display for Connecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connecting to the database")
    }
}

impl std::error::Error for Connecting {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// An error that breaks the rule: says its cause, and returns it.
#[derive(Debug)]
struct SaysItTwice(std::io::Error);

impl std::fmt::Display for SaysItTwice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cache: {}", self.0)
    }
}

impl std::error::Error for SaysItTwice {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn a_checks_reason_keeps_its_cause_in_one_bounded_line() {
    let (health, server, events) = serve_with_events();
    let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    health
        .add_check(Check::new("db", move || Err(Connecting(refused()).into())))
        .unwrap();
    // One that says its cause and returns it too: said once all the same.
    health
        .add_check(Check::new("cache", || {
            let cause = std::io::Error::new(std::io::ErrorKind::Other, "down");
            Err(SaysItTwice(cause).into())
        }))
        .unwrap();
    let long = "x".repeat(300);
    health
        .add_check(Check::new("long", move || {
            Err(Connecting(std::io::Error::new(std::io::ErrorKind::Other, long.clone())).into())
        }))
        .unwrap();
    let text = get(server.local_addr(), "/readyz?verbose")
        .text()
        .to_string();
    assert!(
        text.contains("[-]db failed: connecting to the database: refused\n"),
        "{text}"
    );
    assert!(text.contains("[-]cache failed: cache: down\n"), "{text}");
    let long = text.lines().find(|l| l.starts_with("[-]long")).unwrap();
    assert!(long.len() < 160, "bounded: {long}");
    assert_eq!(
        wait_for_event(&events, "check db"),
        "check db failed: connecting to the database: refused"
    );
}

#[test]
fn exclude_skips_checks_and_warns_about_names_that_match_nothing() {
    let health = Health::new();
    health.ready();
    let server = serve(&health);
    let _cache = health.target("cache").unwrap();
    let reply = get(server.local_addr(), "/readyz?exclude=cache");
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    let reply = get(
        server.local_addr(),
        "/readyz?verbose&exclude=cache&exclude=nope&exclude=other",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        "[+]ready ok\n[+]shutdown ok\n[+]cache excluded: ok\n\
         warn: some health checks cannot be excluded: no matches for \"nope\",\"other\"\nreadyz check passed\n"
    );
}

#[test]
fn json_follows_the_health_check_draft_byte_for_byte() {
    let health = Health::new();
    health.ready();
    let server = serve_with(&health, |s| s.show_reasons(true));
    let addr = server.local_addr();
    health.target("queue").unwrap().ready();
    health
        .add_check(Check::new("db", || Err("said \"no\"\n".into())))
        .unwrap();
    let reply = get(addr, "/readyz?format=json");
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/health+json")
    );
    assert_eq!(
        without_times(reply.text()),
        "{\"status\":\"fail\",\"checks\":{\
         \"ready\":[{\"status\":\"pass\",\"time\":\"T\"}],\
         \"shutdown\":[{\"status\":\"pass\",\"time\":\"T\"}],\
         \"queue\":[{\"status\":\"pass\",\"time\":\"T\"}],\
         \"db\":[{\"status\":\"fail\",\"output\":\"said \\\"no\\\" \",\"time\":\"T\"}]}}"
    );
    // Asked for through Accept, as a monitoring system would.
    let reply = exchange(
        addr,
        b"GET /livez HTTP/1.1\r\nAccept: application/health+json\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        without_times(reply.text()),
        "{\"status\":\"pass\",\"checks\":{\"ping\":[{\"status\":\"pass\",\"time\":\"T\"}]}}"
    );
    let excluded = get(addr, "/readyz?format=json&exclude=db&exclude=zzz");
    assert_eq!(excluded.status, 200);
    assert!(
        excluded
            .text()
            .ends_with(",\"notes\":[\"no check to exclude named zzz\"]}"),
        "{}",
        excluded.text()
    );
    assert!(excluded.body.len() < 10 * 1024);
}

#[test]
fn the_daprd_flavour_byte_for_byte() {
    let health = Health::new();
    let server = serve_with(&health, |s| {
        s.path_prefix("/v1.0")
            .success_status(healthz::SuccessStatus::NoContent)
            .failure_status(healthz::FailureStatus::InternalServerError)
            .failure_body(FailureBody::DaprJson)
    });
    let addr = server.local_addr();
    let grpc = health.target("grpc-api-server").unwrap();
    let raw = common::raw(
        addr,
        b"GET /v1.0/healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nContent-Type: application/json\r\n"),
        "{head}"
    );
    assert_eq!(
        body,
        "{\"errorCode\":\"ERR_HEALTH_NOT_READY\",\"message\":\"dapr is not ready: [ready grpc-api-server]\"}"
    );
    health.ready();
    grpc.ready();
    let raw = common::raw(
        addr,
        b"GET /v1.0/healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8(raw).unwrap();
    assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
    assert!(
        !text.contains("Content-Length"),
        "no Content-Length on a 204: {text}"
    );
    assert!(text.ends_with("\r\n\r\n"), "no body on a 204: {text}");
    // A body asked for is a 200.
    assert_eq!(get(addr, "/v1.0/healthz?verbose").status, 200);
}

#[test]
fn a_panicking_check_counts_as_failed_and_the_server_keeps_serving() {
    let health = Health::new();
    health.ready();
    let server = serve_with(&health, |s| s.show_reasons(true));
    health
        .add_check(Check::new("boom", || -> healthz::CheckResult {
            panic!("check panics on purpose")
        }))
        .unwrap();
    let reply = get(server.local_addr(), "/readyz?verbose");
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .text()
            .contains("[-]boom failed: the check panicked\n"),
        "{}",
        reply.text()
    );
    assert_eq!(get(server.local_addr(), "/livez").status, 200);
    assert_eq!(get(server.local_addr(), "/readyz?exclude=boom").status, 200);
}

#[test]
fn on_request_checks_run_side_by_side() {
    let health = Health::new();
    health.ready();
    let server = serve(&health);
    // Each check waits for the other two: run one after another, the first
    // would wait alone until its timeout and the probe would fail.
    let meet = Arc::new(std::sync::Barrier::new(3));
    for name in ["peer-a", "peer-b", "peer-c"] {
        let meet = meet.clone();
        let check = Check::new(name, move || {
            meet.wait();
            Ok(())
        })
        .timeout(Duration::from_secs(5));
        health.add_check(check).unwrap();
    }
    assert_eq!(get(server.local_addr(), "/readyz").status, 200);
}

#[test]
fn a_background_check_counts_its_thresholds_and_reports_each_flip_once() {
    let (hook, events) = event_channel();
    let health = Health::new();
    health.ready();
    let server = serve_with(&health, |s| s.on_event(hook));
    // Runs: ok ok | fail fail fail | ok ok | ok forever.
    let script = [true, true, false, false, false, true, true];
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let check = Check::new("disk", move || {
        let run = counter.fetch_add(1, Ordering::SeqCst);
        if *script.get(run).unwrap_or(&true) {
            Ok(())
        } else {
            Err(format!("run {run} failed").into())
        }
    })
    .every(Duration::from_millis(5))
    .failure_threshold(3)
    .success_threshold(2);
    health.add_check(check).unwrap();
    // Not passing before its first verdict; passing after two successes (runs 0, 1).
    assert_eq!(wait_for_event(&events, "check disk"), "check disk passes");
    // Failing after the third failure in a row (run 4), not before.
    assert_eq!(
        wait_for_event(&events, "check disk"),
        "check disk failed: run 4 failed"
    );
    assert_eq!(
        wait_for_event(&events, "readiness changed"),
        "readiness changed: not ready (failing: disk)"
    );
    // Passing again after two successes (runs 5, 6).
    assert_eq!(wait_for_event(&events, "check disk"), "check disk passes");
    assert!(runs.load(Ordering::SeqCst) >= 7);
    assert_eq!(
        wait_for_event(&events, "readiness changed"),
        "readiness changed: ready"
    );
    assert_eq!(get(server.local_addr(), "/readyz").status, 200);
}

#[test]
fn a_background_check_is_read_without_waiting_and_starts_not_passing() {
    let health = Health::new();
    health.ready();
    let server = serve(&health);
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let hold = std::sync::Mutex::new(hold);
    let check = Check::new("warmup", move || {
        // Blocks until the test ends: the probe must not wait for it.
        let _ = hold.lock().unwrap().recv();
        Ok(())
    })
    .every(Duration::from_secs(3600))
    .timeout(Duration::from_secs(3600));
    health.add_check(check).unwrap();
    let started = Instant::now();
    let reply = get(server.local_addr(), "/readyz?verbose");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(reply.status, 503);
    assert!(
        reply.text().contains("[-]warmup failed: reason withheld\n"),
        "{}",
        reply.text()
    );
    drop(release);
}

#[test]
fn drain_fails_readiness_at_once_keeps_liveness_and_serving_then_shuts_down() {
    let (hook, events) = event_channel();
    let health = Health::new();
    health.ready();
    // Generous: everything below happens within the drain, however the
    // scheduler treats this test (it takes a few ms when nothing else runs).
    let delay = Duration::from_secs(3);
    let server = serve_with(&health, |s| s.drain_delay(delay).on_event(hook));
    let addr = server.local_addr();
    let mut kept = Client::connect(addr);
    assert_eq!(kept.get("/readyz").status, 200);
    let started = Instant::now();
    let stopper = thread::spawn(move || server.shutdown());
    wait_for_event(&events, "draining");
    // Readiness fails at once, liveness passes, and new connections are still served.
    assert_eq!(get(addr, "/readyz").status, 503);
    assert_eq!(get(addr, "/healthz").status, 503);
    assert_eq!(get(addr, "/livez").status, 200);
    assert_eq!(
        kept.get("/readyz?verbose").text(),
        "[+]ready ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n"
    );
    assert!(health.is_draining());
    stopper.join().unwrap().unwrap();
    assert!(
        started.elapsed() >= delay,
        "stopped before the drain delay: {:?}",
        started.elapsed()
    );
    assert!(kept.closed());
    assert!(std::net::TcpStream::connect(addr).is_err());
    // Four clients; neither the trigger's nor the drain timer's wake-up counts.
    assert_eq!(
        wait_for_event(&events, "stopped"),
        "stopped after 4 connections"
    );
}

#[test]
fn running_drain_overrides_the_configured_delay() {
    let (hook, events) = event_channel();
    let health = Health::new();
    health.ready();
    let server = serve_with(&health, |s| s.on_event(hook));
    let started = Instant::now();
    server.drain(Duration::from_millis(200)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        wait_for_event(&events, "draining"),
        "draining: readiness fails, serving 200ms more"
    );
    assert!(!health.is_ready());
    assert!(health.is_alive());
}

#[test]
fn readiness_changes_are_reported_once_naming_what_is_not_ready() {
    let recorder = common::Recorder::default();
    let health = Health::new();
    let server = serve_with(&health, |s| s.on_event(recorder.hook()));
    health.ready();
    let queue = health.target("queue").unwrap();
    for _ in 0..3 {
        assert_eq!(get(server.local_addr(), "/readyz").status, 503);
    }
    queue.ready();
    queue.ready();
    server.shutdown().unwrap();
    let readiness: Vec<String> = recorder
        .events()
        .into_iter()
        .filter(|e| e.starts_with("readiness"))
        .collect();
    assert_eq!(
        readiness,
        [
            "readiness changed: ready",
            "readiness changed: not ready (failing: queue)",
            "readiness changed: ready"
        ]
    );
}

#[test]
fn head_and_options_work_on_every_endpoint() {
    let health = Health::new();
    let server = serve(&health);
    for path in ["/livez", "/readyz", "/healthz"] {
        let head = exchange(
            server.local_addr(),
            format!("HEAD {path} HTTP/1.0\r\n\r\n").as_bytes(),
        );
        assert!(head.body.is_empty());
        let options = exchange(
            server.local_addr(),
            format!("OPTIONS {path} HTTP/1.0\r\n\r\n").as_bytes(),
        );
        assert_eq!(
            options.header("Allow"),
            Some("GET, HEAD, OPTIONS"),
            "{path}"
        );
        assert_eq!(options.status, head.status, "{path}");
    }
}

#[test]
fn run_drains_too_when_its_token_is_triggered() {
    let (hook, events) = event_channel();
    let health = Health::new();
    health.ready();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let token = healthz::ShutdownToken::new();
    let runner = {
        let (health, token) = (health.clone(), token.clone());
        thread::spawn(move || {
            Server::new(health)
                // Generous: the two probes below come within the drain.
                .drain_delay(Duration::from_secs(3))
                .on_event(hook)
                .run(listener, &token)
        })
    };
    assert_eq!(get(addr, "/readyz").status, 200);
    token.trigger();
    wait_for_event(&events, "draining");
    assert_eq!(get(addr, "/readyz").status, 503, "still serving, not ready");
    assert_eq!(get(addr, "/livez").status, 200);
    runner.join().unwrap().unwrap();
}

#[test]
fn health_drain_alone_fails_readiness_for_good_and_leaves_liveness() {
    let health = Health::new();
    health.ready();
    assert!(health.is_ready() && health.is_alive() && !health.is_draining());
    health.drain();
    health.ready();
    assert!(!health.is_ready(), "no way back from draining");
    assert!(health.is_alive());
}

#[test]
fn a_background_check_waits_its_initial_delay_before_its_first_run() {
    let (health, server, events) = serve_with_events();
    // Generous: the probe below must come before the first run.
    let delay = Duration::from_secs(2);
    let added = Instant::now();
    let check = Check::new("warm", || Ok(()))
        .every(Duration::from_secs(3600))
        .initial_delay(delay)
        .success_threshold(1);
    health.add_check(check).unwrap();
    let reply = get(server.local_addr(), "/readyz?verbose");
    assert!(
        reply.text().contains("[-]warm failed: not checked yet\n"),
        "{}",
        reply.text()
    );
    assert_eq!(wait_for_event(&events, "check warm"), "check warm passes");
    assert!(added.elapsed() >= delay, "ran after {:?}", added.elapsed());
    assert_eq!(get(server.local_addr(), "/readyz").status, 200);
}

#[test]
fn an_on_request_check_never_run_is_not_reported_ready_by_anyone() {
    use std::sync::atomic::AtomicBool;
    let (hook, events) = event_channel();
    let health = Health::new();
    let present = Arc::new(AtomicBool::new(false));
    let file = present.clone();
    health
        .add_check(Check::new("config-file", move || {
            if file.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("missing".into())
            }
        }))
        .unwrap();
    let server = serve_with(&health, |s| s.metrics(true).on_event(hook));
    health.ready();
    // Nothing has probed yet: no one may say ready.
    assert!(!health.is_ready());
    let seen: Vec<String> = events.try_iter().collect();
    assert!(
        !seen.iter().any(|e| e == "readiness changed: ready"),
        "{seen:?}"
    );
    let scrape = get(server.local_addr(), "/metrics");
    assert!(
        scrape.text().contains("\nhealthz_ready 0\n"),
        "{}",
        scrape.text()
    );
    assert_eq!(get(server.local_addr(), "/readyz").status, 503);
    assert!(!health.is_ready(), "its last run failed");

    // The file appears: the next probe runs the check, and everyone agrees.
    present.store(true, Ordering::SeqCst);
    assert_eq!(get(server.local_addr(), "/readyz").status, 200);
    assert_eq!(
        wait_for_event(&events, "readiness changed"),
        "readiness changed: ready"
    );
    assert!(health.is_ready());
    let scrape = get(server.local_addr(), "/metrics");
    assert!(
        scrape.text().contains("\nhealthz_ready 1\n"),
        "{}",
        scrape.text()
    );
}

/// Several threads flip readiness at once (each its own target), and the
/// hook hears every change: whatever the interleaving, the events it hears
/// alternate (never two "ready" in a row) and the last one it heard is the
/// state the flips left. Seeded, a few hundred rounds.
#[test]
fn the_hook_hears_readiness_changes_in_order_whoever_flips() {
    let rounds: u64 = std::env::var("HEALTHZ_ORDER_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let heard = Arc::new(std::sync::Mutex::new(Vec::<bool>::new()));
    let hook = {
        let heard = heard.clone();
        move |event: &healthz::Event| {
            if let healthz::Event::ReadinessChanged { ready, .. } = event {
                heard.lock().unwrap().push(*ready);
            }
        }
    };
    let health = Health::new();
    health.ready();
    let _server = serve_with(&health, |s| s.on_event(hook));
    let targets: Vec<_> = (0..4)
        .map(|n| {
            let target = health.target(&format!("t{n}")).unwrap();
            target.ready();
            target
        })
        .collect();
    for round in 0..rounds {
        let flippers: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(n, target)| {
                let target = target.clone();
                let mut seed = (round * 4 + n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                thread::spawn(move || {
                    for _ in 0..50 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        target.set_ready(seed % 2 == 0);
                    }
                })
            })
            .collect();
        for flipper in flippers {
            flipper.join().unwrap();
        }
        let heard = heard.lock().unwrap();
        let twice = heard.windows(2).position(|w| w[0] == w[1]);
        assert_eq!(twice, None, "round {round}: one state told twice in a row");
        let last = heard.last().copied().unwrap_or(true);
        assert_eq!(
            last,
            health.is_ready(),
            "round {round}: the hook's last word"
        );
    }
}
