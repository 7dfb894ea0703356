//! The same server on a Unix domain socket. Every scenario in the first half
//! runs against a TCP server and a Unix-socket one, through the same
//! helpers, and must see the same answers. The second half is what only a
//! Unix socket has: its file's life, abstract names, and the events that
//! name its path.
#![cfg(unix)]

mod common;

use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::Duration;

use common::{
    event_channel, exchange, get, kept_alive, raw, socket_path, wait_for_event, AnyServer, Client,
    Dial, TRANSPORTS,
};
use healthz::{Health, Server};

/// Runs `scenario` on a TCP server and a Unix-socket one, both made by
/// `configure`; the scenario also hears the server's events.
fn on_both(
    configure: impl Fn(Server) -> Server,
    scenario: impl Fn(&Health, &dyn Dial, &std::sync::mpsc::Receiver<String>),
) {
    for &unix in TRANSPORTS {
        let health = Health::new();
        let (hook, events) = event_channel();
        let server = AnyServer::bind(configure(Server::new(health.clone()).on_event(hook)), unix);
        let target = server.target();
        scenario(&health, &*target, &events);
        server.shutdown().expect("shutdown");
    }
}

#[test]
fn healthz_answers_503_then_200() {
    on_both(
        |server| server,
        |health, at, _| {
            let reply = get(at, "/healthz");
            assert_eq!((reply.status, reply.text()), (503, "not ready\n"));
            health.ready();
            let reply = get(at, "/healthz");
            assert_eq!((reply.status, reply.text()), (200, "ok\n"));
        },
    );
}

#[test]
fn verbose_readiness_lists_every_item() {
    on_both(
        |server| server,
        |health, at, _| {
            health.target("db").unwrap().ready();
            health.ready();
            let reply = get(at, "/readyz?verbose");
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.text(),
                "[+]ready ok\n[+]shutdown ok\n[+]db ok\nreadyz check passed\n"
            );
        },
    );
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    on_both(
        |server| server,
        |health, at, _| {
            health.ready();
            let mut client = Client::connect(at);
            client.send(
                b"GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nHEAD /livez HTTP/1.1\r\n\r\n",
            );
            assert_eq!(client.response(false).unwrap().status, 200);
            assert_eq!(client.response(false).unwrap().status, 404);
            assert_eq!(client.response(true).unwrap().status, 200);
            assert_eq!(client.get("/readyz").status, 200, "still open");
        },
    );
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    on_both(
        |server| server,
        |health, at, _| {
            health.ready();
            let mut client = Client::connect(at);
            client.send(b"GET /healthz HTTP/1.0\r\n\r\n");
            assert_eq!(client.response(false).unwrap().status, 200);
            assert!(client.closed());

            let mut client = Client::connect(at);
            client.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            let reply = client.response(false).unwrap();
            assert_eq!(reply.header("Connection"), Some("keep-alive"));
            client.send(b"GET /livez HTTP/1.0\r\n\r\n");
            assert_eq!(client.response(false).unwrap().status, 200);
            assert!(client.closed());
        },
    );
}

