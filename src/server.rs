//! The server: its configuration, the connections' registry, and the
//! supervisor that waits for the shutdown token, then drains, stops
//! accepting, and joins every thread.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::accept::Acceptors;
use crate::conn::{self, Slot};
use crate::error::Error;
use crate::event::{Event, Events, Hook};
use crate::health::{Health, Watch};
use crate::http::Limits;
use crate::route::{FailureBody, Routes};
use crate::shutdown::{self, ShutdownToken};
use crate::sync::{lock, wait_until, Latch};
use crate::LONGEST;

/// Extra time, after the shutdown deadline, for force-closed connections to end.
const FORCE_GRACE: Duration = Duration::from_millis(250);

/// A health server being configured: builder methods, then
/// [`bind`](Server::bind), [`listen`](Server::listen) or [`run`](Server::run).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::time::Duration;
///
/// let health = healthz::Health::new();
/// let server = healthz::Server::new(health.clone())
///     .shutdown_timeout(Duration::from_secs(2))
///     .on_event(|event| eprintln!("healthz: {event}"))
///     .bind("127.0.0.1:0")?;
/// health.ready();
/// println!("probe me at http://{}/healthz", server.local_addr());
/// server.shutdown()?;
/// # Ok(())
/// # }
/// ```
pub struct Server {
    health: Health,
    config: Config,
    hook: Option<Hook>,
}

/// Every limit and timeout; see the builder methods for meanings and defaults.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub max_connections: usize,
    pub max_requests_per_connection: u64,
    pub max_body: u64,
    pub limits: Limits,
    pub stack_size: usize,
    pub routes: Routes,
    pub drain_delay: Duration,
    pub spare_threads: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: 1024,
            max_requests_per_connection: 10_000,
            max_body: 64 * 1024,
            limits: Limits {
                max_line: 4 * 1024,
                max_head: 8 * 1024,
                max_headers: 64,
            },
            stack_size: 128 * 1024,
            routes: Routes::default(),
            drain_delay: Duration::ZERO,
            spare_threads: 16,
        }
    }
}

impl Config {
    fn validate(&self) -> io::Result<()> {
        let durations = [
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(invalid(format!("{name} must be greater than zero")));
        }
        let all = [
            ("shutdown_timeout", self.shutdown_timeout),
            ("drain_delay", self.drain_delay),
        ];
        if let Some((name, _)) = durations.iter().chain(&all).find(|(_, d)| *d > LONGEST) {
            return Err(invalid(format!("{name} must be at most a year")));
        }
        let counts = [
            ("max_connections", self.max_connections as u64),
            (
                "max_requests_per_connection",
                self.max_requests_per_connection,
            ),
            ("max_headers", self.limits.max_headers as u64),
            ("spare_threads", self.spare_threads as u64),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(invalid(format!("{name} must be at least 1")));
        }
        if self.limits.max_line < 16 || self.limits.max_head < self.limits.max_line {
            return Err(invalid(
                "max_request_line must be at least 16 bytes and at most max_request_head".into(),
            ));
        }
        if self.limits.max_head > 1024 * 1024 {
            return Err(invalid(
                "max_request_head must be at most 1 MiB (it is each connection's buffer)".into(),
            ));
        }
        if !(64 * 1024..=256 * 1024 * 1024).contains(&self.stack_size) {
            return Err(invalid(
                "thread_stack_size must be between 64 KiB and 256 MiB".into(),
            ));
        }
        let routes = &self.routes;
        if ![200, 204].contains(&routes.success) || ![500, 503].contains(&routes.failure) {
            return Err(invalid(format!(
                "success_status must be 200 or 204 and failure_status 503 or 500, not {} and {}",
                routes.success, routes.failure
            )));
        }
        let prefix = &routes.prefix;
        let prefix_ok = prefix.is_empty()
            || (prefix.starts_with('/')
                && !prefix.ends_with('/')
                && prefix
                    .bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && b != b'?'));
        if !prefix_ok {
            return Err(invalid(format!(
                "path_prefix `{prefix}` must start with `/`, not end with one, and be printable ASCII"
            )));
        }
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("healthz: {message}"))
}

impl Server {
    /// A server for `health`, with the default limits.
    pub fn new(health: Health) -> Server {
        Server {
            health,
            config: Config::default(),
            hook: None,
        }
    }

