//! Connection handling as HTTP/1.1 requires: keep-alive, close, pipelining,
//! bodies, and malformed input.

mod common;

use common::{exchange, raw, start, Client};

#[test]
fn http11_keeps_the_connection_alive_by_default() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    for _ in 0..5 {
        let reply = client.get("/healthz");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("Connection"), None);
    }
}

#[test]
fn connection_close_is_honoured() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    client.send(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    let reply = client.response(false).unwrap();
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(client.closed());
}

#[test]
fn http10_closes_after_the_response() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    client.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let reply = client.response(false).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(client.closed());
}

#[test]
fn http10_keeps_alive_when_asked() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    for _ in 0..3 {
        client.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let reply = client.response(false).unwrap();
        assert_eq!(reply.header("Connection"), Some("keep-alive"));
    }
}

#[test]
fn no_host_header_is_required() {
    let (_health, server) = start(true);
    // HAProxy's default check: HTTP/1.0, no Host.
    assert_eq!(
        exchange(server.local_addr(), b"GET /healthz HTTP/1.0\r\n\r\n").status,
        200
    );
    assert_eq!(
        exchange(server.local_addr(), b"GET /healthz HTTP/1.1\r\n\r\n").status,
        200
    );
}

#[test]
fn twenty_pipelined_requests_in_one_write_are_answered_in_order() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    for i in 0..20 {
        let path = if i % 2 == 0 { "/healthz" } else { "/missing" };
        batch.extend_from_slice(format!("GET {path}?i={i} HTTP/1.1\r\n\r\n").as_bytes());
    }
    client.send(&batch);
    for i in 0..20 {
        let want = if i % 2 == 0 { 200 } else { 404 };
        assert_eq!(client.response(false).unwrap().status, want, "response {i}");
    }
    // Still open and in sync.
    assert_eq!(client.get("/healthz").status, 200);
}

#[test]
fn pipelined_head_and_options_keep_the_stream_in_sync() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    client.send(b"HEAD /healthz HTTP/1.1\r\n\r\nOPTIONS /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(
        client.response(true).unwrap().header("Content-Length"),
        Some("3")
    );
    assert_eq!(
        client.response(false).unwrap().header("Allow"),
        Some("GET, HEAD, OPTIONS")
    );
    assert_eq!(client.response(false).unwrap().text(), "ok\n");
}

#[test]
fn a_request_body_is_consumed_and_never_read_as_a_request() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    // The body looks like a request: a server that skipped it wrongly would answer it.
    let body = b"GET /evil HTTP/1.1\r\n\r\n";
    let mut request = format!(
        "POST /healthz HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request.extend_from_slice(b"GET /healthz HTTP/1.1\r\n\r\n");
    client.send(&request);
    assert_eq!(client.response(false).unwrap().status, 405);
    assert_eq!(client.response(false).unwrap().status, 200);
}

#[test]
fn a_body_sent_after_the_head_in_pieces_is_consumed_too() {
    let (_health, server) = start(true);
    let mut client = Client::connect(server.local_addr());
    client.send(b"PUT /healthz HTTP/1.1\r\nContent-Length: 10\r\n\r\n");
    assert_eq!(client.response(false).unwrap().status, 405);
    client.send(b"01234");
    client.send(b"56789GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(client.response(false).unwrap().status, 200);
}

#[test]
fn a_body_over_the_limit_gets_413_and_close() {
    let health = healthz::Health::new();
    let server = healthz::Server::new(health)
        .max_body(16)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut client = Client::connect(server.local_addr());
    client.send(b"POST /healthz HTTP/1.1\r\nContent-Length: 17\r\n\r\n0123456789abcdefg");
    let reply = client.response(false).unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(client.closed());
}

#[test]
fn transfer_encoding_on_a_request_is_501_and_close() {
    let (_health, server) = start(true);
    let out = raw(
        server.local_addr(),
        b"POST /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 501 "), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        1,
        "the smuggled request must not be answered: {text}"
    );
}

