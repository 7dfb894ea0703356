//! What each request gets: statuses, headers and bodies, over real sockets.

mod common;

use common::{exchange, get, serve_with, start, Client};
use healthz::Health;

#[test]
fn healthz_is_503_until_ready_then_200() {
    let (health, server) = start(false);
    let reply = get(server.local_addr(), "/healthz");
    assert_eq!((reply.status, reply.text()), (503, "not ready\n"));
    health.ready();
    let reply = get(server.local_addr(), "/healthz");
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
}

#[test]
fn every_flip_is_seen_by_the_very_next_request() {
    let (health, server) = start(false);
    let mut client = Client::connect(server.local_addr());
    for round in 0..200 {
        let ready = round % 3 != 0;
        health.set_ready(ready);
        let want = if ready { 200 } else { 503 };
        assert_eq!(client.get("/healthz").status, want, "round {round}");
        // And on a fresh connection too.
        assert_eq!(
            get(server.local_addr(), "/healthz").status,
            want,
            "round {round}"
        );
    }
}

#[test]
fn every_response_carries_the_required_headers() {
    let (_health, server) = start(true);
    let addr = server.local_addr();
    let requests: [&[u8]; 7] = [
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"HEAD /healthz HTTP/1.1\r\n\r\n",
        b"OPTIONS /healthz HTTP/1.1\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET /nope HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"BAD\x01 / HTTP/1.1\r\n\r\n",
    ];
    for request in requests {
        let reply = exchange(addr, request);
        let context = String::from_utf8_lossy(request);
        assert_eq!(
            reply.header("Content-Type"),
            Some("text/plain; charset=utf-8"),
            "{context}"
        );
        assert_eq!(
            reply.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{context}"
        );
        assert_eq!(reply.header("Cache-Control"), Some("no-store"), "{context}");
        assert!(reply.header("Content-Length").is_some(), "{context}");
        let date = reply.header("Date").expect("Date");
        assert_imf_fixdate(date);
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`, and today's date as far as the test can tell.
fn assert_imf_fixdate(date: &str) {
    let b = date.as_bytes();
    assert_eq!(b.len(), 29, "{date}");
    assert!(
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&date[..3]),
        "{date}"
    );
    assert_eq!(&date[3..5], ", ");
    assert!(date.ends_with(" GMT"), "{date}");
    let year: u64 = date[12..16].parse().expect("year");
    let now_year = 1970
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 31_556_952;
    assert!(year.abs_diff(now_year) <= 1, "{date}");
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    client.send(b"HEAD /healthz HTTP/1.1\r\n\r\n");
    let head = client.response(true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("3"));
    // Had a body been sent, it would be read here as the next response's start.
    let next = client.get("/healthz");
    assert_eq!((next.status, next.text()), (200, "ok\n"));
}

#[test]
fn options_answers_the_health_status_with_allow_and_no_body() {
    let (health, server) = start(false);
    let reply = exchange(server.local_addr(), b"OPTIONS /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("Allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(reply.header("Content-Length"), Some("0"));
    health.ready();
    assert_eq!(
        exchange(server.local_addr(), b"OPTIONS /healthz HTTP/1.0\r\n\r\n").status,
        200
    );
}

/// Apache's `mod_proxy_hcheck` with `hcmethod=OPTIONS` sends `OPTIONS *`
/// over HTTP/1.0 with only a Host: the server's own health, as for
/// `OPTIONS /healthz`, whatever the path prefix. `*` with another method is
/// no endpoint.
#[test]
fn options_asterisk_answers_the_servers_readiness() {
    let health = Health::new();
    let server = serve_with(&health, |s| s.path_prefix("/v1.0"));
    let apache = b"OPTIONS * HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    let reply = exchange(server.local_addr(), apache);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("Allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(reply.header("Content-Length"), Some("0"));
    health.ready();
    assert_eq!(exchange(server.local_addr(), apache).status, 200);
    let get = exchange(server.local_addr(), b"GET * HTTP/1.0\r\n\r\n");
    assert_eq!(get.status, 404);
}

/// `Accept` is read as media ranges with weights (RFC 9110 §12.5.1), not
/// searched for a substring.
#[test]
fn accept_chooses_json_only_when_the_client_prefers_it() {
    let (_health, server) = start(true);
    let content_type = |accept: &str| {
        let request =
            format!("GET /readyz HTTP/1.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
        let reply = exchange(server.local_addr(), request.as_bytes());
        reply.header("Content-Type").unwrap().to_string()
    };
    let text = "text/plain; charset=utf-8";
    assert_eq!(content_type("application/jsonx"), text);
    assert_eq!(content_type("application/json;q=0, text/plain"), text);
    assert_eq!(content_type("*/*"), text);
    assert_eq!(content_type("application/json"), "application/health+json");
    assert_eq!(
        content_type("text/plain;q=0.5, application/health+json"),
        "application/health+json"
    );
}

#[test]
fn other_methods_get_405_with_allow() {
    let (_health, server) = start(true);
    for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE"] {
        let request = format!("{method} /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        let reply = exchange(server.local_addr(), request.as_bytes());
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(
            reply.header("Allow"),
            Some("GET, HEAD, OPTIONS"),
            "{method}"
        );
    }
}

#[test]
fn unknown_paths_get_404() {
    let (_health, server) = start(true);
    for path in ["/", "/healthz/", "/healthzz", "/HEALTHZ", "/health%7A", "*"] {
        assert_eq!(get(server.local_addr(), path).status, 404, "{path}");
    }
}

#[test]
fn query_string_never_affects_routing() {
    let (_health, server) = start(true);
    for path in [
        "/healthz?",
        "/healthz?verbose",
        "/healthz?a=1&b=/x",
        "/nope?/healthz",
    ] {
        let want = if path.starts_with("/healthz") {
            200
        } else {
            404
        };
        assert_eq!(get(server.local_addr(), path).status, want, "{path}");
    }
}

#[test]
fn absolute_form_targets_are_served() {
    let (_health, server) = start(true);
    let reply = exchange(
        server.local_addr(),
        b"GET http://example.com:8080/healthz?x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn serves_ipv6_loopback() {
    let health = healthz::Health::new();
    health.ready();
    let server = match healthz::Server::new(health).bind("[::1]:0") {
        Ok(server) => server,
        // A machine without IPv6 cannot run this test; say so rather than pass silently.
        Err(e) => panic!("cannot bind [::1]:0 on this machine: {e}"),
    };
    assert!(server.local_addr().is_ipv6());
    assert_eq!(get(server.local_addr(), "/healthz").status, 200);
    server.shutdown().unwrap();
}