    /// Calls `hook` for every [`Event`]: listening, shutting down, stopped,
    /// errors, rejections, readiness changes. Silent by default.
    ///
    /// The hook runs on the server's threads (and on the thread that flips
    /// readiness), so keep it short, and do not shut the server down from it
    /// (trigger a [`ShutdownToken`] instead); a panic in it is contained and
    /// loses only that event.
    pub fn on_event(mut self, hook: impl Fn(&Event) + Send + Sync + 'static) -> Server {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Time allowed to receive a whole request head, counted from its first byte
    /// (or from the connection's accept, for its first request), however it
    /// trickles in. Default 10 s. Past it the client gets 408 and is closed.
    pub fn request_timeout(mut self, timeout: Duration) -> Server {
        self.config.request_timeout = timeout;
        self
    }

    /// Time a kept-alive connection may sit idle between requests. Default 30 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Server {
        self.config.idle_timeout = timeout;
        self
    }

    /// Time allowed for writing one batch of responses to a client that does not
    /// read. Default 10 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Server {
        self.config.write_timeout = timeout;
        self
    }

    /// How long shutdown waits for in-flight requests before closing them by
    /// force and returning an error. Default 5 s, as Dapr's health server.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Server {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Most connections served at once, each on its own thread. Default 1024.
    ///
    /// At the cap, a new connection is always taken, and the connection that
    /// has waited longest on its client is closed to make room: idle
    /// keep-alive connections and connections trickling in a request first;
    /// a connection being answered only if every connection is, and then the
    /// one whose client has not read its answer for longest. So a fresh probe
    /// is answered however many idle, slow or hostile clients hold connections.
    pub fn max_connections(mut self, max: usize) -> Server {
        self.config.max_connections = max;
        self
    }

    /// Requests served on one connection before it is closed. Default 10 000.
    pub fn max_requests_per_connection(mut self, max: u64) -> Server {
        self.config.max_requests_per_connection = max;
        self
    }

    /// Largest request body read (and discarded); larger ones get 413 and a
    /// close. Default 64 KiB.
    pub fn max_body(mut self, bytes: u64) -> Server {
        self.config.max_body = bytes;
        self
    }

    /// Longest request line; longer gets 414. Default 4 KiB.
    pub fn max_request_line(mut self, bytes: usize) -> Server {
        self.config.limits.max_line = bytes;
        self
    }

    /// Longest request head (request line and headers); longer gets 431. It is
    /// also each connection's buffer size. Default 8 KiB, at most 1 MiB.
    pub fn max_request_head(mut self, bytes: usize) -> Server {
        self.config.limits.max_head = bytes;
        self
    }

    /// Most header fields in a request; more gets 431. Default 64.
    pub fn max_headers(mut self, count: usize) -> Server {
        self.config.limits.max_headers = count;
        self
    }

    /// Serves the endpoints under `prefix`: `.path_prefix("/v1.0")` answers
    /// `/v1.0/healthz`, `/v1.0/readyz` and `/v1.0/livez` (and nothing else).
    pub fn path_prefix(mut self, prefix: &str) -> Server {
        self.config.routes.prefix = prefix.to_string();
        self
    }

    /// The status of a passing plain probe: 200 (default) or 204. With 204 the
    /// answer has no body; `?verbose` and JSON answers still use 200. Keep 200
    /// for load balancers that accept only 200, such as AWS ALB by default.
    pub fn success_status(mut self, status: u16) -> Server {
        self.config.routes.success = status;
        self
    }

    /// The status of a failing probe: 503 (default; every prober reads it as
    /// "not now") or 500 (daprd's).
    pub fn failure_status(mut self, status: u16) -> Server {
        self.config.routes.failure = status;
        self
    }

    /// The body of a failing plain probe. Default [`FailureBody::Text`].
    ///
    /// daprd's own flavour is one configuration:
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let daprd_like = healthz::Server::new(healthz::Health::new())
    ///     .path_prefix("/v1.0")
    ///     .success_status(204)
    ///     .failure_status(500)
    ///     .failure_body(healthz::FailureBody::DaprJson)
    ///     .bind("127.0.0.1:0")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn failure_body(mut self, body: FailureBody) -> Server {
        self.config.routes.failure_body = body;
        self
    }

    /// Whether check failure reasons appear in `?verbose` and JSON bodies.
    /// Default false: bodies say `reason withheld` and reasons go to the event
    /// hook only ([`Event::CheckFailed`]), since probes may come from anywhere.
    pub fn show_reasons(mut self, show: bool) -> Server {
        self.config.routes.show_reasons = show;
        self
    }

    /// Drains before every shutdown: when shutdown is asked for, readiness
    /// fails at once ([`Health::drain`]) while liveness keeps passing and the
    /// server keeps serving for `delay`, so load balancers stop sending
    /// traffic before the process goes; then the usual shutdown follows.
    /// Default 0 (no drain). See also [`Running::drain`].
    pub fn drain_delay(mut self, delay: Duration) -> Server {
        self.config.drain_delay = delay;
        self
    }

    /// Most threads kept waiting in `accept` for the next connection. Each
    /// connection has a thread to itself; when it ends, the thread goes back to
    /// `accept`, or ends if this many threads wait there already. Waiting
    /// threads cost no CPU, and a connection that finds one costs no thread
    /// creation and no hand-off between threads. Default 16, at least 1.
    pub fn spare_threads(mut self, max: usize) -> Server {
        self.config.spare_threads = max;
        self
    }

    /// Stack size of each server thread. Default 128 KiB (64 KiB to 256 MiB);
    /// raise it if your event hook needs deep stacks.
    pub fn thread_stack_size(mut self, bytes: usize) -> Server {
        self.config.stack_size = bytes;
        self
    }

    /// Binds `addr` now, in the calling thread, and serves in the background.
    ///
    /// Binding errors ("address in use", "permission denied") are returned here.
    /// Port 0 picks a free port: see [`Running::local_addr`].
    pub fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Running> {
        self.listen(TcpListener::bind(addr)?)
    }

    /// Serves on a listener you bound yourself, on background threads.
    pub fn listen(self, listener: TcpListener) -> io::Result<Running> {
        let token = ShutdownToken::new();
        let ready = self.prepare(listener, token.clone())?;
        let addr = ready.addr;
        let shared = ready.shared.clone();
        let done = Arc::new(Latch::default());
        let signal = done.clone();
        let supervisor = thread::Builder::new()
            .name("healthz-server".into())
            .stack_size(shared.config.stack_size)
            .spawn(move || {
                let _done = SetOnDrop(&signal);
                serve(ready)
            })?;
        let running = Running {
            addr,
            token,
            shared,
            done,
            supervisor: Mutex::new(Some(supervisor)),
        };
        // Dropping `running` on error shuts down what has started.
        running.shared.acceptors.spawn(&running.shared)?;
        Ok(running)
    }

    /// Serves until `token` is triggered, then shuts down gracefully and
    /// returns: Dapr's `Run(ctx, port)`. The calling thread supervises (it
    /// waits for the token, then runs the shutdown); connections are served
    /// on threads of their own.
    ///
    /// Bind the listener first (`TcpListener::bind`), so that a bind error is
    /// yours to report before anything runs. Returns an error if the
    /// configuration is invalid or the shutdown deadline passed.
    pub fn run(self, listener: TcpListener, token: &ShutdownToken) -> Result<(), Error> {
        let ready = self.prepare(listener, token.clone())?;
        ready.shared.acceptors.spawn(&ready.shared)?;
        serve(ready)
    }

    fn prepare(self, listener: TcpListener, token: ShutdownToken) -> io::Result<Prepared> {
        self.config.validate()?;
        listener.set_nonblocking(false)?;
        let addr = listener.local_addr()?;
        let events = Events::new(self.hook);
        let watch = events.hook().map(|hook| self.health.watch(hook.clone()));
        let drain_nanos =
            AtomicU64::new(u64::try_from(self.config.drain_delay.as_nanos()).unwrap_or(u64::MAX));
        let acceptors = Acceptors::new(listener, self.config.stack_size, self.config.spare_threads);
        let shared = Arc::new(Shared {
            acceptors,
            accepted: AtomicU64::new(0),
            drain_nanos,
            closing: AtomicBool::new(false),
            config: self.config,
            health: self.health,
            events,
            token,
            epoch: Instant::now(),
            registry: Mutex::new(Registry::default()),
            drained: Condvar::new(),
        });
        shared.events.emit(Event::Listening { addr });
        Ok(Prepared {
            addr,
            shared,
            _watch: watch,
        })
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("health", &self.health)
            .field("config", &self.config)
            .field("on_event", &self.hook.is_some())
            .finish()
    }
}