#[test]
fn limits_refuse_oversized_requests_and_close() {
    on_both(
        |server| server.max_request_line(64).max_headers(2),
        |_, at, events| {
            let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
            let out = raw(at, long.as_bytes());
            assert!(out.starts_with(b"HTTP/1.1 414 "), "{out:?}");
            let reply = exchange(at, b"GET /healthz HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
            assert_eq!(reply.status, 431);
            wait_for_event(events, "rejected");
        },
    );
}

#[test]
fn at_the_cap_a_fresh_probe_is_answered_and_the_idle_connection_goes() {
    on_both(
        |server| server.max_connections(2),
        |health, at, events| {
            health.ready();
            let mut idle = kept_alive(at, 2, 200);
            assert_eq!(get(at, "/healthz").status, 200);
            wait_for_event(events, "evicted: connection limit reached");
            assert!(
                idle.iter_mut().any(Client::closed),
                "an idle one is evicted"
            );
        },
    );
}

#[test]
fn shutdown_closes_idle_connections_at_once() {
    for &unix in TRANSPORTS {
        let health = Health::new();
        let server = AnyServer::bind(
            Server::new(health).shutdown_timeout(Duration::from_secs(60)),
            unix,
        );
        let mut idle = kept_alive(&*server.target(), 5, 503);
        // Within the 60 s deadline only if idle connections are not waited for.
        server.shutdown().expect("a clean shutdown");
        assert!(idle.iter_mut().all(Client::closed));
    }
}

// What only a Unix socket has.

/// Starts a Unix-socket server at a fresh path; returns it and the path.
fn unix_server(
    health: &Health,
) -> (
    healthz::Running<SocketAddr>,
    std::path::PathBuf,
    std::sync::mpsc::Receiver<String>,
) {
    let path = socket_path("unix");
    let (hook, events) = event_channel();
    let server = Server::new(health.clone())
        .on_event(hook)
        .bind_unix(&path)
        .expect("bind_unix");
    (server, path, events)
}

#[test]
fn events_and_the_address_name_the_socket_path() {
    let health = Health::new();
    let path = socket_path("events");
    let (hook, events) = event_channel();
    let server = Server::new(health)
        .max_connections(1)
        .on_event(hook)
        .bind_unix(&path)
        .unwrap();
    assert_eq!(server.local_addr().as_pathname(), Some(path.as_path()));
    let named = format!("unix:{}", path.display());
    assert_eq!(
        wait_for_event(&events, "listening"),
        format!("listening on {named}")
    );
    let mut idle = Client::connect(&path);
    assert_eq!(idle.get("/healthz").status, 503);
    assert_eq!(get(&path, "/healthz").status, 503);
    assert_eq!(
        wait_for_event(&events, "evicted"),
        format!("rejected {named}: evicted: connection limit reached")
    );
    assert!(idle.closed());
    server.shutdown().unwrap();
}

#[test]
fn binding_over_a_stale_socket_file_replaces_it_and_shutdown_removes_it() {
    let path = socket_path("stale");
    // A crashed server leaves its socket file: nothing listens on it.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let err = UnixStream::connect(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    let health = Health::new();
    health.ready();
    let (hook, events) = event_channel();
    let server = Server::new(health)
        .on_event(hook)
        .bind_unix(&path)
        .expect("bind over a stale file");
    // The operator hears of it, before the server says it listens.
    assert_eq!(
        events.try_recv().unwrap(),
        format!(
            "replaced a stale socket file at {}: nothing listened on it",
            path.display()
        )
    );
    assert!(events.try_recv().unwrap().starts_with("listening on"));
    assert_eq!(get(&path, "/healthz").status, 200);
    server.shutdown().unwrap();
    assert!(!path.exists(), "the socket file is removed at shutdown");

    // A fresh path has nothing to replace, and nothing is said of it.
    let (hook, events) = event_channel();
    let server = Server::new(Health::new())
        .on_event(hook)
        .bind_unix(&path)
        .unwrap();
    assert!(events.try_recv().unwrap().starts_with("listening on"));
    server.shutdown().unwrap();
}

#[test]
fn a_file_that_is_not_a_socket_is_never_replaced() {
    let path = socket_path("regular");
    std::fs::write(&path, "precious\n").unwrap();
    let err = Server::new(Health::new()).bind_unix(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(
        err.to_string(),
        format!("cannot listen on {}", path.display())
    );
    assert!(
        format!("{err:?}").ends_with(": a file there is not a socket; not replaced"),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious\n");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_socket_another_server_listens_on_is_never_replaced() {
    let health = Health::new();
    let (live, path, _) = unix_server(&health);
    let err = Server::new(Health::new()).bind_unix(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        format!("{err:?}").contains("another server listens"),
        "{err:?}"
    );
    assert_eq!(
        get(&path, "/healthz").status,
        503,
        "the live one still answers"
    );

    // A plain listener that never accepts counts as live too.
    let other = socket_path("plain");
    let _listener = UnixListener::bind(&other).unwrap();
    let err = Server::new(Health::new()).bind_unix(&other).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(other.exists());
    live.shutdown().unwrap();
    std::fs::remove_file(&other).unwrap();
}

#[test]
fn shutdown_removes_only_the_file_it_created() {
    let health = Health::new();
    let (server, path, _) = unix_server(&health);
    // Someone replaced the socket file while the server ran.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "someone else's\n").unwrap();
    server.shutdown().expect("shutdown does not need the file");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's\n");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_listener_handed_in_is_served_and_its_file_stays_the_callers() {
    let path = socket_path("handed");
    let listener = UnixListener::bind(&path).unwrap();
    let health = Health::new();
    health.ready();
    let token = healthz::ShutdownToken::new();
    let stop = token.clone();
    let server = std::thread::spawn(move || Server::new(health).run(listener, &token));
    assert_eq!(get(&path, "/healthz").status, 200);
    stop.trigger();
    server.join().unwrap().expect("run returns cleanly");
    assert!(path.exists(), "not ours to remove");
    std::fs::remove_file(&path).unwrap();
}

#[cfg(target_os = "linux")]
impl Dial for SocketAddr {
    fn dial(&self) -> std::io::Result<common::Stream> {
        UnixStream::connect_addr(self).map(common::Stream::Unix)
    }
}

#[cfg(target_os = "linux")]
#[test]
fn an_abstract_name_is_served_with_no_file_at_all() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("healthz-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(&name).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    let (hook, events) = event_channel();
    let health = Health::new();
    health.ready();
    let server = Server::new(health).on_event(hook).listen(listener).unwrap();
    assert_eq!(
        wait_for_event(&events, "listening"),
        format!("listening on unix:@{name}")
    );
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/healthz").status, 200);
    server.shutdown().unwrap();
    assert!(client.closed());
}