#[test]
fn transfer_encoding_with_content_length_is_400_and_close() {
    let (_health, server) = start(true);
    let out = raw(
        server.local_addr(),
        b"POST /healthz HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
}

#[test]
fn conflicting_content_lengths_are_400_and_close() {
    let (_health, server) = start(true);
    let out = raw(
        server.local_addr(),
        b"POST /healthz HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!GET / HTTP/1.1\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
}

#[test]
fn malformed_requests_get_400_and_close() {
    let (_health, server) = start(true);
    let cases: [&[u8]; 8] = [
        b"get /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\n\r\n",
        b"GET  /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET /healthz HTTP/1.1\rX\r\n\r\n",
        b"GET /health\0z HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];
    for case in cases {
        let out = raw(server.local_addr(), case);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{case:?}: {text}"
        );
        assert!(text.contains("Connection: close\r\n"), "{case:?}: {text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{case:?}: {text}");
    }
}

#[test]
fn a_malformed_request_after_good_ones_gets_their_answers_first() {
    let (_health, server) = start(true);
    let out = raw(
        server.local_addr(),
        b"GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGARBAGE\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "400"], "{text}");
}

/// The whole byte stream of an answer to HEAD: a head, then nothing.
fn assert_head_only(out: &[u8], status: &str) {
    let text = String::from_utf8_lossy(out);
    assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
    assert!(text.contains("Content-Length: "), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "no body after the head: {text:?}"
    );
    assert_eq!(text.matches("\r\n\r\n").count(), 1, "{text:?}");
}

#[test]
fn head_with_a_body_over_the_limit_gets_413_without_a_body() {
    let (_health, server) = start(true);
    let out = raw(
        server.local_addr(),
        b"HEAD /healthz HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
    );
    assert_head_only(&out, "413");
}

#[test]
fn a_malformed_or_late_head_request_is_refused_without_a_body() {
    let server = healthz::Server::new(healthz::Health::new())
        .request_timeout(std::time::Duration::from_millis(300))
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    assert_head_only(
        &raw(addr, b"HEAD /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n"),
        "400",
    );
    // Half a head, then silence until the request deadline.
    assert_head_only(&raw(addr, b"HEAD /healthz HTTP/1.1\r\nHost: x"), "408");
}

#[test]
fn an_empty_line_before_a_request_line_is_ignored() {
    let (_health, server) = start(true);
    let addr = server.local_addr();
    assert_eq!(
        exchange(addr, b"\r\nGET /healthz HTTP/1.1\r\n\r\n").status,
        200
    );
    assert_eq!(
        exchange(addr, b"\n\r\nGET /healthz HTTP/1.1\r\n\r\n").status,
        200
    );
    // Some clients send a CRLF after a body: the next request is still served.
    let mut client = Client::connect(addr);
    client.send(
        b"POST /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nab\r\nGET /healthz HTTP/1.1\r\n\r\n",
    );
    assert_eq!(client.response(false).unwrap().status, 405);
    assert_eq!(client.response(false).unwrap().status, 200);
    client.send(b"GET /healthz HTTP/1.1\r\n\r\n\r\nGET /livez HTTP/1.1\r\n\r\n");
    assert_eq!(client.response(false).unwrap().status, 200);
    assert_eq!(client.response(false).unwrap().text(), "ok\n");
}

#[test]
fn more_empty_lines_than_the_bound_are_a_400() {
    let (_health, server) = start(true);
    let mut request = b"\r\n".repeat(5);
    request.extend_from_slice(b"GET /healthz HTTP/1.1\r\n\r\n");
    let out = raw(server.local_addr(), &request);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
}

#[test]
fn the_first_request_deadline_counts_from_accept() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let timeout = Duration::from_millis(1500);
    let server = healthz::Server::new(healthz::Health::new())
        .request_timeout(timeout)
        .bind("127.0.0.1:0")
        .unwrap();
    let mut client = Client::connect(server.local_addr());
    let connected = Instant::now();
    // Silent for most of the deadline, then a head that trickles in: the
    // deadline is the one that started at accept, not a fresh one.
    std::thread::sleep(Duration::from_millis(1200));
    client.send(b"GET /healthz HTTP/1.1\r\n");
    let mut writer = client.stream.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..40 {
            if writer.write_all(b"X: y\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let reply = client.response(false).unwrap();
    let took = connected.elapsed();
    assert_eq!(reply.status, 408);
    // A fresh deadline would answer after 1.2 + 1.5 s; the right one after 1.5 s.
    assert!(took >= timeout, "{took:?}");
    assert!(took < Duration::from_millis(2500), "408 after {took:?}");
    trickle.join().unwrap();
}

/// Everything the server sends after `parts`, written one by one with a
/// pause between them so that the server reads them apart, without `Date`.
fn paced(addr: std::net::SocketAddr, parts: &[&[u8]]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(common::PATIENCE)).unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // Pacing, not waiting for a signal: the test holds whatever the split.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if stream.write_all(part).is_err() {
            break; // refused already: what came back is the answer
        }
    }
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines()
        .filter(|line| !line.starts_with("Date: "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn whether_an_answer_has_a_body_never_depends_on_how_the_request_was_split() {
    let (_health, server) = start(true);
    let addr = server.local_addr();
    let requests: [&[u8]; 5] = [
        b"\n\n\n\n\nHEAD / HTTP/1.1\r\n\r\n",
        b"\n\n\n\nHEAD /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"\r\n\r\n\r\n\r\n\r\nHEAD /healthz HTTP/1.1\r\n\r\n",
        b"HEAD /healthz HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
        b"\n\n\n\nHEAD /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    ];
    for request in requests {
        let whole = paced(addr, &[request]);
        let at_the_lfs = request.iter().take_while(|b| **b == b'\n').count().max(1);
        let split = paced(addr, &[&request[..at_the_lfs], &request[at_the_lfs..]]);
        let bytes: Vec<&[u8]> = request.chunks(1).collect();
        let trickled = paced(addr, &bytes);
        assert_eq!(whole, split, "{request:?}");
        assert_eq!(whole, trickled, "{request:?}");
    }
}