/// A server that is bound and serving on a background thread.
///
/// [`shutdown`](Running::shutdown) stops it; so does dropping it (ignoring
/// the result) and triggering its [`shutdown_token`](Running::shutdown_token).
pub struct Running {
    addr: SocketAddr,
    token: ShutdownToken,
    shared: Arc<Shared>,
    done: Arc<Latch>,
    supervisor: Mutex<Option<JoinHandle<Result<(), Error>>>>,
}

impl Running {
    /// The bound address, with the real port when port 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token that stops this server when triggered, from any thread.
    pub fn shutdown_token(&self) -> ShutdownToken {
        self.token.clone()
    }

    /// Stops the server and waits for it: stops accepting at once, closes idle
    /// connections, lets in-flight requests finish, and joins every thread.
    ///
    /// Returns within the shutdown timeout (plus a moment to close what is
    /// left). If requests were still in flight at the deadline, their
    /// connections are closed and the error says how many. Idempotent: later
    /// calls, from any thread, wait for the first and return `Ok`. When it
    /// returns, the port is free to bind again.
    pub fn shutdown(&self) -> Result<(), Error> {
        self.token.trigger();
        self.wait()
    }

    /// Drains, then shuts down: readiness fails at once while liveness keeps
    /// passing and the server keeps serving for `delay`, then the graceful
    /// shutdown of [`shutdown`](Running::shutdown) follows. This is the
    /// termination Kubernetes users need: endpoints drop the pod before it
    /// stops answering. Overrides [`Server::drain_delay`].
    pub fn drain(&self, delay: Duration) -> Result<(), Error> {
        if delay > LONGEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "healthz: the drain delay must be at most a year",
            )
            .into());
        }
        self.shared.set_drain_delay(delay);
        self.shutdown()
    }

    /// Blocks until the server has stopped (after its token is triggered, by
    /// [`shutdown`](Running::shutdown) or any clone of
    /// [`shutdown_token`](Running::shutdown_token)), and returns what shutdown
    /// returned.
    pub fn wait(&self) -> Result<(), Error> {
        let mut supervisor = lock(&self.supervisor);
        let Some(handle) = supervisor.take() else {
            return Ok(());
        };
        self.token.wait();
        // The supervisor bounds its own work by the drain and the deadline;
        // the extra second is only a safety margin, so that this never hangs.
        let timeout = self.shared.config.shutdown_timeout;
        let bound = self.shared.drain_delay() + timeout + FORCE_GRACE + Duration::from_secs(1);
        if !self.done.wait_timeout(bound) {
            return Err(Error::deadline(timeout, 0, 1));
        }
        handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("healthz server thread panicked").into()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .field("stopping", &self.token.is_triggered())
            .finish()
    }
}

