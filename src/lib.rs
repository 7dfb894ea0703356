//! Health endpoints for synchronous Rust services, with nothing but `std`.
//!
//! Kubernetes, load balancers and Docker decide whether a process lives or
//! takes traffic by asking it over HTTP. `healthz` answers them: `GET /healthz`
//! is `200 ok` when the service says it is ready and `503 not ready` when it
//! is not, from a small blocking server with one thread per connection. No
//! async runtime, no dependencies, no `unsafe`.
//!
//! It is Dapr's Go health server (`Run(ctx, port)`, `Ready()`, `NotReady()`)
//! done the Rust way:
//!
//! 1. [`Health`] is the shared state: a lock-free flag that starts *not
//!    ready*, plus named [`Target`]s that components flip and [`Check`]s
//!    that run on a probe or in the background, for readiness and for
//!    liveness ([`checks`] has ready-made ones: TCP, HTTP, DNS, file
//!    descriptors, memory, threads, a writable disk). Clone it into
//!    whatever decides health. For workers, a
//!    [`Heartbeat`] fails liveness when a loop stops making progress, and a
//!    [`ThreadGuard`] when a thread dies.
//! 2. [`Server`] configures the limits and timeouts, then binds in the calling
//!    thread (so "address in use" is an `Err` you see at once) and serves:
//!    [`Server::bind`] in the background, returning a [`Running`] handle, or
//!    [`Server::run`], which blocks the calling thread until a
//!    [`ShutdownToken`] is triggered. A service that must not open a port
//!    serves the same on a Unix domain socket ([`Server::bind_unix`]); from
//!    `accept` on, TCP and Unix connections take one code path.
//! 3. Each connection has a thread of its own: the thread that was waiting
//!    in `accept` when it came (one stays there for the next, and threads go
//!    back when their connection ends; after a burst, the extra ones go home
//!    once they have waited a while for a connection, on Linux). It waits for a request,
//!    reads its head, parses it, marks the connection busy, routes it (checks
//!    run here) and answers, keeping the connection alive as HTTP/1.1 says,
//!    within limits that no slow or hostile client can stretch.
//! 4. Shutdown (optionally after a drain that fails readiness first) stops
//!    accepting at once (no polling), closes idle connections, lets requests
//!    in flight finish, closes the rest at the deadline (5 s by default) and
//!    joins every thread; what is cut at the deadline is reported as an
//!    [`Error`].
//! 5. An event hook ([`Server::on_event`]) hears about everything worth a log
//!    line ([`Event`]), and never once per probe.
//! 6. Beyond HTTP probes, on request: `/metrics` for Prometheus
//!    ([`Server::metrics`]), and systemd's notify protocol, whose watchdog is
//!    pinged only while liveness passes ([`Server::notify_systemd`]).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//!
//! let health = healthz::Health::new(); // not ready, as Dapr's starts
//! let server = healthz::Server::new(health.clone()).bind("127.0.0.1:0")?;
//!
//! let probe = |addr| -> std::io::Result<String> {
//!     let mut stream = TcpStream::connect(addr)?;
//!     stream.write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")?;
//!     let mut response = String::new();
//!     stream.read_to_string(&mut response)?;
//!     Ok(response)
//! };
//! assert!(probe(server.local_addr())?.starts_with("HTTP/1.1 503"));
//! health.ready(); // the very next request sees it
//! assert!(probe(server.local_addr())?.starts_with("HTTP/1.1 200"));
//!
//! server.shutdown()?;
//! # Ok(())
//! # }
//! ```
//!
//! # What it answers
//!
//! | request | answer |
//! |---|---|
//! | `GET /readyz`, `GET /healthz` | `200 ok` when ready, `503 not ready` when not |
//! | `GET /livez` | `200 ok` while alive, `503 not alive` when not |
//! | `GET /readyz/NAME`, `/livez/NAME` | the same for one [`Target`] or [`Check`] |
//! | `?verbose`, `?format=json` (or an `Accept` preferring JSON), `?exclude=NAME` | Kubernetes' verbose text, `application/health+json`, skipping names |
//! | `HEAD` on them | the same status and headers, no body |
//! | `OPTIONS` on them | the same status, no body, `Allow: GET, HEAD, OPTIONS` |
//! | `OPTIONS *` (the server itself) | as `OPTIONS /healthz` |
//! | another method on them | `405` with `Allow` |
//! | `GET /metrics`, with [`Server::metrics`] | health and counters in Prometheus' text format |
//! | another path | `404` |
//! | malformed or oversized request | `400`, `414`, `431` or `501`, then close |
//!
//! Readiness is the service's own flag, every readiness target and check, and
//! not draining; liveness is only the liveness targets and checks. Statuses,
//! the failure body and a path prefix are configurable: daprd's flavour
//! (`/v1.0/healthz`, 204 / 500 with its JSON error) is one configuration (see
//! [`Server::failure_body`]).
//!
//! The query string never affects routing, and absolute-form targets
//! (`GET http://host/healthz`) are served. Every response carries
//! `Content-Length`, `Content-Type: text/plain; charset=utf-8`,
//! `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` and `Date`.
//! HTTP/1.1 connections stay open unless the client says `Connection: close`;
//! HTTP/1.0 ones close unless it says `Connection: keep-alive`; pipelined
//! requests are answered in order. No `Host` header is required (HAProxy's
//! checks send none).
//!
//! # Probing from a container
//!
//! [`Probe`] is the other end: a std-only client that checks one health
//! endpoint the way the kubelet does (bounded time, bounded read, 200–399 is
//! healthy), for a Docker `HEALTHCHECK` in an image with no curl, over TCP
//! or a Unix socket ([`Probe::unix`]), once or until healthy
//! ([`Probe::wait_healthy`]). The crate's binary `healthz-probe` wraps it in a
//! command that exits 0 or 1 (`cargo install healthz --bin healthz-probe`).
//!
//! # What it is not
//!
//! Not a general HTTP server: no handlers of your own, no request bodies
//! beyond discarding small ones, no chunked requests, no TLS, no HTTP/2.
//! Put it on its own port, as Dapr and the kubelet expect, or its own socket.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod accept;
mod address;
pub mod checks;
mod conn;
mod counters;
mod date;
mod error;
mod event;
mod health;
mod http;
mod metrics;
mod notify;
mod probe;
mod registry;
mod render;
#[cfg(test)]
mod rng;
mod route;
mod server;
mod shutdown;
mod socket;
mod sync;
mod worker;

pub use address::Address;
pub use error::Error;
pub use event::{Event, ItemKind};
pub use health::{Check, CheckResult, Health, LivenessTarget, Target};
pub use probe::{Probe, ProbeError, ProbeErrorKind, ProbeResponse};
pub use route::{FailureBody, FailureStatus, SuccessStatus};
pub use server::{Running, Server};
pub use shutdown::ShutdownToken;
pub use socket::Listener;
pub use worker::{Heartbeat, ThreadGuard};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
