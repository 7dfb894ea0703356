//! An `accept` that fails (here: out of file descriptors) is reported and
//! retried after a back-off; it never ends the accept loop.
//!
//! The test re-runs itself in a child process with a low descriptor limit
//! (`ulimit -n`), so that exhausting descriptors harms nothing else.
//!
//! It relies on `sh`'s `ulimit -n` and on how Linux fails `accept`, so it runs on Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::{event_channel, wait_for_event, PATIENCE};
use healthz::{Health, Server};

const CHILD: &str = "HEALTHZ_TEST_FD_LIMIT_CHILD";
const NAME: &str = "running_out_of_descriptors_is_reported_and_survived";

#[test]
fn running_out_of_descriptors_is_reported_and_survived() {
    if std::env::var_os(CHILD).is_some() {
        return in_child();
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" --exact "$1" --test-threads=1 --nocapture"#)
        .arg(exe)
        .arg(NAME)
        .env(CHILD, "1")
        .status()
        .expect("run sh");
    assert!(status.success(), "the child test failed: {status}");
}

fn in_child() {
    let (hook, events) = event_channel();
    let health = Health::new();
    health.ready();
    let server = Server::new(health)
        .on_event(hook)
        .bind("127.0.0.1:0")
        .unwrap();

    // Use every descriptor but one, then let the client take that one: the
    // server's accept has none left for the connection waiting in its queue.
    let mut files = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        files.push(file);
        assert!(files.len() < 10_000, "the descriptor limit did not apply");
    }
    // Free one at a time until the client gets it: another thread of this
    // process may take a freed descriptor first (seen once in CI).
    let mut client = loop {
        assert!(files.pop().is_some(), "no descriptor left to free");
        match TcpStream::connect(server.local_addr()) {
            Ok(client) => break client,
            Err(e) if e.raw_os_error() == Some(24) => continue, // EMFILE
            Err(e) => panic!("connect: {e}"),
        }
    };
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let event = wait_for_event(&events, "accept failed");
    assert!(event.contains("Too many open files"), "{event}");

    // With descriptors back, the same queued connection is accepted and served.
    drop(files);
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    server.shutdown().unwrap();
}