struct SetOnDrop<'a>(&'a Latch);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// What every thread of one server shares.
pub(crate) struct Shared {
    pub config: Config,
    pub health: Health,
    pub events: Events,
    token: ShutdownToken,
    epoch: Instant,
    registry: Mutex<Registry>,
    /// Signalled when a connection ends during shutdown.
    drained: Condvar,
    /// The drain before shutdown, in nanoseconds (a `Running::drain` call overrides it).
    drain_nanos: AtomicU64,
    /// Set once accepting has ended: connections close after their answer.
    closing: AtomicBool,
    /// The connection threads, and the listener they accept on.
    pub acceptors: Acceptors,
    /// Client connections accepted.
    accepted: AtomicU64,
}

impl Shared {
    /// Whether the server has stopped accepting and is shutting down.
    pub fn stopping(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn drain_delay(&self) -> Duration {
        Duration::from_nanos(self.drain_nanos.load(Ordering::SeqCst))
    }

    fn set_drain_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.drain_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Milliseconds since the server started: a cheap clock for eviction order.
    pub fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }
}

/// The live connections.
#[derive(Default)]
struct Registry {
    next_id: u64,
    slots: HashMap<u64, Arc<Slot>>,
}

impl Registry {
    /// The connection to evict at the cap (see [`Slot::eviction_key`]).
    fn eviction_candidate(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|(id, slot)| slot.eviction_key().map(|key| (key, *id)))
            .min()
            .map(|(_, id)| id)
    }
}

