//! `/metrics` over real sockets: the Prometheus text format, what each family
//! says about health, and the server's counters as the traffic made them.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::{exchange, get, kept_alive, raw, serve_with, Client};
use healthz::{Check, Health, Server};

/// `name{labels}` → value, for every sample line.
fn samples(addr: SocketAddr) -> HashMap<String, f64> {
    let reply = get(addr, "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply
        .text()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("NAME VALUE");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn metrics_server(health: Health) -> healthz::Running {
    serve_with(&health, |s| s.metrics(true))
}

#[test]
fn metrics_are_not_served_unless_asked_for() {
    let (_health, server) = common::start(true);
    assert_eq!(get(server.local_addr(), "/metrics").status, 404);
}

#[test]
fn health_is_shown_as_gauges_as_a_probe_would_answer_now() {
    let health = Health::new();
    let db = health.target("db").unwrap();
    let _loop = health.liveness_target("loop").unwrap();
    health
        .add_check(Check::new("disk", || Err("full".into())))
        .unwrap();
    let server = metrics_server(health.clone());
    let addr = server.local_addr();

    let before = samples(addr);
    assert_eq!(before["healthz_ready"], 0.0);
    assert_eq!(before["healthz_alive"], 1.0);
    assert_eq!(before["healthz_draining"], 0.0);
    assert_eq!(before[r#"healthz_check{name="ready",type="readyz"}"#], 0.0);
    assert_eq!(before[r#"healthz_check{name="db",type="readyz"}"#], 0.0);
    assert_eq!(before[r#"healthz_check{name="loop",type="livez"}"#], 1.0);
    assert_eq!(before[r#"healthz_check{name="ping",type="livez"}"#], 1.0);
    // A scrape runs the on-request check, as a probe would: it fails.
    assert_eq!(before[r#"healthz_check{name="disk",type="readyz"}"#], 0.0);
    assert_eq!(
        before[r#"healthz_check_failures_total{name="disk",type="readyz"}"#],
        1.0
    );

    health.ready();
    db.ready();
    // Two probes run the check; both runs fail, and so does the next scrape's.
    for _ in 0..2 {
        assert_eq!(get(addr, "/readyz").status, 503);
    }
    let after = samples(addr);
    assert_eq!(after["healthz_ready"], 0.0);
    assert_eq!(after[r#"healthz_check{name="ready",type="readyz"}"#], 1.0);
    assert_eq!(after[r#"healthz_check{name="db",type="readyz"}"#], 1.0);
    assert_eq!(after[r#"healthz_check{name="disk",type="readyz"}"#], 0.0);
    assert_eq!(
        after[r#"healthz_check_failures_total{name="disk",type="readyz"}"#],
        4.0
    );
    let took = after[r#"healthz_check_duration_seconds{name="disk",type="readyz"}"#];
    assert!((0.0..1.0).contains(&took), "{took}");
    health.drain();
    assert_eq!(samples(addr)["healthz_draining"], 1.0);
    // Kept for `.ci/promtool`, which checks it with Prometheus' own parser.
    let scrape = get(addr, "/metrics").body;
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics.prom");
    std::fs::write(kept, scrape).unwrap();
}

#[test]
fn the_counters_count_connections_answers_and_malformed_requests() {
    let health = Health::new();
    health.ready();
    let server = metrics_server(health);
    let addr = server.local_addr();
    for _ in 0..3 {
        assert_eq!(get(addr, "/healthz").status, 200);
    }
    assert_eq!(get(addr, "/nope").status, 404);
    // Two answers on one connection.
    let mut kept = Client::connect(addr);
    assert_eq!(kept.get("/livez").status, 200);
    assert_eq!(kept.get("/livez").status, 200);
    drop(kept);
    assert!(raw(addr, b"GET /healthz HTTP/9.9\r\n\r\n").starts_with(b"HTTP/1.1 400 "));
    let head = exchange(addr, b"HEAD /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);

    // This scrape is the eighth connection; its own answer is counted after it.
    let counted = samples(addr);
    assert_eq!(counted["healthz_connections_accepted_total"], 8.0);
    assert_eq!(counted["healthz_connections_evicted_total"], 0.0);
    assert_eq!(counted[r#"healthz_requests_total{code="200"}"#], 6.0);
    assert_eq!(counted[r#"healthz_requests_total{code="404"}"#], 1.0);
    assert_eq!(counted[r#"healthz_requests_total{code="400"}"#], 1.0);
    assert_eq!(counted["healthz_requests_malformed_total"], 1.0);
    assert!(!counted.contains_key(r#"healthz_requests_total{code="503"}"#));
    let next = samples(addr);
    assert_eq!(next[r#"healthz_requests_total{code="200"}"#], 7.0);
}

#[test]
fn evictions_at_the_cap_are_counted() {
    let health = Health::new();
    health.ready();
    let server = serve_with(&health, |s| s.metrics(true).max_connections(2));
    let addr = server.local_addr();
    let _held = kept_alive(addr, 2, 200);
    // At the cap: the scrape's connection evicts the idle one that waited longest.
    assert_eq!(samples(addr)["healthz_connections_evicted_total"], 1.0);
}

#[test]
fn head_and_options_on_metrics_answer_as_on_the_health_endpoints() {
    let server = metrics_server(Health::new());
    let addr = server.local_addr();
    let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_ne!(head.header("Content-Length"), Some("0"));
    let options = exchange(
        addr,
        b"OPTIONS /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(options.header("Allow"), Some("GET, HEAD, OPTIONS"));
    let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(post.status, 405);
}

#[test]
fn metrics_move_under_the_path_prefix() {
    let server = Server::new(Health::new())
        .metrics(true)
        .path_prefix("/v1.0")
        .bind("127.0.0.1:0")
        .unwrap();
    assert_eq!(get(server.local_addr(), "/metrics").status, 404);
    assert_eq!(get(server.local_addr(), "/v1.0/metrics").status, 200);
}

#[test]
fn a_failing_on_request_check_is_not_ready_in_metrics_before_any_probe() {
    let health = Health::new();
    health
        .add_check(Check::new("config-file", || Err("missing".into())))
        .unwrap();
    health.ready();
    let server = metrics_server(health);
    // No probe of /readyz has been made: the scrape alone must know.
    let scrape = samples(server.local_addr());
    assert_eq!(scrape["healthz_ready"], 0.0);
    assert_eq!(
        scrape[r#"healthz_check{name="config-file",type="readyz"}"#],
        0.0
    );
    assert_eq!(get(server.local_addr(), "/readyz").status, 503, "alike");
}