/// A bound server whose shutdown is not yet supervised.
struct Prepared {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _watch: Option<Watch>,
}

/// The supervisor's part in a server's life: wait for the token, drain, stop
/// accepting, then close and join everything.
fn serve(ready: Prepared) -> Result<(), Error> {
    let Prepared {
        addr,
        shared,
        _watch,
    } = ready;
    shared.token.wait();
    let delay = shared.drain_delay();
    if !delay.is_zero() {
        // Readiness fails at once; serving goes on until the delay is over.
        shared.health.drain();
        shared.events.emit(Event::Draining { delay });
        thread::sleep(delay);
    }
    let deadline = Instant::now() + shared.config.shutdown_timeout;
    let in_accept = shared.acceptors.close();
    shared.closing.store(true, Ordering::SeqCst);
    // Each thread in `accept` takes one of these connections, sees that
    // accepting is over, closes it unserved, and ends.
    for _ in 0..in_accept {
        shutdown::wake(addr);
    }
    let unwoken = shared.acceptors.wait_all_back(deadline);
    shared.events.emit(Event::ShuttingDown);
    let result = drain(&shared, deadline, unwoken);
    let cut = result.as_ref().map_or_else(Error::connections_cut, |()| 0);
    let connections = shared.accepted.load(Ordering::SeqCst);
    shared.events.emit(Event::Stopped { connections, cut });
    result
}

/// Serves a connection that a thread accepted: registers it (making room at
/// the connection cap), serves it on this thread, and unregisters it.
pub(crate) fn serve_connection(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    buffers: &mut conn::Buffers,
) {
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    let mut registry = shared.registry();
    while registry.slots.len() >= shared.config.max_connections {
        let Some(evicted) = registry
            .eviction_candidate()
            .and_then(|id| registry.slots.remove(&id))
        else {
            break;
        };
        evicted.close();
        drop(registry);
        shared.events.emit(Event::Rejected {
            peer: evicted.peer(),
            reason: "evicted: connection limit reached",
        });
        registry = shared.registry();
    }

    let slot = Arc::new(Slot::new(stream, peer, shared.millis()));
    let id = registry.next_id;
    registry.next_id += 1;
    registry.slots.insert(id, slot.clone());
    drop(registry);
    let _release = Release { shared, id };
    conn::serve(shared, &slot, buffers);
}

/// Removes a connection from the registry when its thread ends, however it ends.
struct Release<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut registry = self.shared.registry();
        registry.slots.remove(&self.id);
        if registry.slots.is_empty() && self.shared.stopping() {
            self.shared.drained.notify_all();
        }
    }
}

/// Closes idle connections, waits for the busy ones until the deadline, closes
/// what is left, and joins every connection thread. `unwoken` threads are
/// still in `accept` (their wake-up connection could not be made): left running.
fn drain(shared: &Shared, deadline: Instant, unwoken: usize) -> Result<(), Error> {
    let timeout = shared.config.shutdown_timeout;
    // Closed outside the registry lock, which each woken thread takes as it ends.
    let live: Vec<Arc<Slot>> = shared.registry().slots.values().cloned().collect();
    for slot in &live {
        slot.close_if_idle();
    }
    drop(live);
    let mut registry = wait_until_empty(shared, shared.registry(), deadline);
    let cut = registry.slots.len();
    if cut > 0 {
        for slot in registry.slots.values() {
            slot.close();
        }
        registry = wait_until_empty(shared, registry, deadline + FORCE_GRACE);
    }
    let stuck = registry.slots.len() + unwoken;
    drop(registry);
    for thread in shared.acceptors.threads() {
        // A thread that still holds its connection is stuck in user code: leave it.
        if stuck == 0 || thread.is_finished() {
            let _ = thread.join();
        }
    }
    if cut > 0 || stuck > 0 {
        Err(Error::deadline(timeout, cut, stuck))
    } else {
        Ok(())
    }
}

fn wait_until_empty<'a>(
    shared: &Shared,
    registry: MutexGuard<'a, Registry>,
    deadline: Instant,
) -> MutexGuard<'a, Registry> {
    wait_until(&shared.drained, registry, deadline, |r| r.slots.is_empty()).0
}
